"""faceattr: helpers for the UTKFace multi-task CNN teaching kit."""

from __future__ import annotations

import os
import sys
from types import ModuleType

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__version__ = "0.1.0"


def import_tensorflow() -> ModuleType:
    """Import TensorFlow with its C++ start-up log muted (TF 2.21 prints it before reading TF_CPP_MIN_LOG_LEVEL)."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow

        tensorflow.config.list_physical_devices()  # the CUDA probe logs here too
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return tensorflow
