"""Scanning folders and tarballs: bad files are reported, never trained on."""

import os
import tarfile
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from faceattr import data
from faceattr.data import DataError, DatasetNotFound, scan, split_frame
from tests.conftest import write_face


def snapshot(folder: Path) -> dict:
    """Every file under `folder` with its size and mtime, to prove nothing was written."""
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def test_missing_folder_names_path_and_fix(tmp_path):
    with pytest.raises(DatasetNotFound) as error:
        scan(tmp_path / "UTKFace")
    message = str(error.value)
    assert str(tmp_path / "UTKFace") in message and "data/README.md" in message


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(DataError, match="no valid UTKFace images"):
        scan(tmp_path)


def test_folder_of_non_images_is_an_error(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "photo.gif").write_bytes(b"GIF89a")
    with pytest.raises(DataError, match=r"2 files skipped"):
        scan(tmp_path)


def test_plain_file_that_is_not_a_tarball_is_an_error(tmp_path):
    path = tmp_path / "faces.zip"
    path.write_bytes(b"PK")
    with pytest.raises(DataError, match="not a folder or a .tar.gz"):
        scan(path)


def test_broken_images_are_skipped_and_odd_modes_kept(tmp_path):
    write_face(tmp_path / "20_0_0_1.jpg.chip.jpg")
    write_face(tmp_path / "21_1_1_2.jpg.chip.jpg", mode="L")
    write_face(tmp_path / "22_0_2_3.jpg.chip.jpg", mode="CMYK")
    write_face(tmp_path / "23_1_3_4.png", mode="RGBA", fmt="PNG")
    (tmp_path / "24_0_4_5.jpg.chip.jpg").write_bytes(b"")
    truncated = write_face(tmp_path / "25_1_0_6.jpg.chip.jpg", size=120)
    truncated.write_bytes(truncated.read_bytes()[:600])
    (tmp_path / "26_0_1_7.jpg.chip.jpg").write_bytes(b"this is not a jpeg at all")
    result = scan(tmp_path)
    assert sorted(result.frame["age"]) == [20, 21, 22, 23]
    reasons = dict(zip(result.skipped["file"], result.skipped["reason"]))
    assert reasons == {
        "24_0_4_5.jpg.chip.jpg": "empty file (0 bytes)",
        "25_1_0_6.jpg.chip.jpg": "unreadable image (truncated or corrupt)",
        "26_0_1_7.jpg.chip.jpg": "unreadable image (truncated or corrupt)",
    }


def test_frame_columns_and_names(sample_dir):
    frame = scan(sample_dir).frame
    for column in ("file", "path", "age", "gender", "race", "gender_name", "race_name", "age_band"):
        assert column in frame.columns
    row = frame[frame["file"] == "55_0_0_20170116232725357jpg.chip.jpg"].iloc[0]
    assert (row.age, row.gender_name, row.race_name) == (55, "male", "white")
    assert Path(row.path).is_file()


def test_sample_planted_quirks_are_reported(sample_dir):
    result = scan(sample_dir)
    assert len(result.frame) == 200
    assert result.skipped_by_reason() == {
        "missing field": 3, "not an image file": 2, "empty field": 1, "gender code out of range": 1,
        "empty file (0 bytes)": 1, "unreadable image (truncated or corrupt)": 1,
    }


def test_scan_is_recursive(tmp_path):
    write_face(tmp_path / "part1" / "30_0_0_1.jpg")
    write_face(tmp_path / "part2" / "deeper" / "31_1_1_2.jpg")
    assert sorted(scan(tmp_path).frame["file"]) == ["part1/30_0_0_1.jpg", "part2/deeper/31_1_1_2.jpg"]


def test_listing_order_does_not_change_frame_or_split(sample_dir, monkeypatch):
    first = scan(sample_dir, cache=False).frame
    real_walk = os.walk

    def reversed_walk(root, **options):
        for folder, dirs, names in real_walk(root, **options):
            yield folder, dirs[::-1], names[::-1]

    monkeypatch.setattr(data.os, "walk", reversed_walk)
    second = scan(sample_dir, cache=False).frame
    pd.testing.assert_frame_equal(first, second)
    pd.testing.assert_frame_equal(split_frame(first, seed=3), split_frame(second.sample(frac=1, random_state=0), seed=3))


def test_second_scan_comes_from_cache_and_new_files_invalidate_it(tmp_path, monkeypatch):
    folder = tmp_path / "faces"
    for index in range(3):
        write_face(folder / f"3{index}_0_0_{index}.jpg", seed=index)
    assert len(scan(folder).frame) == 3
    monkeypatch.setattr(data, "scan_folder", lambda *a, **k: pytest.fail("cache was not used"))
    assert len(scan(folder).frame) == 3
    monkeypatch.undo()
    write_face(folder / "40_1_1_9.jpg")
    assert len(scan(folder).frame) == 4


def test_scan_never_writes_into_the_data_folder(sample_dir, tmp_path):
    archive = tmp_path / "UTKFace.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(sample_dir, arcname="UTKFace")
    before_folder, before_archive = snapshot(sample_dir), snapshot(tmp_path)
    scan(sample_dir)
    scan(archive)
    assert snapshot(sample_dir) == before_folder
    assert snapshot(tmp_path) == before_archive


def test_tarball_gives_same_labels_as_folder(sample_dir, tmp_path):
    archive = tmp_path / "UTKFace.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(sample_dir, arcname="UTKFace")
    from_folder, from_archive = scan(sample_dir), scan(archive)
    columns = ["age", "gender", "race"]
    assert from_archive.frame["file"].str.removeprefix("UTKFace/").tolist() == from_folder.frame["file"].tolist()
    pd.testing.assert_frame_equal(from_archive.frame[columns], from_folder.frame[columns])
    assert from_archive.skipped_by_reason() == from_folder.skipped_by_reason()
    with Image.open(from_archive.frame["path"].iloc[0]) as image:
        assert image.size == (200, 200)


def test_tarball_that_is_not_utkface_is_an_error(tmp_path):
    (tmp_path / "readme.txt").write_text("cats")
    archive = tmp_path / "cats.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "readme.txt", arcname="cats/readme.txt")
    with pytest.raises(DataError, match="not a UTKFace archive"):
        scan(archive)


def test_corrupt_tarball_is_an_error(tmp_path):
    archive = tmp_path / "UTKFace.tar.gz"
    archive.write_bytes(b"\x1f\x8b broken")
    with pytest.raises(DataError, match="not a readable .tar.gz"):
        scan(archive)
