"""Splits: seeded, deterministic, stratified, and never an empty training set."""

from pathlib import Path

import pandas as pd
import pytest

from faceattr.data import DataError, build_frame, scan, split_frame
from faceattr.sample import sample_labels


def label_frame(count: int, seed: int = 0) -> pd.DataFrame:
    """A labels-only frame shaped like a scan result, without any images."""
    rows = [{"file": f"{a}_{g}_{r}_{i:05d}.jpg", "age": a, "gender": g, "race": r}
            for i, (a, g, r) in enumerate(sample_labels(count, seed))]
    return build_frame(rows, Path("/nowhere"))


def test_split_sizes_are_70_15_15():
    counts = split_frame(label_frame(2000))["split"].value_counts()
    assert counts.to_dict() == {"train": 1400, "validation": 300, "test": 300}


def test_split_is_deterministic_and_seeded():
    frame = label_frame(1000)
    first, again = split_frame(frame, seed=7), split_frame(frame.iloc[::-1], seed=7)
    pd.testing.assert_series_equal(first["split"], again["split"])
    other = split_frame(frame, seed=8)
    assert (first["split"] != other["split"]).sum() > 100


def test_split_parts_do_not_overlap():
    split = split_frame(label_frame(500))
    parts = [set(split.loc[split["split"] == name, "file"]) for name in ("train", "validation", "test")]
    assert sum(map(len, parts)) == 500
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])


def test_split_is_stratified_by_race_and_gender():
    split = split_frame(label_frame(3000), seed=5)
    overall = pd.crosstab(split["race_name"], split["gender_name"], normalize=True)
    for name in ("train", "validation", "test"):
        part = split[split["split"] == name]
        share = pd.crosstab(part["race_name"], part["gender_name"], normalize=True)
        assert (share - overall).abs().to_numpy().max() < 0.006, name


def test_split_on_sample_with_seed_matches_stored_counts(sample_dir):
    split = split_frame(scan(sample_dir).frame, seed=42)
    assert split["split"].value_counts().to_dict() == {"train": 140, "validation": 30, "test": 30}
    assert (split.groupby("split")["race"].nunique() == 5).all()


def test_too_few_images_to_split_is_an_error():
    with pytest.raises(DataError, match="too few to split"):
        split_frame(label_frame(4))


def test_tiny_groups_fall_back_without_emptying_train():
    split = split_frame(label_frame(12), seed=1)
    assert (split["split"] == "train").sum() >= 8


def test_load_or_make_split_makes_once_then_loads(sample_dir, tmp_path):
    from faceattr.runs import RunFolder

    result = scan(sample_dir)
    made, was_made = RunFolder(tmp_path).load_or_make_split(result, seed=9)
    pd.testing.assert_frame_equal(made, split_frame(result.frame, seed=9))  # made with the seed it was given
    loaded, was_made_again = RunFolder(tmp_path).load_or_make_split(result, seed=123)  # the stored split wins
    assert was_made and not was_made_again
    pd.testing.assert_series_equal(made.set_index("file")["split"], loaded.set_index("file")["split"])


def test_byte_identical_copies_never_cross_the_split(tmp_path):
    import shutil

    from faceattr.data import scan
    from tests.conftest import write_face

    folder = tmp_path / "faces"
    for index in range(30):
        original = write_face(folder / f"{20 + index}_{index % 2}_{index % 5}_{index}.jpg", size=32, seed=index)
        for copy in range(2):  # each image three times, under other names (as in the real release)
            shutil.copy(original, folder / f"{20 + index}_{index % 2}_{index % 5}_{index}{copy}copy.jpg")
    result = scan(folder)
    copies = result.duplicates()
    assert len(copies) == 90 and copies["content"].nunique() == 30 and list(copies.index) == list(range(90))
    assert copies.groupby("content")["age"].nunique().eq(1).all()  # each group is one image's copies
    split = split_frame(result.frame, seed=0)
    assert (split.groupby("content")["split"].nunique() == 1).all()
    distinct = result.frame.sort_values("file").drop_duplicates("content")
    assert split.drop_duplicates("content")["split"].value_counts().to_dict() == \
        split_frame(distinct, seed=0)["split"].value_counts().to_dict()  # drawn over the 30 distinct images
