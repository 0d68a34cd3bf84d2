"""The tf.data pipeline: shapes, dtypes, RGB conversion, labels, seeded shuffling."""

import numpy as np
import pytest

from faceattr.data import scan, split_frame
from faceattr.pipeline import make_dataset, split_datasets


@pytest.fixture(scope="module")
def frame(sample_dir):
    return scan(sample_dir, cache=False).frame


def test_batches_have_images_and_a_target_per_head(frame):
    images, targets = next(iter(make_dataset(frame.head(10), image_size=40, batch_size=4)))
    assert images.shape == (4, 40, 40, 3) and images.dtype.name == "float32"
    assert 0 <= float(np.min(images)) and float(np.max(images)) <= 255 and float(np.max(images)) > 1
    assert set(targets) == {"age", "gender", "race"}
    np.testing.assert_array_equal(targets["age"].numpy(), frame["age"].head(4).to_numpy("float32"))
    np.testing.assert_array_equal(targets["race"].numpy(), frame["race"].head(4).to_numpy())


def test_grayscale_and_rgba_images_become_rgb(frame):
    odd = frame[frame["file"].str.endswith(".png") | frame["file"].str.endswith("_20170000000000000.jpg.chip.jpg")]
    assert len(odd) == 2
    images, _ = next(iter(make_dataset(odd, image_size=32, batch_size=2)))
    assert images.shape == (2, 32, 32, 3)
    grey = images[0].numpy()
    np.testing.assert_array_equal(grey[..., 0], grey[..., 1])


def test_every_row_is_delivered_once_per_epoch(frame):
    dataset = make_dataset(frame, image_size=32, batch_size=64, shuffle=True, seed=3)
    ages = np.concatenate([targets["age"].numpy() for _, targets in dataset])
    assert sorted(ages) == sorted(frame["age"].astype("float32"))


def test_shuffle_is_seeded(frame):
    def first_epoch(seed):
        dataset = make_dataset(frame, image_size=32, batch_size=50, shuffle=True, seed=seed)
        return np.concatenate([targets["age"].numpy() for _, targets in dataset])

    np.testing.assert_array_equal(first_epoch(5), first_epoch(5))
    assert not np.array_equal(first_epoch(5), first_epoch(6))


def test_only_training_data_is_shuffled_and_augmented(frame):
    datasets = split_datasets(split_frame(frame, seed=1), image_size=32, batch_size=8, augment=True)
    test_images = np.concatenate([images.numpy() for images, _ in datasets["test"]])
    again = np.concatenate([images.numpy() for images, _ in datasets["test"]])
    np.testing.assert_array_equal(test_images, again)
    train_first = next(iter(datasets["train"]))[0].numpy()
    train_second = next(iter(datasets["train"]))[0].numpy()
    assert not np.array_equal(train_first, train_second)
