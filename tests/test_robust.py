"""Hostile input and shared machines: one bad file never stops a scan, caches survive crashes and races,
and the CLI tells expected failures (one line) from bugs (a traceback)."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from faceattr import cli, data
from faceattr.cache import cache_entries, clear_cache
from faceattr.data import read_scan_cache, scan
from tests.conftest import write_face

def faces(folder: Path, count: int = 3) -> Path:
    """A folder of `count` valid faces."""
    for index in range(count):
        write_face(folder / f"{20 + index % 50}_{index % 2}_{index % 5}_{index}.jpg", seed=index)
    return folder


def test_a_name_with_unicode_digits_is_skipped_not_fatal(tmp_path):
    folder = faces(tmp_path / "faces")
    write_face(folder / "²_0_0_x.jpg")  # "²".isdigit() is True, int("²") fails
    result = scan(folder)
    assert len(result.frame) == 3
    assert result.skipped.set_index("file").loc["²_0_0_x.jpg", "reason"] == "non-numeric field"


def test_dangling_and_looping_links_are_skipped_with_reasons(tmp_path):
    folder = faces(tmp_path / "faces")
    os.symlink(folder / "gone.jpg", folder / "20_0_0_dangling.jpg")
    os.symlink(folder / "21_0_0_loop.jpg", folder / "21_0_0_loop.jpg")
    reasons = scan(folder).skipped.set_index("file")["reason"].to_dict()
    assert reasons == {"20_0_0_dangling.jpg": "dangling link", "21_0_0_loop.jpg": "link loop"}


def test_an_unreadable_subfolder_is_reported(tmp_path, monkeypatch):
    folder = faces(tmp_path / "faces")
    faces(folder / "locked", 2)
    real_scandir = os.scandir

    def scandir(path):
        """Refuse the locked folder, as chmod 000 would (root ignores chmod, so we simulate it)."""
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    result = scan(folder, cache=False)
    assert len(result.frame) == 3
    assert result.skipped_by_reason() == {"unreadable folder": 1}
    assert result.skipped["file"].tolist() == ["locked"]


def bomb(path: Path) -> Path:
    """A small PNG that claims 20,000 x 20,000 pixels."""
    Image.new("1", (20_000, 20_000)).save(path, "PNG", optimize=True)
    return path


def test_a_decompression_bomb_is_skipped_by_the_scan(tmp_path):
    folder = faces(tmp_path / "faces")
    assert bomb(folder / "30_0_0_bomb.png").stat().st_size < 100_000
    result = scan(folder)
    assert len(result.frame) == 3
    assert "decompression bomb" in result.skipped.set_index("file").loc["30_0_0_bomb.png", "reason"]


def test_a_truncated_scan_cache_is_rebuilt(tmp_path, private_cache, capsys):
    folder = faces(tmp_path / "faces")
    first = scan(folder).frame
    (cache_file,) = (private_cache / "scans").glob("*.json")
    cache_file.write_bytes(cache_file.read_bytes()[:100])
    pd.testing.assert_frame_equal(scan(folder).frame, first)
    assert "damaged" in capsys.readouterr().err
    pd.testing.assert_frame_equal(read_scan_cache(cache_file, folder.resolve()).frame, first)  # rewritten whole


def test_an_unwritable_cache_folder_falls_back_with_a_note(tmp_path, monkeypatch, capsys):
    (tmp_path / "plain-file").write_text("not a folder")
    monkeypatch.setenv("FACEATTR_CACHE_DIR", str(tmp_path / "plain-file" / "cache"))
    archive = tarred(faces(tmp_path / "UTKFace"), tmp_path / "UTKFace.tar.gz")
    assert len(scan(archive).frame) == 3
    note = capsys.readouterr().err
    assert "cannot be written" in note and "FACEATTR_CACHE_DIR" in note and "Re-download" not in note


def tarred(folder: Path, archive: Path) -> Path:
    """`folder` packed as a .tar.gz."""
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return archive


def count_valid(archive: str) -> int:
    """Scan in a child process (a second student at the same time)."""
    return len(scan(archive).frame)


def test_two_scans_of_one_new_archive_at_once_both_see_every_image(tmp_path):
    archive = tarred(faces(tmp_path / "UTKFace", 60), tmp_path / "UTKFace.tar.gz")
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        assert pool.map(count_valid, [str(archive)] * 2) == [60, 60]
    os.utime(archive, (1, 1))  # a touched (or copied) archive is the same content: no second extraction
    assert len(scan(archive).frame) == 60
    extracted = Path(os.environ["FACEATTR_CACHE_DIR"]) / "extracted"
    assert len([path for path in extracted.iterdir() if path.is_dir()]) == 1
    assert not list(extracted.glob("*.partial"))


def test_a_bug_keeps_its_traceback(monkeypatch, capsys):
    def broken(args):
        """A bug deep inside: a ValueError from a library."""
        return int("not a number")

    monkeypatch.setattr(cli, "command_scan", broken)
    monkeypatch.setattr(cli.build_parser().__class__, "parse_args",
                        lambda self, argv=None: cli.argparse.Namespace(command="scan", handler=broken))
    assert cli.main(["scan", "x"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "invalid literal for int()" in err and "this is a bug in faceattr" in err


def test_scan_into_a_closed_pipe_exits_quietly(sample_dir):
    process = subprocess.Popen([sys.executable, "-m", "faceattr.cli", "scan", str(sample_dir)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # like `| head` that has already left
    error = process.stderr.read().decode()
    assert process.wait(timeout=120) == 0
    assert "Traceback" not in error and "BrokenPipe" not in error


def test_tensorflow_errors_stay_visible():
    level = subprocess.run([sys.executable, "-c", "import os, faceattr; print(os.environ['TF_CPP_MIN_LOG_LEVEL'])"],
                           capture_output=True, text=True, env={k: v for k, v in os.environ.items()
                                                                 if k != "TF_CPP_MIN_LOG_LEVEL"}).stdout
    assert int(level) <= 2


def test_cache_list_shows_and_clear_prunes_extractions_and_scans(tmp_path, private_cache, capsys):
    archive = tarred(faces(tmp_path / "UTKFace"), tmp_path / "UTKFace.tar.gz")
    scan(archive)
    assert cli.main(["cache", "--list"]) == 0
    listing = capsys.readouterr().out
    assert "extraction" in listing and f"(from {archive})" in listing and "scan" in listing
    entries = cache_entries()
    extraction = next(entry for entry in entries if entry["kind"] == "extraction")
    assert extraction["bytes"] == sum(path.stat().st_size for path in (tmp_path / "UTKFace").iterdir())
    with data.locked(f"{extraction['path']}.lock"):  # a scan is using the extraction right now
        freed, busy = clear_cache()
    assert busy == [extraction["path"]] and extraction["path"].is_dir()
    assert freed == sum(entry["bytes"] for entry in entries if entry["kind"] == "scan")
    assert cli.main(["cache", "--clear"]) == 0
    assert f"freed {extraction['bytes'] / 1e6:.1f} MB" in capsys.readouterr().out
    assert cache_entries() == [] and not list((private_cache / "extracted").glob("*/"))
    assert len(scan(archive).frame) == 3  # rebuilt when needed


def test_atomic_write_uses_a_hidden_sibling_with_the_same_suffix_and_the_umask(tmp_path):
    from faceattr.files import atomic_write, atomic_write_json

    seen = []
    target = tmp_path / "new" / "deeper" / "model.keras"  # missing folders are made
    old = os.umask(0o022)
    try:
        atomic_write(target, lambda temporary: (seen.append(temporary), temporary.write_text("x")))
    finally:
        os.umask(old)
    (temporary,) = seen
    assert temporary.parent == target.parent and temporary.name.startswith(".model.") and temporary.suffix == ".keras"
    assert target.stat().st_mode & 0o777 == 0o644 and not temporary.exists()
    atomic_write_json(tmp_path / "c.json", {"path": tmp_path, "n": 1})  # paths become strings
    assert (tmp_path / "c.json").read_text() == f'{{\n  "path": "{tmp_path}",\n  "n": 1\n}}\n'
    atomic_write(tmp_path / "plain", lambda temporary: temporary.write_text("y"))
    assert (tmp_path / "plain").read_text() == "y"


def test_a_scan_cache_with_foreign_columns_is_rebuilt(tmp_path, private_cache, capsys):
    folder = faces(tmp_path / "faces")
    first = scan(folder)
    (cache_file,) = (private_cache / "scans").glob("*.json")
    pd.to_pickle((first.frame, first.skipped.rename(columns={"reason": "why"})), cache_file)
    again = scan(folder)
    assert "damaged" in capsys.readouterr().err and list(again.skipped.columns) == ["file", "reason"]
    cached = scan(folder)  # now from the rewritten cache
    pd.testing.assert_frame_equal(cached.skipped, first.skipped)
    assert cached.root == folder.resolve()


def test_cache_listing_shows_half_made_extractions_as_unfinished_and_names_unknown_sources(tmp_path):
    cache = tmp_path / "cache"
    (cache / "extracted" / "abc.x1.partial").mkdir(parents=True)
    (cache / "extracted" / "abc").mkdir()
    (cache / "extracted" / "abc" / "f.jpg").write_bytes(b"12345")
    for name in ("one", "two"):
        (cache / "scans").mkdir(exist_ok=True)
        (cache / "scans" / f"{name}.pkl").write_bytes(b"123")
    (cache / "decoded").mkdir()
    np.save(cache / "decoded" / "k-8px.npy", np.zeros((2, 8, 8, 3), np.uint8))
    (cache / "decoded" / "bad-8px.npy").write_bytes(b"xyz")
    stored = (cache / "decoded" / "k-8px.npy").stat().st_size
    entries = cache_entries(cache)
    assert [(e["kind"], e["path"].name, e["bytes"], e["source"]) for e in entries] == [
        ("extraction", "abc", 5, "?"), ("extraction", "abc.x1.partial", 0, "unfinished"),
        ("scan", "one.pkl", 3, ""), ("scan", "two.pkl", 3, ""),
        ("decoded", "bad-8px.npy", 3, "damaged"), ("decoded", "k-8px.npy", stored, "2 images at 8 px")]
    with data.locked(cache / "decoded" / "k-8px.npy.lock"):  # being written by another process
        assert clear_cache(cache) == (14, [cache / "decoded" / "k-8px.npy"])
    assert clear_cache(cache) == (stored, [])
    assert cache_entries(cache) == []


def test_an_archive_with_a_path_outside_its_folder_is_refused(tmp_path):
    write_face(tmp_path / "face.jpg")
    archive = tmp_path / "UTKFace.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "face.jpg", arcname="UTKFace/20_0_0_1.jpg")
        tar.add(tmp_path / "face.jpg", arcname="../20_0_0_escape.jpg")
    with pytest.raises(data.DataError, match="would land outside its folder"):
        scan(archive)
    cache = Path(os.environ["FACEATTR_CACHE_DIR"])
    assert not list(cache.rglob("*escape*")) and not list(cache.parent.glob("20_0_0_escape.jpg"))
    assert not [path for path in (cache / "extracted").iterdir() if path.is_dir()]


def test_clear_removes_an_extractions_sidecar_and_a_sidecar_without_a_source_reads_as_unknown(tmp_path):
    cache = tmp_path / "cache"
    (cache / "extracted" / "k1").mkdir(parents=True)
    (cache / "extracted" / "k1.json").write_text("{}")
    assert [entry["source"] for entry in cache_entries(cache)] == ["?"]
    clear_cache(cache)
    assert sorted(path.name for path in (cache / "extracted").iterdir()) == ["k1.lock"]


def test_where_the_kit_keeps_data_in_a_checkout_and_when_installed(tmp_path, monkeypatch):
    checkout = tmp_path / "checkout"
    (checkout / "data").mkdir(parents=True)
    (checkout / "pyproject.toml").write_text("")
    monkeypatch.setattr(data, "PROJECT_ROOT", checkout)
    assert data.kit_data_dir() == checkout / "data"
    (checkout / "data").rmdir()  # a checkout without data/ (or site-packages, which has no pyproject.toml)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FACEATTR_DATA_HOME", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    assert data.kit_data_dir() == tmp_path / "home" / ".local" / "share" / "faceattr"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert data.kit_data_dir() == tmp_path / "xdg" / "faceattr"
    monkeypatch.setenv("FACEATTR_DATA_HOME", str(tmp_path / "mine"))
    assert data.kit_data_dir() == tmp_path / "mine"


def test_resolve_data_dir_auto_prefers_the_environment_then_utkface_then_the_sample(tmp_path, monkeypatch):
    from faceattr import sample

    monkeypatch.setattr(data, "kit_data_dir", lambda: tmp_path)
    monkeypatch.setattr(sample, "ensure_sample", lambda folder: folder)  # no need to draw it here
    monkeypatch.setenv("FACEATTR_DATA", str(tmp_path / "pinned"))
    assert data.resolve_data_dir() == tmp_path / "pinned" and data.resolve_data_dir("auto") == tmp_path / "pinned"
    monkeypatch.delenv("FACEATTR_DATA")
    assert data.resolve_data_dir("auto") == tmp_path / "sample"
    assert data.resolve_data_dir("sample") == tmp_path / "sample"
    (tmp_path / "UTKFace.tar.gz").write_bytes(b"")
    assert data.resolve_data_dir("auto") == tmp_path / "UTKFace.tar.gz"
    (tmp_path / "UTKFace").mkdir()
    assert data.resolve_data_dir("auto") == tmp_path / "UTKFace"
    assert data.resolve_data_dir("~/faces") == Path.home() / "faces"
