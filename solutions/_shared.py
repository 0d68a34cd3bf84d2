"""What several solutions share: a split of the data and one small trained run, made once per process."""

from __future__ import annotations

import tempfile
from functools import cache
from pathlib import Path

import pandas as pd

from faceattr.defaults import DEFAULT_SEED

TOKEN_EPOCHS = 1          # a solution shows the method; the notebooks' budgets give the real numbers
TOKEN_IMAGE_SIZE = 32
SEED = DEFAULT_SEED       # the notebooks' seed


@cache
def split_of(data_dir: str) -> pd.DataFrame:
    """The kit's seeded, stratified split of `data_dir` (a scan/split frame with a `split` column)."""
    from faceattr.data import scan, split_frame

    return split_frame(scan(data_dir).frame, seed=SEED)


@cache
def small_run(data_dir: str) -> Path:
    """A run folder holding the default model trained for TOKEN_EPOCHS at TOKEN_IMAGE_SIZE, and its evaluation."""
    from faceattr.recipe import Recipe
    from faceattr.train import train_run

    run_dir = Path(tempfile.mkdtemp(prefix="faceattr-solution-")) / "run"
    train_run(data_dir, run_dir, Recipe.named(image_size=TOKEN_IMAGE_SIZE, num_epochs=TOKEN_EPOCHS), SEED,
              progress="none")
    return run_dir
