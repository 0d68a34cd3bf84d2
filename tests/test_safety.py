"""Issue 26, items 2-4: the kit deletes and overwrites only what it wrote, faults leave nothing broken, and expected
failures (a full disk, a bad --out) are one line. Each case is the hostile tester's, on tiny data."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest
from matplotlib import cbook

from faceattr import data, notebook
from faceattr.cache import clear_cache
from faceattr.cli import main
from faceattr.data import scan
from faceattr.errors import DataError, RunDirError
from faceattr.files import locked
from faceattr.runs import RunFolder
from tests.conftest import write_face

TINY = ["--epochs", "1", "--image-size", "32", "--batch-size", "32"]
HOPPER = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)


def small_data(folder: Path, count: int = 40) -> Path:
    """`count` random faces, enough to split."""
    for index in range(count):
        write_face(folder / f"{20 + index}_{index % 2}_{index % 5}_{index}.jpg", size=32, seed=index)
    return folder


def tarred(folder: Path, archive: Path) -> Path:
    """`folder` packed as a .tar.gz."""
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return archive


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (links not followed) and its bytes, but the kit's own lock and manifest files."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*"))
            if path.is_file() and not path.is_symlink() and not path.name.startswith(".faceattr")}


def kit_run(folder: Path) -> RunFolder:
    """A run folder as the kit leaves it (config, split, a figure), made through the kit's own writers, untrained."""
    import matplotlib.pyplot as plt
    import pandas as pd

    from faceattr.plots import save_figure

    run = RunFolder(folder)
    with run.writing():
        run.write_run_config(folder.parent, False, seed=3, image_size=32, arch="default")
        run.save_split(pd.DataFrame({"file": ["a.jpg"], "age": [20], "gender": [0], "race": [0], "split": ["test"]}))
        figure = plt.figure(figsize=(1, 1))
        save_figure(figure, run.root, "training_curves")
        plt.close(figure)
    return run


def no_kernels(monkeypatch) -> None:
    """`faceattr run` starts no kernel: nothing runs in one (papermill is replaced too)."""
    monkeypatch.setattr(notebook, "start_kernel", lambda *args: None)
    monkeypatch.setattr(notebook, "stop_kernel", lambda kernel: None)


@pytest.fixture()
def no_notebooks(monkeypatch) -> list[str]:
    """`faceattr run` without executing anything: papermill writes an empty notebook; returns the ones 'run'."""
    import papermill

    executed = []

    def execute_notebook(source, target, **kwargs):
        executed.append(Path(source).name)
        Path(target).write_text("{}")

    monkeypatch.setattr(papermill, "execute_notebook", execute_notebook)
    no_kernels(monkeypatch)
    return executed


# ---------------------------------------------------------------- item 2: --overwrite deletes only what the kit wrote

def test_overwrite_refuses_a_students_own_run_files_and_leaves_them_byte_identical(tmp_path):
    run = RunFolder(tmp_path / "run")
    run.figures.mkdir(parents=True)
    run.config.write_text('{"mine": true}')
    run.model.write_bytes(b"my own model")
    (run.figures / "fig1_final.png").write_bytes(b"my figure")
    before = snapshot(run.root)
    with pytest.raises(RunDirError, match="model.keras, config.json, which faceattr did not write") as error:
        with run.writing(overwrite=True):
            pass
    assert "\n" not in str(error.value) and snapshot(run.root) == before


def test_overwrite_removes_exactly_the_kits_unchanged_files_and_notes_the_rest(tmp_path):
    run = kit_run(tmp_path / "run")
    (run.figures / "fig1_final.png").write_bytes(b"my figure")
    (run.root / "notes.txt").write_text("mine")
    with run.writing(overwrite=True):
        assert not run.config.exists() and not run.split.exists()
        assert not (run.figures / "training_curves.png").exists()
    assert snapshot(run.root) == {"figures/fig1_final.png": b"my figure", "notes.txt": b"mine"}
    notes = []
    with run.writing(overwrite=True, report=notes.append):  # what `train --overwrite` prints about them
        pass
    assert len(notes) == 1 and "figures/fig1_final.png" in notes[0] and "notes.txt" in notes[0]


def test_overwrite_refuses_a_kit_file_the_student_changed(tmp_path):
    run = kit_run(tmp_path / "run")
    run.config.write_text('{"edited": "by hand"}')
    with pytest.raises(RunDirError, match="config.json, which faceattr did not write \\(or which changed since\\)"):
        with run.writing(overwrite=True):
            pass
    assert run.config.read_text() == '{"edited": "by hand"}' and run.split.exists()


def test_a_symlinked_figures_folder_never_leads_outside_the_run_folder(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "old_run.png").write_bytes(b"another run's figure")
    run = kit_run(tmp_path / "run")
    made = (run.figures / "training_curves.png").read_bytes()
    (run.figures / "training_curves.png").rename(elsewhere / "training_curves.png")
    run.figures.rmdir()
    run.figures.symlink_to(elsewhere, target_is_directory=True)  # the kit's figure, now reached through a link
    with run.writing(overwrite=True):  # no rmtree traceback
        pass
    assert snapshot(elsewhere) == {"old_run.png": b"another run's figure", "training_curves.png": made}
    assert run.figures.is_symlink() and not run.config.exists()
    notes = []
    with run.writing(overwrite=True, report=notes.append):
        pass
    assert "reached through a link" in notes[0] and "figures/training_curves.png" in notes[0]


def test_notebook_04s_writes_replace_only_the_kits_own_model_config_and_history(tmp_path):
    from faceattr.train import BestCheckpoint

    run = kit_run(tmp_path / "run")
    checkpoint = BestCheckpoint(run.model)
    checkpoint.set_model(type("Model", (), {"save": lambda self, path: Path(path).write_bytes(b"kit model")})())
    checkpoint.on_epoch_end(0, {"val_score": 0.5})  # notebook 04's checkpoint saved the best epoch
    with run.writing(replacing=[run.model, run.config, run.history]):
        assert not run.model.exists() and not run.config.exists() and run.split.exists()
    run.model.write_bytes(b"the student's model")
    with pytest.raises(RunDirError, match="model.keras, which faceattr did not write"):
        with run.writing(replacing=[run.model, run.config, run.history]):
            pass
    assert run.model.read_bytes() == b"the student's model"


# ---------------------------------------------------------------- item 2: --out in the data folder

@pytest.mark.parametrize("inside", [False, True])
def test_train_refuses_an_out_folder_equal_to_or_inside_the_data(tmp_path, monkeypatch, capsys, inside):
    from faceattr import train

    faces = small_data(tmp_path / "faces")
    monkeypatch.setattr(train, "fit", lambda *args, **kwargs: pytest.fail("trained into the data folder"))
    before = snapshot(faces)
    out = faces / "runs" / "one" if inside else faces
    assert main(["train", "--data", str(faces), "--out", str(out), *TINY]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the kit never writes into your data" in err
    assert snapshot(faces) == before and not (faces / "runs").exists()


def test_run_refuses_an_out_folder_equal_to_the_data(tmp_path, no_notebooks, capsys):
    faces = small_data(tmp_path / "faces")
    before = snapshot(faces)
    assert main(["run", "--data", str(faces), "--out", str(faces)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is the data folder" in err
    assert no_notebooks == [] and snapshot(faces) == before and sorted(os.listdir(faces)) == sorted(before)


def test_run_refuses_a_folder_holding_a_students_own_model_before_any_notebook(tmp_path, no_notebooks, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.keras").write_bytes(b"my own model")
    assert main(["run", "--data", "sample", "--out", str(out)]) == 2
    assert "model.keras, which faceattr did not write" in capsys.readouterr().err
    assert no_notebooks == [] and (out / "model.keras").read_bytes() == b"my own model"


# ---------------------------------------------------------------- item 2: --annotate

def test_annotate_never_writes_over_an_input_photo_or_a_file_it_did_not_write(tmp_path, capsys):
    from faceattr.model import build_model

    run = tmp_path / "run"
    run.mkdir()
    build_model(image_size=32, trunk_filters=(8, 16)).save(run / "model.keras")
    annotated = tmp_path / "ann"
    annotated.mkdir()
    shutil.copy(HOPPER, annotated / "p.jpg")
    shutil.copy(HOPPER, annotated / "p_faces.jpg")  # the student's own photo, named like an annotation
    shutil.copy(HOPPER, tmp_path / "q.jpg")
    (annotated / "q_faces.jpg").write_bytes(b"the student's own file")
    before = snapshot(annotated)
    photos = [str(annotated / "p.jpg"), str(annotated / "p_faces.jpg"), str(tmp_path / "q.jpg")]
    assert main(["predict", "--model", str(run), *photos, "--annotate", str(annotated)]) == 0
    err = capsys.readouterr().err
    assert "p_faces.jpg is one of the input photos" in err and "q_faces.jpg was not written by faceattr" in err
    assert {name: content for name, content in snapshot(annotated).items() if name in before} == before
    assert (annotated / "p_faces_faces.jpg").is_file()  # the second photo's annotation, under its own name
    made = (annotated / "p_faces_faces.jpg").stat().st_mtime_ns
    assert main(["predict", "--model", str(run), photos[1], "--annotate", str(annotated)]) == 0  # a rerun replaces
    assert (annotated / "p_faces_faces.jpg").stat().st_mtime_ns >= made and not capsys.readouterr().err


# ---------------------------------------------------------------- item 2: one writer per run folder

def test_run_into_a_folder_a_training_is_writing_is_refused_in_one_line(tmp_path, no_notebooks, capsys):
    out = tmp_path / "out"
    with RunFolder(out).writing():  # `faceattr train --out out` is running
        assert main(["run", "--data", "sample", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "another process is writing a run into" in err and no_notebooks == []


@pytest.mark.slow
def test_train_into_a_folder_faceattr_run_is_writing_is_refused_and_its_notebooks_may_write(tmp_path, monkeypatch,
                                                                                              capsys):
    import papermill

    faces, out, seen = small_data(tmp_path / "faces"), tmp_path / "out", {}
    environment = {key: value for key, value in os.environ.items() if "RUN_LOCK" not in key}  # not the sequence's
    notebook_04 = ("from faceattr.runs import RunFolder\nrun = RunFolder({out!r})\n"
                   "with run.writing(replacing=[run.model, run.config, run.history]):\n"
                   "    run.write(run.model, lambda temporary: temporary.write_bytes(b'model'))\n")

    def execute_notebook(source, target, **kwargs):
        """While the sequence runs: a kernel it started writes; a `faceattr train` started elsewhere is refused."""
        Path(target).write_text("{}")
        if Path(target).name.startswith("04"):  # the source is the notebook cut to its path
            seen["kernel"] = subprocess.run([sys.executable, "-c", notebook_04.format(out=str(out))],
                                            capture_output=True, text=True)  # inherits the sequence's environment
            seen["train"] = subprocess.run([sys.executable, "-m", "faceattr.cli", "train", "--data", str(faces),
                                            "--out", str(out), *TINY], capture_output=True, text=True,
                                           env=environment)

    monkeypatch.setattr(papermill, "execute_notebook", execute_notebook)
    no_kernels(monkeypatch)
    assert main(["run", "--data", str(faces), "--out", str(out)]) == 0
    assert seen["train"].returncode == 2 and "another process is writing a run into" in seen["train"].stderr
    assert seen["train"].stderr.count("\n") == 1
    assert seen["kernel"].returncode == 0, seen["kernel"].stderr
    assert RunFolder(out).model.read_bytes() == b"model" and not RunFolder(out).config.exists()


# ---------------------------------------------------------------- item 2: cache --clear skips what is in use

@pytest.mark.trains
def test_cache_clear_during_a_tarball_training_leaves_its_extraction(tmp_path, monkeypatch, capsys):
    from faceattr import train

    archive = tarred(small_data(tmp_path / "UTKFace"), tmp_path / "UTKFace.tar.gz")
    original_fit, cleared = train.fit, []

    def clear_then_fit(*args, **kwargs):
        """A classmate runs `faceattr cache --clear` while this training runs."""
        cleared.append(clear_cache())
        return original_fit(*args, **kwargs)

    monkeypatch.setattr(train, "fit", clear_then_fit)
    assert main(["train", "--data", str(archive), "--out", str(tmp_path / "run"), *TINY]) == 0
    (freed, busy), = cleared
    assert [path.parent.name for path in busy] == ["extracted"]
    assert "no longer exists" not in capsys.readouterr().err


def test_cache_clear_leaves_a_store_being_written_and_removes_a_killed_writers_temporary(tmp_path):
    decoded = tmp_path / "cache" / "decoded"
    decoded.mkdir(parents=True)
    being_written = decoded / ".k1-8px.abcd1234.npy"
    being_written.write_bytes(bytes(10))
    orphan = decoded / ".k2-8px.efgh5678.npy"
    orphan.write_bytes(bytes(10))
    with locked(decoded / "k1-8px.npy.lock"):  # a training is writing the store k1-8px.npy
        freed, busy = clear_cache(tmp_path / "cache")
    assert busy == [being_written] and being_written.exists()
    assert not orphan.exists() and freed == 10


# ---------------------------------------------------------------- item 3: extraction and archive keys

def test_a_killed_extractions_staging_folder_is_removed_by_the_next_extraction(tmp_path, private_cache):
    archive = tarred(small_data(tmp_path / "UTKFace", 3), tmp_path / "UTKFace.tar.gz")
    staging = private_cache / "extracted" / f"{data.archive_key(archive)}.k1ll3d00.partial"
    staging.mkdir(parents=True)
    (staging / "20_0_0_half.jpg").write_bytes(bytes(1000))
    assert len(scan(archive).frame) == 3
    assert not staging.exists()


def twin_archive(folder: Path, gender: int) -> Path:
    """UTKFace.tar in `folder`: 1.5 MiB of padding, one face of the given gender, 1.5 MiB of padding; two such
    archives share their name, size, first MiB and last MiB."""
    folder.mkdir()
    padding = folder / "padding.bin"
    padding.write_bytes(bytes(3 << 19))
    face = write_face(folder / "face.jpg", seed=7)
    archive = folder / "UTKFace.tar"
    with tarfile.open(archive, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, source in (("UTKFace/a_padding.bin", padding), (f"UTKFace/39_{gender}_0_x.jpg", face),
                             ("UTKFace/z_padding.bin", padding)):
            info = tar.gettarinfo(source, arcname=name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            with open(source, "rb") as stream:
                tar.addfile(info, stream)
    return archive


def test_two_archives_that_differ_only_in_the_middle_get_their_own_extractions(tmp_path):
    first, second = twin_archive(tmp_path / "a", gender=1), twin_archive(tmp_path / "b", gender=0)
    raw = [path.read_bytes() for path in (first, second)]
    mib = 1 << 20
    assert len(raw[0]) == len(raw[1]) and raw[0][:mib] == raw[1][:mib] and raw[0][-mib:] == raw[1][-mib:]
    assert scan(first).frame["gender_name"].tolist() == ["female"]
    assert scan(second).frame["gender_name"].tolist() == ["male"]


def test_an_archive_member_larger_than_any_photo_is_refused_before_extraction(tmp_path, private_cache):
    folder = small_data(tmp_path / "UTKFace", 3)
    giant = write_face(folder / "20_0_0_giant.jpg")
    os.truncate(giant, 60_000_000)  # a JPEG followed by 60 MB of zeros: a few KB once gzipped
    archive = tarred(folder, tmp_path / "UTKFace.tar.gz")
    assert archive.stat().st_size < 1_000_000
    with pytest.raises(DataError, match="20_0_0_giant.jpg of 60 MB, larger than any face photo") as error:
        scan(archive)
    assert "\n" not in str(error.value)
    assert not [path for path in (private_cache / "extracted").iterdir() if path.is_dir()]


def test_an_archive_larger_than_the_free_disk_is_refused_before_extraction(tmp_path, private_cache, monkeypatch):
    archive = tarred(small_data(tmp_path / "UTKFace", 3), tmp_path / "UTKFace.tar.gz")
    monkeypatch.setattr(data.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 100, 100))
    with pytest.raises(DataError, match="but the cache has 0 MB free; nothing was extracted"):
        scan(archive)
    assert not [path for path in (private_cache / "extracted").iterdir() if path.is_dir()]


# ---------------------------------------------------------------- item 3: files read as streams, with a size cap

def test_a_sparse_2_gb_image_is_skipped_unread_with_a_reason(tmp_path):
    folder = small_data(tmp_path / "faces", 3)
    giant = write_face(folder / "20_0_0_giant.jpg")
    os.truncate(giant, 2 << 30)  # a valid JPEG, then 2 GB of holes
    result = scan(folder, cache=False)
    assert len(result.frame) == 3
    assert result.skipped.set_index("file").loc["20_0_0_giant.jpg", "reason"] == \
        "file too large (2,147 MB; a face photo is under 50 MB)"
    from faceattr.data import content_hash
    from faceattr.files import FileTooLarge

    with pytest.raises(FileTooLarge):  # read as a stream, and no further than the cap
        content_hash(giant)


# ---------------------------------------------------------------- item 3: history.csv

def test_history_csv_is_never_left_empty_or_half_written(tmp_path, monkeypatch):
    from faceattr.train import standard_callbacks

    history = RunFolder(tmp_path).history
    callbacks = standard_callbacks(tmp_path, {"age": 10.0, "gender": 0.5, "race": 0.6}, epoch_lines=False)
    (logger,) = [callback for callback in callbacks
                 if Path(getattr(callback, "filename", getattr(callback, "path", ""))) == history]
    logger.on_train_begin()
    assert not history.exists()  # a SIGKILL now leaves no history.csv at all, never an empty one
    logger.on_epoch_end(0, {"loss": 2.5, "val_loss": 2.75})
    first = history.read_text()
    assert first.splitlines() == ["epoch,loss,val_loss", "0,2.5,2.75"]

    def killed(self, text, *args, **kwargs):
        """The process dies halfway through writing the file."""
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_text", killed)
    with pytest.raises(KeyboardInterrupt):
        logger.on_epoch_end(1, {"loss": 2.0, "val_loss": 2.25})
    monkeypatch.undo()
    assert history.read_text() == first and sorted(os.listdir(tmp_path)) == sorted(
        [history.name, ".faceattr-manifest.json", ".faceattr-manifest.lock"])


# ---------------------------------------------------------------- item 4: expected failures are one line

def full_disk(*args, **kwargs):
    """What the OS says when the disk is full."""
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_under_the_scan_cache_is_one_line(tmp_path, monkeypatch, capsys):
    faces = small_data(tmp_path / "faces", 3)
    monkeypatch.setattr(tempfile, "mkstemp", full_disk)
    assert main(["scan", str(faces)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no space left on the disk holding" in err and "FACEATTR_CACHE_DIR" in err


def test_a_full_disk_under_the_run_folder_is_one_line(tmp_path, monkeypatch, capsys):
    faces = small_data(tmp_path / "faces")
    scan(faces)  # the scan cache is written; now the disk fills up
    monkeypatch.setattr(tempfile, "mkstemp", full_disk)
    assert main(["train", "--data", str(faces), "--out", str(tmp_path / "run"), *TINY]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"no space left on the disk holding {tmp_path / 'run'}" in err


def test_an_out_that_is_a_file_or_runs_through_one_is_one_line(tmp_path, no_notebooks, capsys):
    faces = small_data(tmp_path / "faces")
    (tmp_path / "taken").write_text("a file")
    assert main(["run", "--data", str(faces), "--out", str(tmp_path / "taken")]) == 2
    assert main(["train", "--data", str(faces), "--out", str(tmp_path / "taken" / "run"), *TINY]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and "is a file; give a folder for the run" in lines[0]
    assert "cannot write the run folder" in lines[1] and "a part of that path is a file" in lines[1]
    assert no_notebooks == []


def test_an_out_folder_this_user_cannot_write_is_one_line(tmp_path, monkeypatch, no_notebooks, capsys):
    faces, theirs = small_data(tmp_path / "faces"), tmp_path / "theirs"
    theirs.mkdir()
    real_mkdir = Path.mkdir

    def mkdir(self, *args, **kwargs):
        """`theirs` belongs to another user (root may write anywhere, so the refusal is simulated)."""
        if theirs in self.parents:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    assert main(["run", "--data", str(faces), "--out", str(theirs / "run")]) == 2
    assert capsys.readouterr().err == (f"faceattr run: error: cannot write the run folder {theirs / 'run'} "
                                       "(Permission denied); choose an --out folder you can write to.\n")
    assert no_notebooks == []
