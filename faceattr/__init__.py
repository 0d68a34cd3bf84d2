"""faceattr: helpers for the UTKFace multi-task CNN teaching kit."""

import os

# Quiet TensorFlow's C++ start-up log (CUDA probes, oneDNN notices) before anything imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__version__ = "0.1.0"
