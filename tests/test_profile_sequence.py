"""The whole lesson sequence on the contrasting sample profile (balanced groups, uniform ages, distinct skin tones),
at the cheapest settings that still run every notebook: a reading that only holds on the default sample shows up."""

from __future__ import annotations

import json

import nbformat
import pytest

from faceattr.cli import main
from faceattr.notebook import lesson_notebooks

# The smallest budget that still runs every cell: one epoch everywhere, 32 px, a two-block trunk, one candidate in
# 07, two seeds and two mitigations in 09 (the spread and the comparison need two of each).
CHEAPEST = ["-p", "image_size", "32", "-p", "trunk_filters", "[8, 16]", "-p", "num_epochs", "1",
            "-p", "probe_epochs", "1", "-p", "experiment_epochs", "1", "-p", "architectures", '["default"]',
            "-p", "loss_balances", '["uncertainty"]', "-p", "num_faces", "2", "-p", "shortcut_image_size", "32",
            "-p", "shortcut_epochs", "1", "-p", "study_seeds", "[0, 1]", "-p", "study_epochs", "1",
            "-p", "balances", '["none", "sample"]', "-p", "num_bootstrap", "20"]


def printed(path) -> list[str]:
    """The lines a notebook printed (its stdout streams), in order."""
    notebook = nbformat.read(path, as_version=4)
    return [line for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
            if output.get("name") == "stdout" for line in output.text.splitlines()]


@pytest.mark.trains
def test_the_whole_sequence_runs_and_reads_true_on_the_balanced_profile(tmp_path, capsys):
    faces, run = tmp_path / "faces", tmp_path / "run"
    assert main(["sample", str(faces), "--n", "200", "--profile", "balanced"]) == 0
    assert main(["run", "--data", str(faces), "--out", str(run), *CHEAPEST]) == 0, capsys.readouterr().err
    assert "whole sequence" in capsys.readouterr().out
    executed = {path.name[:2]: run / "notebooks" / path.name for path in lesson_notebooks()}
    lines = {number: printed(path) for number, path in executed.items()}
    for number, notebook_lines in lines.items():   # every exact check agrees with the package
        assert not [line for line in notebook_lines if line.rstrip().endswith(": False")], number
    distribution = "\n".join(lines["02"])
    assert "drawn with profile 'balanced'" in distribution
    assert "No group is more than twice the size of another" in distribution
    assert "No race is read as another more than" in distribution   # distinct tones: no near-equal pair
    assert "near-equal" not in distribution
    assert "Only one epoch ran" in "\n".join(lines["04"])
    assert (run / "figures" / "sample_cues.png").is_file()
    assert json.loads((run / "metrics.json").read_text())["synthetic"] is True
