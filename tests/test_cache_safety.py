"""A class shares one machine: no file another user can plant in a cache or a run folder runs code."""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path

import pytest

from faceattr import data
from faceattr.data import list_files, scan, scan_cache_key
from faceattr.errors import FaceattrError, RunDirError
from faceattr.files import locked
from faceattr.runs import RunFolder
from tests.conftest import write_face


class Payload:
    """A pickle that, when loaded, creates the file `marker`: what an attacker's planted cache file would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def faces(folder: Path) -> Path:
    """Three valid UTKFace images."""
    for index, name in enumerate(["30_0_0_a.jpg", "40_1_2_b.jpg", "50_0_1_c.jpg"]):
        write_face(folder / name, seed=index)
    return folder


def plant(cache: Path, folder: Path, marker: Path) -> None:
    """Plant a code-running pickle under every name a scan of `folder` could read from `cache`."""
    key = scan_cache_key(folder.resolve(), list_files(folder.resolve())[0])
    (cache / "scans").mkdir(parents=True, exist_ok=True)
    for suffix in (".pkl", ".json"):
        (cache / "scans" / f"{key}{suffix}").write_bytes(pickle.dumps(Payload(marker)))


def test_a_pickle_planted_in_a_shared_class_cache_runs_nothing(tmp_path, monkeypatch, capsys):
    shared = tmp_path / "class-cache"
    shared.mkdir()
    shared.chmod(0o1777)  # the shared class folder: everyone may write in it
    monkeypatch.setenv("FACEATTR_CACHE_DIR", str(shared))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the private fallback lands here
    folder, marker = faces(tmp_path / "faces"), tmp_path / "payload-ran"
    plant(shared, folder, marker)
    assert len(scan(folder).frame) == 3
    assert not marker.exists()
    note = capsys.readouterr().err
    assert f"{shared} is not used: other users can write in it" in note and "FACEATTR_CACHE_DIR" in note


def test_a_pickle_in_the_users_own_cache_is_never_read(tmp_path, private_cache):
    folder, marker = faces(tmp_path / "faces"), tmp_path / "payload-ran"
    plant(private_cache, folder, marker)
    assert len(scan(folder).frame) == 3
    assert not marker.exists()


def test_a_fallback_folder_made_first_by_someone_else_is_not_used(tmp_path, monkeypatch, capsys):
    (tmp_path / "plain-file").write_text("not a folder")  # the cache cannot be made: the fallback is used
    monkeypatch.setenv("FACEATTR_CACHE_DIR", str(tmp_path / "plain-file" / "cache"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    squatted = tmp_path / f"faceattr-cache-{os.getuid()}"  # the old, predictable fallback, made by the attacker
    squatted.mkdir()
    squatted.chmod(0o777)
    folder, marker = faces(tmp_path / "faces"), tmp_path / "payload-ran"
    plant(squatted, folder, marker)
    assert len(scan(folder).frame) == 3
    assert not marker.exists()
    (used,) = [path for path in tmp_path.glob("faceattr-cache-*") if path != squatted]
    assert used.stat().st_mode & 0o777 == 0o700 and f"private folder {used}" in capsys.readouterr().err
    assert data.usable_cache_dir() == used  # the same private folder serves later calls


def test_a_cache_folder_of_another_user_is_not_used(tmp_path, monkeypatch):
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    monkeypatch.setenv("FACEATTR_CACHE_DIR", str(theirs))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(os, "getuid", lambda: theirs.stat().st_uid + 1)  # as seen by another user
    assert data.private_folder_problem(theirs).startswith("it belongs to another user")
    assert data.usable_cache_dir() != theirs


def test_an_open_subfolder_makes_the_cache_unsafe(tmp_path, monkeypatch):
    own = tmp_path / "own"
    (own / "decoded").mkdir(parents=True)
    own.chmod(0o700)
    (own / "decoded").chmod(0o777)
    assert data.private_folder_problem(own).startswith("other users can write in it (decoded/)")
    (own / "decoded").chmod(0o755)
    assert data.private_folder_problem(own) is None


def lock_as_another_user(lock: Path) -> str:
    """Take `lock` in a forked process that does not own it (as `nobody` when the tests run as root); its verdict."""
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # the other user: only `locked` runs here, then the process ends at once
        try:
            os.close(reader)
            if os.getuid() == 0:
                os.setuid(65534)
            try:
                with locked(lock) as held:
                    verdict = f"held {held}"
            except FaceattrError as error:
                verdict = f"error: {error}"
            os.write(writer, verdict.encode())
        finally:
            os._exit(0)
    os.close(writer)
    with os.fdopen(reader) as stream:
        verdict = stream.read()
    os.waitpid(child, 0)
    return verdict


@pytest.fixture
def shared_folder() -> Path:
    """A folder every user can enter (tmp_path's parents may be private to this user)."""
    folder = Path(tempfile.mkdtemp(dir="/tmp" if os.path.isdir("/tmp") else None))
    folder.chmod(0o755)
    yield folder
    for child in folder.iterdir():
        child.unlink()
    folder.rmdir()


def test_a_lock_file_someone_else_made_still_locks(shared_folder):
    lock = shared_folder / ".faceattr.lock"
    lock.touch(mode=0o444)  # made first by another user: readable, not writable, by this one
    lock.chmod(0o444)
    assert lock_as_another_user(lock) == "held True"


def test_an_unreadable_lock_file_is_one_line(shared_folder):
    lock = shared_folder / ".faceattr.lock"
    lock.touch()
    lock.chmod(0o000)
    line = lock_as_another_user(lock)
    assert line.startswith(f"error: the lock file {lock} belongs to another user") and "\n" not in line


def test_a_model_holding_code_is_refused_in_one_line(tmp_path):
    import faceattr.model  # noqa: F401  (imports TensorFlow quietly, before Keras)
    import keras

    inputs = keras.Input(shape=(4,))
    keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs)).save(RunFolder(tmp_path).model)
    with pytest.raises(RunDirError, match="holds Python code .* never runs from a file"):
        RunFolder(tmp_path).load_model()


def test_a_cache_made_under_umask_002_stays_private_for_the_whole_run(tmp_path, monkeypatch):
    wanted = tmp_path / "cache"
    monkeypatch.setenv("FACEATTR_CACHE_DIR", str(wanted))
    old_mask = os.umask(0o002)  # Ubuntu's default for ordinary users: new folders are group-writable
    try:
        assert data.usable_cache_dir() == wanted
        with locked(wanted / "decoded" / "x.npy.lock"):  # a lock's mkdir must not open the folder to the group
            pass
        getattr(data, "_chosen_cache_dirs", {}).clear()  # as a later process would choose again
        assert data.usable_cache_dir() == wanted
    finally:
        os.umask(old_mask)


def test_a_planted_link_is_never_taken_for_the_private_fallback(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    secrets = tmp_path / "home" / ".ssh"
    secrets.mkdir(parents=True, mode=0o700)
    (tmp_path / "faceattr-cache-aaa").symlink_to(secrets)  # sorts first among the candidates
    assert data.private_fallback_dir().resolve() != secrets.resolve()


def test_faceattr_cache_lists_the_folder_the_kit_really_uses(tmp_path, monkeypatch, capsys):
    from faceattr.cli import main

    shared = tmp_path / "class-cache"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv("FACEATTR_CACHE_DIR", str(shared))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert main(["cache"]) == 0
    listed = capsys.readouterr().out.strip().splitlines()[-1]
    assert f"in {data.usable_cache_dir()};" in listed and f"in {shared};" not in listed
