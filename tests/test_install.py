"""Installed from a wheel, outside the checkout: the notebooks ship with the package, the sample goes to the
user's data folder (never site-packages), and a missing notebook folder is an error, never exit 0."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from faceattr.notebook import lesson_notebooks

ROOT = Path(__file__).resolve().parent.parent
TINY = ["-p", "image_size", "32", "-p", "num_epochs", "1", "-p", "experiment_epochs", "1",
        "-p", "trunk_filters", "[8, 16]", "-p", "architectures", '["default"]', "-p", "batch_size", "32",
        "-p", "loss_balances", '["fixed"]', "-p", "probe_epochs", "1", "-p", "shortcut_image_size", "32",
        "-p", "shortcut_epochs", "1", "-p", "study_seeds", "[0]", "-p", "study_epochs", "1", "-p", "num_bootstrap", "20",
        "-p", "balances", '["none", "sample"]']


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


def test_the_wheel_runs_the_whole_sequence_from_a_folder_outside_the_repo(fresh_venv, tmp_path):
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
    result = subprocess.run([faceattr, "run", "--data", "faces", "--out", "run", *TINY], cwd=elsewhere, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "09_fairness.ipynb" in result.stdout and "whole sequence" in result.stdout
    lessons = [path.name for path in lesson_notebooks()]
    assert sorted(path.name for path in (elsewhere / "run" / "notebooks").glob("0*.ipynb")) == lessons
    assert (elsewhere / "run" / "metrics.json").is_file()
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
