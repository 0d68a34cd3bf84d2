"""The synthetic sample: deterministic, UTKFace-like label frequencies, planted quirks."""

import hashlib

import numpy as np

from faceattr.labels import AGE_MAX
from faceattr.sample import RACE_COUNTS, ensure_sample, sample_labels, write_sample


def digest(folder):
    """Hash every file's name and bytes under `folder`."""
    sha = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        sha.update(path.name.encode() + path.read_bytes())
    return sha.hexdigest()


def test_same_seed_gives_byte_identical_files(tmp_path):
    first = write_sample(tmp_path / "a", count=30, seed=4)
    second = write_sample(tmp_path / "b", count=30, seed=4)
    other = write_sample(tmp_path / "c", count=30, seed=5)
    assert digest(first) == digest(second)
    assert digest(first) != digest(other)


def test_label_frequencies_are_close_to_utkface():
    age, gender, race = sample_labels(20000, seed=0).T
    race_share = np.bincount(race, minlength=5) / len(race)
    assert np.abs(race_share - RACE_COUNTS / RACE_COUNTS.sum()).max() < 0.015
    assert abs((gender == 0).mean() - 0.52) < 0.015
    assert 20 <= np.median(age) <= 35
    assert ((age >= 20) & (age <= 35)).mean() > 0.35
    assert age.max() > 100 and age.max() <= AGE_MAX and age.min() >= 1


def test_ensure_sample_reuses_a_current_sample(tmp_path):
    folder = ensure_sample(tmp_path / "sample", count=12, seed=0)
    stamp = (folder / "SYNTHETIC.txt").stat().st_mtime_ns
    assert ensure_sample(folder, count=12, seed=0) == folder
    assert (folder / "SYNTHETIC.txt").stat().st_mtime_ns == stamp
    ensure_sample(folder, count=14, seed=0)
    assert "count=14" in (folder / "SYNTHETIC.txt").read_text()


def test_sample_says_it_is_synthetic(tmp_path):
    folder = write_sample(tmp_path, count=10)
    assert "SYNTHETIC" in (folder / "SYNTHETIC.txt").read_text()


def test_a_sample_folder_follows_the_umask_so_a_class_can_share_it(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        folder = ensure_sample(tmp_path / "shared", count=10, seed=0)
    finally:
        os.umask(old)
    assert folder.stat().st_mode & 0o777 == 0o755


def test_rebuilding_a_sample_never_deletes_the_users_own_files(tmp_path):
    import pytest

    from faceattr.errors import DataError

    folder = ensure_sample(tmp_path / "sample", count=10, seed=0)
    (folder / "my_notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="my_notes.txt"):
        ensure_sample(folder, count=12, seed=0)  # stale: it would be rebuilt
    assert (folder / "my_notes.txt").read_text() == "keep me"
