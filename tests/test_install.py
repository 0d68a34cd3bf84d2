"""Installed from a wheel, outside the checkout, the whole lesson sequence runs on the contrasting sample profile
(balanced groups, uniform ages, distinct skin tones) at the cheapest settings that still run every notebook, none of
them the defaults: the notebooks ship with the package, every lesson's parameters reach its notebook through the
chain, a reading that only holds on the default sample shows up, and the sample goes to the user's data folder (never
site-packages). A missing notebook folder is an error, never exit 0. One run serves every test here; nbval runs each
lesson at its defaults, and test_core_path checks that the core path needs nothing an extension defines."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import NamedTuple

import nbformat
import pytest
from PIL import Image

from faceattr.notebook import lesson_notebooks

ROOT = Path(__file__).resolve().parent.parent
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
def fresh_venv(tmp_path_factory) -> Path:
    """A new venv holding only the built wheel; the heavy dependencies come from this test's environment
    through a .pth line (that line adds a path; it does not run the checkout's editable-install hook)."""
    base = tmp_path_factory.mktemp("install")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(base / "dist"),
                            str(ROOT)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-2000:]
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(base / "venv")], check=True)
    python = base / "venv" / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "faceattr_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    (wheel,) = (base / "dist").glob("faceattr-*.whl")
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                                "--no-index", str(wheel)], capture_output=True, text=True)   # this pip, that venv
    assert installed.returncode == 0, installed.stderr[-2000:]
    return base / "venv"


def environment(home: Path, venv: Path) -> dict[str, str]:
    """A user's environment: `venv` first on the PATH, their own data and cache folders under `home`, nothing pinned
    to the checkout."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("FACEATTR_")}
    env |= {"FACEATTR_DATA_HOME": str(home / "user-data"), "FACEATTR_CACHE_DIR": str(home / "cache"),
            "PATH": f"{venv / 'bin'}:{env['PATH']}"}
    return env


class Sequence(NamedTuple):
    """What the wheel's run left: its folder, what it printed, where its Python found faceattr and the kit's data
    folder, and where they should be."""

    run: Path
    report: str
    module: Path
    data_home: Path
    venv: Path
    user_data: Path


@pytest.fixture(scope="module")
def sequence(fresh_venv, tmp_path_factory) -> Sequence:
    """`faceattr run`, from the wheel in a folder outside the repo, over 200 balanced-profile faces with CHEAPEST: the
    run folder, what the command printed, and where the wheel's Python found faceattr and the kit's data folder."""
    base = tmp_path_factory.mktemp("user")
    elsewhere, env, faceattr = base / "elsewhere", environment(base, fresh_venv), fresh_venv / "bin" / "faceattr"
    elsewhere.mkdir()
    where = subprocess.run([fresh_venv / "bin" / "python", "-c", "import faceattr, faceattr.data as d; "
                            "print(faceattr.__file__); print(d.kit_data_dir())"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, check=True).stdout.split()
    sample = subprocess.run([faceattr, "sample", "faces", "--n", "200", "--profile", "balanced"], cwd=elsewhere,
                            env=env, capture_output=True, text=True)
    assert sample.returncode == 0, sample.stderr[-3000:]
    result = subprocess.run([faceattr, "run", "--data", "faces", "--out", "run", *CHEAPEST], cwd=elsewhere, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    module, data_home = map(Path, where)
    return Sequence(elsewhere / "run", result.stdout, module, data_home, fresh_venv, base / "user-data")


@pytest.mark.trains
def test_the_wheel_runs_from_a_folder_outside_the_repo_and_writes_nothing_into_site_packages(sequence):
    assert "SYNTHETIC" in sequence.report
    assert sequence.module.is_relative_to(sequence.venv) and sequence.data_home == sequence.user_data
    site = sequence.module.parent.parent
    assert not (site / "data").exists() and not list((site / "faceattr" / "notebooks").glob("*.png"))


def printed(path) -> list[str]:
    """The lines a notebook printed (its stdout streams), in order."""
    notebook = nbformat.read(path, as_version=4)
    return [line for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
            if output.get("name") == "stdout" for line in output.text.splitlines()]


@pytest.mark.trains
def test_the_whole_sequence_runs_and_reads_true_on_the_balanced_profile(sequence):
    run, report = sequence.run, sequence.report
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
    run = sequence.run
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


@pytest.mark.slow
def test_without_its_notebooks_run_is_an_error_not_exit_0(fresh_venv, tmp_path):
    broken = Path(shutil.copytree(fresh_venv, tmp_path / "venv", symlinks=True))
    site = next(broken.glob("lib/python*/site-packages"))
    shutil.rmtree(site / "faceattr" / "notebooks")
    result = subprocess.run([broken / "bin" / "python", "-m", "faceattr.cli", "run", "--out", "run"], cwd=tmp_path,
                            env=environment(tmp_path, broken), capture_output=True, text=True)
    assert result.returncode == 2 and "no lesson notebooks found" in result.stderr
    assert result.stderr.count("\n") == 1
