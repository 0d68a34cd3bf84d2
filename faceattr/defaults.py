"""Training defaults and settings checks, in one TensorFlow-free place (the CLI checks before importing TF)."""

from __future__ import annotations

DEFAULT_IMAGE_SIZE = 64
DEFAULT_TRUNK: tuple[int, ...] = (32, 64, 128, 256)
DEFAULT_BATCH_SIZE = 64
DEFAULT_EPOCHS = 10
DEFAULT_SEED = 42
MIN_IMAGE_SIZE = 32
ARCH_NAMES: tuple[str, ...] = ("default", "batchnorm", "original", "mobilenet")


def check_settings(arch: str, num_epochs: int, image_size: int | None, batch_size: int) -> None:
    """Reject bad training settings before any work starts."""
    if arch not in ARCH_NAMES:
        raise ValueError(f"unknown arch {arch!r}; choose one of: {', '.join(ARCH_NAMES)}.")
    if num_epochs < 1:
        raise ValueError(f"epochs={num_epochs} must be at least 1.")
    if image_size is not None and image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image size {image_size} is below {MIN_IMAGE_SIZE}; use {MIN_IMAGE_SIZE} or more "
                         f"({DEFAULT_IMAGE_SIZE} is the default).")
    if batch_size < 1:
        raise ValueError(f"batch size {batch_size} must be at least 1.")
