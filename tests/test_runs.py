"""The run folder (faceattr.runs): one owner for its files, atomic and locked writes, clear errors when damaged."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from faceattr import train
from faceattr.cli import main
from faceattr.errors import DataError, RunDirError
from faceattr.files import locked, shared_lock
from faceattr.notebook import stale_notes
from faceattr.runs import RunFolder
from tests.conftest import write_face

TINY = ["--epochs", "1", "--image-size", "32", "--batch-size", "32"]


def small_data(folder: Path, count: int = 40) -> Path:
    """`count` random faces, enough to split."""
    for index in range(count):
        write_face(folder / f"{20 + index}_{index % 2}_{index % 5}_{index}.jpg", size=32, seed=index)
    return folder


@pytest.fixture
def trained(trained_run) -> Path:
    """The shared small run (tests/conftest.py), trained from inside its parent folder with a relative --data."""
    return trained_run


def copy_of(run_dir: Path, tmp_path: Path) -> RunFolder:
    """A copy of a trained run folder to damage."""
    return RunFolder(shutil.copytree(run_dir, tmp_path / "copy"))


@pytest.mark.trains
def test_config_stores_the_data_absolutely_and_evaluate_works_from_anywhere(trained, tmp_path, monkeypatch, capsys):
    config = RunFolder(trained).read_config()
    assert Path(config["data"]).is_absolute() and config["data"] == str((trained.parent / "faces").resolve())
    assert config["data_from_run_dir"] == "../faces" and config["config_version"] == 2
    monkeypatch.chdir(tmp_path)  # a different working folder, which has no "faces" in it
    assert main(["evaluate", str(trained)]) == 0
    assert json.loads(RunFolder(trained).metrics.read_text())["data"] == config["data"]


@pytest.mark.trains
def test_a_moved_project_finds_its_data_relative_to_the_run(trained, tmp_path):
    moved = Path(shutil.copytree(trained.parent, tmp_path / "moved"))
    run = RunFolder(moved / "run")
    config = {**run.read_config(), "data": str(tmp_path / "gone" / "faces")}
    assert run.data_path(config) == (moved / "faces").resolve()


@pytest.mark.trains
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


@pytest.mark.trains
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


@pytest.mark.trains
def test_a_test_image_deleted_after_training_is_a_one_line_error(trained, tmp_path, capsys):
    project = Path(shutil.copytree(trained.parent, tmp_path / "project"))
    run = RunFolder(project / "run")
    run.config.write_text(json.dumps({**run.read_config(), "data": str(project / "faces")}))
    gone = pd.read_csv(run.split).query("split == 'test'")["file"].iloc[0]
    (project / "faces" / gone).unlink()
    assert main(["evaluate", str(run.root)]) == 2
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


HOLD = """import sys
from faceattr.files import locked
with locked(sys.argv[1], shared=sys.argv[2] == "shared"):
    print("held", flush=True)
    sys.stdin.readline()   # held until the test writes a line
"""


def holder(lock: Path, kind: str) -> subprocess.Popen:
    """Another process that holds `lock` (`kind`: shared or exclusive) until a line is written to its stdin."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(lock), kind], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "held\n"
    return process


def release(process: subprocess.Popen) -> None:
    """Let a `holder` go and wait for it to end."""
    process.stdin.write("\n")
    process.stdin.close()
    assert process.wait(60) == 0


def test_a_lock_held_in_another_process_refuses_or_blocks_this_one(tmp_path):
    """The run folder's lock, the cache's and the data's: the operating system's, on every platform."""
    lock = tmp_path / ".faceattr.lock"
    other = holder(lock, "exclusive")
    for shared in (False, True):
        with locked(lock, blocking=False, shared=shared) as held:
            assert held is False, "an exclusive lock held elsewhere must refuse every other lock"
    released = threading.Event()

    def release_soon() -> None:
        time.sleep(0.5)
        released.set()
        release(other)

    threading.Thread(target=release_soon).start()
    with locked(lock) as held:  # blocks until the other process lets go
        assert held is True and released.is_set()
    readers = holder(lock, "shared")
    with shared_lock(lock, blocking=False) as held:
        assert held is True, "readers share the lock"
    with locked(lock, blocking=False) as held:
        assert held is False, "a writer waits for the readers"
    release(readers)
    with locked(lock, blocking=False) as held:
        assert held is True


def test_load_split_without_one_says_what_to_run(tmp_path):
    with pytest.raises(RunDirError, match="run notebook 01"):
        RunFolder(tmp_path).load_split(tmp_path)
    with pytest.raises(DataError, match="pass --data"):
        RunFolder(tmp_path).data_path({"data": str(tmp_path / "nowhere")})


def fake_run(folder: Path, data_root: Path) -> RunFolder:
    """A run folder with a config and a split but no model (no training needed)."""
    run = RunFolder(folder)
    with run.writing():
        run.write_run_config(data_root, False, seed=3, image_size=32, arch="default")
        frame = pd.DataFrame({"file": ["a.jpg", "b.jpg"], "age": [20, 30], "gender": [0, 1], "race": [0, 4],
                              "split": ["train", "test"]})
        run.save_split(frame)
    return run


def test_config_round_trip_with_version_and_both_data_paths(tmp_path):
    (tmp_path / "data").mkdir()
    run = fake_run(tmp_path / "runs" / "one", tmp_path / "data")
    config = run.read_config()
    assert config["config_version"] == 2 and config["seed"] == 3 and config["synthetic"] is False
    assert config["data"] == str((tmp_path / "data").resolve()) and config["data_from_run_dir"] == "../../data"
    assert config["versions"]["pandas"] == pd.__version__
    assert run.data_path(config) == (tmp_path / "data").resolve()
    assert run.has_run() and not (run.root / ".faceattr.lock.tmp").exists()


@pytest.mark.parametrize("content, fragment", [
    ("{not json", "is not valid JSON"),
    ("[1, 2]", "does not hold a JSON object"),
    (json.dumps({"data": "/x", "seed": 1, "image_size": 32}), "has no 'arch' key"),
    (json.dumps({"data": "/x", "seed": 1, "image_size": 32, "arch": "default", "config_version": 99}),
     "written by a newer faceattr"),
])
def test_read_config_names_the_file_and_the_problem(tmp_path, content, fragment):
    run = RunFolder(tmp_path)
    run.config.write_text(content)
    with pytest.raises(RunDirError, match=fragment) as error:
        run.read_config()
    assert str(run.config) in str(error.value)


def test_read_config_without_one_says_what_to_run(tmp_path):
    with pytest.raises(RunDirError, match="faceattr train --out"):
        RunFolder(tmp_path).read_config()


def test_split_round_trip_and_damaged_splits(tmp_path):
    run = fake_run(tmp_path / "run", tmp_path)
    loaded = run.load_split(tmp_path / "faces")
    assert loaded["file"].tolist() == ["a.jpg", "b.jpg"] and loaded["split"].tolist() == ["train", "test"]
    assert loaded["path"].tolist() == [str(tmp_path / "faces" / "a.jpg"), str(tmp_path / "faces" / "b.jpg")]
    assert loaded["race_name"].tolist() == ["white", "others"]
    run.split.write_text("file,age,gender,race\na.jpg,3,0,0\n")
    with pytest.raises(RunDirError, match="split.csv has no 'split' column"):
        run.load_split(tmp_path)
    run.split.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(RunDirError, match="split.csv is not a readable CSV"):
        run.load_split(tmp_path)


def test_writing_refuses_a_file_a_run_and_a_busy_folder_and_overwrite_clears_only_kit_files(tmp_path):
    (tmp_path / "plain").write_text("x")
    with pytest.raises(RunDirError, match="is a file"):
        with RunFolder(tmp_path / "plain").writing():
            pass
    run = fake_run(tmp_path / "run", tmp_path)
    run.write(run.figures / "old.png", lambda temporary: temporary.write_bytes(b"png"))  # the kit's own figure
    (run.root / "mine.txt").write_text("keep")
    with pytest.raises(RunDirError, match="already holds a run \\(config.json\\)"):
        with run.writing():
            pass
    with run.writing(overwrite=True):
        assert sorted(path.name for path in run.root.iterdir()) == [".faceattr-manifest.lock", ".faceattr.lock",
                                                                    "mine.txt"]
        with pytest.raises(RunDirError, match="another process is writing"):  # a second writer, meanwhile
            with RunFolder(run.root).writing(overwrite=True):
                pass
        with pytest.raises(RunDirError, match="still being written"):
            run.check_idle()
    run.check_idle()  # free again


def test_a_junk_model_file_is_a_clear_error(tmp_path):
    run = RunFolder(tmp_path)
    run.model.write_bytes(b"junk")
    with pytest.raises(RunDirError, match="model.keras is not a Keras model file"):
        run.load_model()


def test_the_data_is_found_relative_to_a_moved_run_and_legacy_configs_still_read(tmp_path, monkeypatch):
    (tmp_path / "project" / "faces").mkdir(parents=True)
    run = fake_run(tmp_path / "project" / "run", tmp_path / "project" / "faces")
    moved = Path(shutil.move(tmp_path / "project", tmp_path / "moved"))
    config = RunFolder(moved / "run").read_config()
    assert RunFolder(moved / "run").data_path(config) == (moved / "faces").resolve()
    monkeypatch.chdir(moved)  # config version 1 stored --data as typed, relative to where `train` ran
    legacy = {key: value for key, value in config.items() if key not in ("config_version", "data_from_run_dir")}
    (moved / "run" / "config.json").write_text(json.dumps(legacy | {"data": "faces"}))
    assert RunFolder(moved / "run").read_config()["data"] == "faces"
    assert RunFolder(moved / "run").data_path(legacy | {"data": "faces"}) == (moved / "faces").resolve()
    assert run.root.name == "run"


def test_the_split_file_holds_exactly_the_split_columns(tmp_path):
    run = fake_run(tmp_path / "run", tmp_path)
    assert run.split.read_text().splitlines()[0] == "file,age,gender,race,split"


def test_the_recorded_versions_name_installed_packages():
    import platform

    from faceattr.runs import package_versions

    versions = package_versions()
    assert versions["python"] == platform.python_version()
    assert "not installed" not in versions.values()  # a misspelt name would record "not installed"
    assert versions["pandas"] == pd.__version__ and len(versions) == 8


def test_stale_notes_catch_an_old_model_from_notebook_03_and_an_untrained_rerun(tmp_path):
    import os

    run = fake_run(tmp_path / "run", tmp_path)
    assert stale_notes(run) == []
    run.untrained.write_bytes(b"03")
    os.utime(run.untrained, (1, 1))  # saved long before the split
    assert stale_notes(run) == [f"{run.untrained.name} was saved before {run.split.name} was made: rerun notebook "
                                 "03 if you changed the data or the split."]
    run.model.write_bytes(b"04")
    os.utime(run.model, (2, 2))
    os.utime(run.untrained, (3, 3))  # 03 ran again after 04 trained, and before the split
    assert len(stale_notes(run)) == 2 and "rerun notebook 04" in stale_notes(run)[1]


def saved_model_stub(path: Path, image_size: int) -> Path:
    """A .keras file whose config says what image size the model takes (enough for the run folder's checks)."""
    import json
    import zipfile

    layers = [{"class_name": "InputLayer", "config": {"batch_shape": [None, image_size, image_size, 3]}}]
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps({"class_name": "Functional", "config": {"layers": layers}}))
    return path


def test_stale_notes_catch_a_model_from_notebook_03_built_for_another_image_size(tmp_path):
    import os

    from faceattr.runs import saved_image_size

    run = fake_run(tmp_path / "run", tmp_path)
    saved_model_stub(run.untrained, 48)
    saved_model_stub(run.model, 64)
    for path in (run.untrained, run.model):
        os.utime(path, (run.split.stat().st_mtime + 5,) * 2)  # both after the split, 04 not older than 03
    assert saved_image_size(run.untrained) == 48 and saved_image_size(run.split) is None
    assert stale_notes(run) == ["untrained.keras takes 48 px images but model.keras was trained at 64 px: rerun "
                                 "notebook 04 to train the model you built."]
    assert stale_notes(run, before_training=True) == []  # 04 is about to train it at its own size
    os.utime(saved_model_stub(run.model, 48), (run.split.stat().st_mtime + 5,) * 2)
    assert stale_notes(run) == []


def test_stale_notes_catch_a_model_from_notebook_03_built_in_another_precision(tmp_path):
    import keras

    from faceattr.model import build_model
    from faceattr.runs import saved_precision

    run = RunFolder(tmp_path)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")      # 03 ran on a CPU with native bfloat16
    build_model(image_size=32, trunk_filters=(8,)).save(run.untrained)
    assert saved_precision(run.untrained) == "mixed_bfloat16" and saved_precision(tmp_path / "missing") is None
    assert stale_notes(run, before_training=True, precision="mixed_bfloat16") == []
    assert stale_notes(run, before_training=True, precision="float32") == [
        "untrained.keras was built in mixed_bfloat16 and its layers keep it, but the kit now computes in float32: "
        "rerun notebook 03 to build it in float32."]
    assert stale_notes(run, before_training=True) == []               # no precision given: nothing to compare


def test_a_config_round_trips_through_run_config_with_every_field(tmp_path):
    from dataclasses import fields

    from faceattr.runs import CONFIG_KEYS, CONFIG_VERSION, RunConfig

    values = {"str": "text", "int": 7, "float": 0.5, "bool": True, "dict": {"age": 1.5}}
    chosen = {field.name: values[field.type.split(" | ")[0]] for field in fields(RunConfig)}
    config = RunConfig(**chosen)
    run = RunFolder(tmp_path / "run")
    with run.writing():
        written = run.write_config(config)
    assert written == config.updated(config_version=CONFIG_VERSION)
    assert list(json.loads(run.config.read_text())) == list(CONFIG_KEYS)   # every field, none twice, schema order
    assert run.read_config() == written and dict(run.read_config()) == {**chosen, "config_version": CONFIG_VERSION}
    older = {key: chosen[key] for key in ("data", "seed", "image_size", "arch")}   # a config version 1 has only these
    run.config.write_text(json.dumps({**older, "retired_key": 1}))
    assert dict(run.read_config()) == older and run.read_config().get("augment") is None


def test_config_json_is_written_only_under_the_run_folders_lock(tmp_path):
    run = RunFolder(tmp_path / "run")
    run.prepare()
    with pytest.raises(RuntimeError, match="writing"):
        run.write_run_config(tmp_path, False, seed=1, image_size=32, arch="default")
    assert not run.config.exists()
    with run.writing():
        run.write_run_config(tmp_path, False, seed=1, image_size=32, arch="default")
    assert run.read_config()["seed"] == 1


def notebook_code(name: str) -> list[str]:
    """The code cells of a lesson notebook."""
    import nbformat

    notebook = nbformat.read(Path(__file__).parent.parent / "notebooks" / name, as_version=4)
    return [cell.source for cell in notebook.cells if cell.cell_type == "code"]


def test_notebook_04_records_every_setting_inside_the_run_folders_lock():
    import ast

    from faceattr.runs import RUN_SETTINGS

    (source,) = [source for source in notebook_code("04_train.ipynb") if ".write_run_config(" in source]
    (block,) = [node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.With)
                and any(isinstance(item.context_expr, ast.Call) and getattr(item.context_expr.func, "attr", "")
                        == "writing" for item in node.items)]
    calls = {node.func.attr: node for statement in block.body for node in ast.walk(statement)
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)}
    assert {"write_run_config", "write_config", "fit"} <= set(calls)   # the config and the model, under the lock
    assert set(RUN_SETTINGS) - {keyword.arg for keyword in calls["write_run_config"].keywords} == set()


def test_notebook_04_cannot_write_its_run_while_another_process_holds_the_lock(tmp_path):
    from faceattr.files import locked

    (source,) = [source for source in notebook_code("04_train.ipynb") if ".write_run_config(" in source]
    run = RunFolder(tmp_path / "run")
    run.prepare()
    with locked(run.lock):   # another process is writing a run here
        with pytest.raises(RunDirError, match="another process is writing a run into"):
            exec(source, {"run": run})   # the cell itself: it stops at the lock, before anything is written
    assert not run.config.exists() and not run.model.exists()


@pytest.mark.trains
def test_faceattr_train_records_every_setting(trained):
    from faceattr.runs import RUN_SETTINGS

    config = RunFolder(trained).read_config()
    assert [key for key in RUN_SETTINGS if key not in config] == []
    assert config["epochs_run"] >= 1 and config["train_seconds"] > 0
