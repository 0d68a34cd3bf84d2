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


def test_augmentation_changes_the_training_images_but_not_their_labels(frame):
    split = split_frame(frame, seed=1)
    plain = next(iter(split_datasets(split, image_size=32, batch_size=16, seed=4)["train"]))
    augmented = next(iter(split_datasets(split, image_size=32, batch_size=16, seed=4, augment=True)["train"]))
    for head in ("age", "gender", "race"):  # same shuffle, same rows
        np.testing.assert_array_equal(plain[1][head].numpy(), augmented[1][head].numpy())
    difference = np.abs(plain[0].numpy() - augmented[0].numpy()).mean(axis=(1, 2, 3))
    assert (difference > 1).mean() > 0.5  # most images were flipped or re-lit
    assert abs(plain[0].numpy().mean() - augmented[0].numpy().mean()) < 20  # ... not destroyed


def test_downscaling_is_antialiased_for_files_and_for_crops(tmp_path):
    from PIL import Image

    from faceattr.detect import crops_to_batch
    from faceattr.pipeline import decode_image

    stripes = np.zeros((96, 96, 3), np.uint8)
    stripes[:, ::2] = 255  # one-pixel stripes: without antialiasing a 3x downscale samples only 0 or 255
    Image.fromarray(stripes).save(tmp_path / "stripes.png")
    from_file = decode_image(str(tmp_path / "stripes.png"), 32).numpy()
    from_crop = crops_to_batch([Image.fromarray(stripes)], 32)[0]
    assert np.abs(from_file.astype(float) - 127.5).max() < 20
    np.testing.assert_array_equal(from_file.astype("float32"), from_crop)  # a crop is resized like a file


@pytest.mark.parametrize("images, batch_size, replicas, expected", [
    (1000, 32, 1, 32), (9, 32, 1, 32), (0, 32, 1, 32),   # one device: the batch size as it is
    (1000, 32, 2, 32), (9, 32, 2, 8),          # several: a small split's first batch still splits evenly
    (33, 32, 4, 32), (30, 32, 4, 28), (4, 32, 4, 4)])
def test_replica_batch_size_makes_every_first_batch_split_evenly(images, batch_size, replicas, expected):
    from faceattr.pipeline import replica_batch_size

    assert replica_batch_size("validation", images, batch_size, replicas) == expected


def test_replica_batch_size_names_the_setting_or_the_split_it_cannot_serve():
    from faceattr.errors import DataError, SettingsError
    from faceattr.pipeline import replica_batch_size

    with pytest.raises(SettingsError, match="batch_size=32 .* multiple of 3"):
        replica_batch_size("train", 1000, 32, 3)
    with pytest.raises(DataError, match="the test split has 1 image"):
        replica_batch_size("test", 1, 32, 2)


def test_without_short_batches_drops_only_a_batch_too_small_to_give_every_device_an_image():
    from faceattr.pipeline import tf, without_short_batches

    batches = tf.data.Dataset.range(9).batch(4).map(lambda images: (images, {"age": images}))   # 4, 4, 1
    sizes = lambda dataset: [len(images) for images, _ in dataset.as_numpy_iterator()]
    assert sizes(without_short_batches(batches, 2)) == [4, 4]
    assert sizes(without_short_batches(batches, 1)) == [4, 4, 1]
    assert sizes(without_short_batches(tf.data.Dataset.range(10).batch(4).map(lambda i: (i, i)), 2)) == [4, 4, 2]
