"""Installed from a wheel, outside the checkout: the notebooks ship with the package and the core path runs from
there, the sample goes to the user's data folder (never site-packages), and a missing notebook folder is an error,
never exit 0. The whole sequence with other parameters runs in test_profile_sequence.py; nbval runs each lesson."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import nbformat
import pytest
from PIL import Image

from faceattr.paths import is_extension

ROOT = Path(__file__).resolve().parent.parent
# Not the defaults, so that the lessons' parameters are seen to reach the notebooks installed with the wheel.
CHEAP = ["-p", "image_size", "32", "-p", "trunk_filters", "[8, 16, 32]", "-p", "num_epochs", "2",
         "-p", "probe_epochs", "1", "-p", "batch_size", "32"]


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory) -> Path:
    """A new venv holding only the built wheel; the heavy dependencies come from this test's environment
    through a .pth line (that line adds a path; it does not run the checkout's editable-install hook)."""
    base = tmp_path_factory.mktemp("install")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(base / "dist"),
                            str(ROOT)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-2000:]
    subprocess.run([sys.executable, "-m", "venv", str(base / "venv")], check=True)
    python = base / "venv" / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "faceattr_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    (wheel,) = (base / "dist").glob("faceattr-*.whl")
    installed = subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
                               capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr[-2000:]
    return base / "venv"


def environment(tmp_path: Path) -> dict[str, str]:
    """A user's environment: their own data and cache folders, nothing pinned to the checkout."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("FACEATTR_")}
    env |= {"FACEATTR_DATA_HOME": str(tmp_path / "user-data"), "FACEATTR_CACHE_DIR": str(tmp_path / "cache"),
            "PATH": f"{tmp_path / 'venv' / 'bin'}:{env['PATH']}"}
    return env


@pytest.mark.trains
def test_the_wheel_runs_the_core_path_alone_from_a_folder_outside_the_repo(fresh_venv, tmp_path):
    faceattr = fresh_venv / "bin" / "faceattr"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = environment(tmp_path)
    where = subprocess.run([fresh_venv / "bin" / "python", "-c", "import faceattr, faceattr.data as d; "
                            "print(faceattr.__file__); print(d.kit_data_dir())"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert where[0].startswith(str(fresh_venv)) and where[1] == str(tmp_path / "user-data")
    subprocess.run([faceattr, "sample", "faces", "--n", "200"], cwd=elsewhere, env=env, check=True,
                   capture_output=True)
    result = subprocess.run([faceattr, "run", "--path", "core", "--data", "faces", "--out", "run", *CHEAP],
                            cwd=elsewhere, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "SYNTHETIC" in result.stdout
    assert "07_experiments.ipynb" in result.stdout and "skipped" in result.stdout
    run_dir = elsewhere / "run"
    executed = sorted(path.name[:2] for path in (run_dir / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert executed == ["01", "02", "03", "04", "05", "06"]
    for path in (run_dir / "notebooks").glob("[0-9][0-9]_*.ipynb"):  # the core cells only
        assert not any(is_extension(cell) for cell in nbformat.read(path, as_version=4).cells), path.name
    with Image.open(run_dir / "figures" / "prediction_grid.png") as grid:
        assert grid.width > 600 and grid.height > 700
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test"]["n"] == 30 and metrics["synthetic"] is True
    config = json.loads((run_dir / "config.json").read_text())
    assert config["image_size"] == 32 and config["num_epochs"] == 2
    assert len((run_dir / "history.csv").read_text().strip().splitlines()) == 1 + 2
    site = Path(where[0]).parent.parent
    assert not (site / "data").exists() and not list((site / "faceattr" / "notebooks").glob("*.png"))


def test_without_its_notebooks_run_is_an_error_not_exit_0(fresh_venv, tmp_path):
    broken = Path(shutil.copytree(fresh_venv, tmp_path / "venv", symlinks=True))
    site = next(broken.glob("lib/python*/site-packages"))
    shutil.rmtree(site / "faceattr" / "notebooks")
    result = subprocess.run([broken / "bin" / "python", "-m", "faceattr.cli", "run", "--out", "run"], cwd=tmp_path,
                            env=environment(tmp_path), capture_output=True, text=True)
    assert result.returncode == 2 and "no lesson notebooks found" in result.stderr
    assert result.stderr.count("\n") == 1
