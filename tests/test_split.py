"""Splits: seeded, deterministic, stratified, and never an empty training set."""

from pathlib import Path

import pandas as pd
import pytest

from faceattr.data import DataError, build_frame, scan, split_frame, training_subset
from faceattr.sample import sample_labels


def label_frame(count: int, seed: int = 0) -> pd.DataFrame:
    """A labels-only frame shaped like a scan result, without any images."""
    rows = [{"file": f"{a}_{g}_{r}_{i:05d}.jpg", "age": a, "gender": g, "race": r}
            for i, (a, g, r) in enumerate(sample_labels(count, seed))]
    return build_frame(rows, Path("/nowhere"))


def test_build_frame_sorts_its_rows_by_file():
    rows = [{"file": file, "age": age, "gender": 0, "race": 1}
            for file, age in (("b/30_0_1_2.jpg", 30), ("40_0_1_9.jpg", 40), ("a/50_0_1_1.jpg", 50))]
    frame = build_frame(rows, Path("/data"))
    assert frame["file"].tolist() == ["40_0_1_9.jpg", "a/50_0_1_1.jpg", "b/30_0_1_2.jpg"]
    assert frame["age"].tolist() == [40, 50, 30] and frame.index.tolist() == [0, 1, 2]
    assert frame["path"].tolist() == [str(Path("/data", file)) for file in frame["file"]]


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


@pytest.mark.parametrize("validation, test", [(0.0, 0.15), (0.15, 0.0), (0.5, 0.5), (0.6, 0.5)])
def test_fractions_outside_the_open_interval_or_summing_to_one_are_errors(validation, test):
    with pytest.raises(DataError, match=f"validation_fraction={validation} and test_fraction={test}"):
        split_frame(label_frame(100), validation_fraction=validation, test_fraction=test)


@pytest.mark.parametrize("count, validation, test, ok", [
    (4, 0.25, 0.25, True),    # the smallest part holds exactly 1 image: allowed
    (9, 0.1, 0.3, False),     # validation would hold 0.9 images
    (9, 0.3, 0.1, False),     # test would
    (9, 0.45, 0.45, False),   # training would
])
def test_the_smallest_part_must_hold_at_least_one_image(count, validation, test, ok):
    if ok:
        assert split_frame(label_frame(count), validation, test)["split"].value_counts().min() == 1
    else:
        with pytest.raises(DataError, match="at least 10 images"):
            split_frame(label_frame(count), validation, test)


def test_too_few_names_the_split_and_the_minimum():
    with pytest.raises(DataError, match="6 distinct images are too few to split 70%/15%/15%; use a folder with at "
                                        "least 7 images"):
        split_frame(label_frame(6))


def test_unstratified_fallback_is_70_15_15_and_seeded():
    frame = label_frame(40).assign(race_name=[f"group{i}" for i in range(40)])  # every group is unique
    split = split_frame(frame, seed=2)
    assert split["split"].value_counts().to_dict() == {"train": 28, "validation": 6, "test": 6}
    pd.testing.assert_frame_equal(split, split_frame(frame, seed=2))
    assert not split["split"].equals(split_frame(frame, seed=3)["split"])


def test_the_split_frame_has_a_fresh_index_whatever_the_input_index():
    frame = label_frame(50)
    frame.index = range(1000, 1050)
    assert list(split_frame(frame.iloc[::-1]).index) == list(range(50))


def test_stratify_key_bins_ages_at_20_40_60_and_coarsens_below_min_count():
    from faceattr.data import stratify_key

    frame = label_frame(8).assign(race_name="white", gender_name="male",
                                  age=[19, 20, 39, 40, 59, 60, 19, 20])
    assert stratify_key(frame, min_count=1).tolist() == [
        "white/male/0-19", "white/male/20-39", "white/male/20-39", "white/male/40-59", "white/male/40-59",
        "white/male/60+", "white/male/0-19", "white/male/20-39"]
    assert stratify_key(frame, min_count=2).tolist() == ["white/male"] * 8  # 60+ has one image: coarser
    assert stratify_key(frame.assign(gender_name=["male", "female"] * 4), min_count=4).tolist() == \
        ["white/male", "white/female"] * 4  # exactly min_count per group is enough
    assert stratify_key(frame.assign(gender_name=["male", "female"] * 4), min_count=5).tolist() == ["white"] * 8


def test_the_minimum_rounds_up_not_to_nearest():
    with pytest.raises(DataError, match="use a folder with at least 4 images"):  # 1 / 0.3 = 3.33 -> 4, not 3
        split_frame(label_frame(3), validation_fraction=0.3, test_fraction=0.4)


def test_a_training_subset_thins_only_training_keeps_the_oldest_and_is_seeded():
    """A quick pass's training images (faceattr.defaults.QUICK_BUDGETS["train_images"]): validation and test whole."""
    split = split_frame(label_frame(2000), seed=3)
    train = split[split["split"] == "train"]
    subset = training_subset(split, 300, seed=3)
    kept = subset[subset["split"] == "train"]
    assert len(kept) == 300 and set(kept["file"]) <= set(train["file"])
    pd.testing.assert_frame_equal(subset[subset["split"] != "train"], split[split["split"] != "train"])
    assert kept["age"].max() == train["age"].max()   # the age scale stays the split's
    assert kept["file"].tolist() == training_subset(split, 300, seed=3).query("split == 'train'")["file"].tolist()
    assert set(kept["file"]) != set(training_subset(split, 300, seed=4).query("split == 'train'")["file"])
    share = kept["race_name"].value_counts(normalize=True) - train["race_name"].value_counts(normalize=True)
    assert share.abs().max() < 0.01   # stratified like the split
    assert training_subset(split, len(train), seed=3) is split
    one = training_subset(split, 1)
    assert one[one["split"] == "train"]["age"].tolist() == [train["age"].max()]
    with pytest.raises(DataError, match="train_images=0"):
        training_subset(split, 0)
