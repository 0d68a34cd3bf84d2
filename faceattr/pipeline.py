"""tf.data input pipeline: parallel decode, uint8 cache, shuffle, batch, prefetch."""

from __future__ import annotations

import pandas as pd

from faceattr import import_tensorflow
from faceattr.defaults import DEFAULT_SEED

tf = import_tensorflow()
from keras import layers  # noqa: E402  (after the quiet TensorFlow import)

AUTOTUNE = tf.data.AUTOTUNE


def resize_pixels(images: tf.Tensor, image_size: int) -> tf.Tensor:
    """Resize an image (or a batch) to an `image_size` square with antialiasing, as uint8: the one resize used for
    training, evaluation and faces found in photos."""
    resized = tf.image.resize(images, (image_size, image_size), antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)


def decode_image(path: tf.Tensor, image_size: int) -> tf.Tensor:
    """Read one image file, convert it to RGB and resize it to a uint8 square."""
    return resize_pixels(tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False), image_size)


def labels_of(frame: pd.DataFrame) -> dict[str, tf.Tensor]:
    """The targets of each head: age in years, gender and race as class indices."""
    return {
        "age": tf.constant(frame["age"].to_numpy("float32")),
        "gender": tf.constant(frame["gender"].to_numpy("int32")),
        "race": tf.constant(frame["race"].to_numpy("int32")),
    }


def augmenter(seed: int) -> tf.keras.Sequential:
    """Light training-only augmentation: horizontal flip, small brightness and contrast changes."""
    return tf.keras.Sequential([
        layers.RandomFlip("horizontal", seed=seed),
        layers.RandomBrightness(0.1, value_range=(0, 255), seed=seed),
        layers.RandomContrast(0.1, seed=seed),
    ], name="augment")


def make_dataset(frame: pd.DataFrame, image_size: int, batch_size: int, shuffle: bool = False,
                 augment: bool = False, seed: int = DEFAULT_SEED, cache: bool | str = True,
                 with_labels: bool = True) -> tf.data.Dataset:
    """Build batches of (float32 pixels in 0..255, {head: target}) from a scan/split frame."""
    paths = tf.data.Dataset.from_tensor_slices(frame["path"].to_numpy(str))
    images = paths.map(lambda path: decode_image(path, image_size), num_parallel_calls=AUTOTUNE)
    dataset = tf.data.Dataset.zip(images, tf.data.Dataset.from_tensor_slices(labels_of(frame))) \
        if with_labels else images
    if cache:
        dataset = dataset.cache("" if cache is True else str(cache))  # uint8: 4x smaller than float32
    if shuffle:
        dataset = dataset.shuffle(len(frame), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    to_float = (lambda images, targets: (tf.cast(images, tf.float32), targets)) if with_labels \
        else (lambda images: tf.cast(images, tf.float32))
    dataset = dataset.map(to_float, num_parallel_calls=AUTOTUNE)
    if augment:
        augment_layers = augmenter(seed)
        dataset = dataset.map(lambda images, targets: (augment_layers(images, training=True), targets),
                              num_parallel_calls=AUTOTUNE)
    return dataset.prefetch(AUTOTUNE)


def split_datasets(split: pd.DataFrame, image_size: int, batch_size: int, seed: int = DEFAULT_SEED,
                   augment: bool = False) -> dict[str, tf.data.Dataset]:
    """Train (shuffled), validation and test datasets from a frame with a `split` column."""
    return {
        name: make_dataset(split[split["split"] == name], image_size, batch_size,
                           shuffle=name == "train", augment=augment and name == "train", seed=seed)
        for name in ("train", "validation", "test")
    }
