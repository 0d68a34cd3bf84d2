"""The decoded-image store: each list of images is decoded once per image size and kept in the kit's cache as a
uint8 `.npy` file, so every later epoch, run and notebook reads pixels instead of decoding JPEGs again.

A store is keyed by the ordered file list, each file's size and modification time, the image size and the
TensorFlow version: a changed, added or removed image, or another TensorFlow, makes a new key. It is written atomically under a lock (a second process waits, then
reads it), and a damaged one is decoded again. Nothing is written next to the user's images.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from faceattr.data import usable_cache_dir
from faceattr.files import atomic_write, locked

STORE_FORMAT_VERSION = "1"  # bump when decode_image's pixels change
DECODE_BATCH = 256  # images decoded per step while a store is written: bounds the memory it takes


def store_key(paths: Sequence[str], image_size: int) -> str:
    """A key for these files, in this order, at this size: their paths, byte sizes and modification times, and the
    TensorFlow version (its decoder and resize make the pixels)."""
    from faceattr import import_tensorflow

    version = import_tensorflow().__version__
    digest = hashlib.sha1(f"{STORE_FORMAT_VERSION}|{version}|{image_size}|{len(paths)}".encode())
    for path in paths:
        stat = os.stat(path)
        digest.update(f"|{path}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:20]


def store_path(paths: Sequence[str], image_size: int, cache_dir: Path | None = None) -> Path:
    """Where the store for `paths` at `image_size` lives."""
    return (cache_dir or usable_cache_dir()) / "decoded" / f"{store_key(paths, image_size)}-{image_size}px.npy"


def decode_batches(paths: Sequence[str], image_size: int):
    """Yield uint8 batches of `faceattr.pipeline.decode_image`, decoded in parallel, in `paths` order."""
    from faceattr.pipeline import AUTOTUNE, decode_image, tf

    files = tf.data.Dataset.from_tensor_slices(np.asarray(paths, dtype=str))
    images = files.map(lambda path: decode_image(path, image_size), num_parallel_calls=AUTOTUNE, deterministic=True)
    for batch in images.batch(DECODE_BATCH).prefetch(AUTOTUNE):
        yield batch.numpy()


def decode_into(target: np.ndarray, paths: Sequence[str], image_size: int) -> np.ndarray:
    """Fill `target` (N x size x size x 3, uint8) with the decoded images, batch by batch; return it."""
    start = 0
    for batch in decode_batches(paths, image_size):
        target[start:start + len(batch)] = batch
        start += len(batch)
    return target


def read_store(path: Path, count: int, image_size: int) -> np.ndarray | None:
    """The store at `path` memory-mapped, or None when it is missing or damaged (wrong shape, type or length)."""
    if not path.exists():
        return None
    try:
        pixels = np.load(path, mmap_mode="r")
        if pixels.dtype != np.uint8 or pixels.shape != (count, image_size, image_size, 3):
            raise ValueError(f"holds {pixels.dtype} {pixels.shape}")
    except Exception as error:  # truncated, garbled or foreign: any failure to read means "decode again"
        print(f"note: the decoded-image store {path} is damaged ({type(error).__name__}: {error}); decoding again.",
              file=sys.stderr)
        return None
    return pixels


def decoded_images(paths: Sequence[str], image_size: int) -> np.ndarray:
    """Every image of `paths` as `decode_image` returns it, stacked: uint8, N x size x size x 3, read-only.

    From the store when it exists; otherwise decoded once and written there (see the module's docstring)."""
    paths = [str(path) for path in paths]
    shape = (len(paths), image_size, image_size, 3)
    if not paths:
        return np.zeros(shape, np.uint8)
    path = store_path(paths, image_size)
    with locked(f"{path}.lock"):  # a second process building the same store waits here, then reads it
        pixels = read_store(path, len(paths), image_size)
        if pixels is not None:
            return pixels
        try:
            atomic_write(path, lambda temporary: decode_into(
                np.lib.format.open_memmap(temporary, mode="w+", dtype=np.uint8, shape=shape), paths, image_size).flush())
        except OSError as error:  # a full or read-only disk: train anyway, from memory
            print(f"note: could not write the decoded-image store {path} ({error.strerror or error}); decoding into "
                  "memory instead. Free some disk space or set FACEATTR_CACHE_DIR to keep it.", file=sys.stderr)
            return decode_into(np.empty(shape, np.uint8), paths, image_size)
        return np.load(path, mmap_mode="r")
