"""Shared fixtures: a private cache folder and small generated data sets."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# nbval's kernels inherit this: "auto" data means the synthetic sample even where data/UTKFace exists,
# so the stored notebook outputs compare.
os.environ["FACEATTR_DATA"] = "sample"


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the kit's cache at a per-test folder so tests never share scan caches."""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("FACEATTR_CACHE_DIR", str(cache))
    return cache


@pytest.fixture(autouse=True)
def float32_after_each_test() -> None:
    """Reset Keras's global dtype policy after a test that chose a precision, so no other test inherits it."""
    yield
    import sys

    if "keras" in sys.modules:
        sys.modules["keras"].mixed_precision.set_global_policy("float32")


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic sample (200 faces plus planted quirks), built once per session."""
    from faceattr.sample import write_sample

    return write_sample(tmp_path_factory.mktemp("sample"), count=200, seed=1)


def write_face(path: Path, mode: str = "RGB", size: int = 48, seed: int = 0, fmt: str = "JPEG") -> Path:
    """Write a small random image in the given PIL mode."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt)
    return path
