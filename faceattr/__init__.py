"""faceattr: helpers for the UTKFace multi-task CNN teaching kit."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # hide start-up info and warnings, keep errors

__version__ = "0.1.0"


@contextmanager
def stderr_to(path: str = os.devnull) -> Iterator[None]:
    """Send file descriptor 2 (C++ logs, child processes) to `path` for the duration of the block."""
    sys.stderr.flush()
    saved, target = os.dup(2), os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(target, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(target)


def import_tensorflow() -> ModuleType:
    """Import TensorFlow with its C++ start-up log muted (TF 2.21 prints it before reading TF_CPP_MIN_LOG_LEVEL)."""
    if "tensorflow" not in sys.modules:
        with stderr_to(os.devnull):
            import tensorflow

            tensorflow.config.list_physical_devices()  # the CUDA probe logs here too
    return sys.modules["tensorflow"]
