"""The exact checks of notebooks 07, 08 and 09 against the package: each written-out cell, run on small inputs,
prints True; a package function that drifts from the lesson makes the same check print False."""

from __future__ import annotations

import keras
import nbformat
import numpy as np
import pandas as pd
import pytest

import faceattr.explain
import faceattr.model
import faceattr.pipeline
from faceattr.labels import RACE_NAMES
from faceattr.notebook import notebook_dir


def cell_source(notebook: str, cell_id: str) -> str:
    """The source of one cell of a lesson notebook, found by its id."""
    cells = nbformat.read(notebook_dir() / f"{notebook}.ipynb", as_version=4).cells
    return next(cell.source for cell in cells if cell.get("id") == cell_id)


def run_check(notebook: str, cell_ids: list[str], namespace: dict, capsys) -> str:
    """Run the cells in `namespace`, as the notebook would; return what the last one printed."""
    for cell_id in cell_ids:
        capsys.readouterr()
        exec(cell_source(notebook, cell_id), namespace)  # noqa: S102  (the kit's own lesson cells)
    return capsys.readouterr().out


def tiny_model(size: int = 32) -> keras.Model:
    """A small three-head model, enough for occlusion to move every probability."""
    return faceattr.model.build_model(size, trunk_filters=(4, 8), age_scale=80.0)


def test_notebook_08s_written_out_occlusion_matches_the_package_and_a_drifted_package_fails(monkeypatch, capsys):
    faces = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    namespace = {"np": np, "faces": faces, "occlusion_patch": 8, "image_size": 32, "model": tiny_model(),
                 "RACE_NAMES": RACE_NAMES}
    cells = ["lessons-08-occlusion", "lessons-08-occlusion-check"]
    assert run_check("08_what_the_model_sees", cells, dict(namespace), capsys).strip().endswith("exactly: True")
    package = faceattr.explain.occlusion
    monkeypatch.setattr(faceattr.explain, "occlusion", lambda *args, **kwargs: package(*args, **kwargs, fill=0.0))
    assert run_check("08_what_the_model_sees", cells, dict(namespace), capsys).strip().endswith("exactly: False")


@pytest.fixture
def study_namespace(sample_dir) -> dict:
    """What notebook 09's cells before section 3's written-out mitigations define, on the test sample."""
    from faceattr.data import scan, split_frame

    keras.utils.set_random_seed(0)
    return {"np": np, "pd": pd, "split": split_frame(scan(sample_dir).frame, seed=0), "study_image_size": 16,
            "seed": 0}


def test_notebook_09s_written_out_weights_match_the_package_and_unscaled_ones_fail(study_namespace, monkeypatch,
                                                                                     capsys):
    cells = ["lessons-09-weight"]
    assert run_check("09_fairness", cells, dict(study_namespace), capsys).strip().endswith("exactly: True")
    monkeypatch.setattr(faceattr.pipeline, "group_weights",   # the inverse counts, never scaled to a mean of 1
                        lambda frame: (1.0 / frame.groupby(["race", "gender"])["race"].transform("size")).to_numpy("float32"))
    assert run_check("09_fairness", cells, dict(study_namespace), capsys).strip().endswith("exactly: False")


def test_notebook_09s_written_out_balanced_batches_match_the_package_and_another_mix_fails(study_namespace,
                                                                                             monkeypatch, capsys):
    cells = ["lessons-09-weight", "lessons-09-sample", "lessons-09-sample-check"]
    assert run_check("09_fairness", cells, dict(study_namespace), capsys).strip().endswith("exactly: True")
    package = faceattr.pipeline.balanced_dataset
    monkeypatch.setattr(faceattr.pipeline, "balanced_dataset",   # the same mitigation, shuffled by another seed
                        lambda frame, size, batch, seed, augment=False: package(frame, size, batch, seed + 1, augment))
    assert run_check("09_fairness", cells, dict(study_namespace), capsys).strip().endswith("exactly: False")


def drifted_single_head_model(head: str, image_size: int, age_scale: float) -> keras.Model:
    """The package's single-head model, had it drifted to batch norm while the lesson kept none."""
    full = faceattr.model.build_model(image_size, age_scale=age_scale, batch_norm=True, name=f"only_{head}")
    return keras.Model(full.input, {head: full.output[head]}, name=f"only_{head}")


def test_notebook_07s_single_head_model_matches_the_package_and_a_drifted_one_fails(monkeypatch, capsys):
    namespace = {"keras": keras, "image_size": 32, "age_scale": 80.0, "seed": 0}
    cells = ["e04e91de", "lessons-07-single-check"]
    assert run_check("07_experiments", cells, dict(namespace), capsys).strip().endswith("exactly: True")
    monkeypatch.setattr(faceattr.model, "single_head_model", drifted_single_head_model)
    assert run_check("07_experiments", cells, dict(namespace), capsys).strip().endswith("exactly: False")
