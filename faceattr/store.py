"""The decoded-image store: each list of images is decoded once per image size and kept in the kit's cache as a
uint8 `.npy` file, so every later epoch, run and notebook reads pixels instead of decoding JPEGs again.

A store is keyed by the ordered file list, each file's size and modification time, the image size, the pixel
format's version (faceattr.decode) and the TensorFlow version: a changed, added or removed image, another decode or
another TensorFlow makes a new key. Where it lives is faceattr.cache's to say. It is written atomically under an
exclusive lock (a second process waits, then reads it; a killed writer's temporary file is removed), and read under a
shared one (so `faceattr cache --clear` skips it meanwhile). Its disk space is reserved before it is mapped, so
a full disk is an error the kit handles (it decodes into memory), never a crash. Its pixels carry a checksum, checked
whenever it is opened: a damaged store, zeroed pages included, is decoded again. Nothing is written next to the user's
images.
"""

from __future__ import annotations

import hashlib
import os
import sys
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from faceattr.cache import lock_of, store_file
from faceattr.decode import PIXEL_FORMAT_VERSION, decode_image, tensorflow
from faceattr.files import DISK_FULL_ERRNOS, atomic_write, locked, shared_lock, temporaries_of

STORE_FORMAT_VERSION = "2"  # bump when the file's layout changes (2: the checksum trailer); pixels: decode's version
DECODE_BATCH = 256  # images decoded per step while a store is written: bounds the memory it takes
CHECKSUM_MAGIC = b"faceattr-crc32:"  # the trailer after the pixels: this, then their CRC-32 (4 bytes, big-endian)
TRAILER_BYTES = len(CHECKSUM_MAGIC) + 4


def store_key(paths: Sequence[str], image_size: int) -> str:
    """A key for these files, in this order, at this size: their paths, byte sizes and modification times, and the
    pixel format's and TensorFlow's versions (its decoder and resize make the pixels)."""
    versions = f"{STORE_FORMAT_VERSION}|{PIXEL_FORMAT_VERSION}|{tensorflow().__version__}"
    digest = hashlib.sha1(f"{versions}|{image_size}|{len(paths)}".encode())
    for path in paths:
        stat = os.stat(path)
        digest.update(f"|{path}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:20]


def store_path(paths: Sequence[str], image_size: int, cache_dir: Path | None = None) -> Path:
    """Where the store for `paths` at `image_size` lives."""
    return store_file(store_key(paths, image_size), image_size, cache_dir)


def decode_batches(paths: Sequence[str], image_size: int):
    """Yield uint8 batches of `faceattr.decode.decode_image`, decoded in parallel, in `paths` order."""
    tf = tensorflow()
    files = tf.data.Dataset.from_tensor_slices(np.asarray(paths, dtype=str))
    images = files.map(lambda path: decode_image(path, image_size), num_parallel_calls=tf.data.AUTOTUNE,
                       deterministic=True)
    for batch in images.batch(DECODE_BATCH).prefetch(tf.data.AUTOTUNE):
        yield batch.numpy()


def decode_into(target: np.ndarray, paths: Sequence[str], image_size: int) -> np.ndarray:
    """Fill `target` (N x size x size x 3, uint8) with the decoded images, batch by batch; return it."""
    start = 0
    for batch in decode_batches(paths, image_size):
        target[start:start + len(batch)] = batch
        start += len(batch)
    return target


def pixels_checksum(pixels: np.ndarray) -> int:
    """The CRC-32 of a store's pixels, read a block of images at a time (a damage check: planting is what the
    cache folder's ownership check prevents)."""
    checksum = 0
    for start in range(0, len(pixels), DECODE_BATCH):
        checksum = zlib.crc32(np.ascontiguousarray(pixels[start:start + DECODE_BATCH]), checksum)
    return checksum


def trailer(checksum: int) -> bytes:
    """The bytes a store ends with, after its pixels."""
    return CHECKSUM_MAGIC + checksum.to_bytes(4, "big")


def reserve(descriptor: int, offset: int, size: int) -> None:
    """Allocate the open file's disk from `offset` up to `size` bytes (a full disk raises OSError now, not SIGBUS
    when a mapped page is first written): `os.posix_fallocate`, else zeros written out after `offset`."""
    if hasattr(os, "posix_fallocate"):
        try:
            os.posix_fallocate(descriptor, offset, size - offset)
            return
        except OSError as error:
            if error.errno in DISK_FULL_ERRNOS:
                raise  # else a file system without it: write the zeros instead
    block = bytes(1 << 20)
    os.lseek(descriptor, offset, os.SEEK_SET)
    for start in range(offset, size, len(block)):
        os.write(descriptor, block[:min(len(block), size - start)])


def new_store(path: Path, shape: tuple[int, ...]) -> np.memmap:
    """A new store file at `path` for uint8 pixels of `shape`: the .npy header, then the pixels' and the checksum
    trailer's disk space reserved, then the pixels memory-mapped for writing."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False, "shape": shape}
    with open(path, "r+b") as stream:
        np.lib.format.write_array_header_1_0(stream, header)
        offset = stream.tell()
        stream.flush()  # the header reaches the file before `reserve` writes past it
        reserve(stream.fileno(), offset, offset + int(np.prod(shape)) + TRAILER_BYTES)
    return np.memmap(path, dtype=np.uint8, mode="r+", offset=offset, shape=shape)


def write_store(temporary: Path, paths: Sequence[str], image_size: int) -> None:
    """Decode `paths` into a new store at `temporary`, then end it with its pixels' checksum."""
    pixels = decode_into(new_store(temporary, (len(paths), image_size, image_size, 3)), paths, image_size)
    pixels.flush()
    end = pixels.offset + pixels.nbytes
    with open(temporary, "r+b") as stream:
        stream.seek(end)
        stream.write(trailer(pixels_checksum(pixels)))
        stream.truncate()


def read_store(path: Path, count: int, image_size: int, report: bool = True) -> np.ndarray | None:
    """The store at `path` memory-mapped, or None when it is missing or damaged (wrong shape, type or length, or
    pixels that fail their checksum); `report` prints a note for a damaged one."""
    if not path.exists():
        return None
    try:
        pixels = np.load(path, mmap_mode="r")
        if pixels.dtype != np.uint8 or pixels.shape != (count, image_size, image_size, 3):
            raise ValueError(f"holds {pixels.dtype} {pixels.shape}")
        with open(path, "rb") as stream:
            stream.seek(pixels.offset + pixels.nbytes)
            stored = stream.read(TRAILER_BYTES + 1)
        if len(stored) != TRAILER_BYTES or not stored.startswith(CHECKSUM_MAGIC):
            raise ValueError("no checksum after the pixels")
        if stored != trailer(pixels_checksum(pixels)):
            raise ValueError("its pixels fail their checksum")
    except Exception as error:  # truncated, garbled, zeroed or foreign: any failure to read means "decode again"
        if report:
            print(f"note: the decoded-image store {path} is damaged ({type(error).__name__}: {error}); decoding "
                  "again.", file=sys.stderr)
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
    with shared_lock(lock_of(path)):  # a reader: `cache --clear` leaves the store alone while it is opened
        pixels = read_store(path, len(paths), image_size, report=False)
        if pixels is not None:
            return pixels
    with locked(lock_of(path)):  # a second process building the same store waits here, then reads it
        pixels = read_store(path, len(paths), image_size)
        if pixels is not None:
            return pixels
        for orphan in temporaries_of(path):  # a killed writer's: no one else can be writing it now
            orphan.unlink(missing_ok=True)
        try:
            atomic_write(path, lambda temporary: write_store(temporary, paths, image_size))
        except OSError as error:  # a full or read-only disk: train anyway, from memory
            print(f"note: could not write the decoded-image store {path} ({error.strerror or error}); decoding into "
                  "memory instead. Free some disk space or set FACEATTR_CACHE_DIR to keep it.", file=sys.stderr)
            return decode_into(np.empty(shape, np.uint8), paths, image_size)
        pixels = read_store(path, len(paths), image_size)
        return pixels if pixels is not None else decode_into(np.empty(shape, np.uint8), paths, image_size)
