"""tf.data input pipeline: decoded uint8 images (from the store), shuffle, batch, cast, augment, prefetch."""

from __future__ import annotations

import numpy as np
import pandas as pd

from faceattr import import_tensorflow
from faceattr.decode import decode_image
from faceattr.defaults import DEFAULT_SEED, GROUP_BALANCES, check_choice
from faceattr.errors import DataError, SettingsError
from faceattr.store import decoded_images

tf = import_tensorflow()
from keras import layers  # noqa: E402  (after the quiet TensorFlow import)

AUTOTUNE = tf.data.AUTOTUNE


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


GROUP_COLUMNS = ["race", "gender"]


def group_weights(frame: pd.DataFrame) -> np.ndarray:
    """Each image's weight: the inverse of its race x gender group's share of `frame`, scaled to a mean of 1."""
    counts = frame.groupby(GROUP_COLUMNS)["race"].transform("size").to_numpy("float64")
    weights = 1.0 / counts
    return (weights * len(frame) / weights.sum()).astype("float32")


def images_of(frame: pd.DataFrame, image_size: int, cache: bool = True) -> tf.data.Dataset:
    """The frame's images as uint8 `decode_image` output, in row order: read from the decoded-image store
    (`faceattr.store`: decoded once, on first use, then shared by every run) or, without `cache`, decoded
    on every pass."""
    if cache:
        return tf.data.Dataset.from_tensor_slices(decoded_images(frame["path"], image_size))
    paths = tf.data.Dataset.from_tensor_slices(frame["path"].to_numpy(str))
    return paths.map(lambda path: decode_image(path, image_size), num_parallel_calls=AUTOTUNE)


def examples_of(frame: pd.DataFrame, images: tf.data.Dataset, weighted: bool = False) -> tf.data.Dataset:
    """Zip the frame's images with its targets and, when `weighted`, each image's `group_weights`."""
    parts = (images, tf.data.Dataset.from_tensor_slices(labels_of(frame)))
    if weighted:
        parts += (tf.data.Dataset.from_tensor_slices(group_weights(frame)),)
    return tf.data.Dataset.zip(*parts)


def balanced_dataset(frame: pd.DataFrame, image_size: int, batch_size: int, seed: int = DEFAULT_SEED,
                     augment: bool = False) -> tf.data.Dataset:
    """Training batches drawn evenly from every race x gender group (rarer groups' images repeat), one epoch
    being as many images as `frame` holds."""
    pixels = decoded_images(frame["path"], image_size)
    positions = frame.reset_index(drop=True).groupby(GROUP_COLUMNS).indices.values()  # each group, in row order
    streams = [examples_of(frame.iloc[rows], tf.data.Dataset.from_tensor_slices(pixels[rows]))
               .shuffle(len(rows), seed=seed).repeat() for rows in positions]
    mixed = tf.data.Dataset.sample_from_datasets(streams, weights=[1 / len(streams)] * len(streams), seed=seed)
    return finish(mixed.take(len(frame)), batch_size, augment, seed)


def finish(dataset: tf.data.Dataset, batch_size: int, augment: bool, seed: int) -> tf.data.Dataset:
    """Batch (image, targets[, weight]) elements, cast the pixels to float32, augment if asked, prefetch."""
    dataset = dataset.batch(batch_size).map(lambda images, *rest: (tf.cast(images, tf.float32), *rest),
                                            num_parallel_calls=AUTOTUNE)
    if augment:
        augment_layers = augmenter(seed)
        dataset = dataset.map(lambda images, *rest: (augment_layers(images, training=True), *rest),
                              num_parallel_calls=AUTOTUNE)
    return dataset.prefetch(AUTOTUNE)


def make_dataset(frame: pd.DataFrame, image_size: int, batch_size: int, shuffle: bool = False,
                 augment: bool = False, seed: int = DEFAULT_SEED, cache: bool = True,
                 with_labels: bool = True, weighted: bool = False) -> tf.data.Dataset:
    """Build batches of (float32 pixels in 0..255, {head: target}) from a scan/split frame; with `weighted`, a
    third element holds each image's `group_weights`. `cache` reads the decoded-image store (see `images_of`)."""
    images = images_of(frame, image_size, cache)
    if not with_labels:
        return images.batch(batch_size).map(lambda pixels: tf.cast(pixels, tf.float32),
                                             num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)
    dataset = examples_of(frame, images, weighted)
    if shuffle:
        dataset = dataset.shuffle(len(frame), seed=seed, reshuffle_each_iteration=True)
    return finish(dataset, batch_size, augment, seed)


def replica_batch_size(name: str, images: int, batch_size: int, replicas: int = 1) -> int:
    """The batch size for a split of `images` trained or evaluated on `replicas` devices at once (several GPUs).

    Keras (3.15, TensorFlow) averages a dataset's first batch across the replicas before it starts, which fails
    unless that batch splits evenly; so the batch size must be a multiple of `replicas`, and a split smaller than
    one batch is batched at the largest multiple it holds (later batches may split unevenly, but see
    without_short_batches)."""
    if replicas == 1:
        return batch_size
    if batch_size % replicas:
        raise SettingsError(f"batch_size={batch_size} does not split evenly over {replicas} GPUs: use a multiple "
                            f"of {replicas}.")
    if images < replicas:
        raise DataError(f"the {name} split has {images} image(s), fewer than the {replicas} GPUs training at once: "
                        "use more data, or one GPU (CUDA_VISIBLE_DEVICES=0).")
    return min(batch_size, images - images % replicas)


def without_short_batches(dataset: tf.data.Dataset, replicas: int) -> tf.data.Dataset:
    """Drop a last batch with fewer images than `replicas`: some device would get none, and a convolution on an
    empty batch fails in TensorFlow 2.21. At most replicas - 1 images a pass; `evaluate_run` still reads every one."""
    if replicas == 1:
        return dataset
    return dataset.filter(lambda images, *rest: tf.shape(images)[0] >= replicas)


def split_datasets(split: pd.DataFrame, image_size: int, batch_size: int, seed: int = DEFAULT_SEED,
                   augment: bool = False, balance: str = "none", replicas: int = 1) -> dict[str, tf.data.Dataset]:
    """Train (shuffled; group-balanced by `balance`, see faceattr.defaults.GROUP_BALANCES), validation and test
    datasets from a frame with a `split` column, batched for `replicas` devices (replica_batch_size)."""
    check_choice("balance", balance, GROUP_BALANCES)
    frames = {name: split[split["split"] == name] for name in ("train", "validation", "test")}
    sizes = {name: replica_batch_size(name, len(frame), batch_size, replicas) for name, frame in frames.items()}
    train = frames["train"]
    datasets = {"train": balanced_dataset(train, image_size, sizes["train"], seed, augment) if balance == "sample"
                else make_dataset(train, image_size, sizes["train"], shuffle=True, augment=augment, seed=seed,
                                  weighted=balance == "weight")}
    for name in ("validation", "test"):
        datasets[name] = make_dataset(frames[name], image_size, sizes[name], seed=seed)
    return {name: without_short_batches(dataset, replicas) for name, dataset in datasets.items()}


def as_arrays(frame: pd.DataFrame, image_size: int, batch_size: int = 512) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Every image of `frame` at `image_size` px (float32, 0..255) and its targets, in row order, through
    `make_dataset` (decoded afresh, not from the store): for experiments that edit pixels in memory (notebook 08)."""
    batches = list(make_dataset(frame, image_size, batch_size, cache=False))
    images = np.concatenate([images.numpy() for images, _ in batches])
    labels = {head: np.concatenate([targets[head].numpy() for _, targets in batches])
              for head in ("age", "gender", "race")}
    return images, labels
