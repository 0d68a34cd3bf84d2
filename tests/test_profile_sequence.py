"""The whole lesson sequence on the contrasting sample profile (balanced groups, uniform ages, distinct skin tones),
at the cheapest settings that still run every notebook, none of them the defaults: a reading that only holds on the
default sample shows up, and every lesson's parameters reach its notebook through the chain. One run serves every
test here; the core path, from an installed wheel, runs in test_install.py."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import nbformat
import pytest
from PIL import Image

from faceattr.cli import main
from faceattr.notebook import lesson_notebooks

# The smallest budget that still runs every cell: one epoch everywhere, 32 px, a two-block trunk, two candidates
# and two loss balances in 07 (the default recipe is trained once), two seeds and two mitigations in 09 (the spread
# and the comparison need two of each).
CHEAPEST = ["-p", "image_size", "32", "-p", "trunk_filters", "[8, 16]", "-p", "num_epochs", "1",
            "-p", "probe_epochs", "1", "-p", "experiment_epochs", "1", "-p", "architectures", '["default", "batchnorm"]',
            "-p", "loss_balances", '["fixed", "uncertainty"]', "-p", "loss_balance", "uncertainty",
            "-p", "batch_size", "32", "-p", "num_faces", "2", "-p", "shortcut_image_size", "32",
            "-p", "shortcut_epochs", "1", "-p", "study_seeds", "[0, 1]", "-p", "study_epochs", "1",
            "-p", "balances", '["none", "sample"]', "-p", "num_bootstrap", "20"]


@pytest.fixture(scope="module")
def sequence(tmp_path_factory) -> tuple[Path, str]:
    """`faceattr run` over 200 balanced-profile faces with CHEAPEST: the run folder and what the command printed."""
    base = tmp_path_factory.mktemp("profile")
    faces, run = base / "faces", base / "run"
    printed_out, printed_err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(printed_out), contextlib.redirect_stderr(printed_err):
        assert main(["sample", str(faces), "--n", "200", "--profile", "balanced"]) == 0
        code = main(["run", "--data", str(faces), "--out", str(run), *CHEAPEST])
    assert code == 0, printed_err.getvalue()[-3000:]
    return run, printed_out.getvalue()


def printed(path) -> list[str]:
    """The lines a notebook printed (its stdout streams), in order."""
    notebook = nbformat.read(path, as_version=4)
    return [line for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
            if output.get("name") == "stdout" for line in output.text.splitlines()]


@pytest.mark.trains
def test_the_whole_sequence_runs_and_reads_true_on_the_balanced_profile(sequence):
    run, report = sequence
    assert "whole sequence" in report
    executed = {path.name[:2]: run / "notebooks" / path.name for path in lesson_notebooks()}
    lines = {number: printed(path) for number, path in executed.items()}
    for number, notebook_lines in lines.items():   # every exact check agrees with the package
        assert not [line for line in notebook_lines if line.rstrip().endswith(": False")], number
    distribution = "\n".join(lines["02"])
    assert "drawn with profile 'balanced'" in distribution
    assert "No group is more than twice the size of another" in distribution
    assert "No race is read as another more than" in distribution   # distinct tones: no near-equal pair
    assert "their tones are near-equal" not in distribution
    assert "Only one epoch ran" in "\n".join(lines["04"])
    assert (run / "figures" / "sample_cues.png").is_file()
    assert json.loads((run / "metrics.json").read_text())["synthetic"] is True


@pytest.mark.trains
def test_every_lessons_parameters_reach_it_and_the_chain_holds(sequence):
    run, _ = sequence
    lessons = [path.name for path in lesson_notebooks()]
    assert sorted(path.name for path in (run / "notebooks").glob("0*.ipynb")) == lessons
    with Image.open(run / "figures" / "prediction_grid.png") as grid:
        assert grid.width > 600 and grid.height > 700
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["n"] == 30 and metrics["synthetic"] is True
    assert 0 <= metrics["test"]["race_accuracy"] <= 1 and metrics["test"]["age_mae"] > 0
    config = json.loads((run / "config.json").read_text())
    assert config["image_size"] == 32 and config["num_epochs"] == 1 and config["loss_balance"] == "uncertainty"
    history = (run / "history.csv").read_text().strip().splitlines()
    assert len(history) == 1 + 1
    assert "age_weight" in history[0]  # the learned weights are logged, and 04 plots them
    assert sorted(path.name for path in (run / "experiments").iterdir()) == [
        "batchnorm", "default", "default-fixed", "yours"]  # 03's model joins; the default recipe is trained once
    for figure in ("training_curves", "loss_weights", "experiments", "multitask_vs_single"):
        assert (run / "figures" / f"{figure}.png").is_file(), figure
