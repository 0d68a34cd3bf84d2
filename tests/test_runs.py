"""The run folder (faceattr.runs): one owner for its files, atomic and locked writes, clear errors when damaged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from faceattr import train
from faceattr.cli import main
from faceattr.errors import DataError, RunDirError
from faceattr.runs import RunFolder
from tests.conftest import write_face

TINY = ["--epochs", "1", "--image-size", "32", "--batch-size", "32"]


def small_data(folder: Path, count: int = 40) -> Path:
    """`count` random faces, enough to split."""
    for index in range(count):
        write_face(folder / f"{20 + index}_{index % 2}_{index % 5}_{index}.jpg", size=32, seed=index)
    return folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A one-epoch run on 40 faces, trained from inside its parent folder with a relative --data."""
    base = tmp_path_factory.mktemp("project")
    small_data(base / "faces")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(base)
        assert main(["train", "--data", "faces", "--out", "run", *TINY]) == 0
    return base / "run"


def copy_of(run_dir: Path, tmp_path: Path) -> RunFolder:
    """A copy of a trained run folder to damage."""
    return RunFolder(shutil.copytree(run_dir, tmp_path / "copy"))


def test_config_stores_the_data_absolutely_and_evaluate_works_from_anywhere(trained, tmp_path, monkeypatch, capsys):
    config = RunFolder(trained).read_config()
    assert Path(config["data"]).is_absolute() and config["data"] == str((trained.parent / "faces").resolve())
    assert config["data_from_run_dir"] == "../faces" and config["config_version"] == 2
    monkeypatch.chdir(tmp_path)  # a different working folder, which has no "faces" in it
    assert main(["evaluate", str(trained)]) == 0
    assert json.loads(RunFolder(trained).metrics.read_text())["data"] == config["data"]


def test_a_moved_project_finds_its_data_relative_to_the_run(trained, tmp_path):
    moved = Path(shutil.copytree(trained.parent, tmp_path / "moved"))
    run = RunFolder(moved / "run")
    config = run.read_config() | {"data": str(tmp_path / "gone" / "faces")}
    assert run.data_path(config) == (moved / "faces").resolve()


def test_overwrite_then_ctrl_c_never_leaves_the_old_model_beside_the_new_config(trained, tmp_path, monkeypatch,
                                                                                  capsys):
    run = copy_of(trained, tmp_path)
    (run.root / "notes.txt").write_text("mine")

    def interrupted_fit(*args, **kwargs):
        """Ctrl-C before the first epoch ends."""
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "fit", interrupted_fit)
    assert main(["train", "--data", str(trained.parent / "faces"), "--out", str(run.root), "--overwrite",
                 *TINY]) == 130
    assert not run.model.exists() and not run.metrics.exists()
    assert (run.root / "notes.txt").read_text() == "mine"
    assert main(["evaluate", str(run.root)]) == 2
    assert "model.keras does not exist" in capsys.readouterr().err


def test_a_second_training_into_a_busy_run_folder_is_refused(tmp_path, capsys):
    data = small_data(tmp_path / "faces")
    with RunFolder(tmp_path / "run").writing():  # another process is training here
        assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--overwrite", *TINY]) == 2
        assert main(["evaluate", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "another process is writing a run into" in err and "still being written" in err


@pytest.mark.parametrize("damage, fragment", [
    (lambda run: run.config.write_text("{not json"), "config.json is not valid JSON"),
    (lambda run: run.config.write_text(json.dumps({"seed": 1})), "config.json has no 'data' key"),
    (lambda run: run.split.write_text("file,age\nx.jpg,3\n"), "split.csv has no 'gender' column"),
    (lambda run: run.model.write_bytes(b"junk"), "model.keras is not a Keras model file"),
])
def test_a_damaged_run_folder_names_the_file_and_what_is_wrong(trained, tmp_path, capsys, damage, fragment):
    run = copy_of(trained, tmp_path)
    damage(run)
    assert main(["evaluate", str(run.root)]) == 2
    err = capsys.readouterr().err
    assert fragment in err and str(run.root) in err and err.count("\n") == 1


def test_a_test_image_deleted_after_training_is_a_one_line_error(tmp_path, capsys):
    data = small_data(tmp_path / "faces")
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"), *TINY]) == 0
    gone = pd.read_csv(RunFolder(tmp_path / "run").split).query("split == 'test'")["file"].iloc[0]
    (data / gone).unlink()
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "test images are gone" in err and gone in err and err.count("\n") == 1


def test_writes_are_atomic_a_failed_write_keeps_the_old_file(tmp_path):
    from faceattr.files import atomic_write

    target = tmp_path / "config.json"
    target.write_text("old")

    def crash(temporary):
        temporary.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, crash)
    assert target.read_text() == "old" and [path.name for path in tmp_path.iterdir()] == ["config.json"]


def test_load_split_without_one_says_what_to_run(tmp_path):
    with pytest.raises(RunDirError, match="run notebook 01"):
        RunFolder(tmp_path).load_split(tmp_path)
    with pytest.raises(DataError, match="pass --data"):
        RunFolder(tmp_path).data_path({"data": str(tmp_path / "nowhere")})
