"""The one decode: an image file's bytes to uint8 RGB pixels, and the one antialiased resize, for training,
evaluation, the decoded-image store and faces found in photos; and which formats that decode reads, under which
suffixes. A leaf: it imports no other faceattr module, and TensorFlow only when a function first needs it."""

from __future__ import annotations

import threading
from types import ModuleType

from faceattr import import_tensorflow

PIXEL_FORMAT_VERSION = "1"  # bump when decode_image's pixels change (the decode, the resize, the rounding)
# Each format TensorFlow's decoder reads (MPO is a phone camera's JPEG), with its usual suffixes. TIFF, PPM, TGA,
# ICO and the rest open in PIL but not in TensorFlow. tests/test_formats.py ties this table to TensorFlow.
FORMAT_SUFFIXES: dict[str, tuple[str, ...]] = {
    "JPEG": (".jpg", ".jpeg"), "MPO": (), "PNG": (".png",), "WEBP": (".webp",), "GIF": (".gif",), "BMP": (".bmp",)}
DECODABLE_FORMATS: tuple[str, ...] = tuple(FORMAT_SUFFIXES)
# The name rule follows the decode rule: a decodable .webp, .gif or .bmp is never "not an image file".
IMAGE_SUFFIXES: tuple[str, ...] = tuple(suffix for suffixes in FORMAT_SUFFIXES.values() for suffix in suffixes)
_tensorflow_import = threading.Lock()  # the scan's threads import TensorFlow once, one at a time


def tensorflow() -> ModuleType:
    """TensorFlow, imported quietly on first use (thread-safe)."""
    with _tensorflow_import:
        return import_tensorflow()


def decode_pixels(contents):
    """TensorFlow's decode of an image file's bytes, as the training pipeline reads it: the first frame as uint8 RGB
    (height x width x 3)."""
    return tensorflow().io.decode_image(contents, channels=3, expand_animations=False)


def resize_pixels(images, image_size: int):
    """Resize an image (or a batch) to an `image_size` square with antialiasing, as uint8: the one resize used for
    training, evaluation and faces found in photos."""
    tf = tensorflow()
    resized = tf.image.resize(images, (image_size, image_size), antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)


def decode_image(path, image_size: int):
    """Read one image file, convert it to RGB and resize it to a uint8 square."""
    return resize_pixels(decode_pixels(tensorflow().io.read_file(path)), image_size)
