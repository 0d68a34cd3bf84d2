"""The synthetic sample: deterministic, UTKFace-like label frequencies, planted quirks."""

import hashlib

import numpy as np

from faceattr.labels import AGE_MAX, RACE_NAMES
from faceattr.sample import RACE_COUNTS, ensure_sample, race_drawing_note, sample_labels, write_sample


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


# Recorded from the sample as it was before profiles existed. The stored notebook outputs were made from this
# sample, so a change here makes them stale: if it fails after a NumPy or Pillow upgrade rather than a code
# change, re-execute the notebooks (make notebooks) and record the new digests.
DEFAULT_FILES_SHA256 = "112a1dfd143e307fde8a0aef84131837fe8a83b79c121106c4f66a35e7466b8a"   # count=20, seed=0
DEFAULT_LABELS_SHA256 = "74a01054d0759007093c85fc16f418a2da18827a6dbebd758f048bd7968b5b29"  # count=2000, seed=0
DEFAULT_COLOURS_SHA256 = "8eb18d71de8bf4c90c0389d64ba8e82824309548fd1e7e9c73468e33f1047b20"  # those 2000 faces


def test_the_default_profile_still_draws_the_sample_the_notebooks_were_run_on(tmp_path):
    from faceattr.sample import DEFAULT_PROFILE, face_colours

    assert digest(write_sample(tmp_path / "a", count=20, seed=0)) == DEFAULT_FILES_SHA256
    assert digest(write_sample(tmp_path / "b", count=20, seed=0, profile=DEFAULT_PROFILE)) == DEFAULT_FILES_SHA256
    labels = sample_labels(2000, seed=0)
    assert hashlib.sha256(labels.astype("int64").tobytes()).hexdigest() == DEFAULT_LABELS_SHA256
    rng = np.random.default_rng([0, 5])   # the race cues of many faces: a small change to their drawing shows up
    colours = np.array([face_colours(int(age), int(race), rng) for age, _gender, race in labels], "int64")
    assert hashlib.sha256(colours.tobytes()).hexdigest() == DEFAULT_COLOURS_SHA256


def test_the_balanced_profile_balances_races_genders_and_ages():
    from faceattr.labels import AGE_MIN

    age, gender, race = sample_labels(20000, seed=0, profile="balanced").T
    assert np.abs(np.bincount(race, minlength=5) / len(race) - 0.2).max() < 0.015
    assert abs((gender == 0).mean() - 0.5) < 0.015
    assert age.min() == AGE_MIN and age.max() == AGE_MAX
    per_year = np.bincount(age, minlength=AGE_MAX + 1)[AGE_MIN:]   # uniform: about 172 faces at each age
    assert per_year.min() > 0.7 * per_year.mean() and per_year.max() < 1.3 * per_year.mean()


def test_only_the_default_profile_draws_two_races_with_near_equal_skin_tones():
    from faceattr.sample import SKIN_SPREAD, skin_tone_confusion

    for profile, near in (("utkface", True), ("balanced", False)):
        confusion = skin_tone_confusion(profile, count=4000).to_numpy()
        mistaken = confusion - np.diag(np.diag(confusion))
        assert np.allclose(confusion.sum(axis=1), 1)
        # borrowed tones alone put about 4% of a race off the diagonal in each column; near tones add far more
        assert (mistaken.max() > 0.15) == near, profile
        assert (confusion[0, 2] > 0.15 and confusion[2, 0] > 0.15) == near, profile   # white and asian
    from faceattr.sample import PROFILES

    tones = np.array(PROFILES["balanced"].skin_tones, float)
    distances = np.linalg.norm(tones[:, None] - tones[None], axis=2)
    assert distances[np.triu_indices(5, 1)].min() > 4 * SKIN_SPREAD


def test_a_typical_face_has_its_profiles_exact_skin_tone_and_no_noise():
    from faceattr.sample import IMAGE_PIXELS, PROFILES, typical_face

    for profile in PROFILES:
        for race in range(5):
            pixels = np.asarray(typical_face(30, 1, race, profile))
            centre = pixels[IMAGE_PIXELS // 2 + 8, IMAGE_PIXELS // 2]   # the face's centre: skin
            assert tuple(centre) == PROFILES[profile].skin_tones[race], (profile, race)
            assert tuple(pixels[0, 0]) == (140, 140, 140)   # the background at its middle grey, no pixel noise


def test_a_sample_remembers_its_profile_and_is_rebuilt_for_another(tmp_path):
    from faceattr.sample import sample_profile

    folder = ensure_sample(tmp_path / "sample", count=12, seed=0, profile="balanced")
    assert sample_profile(folder) == "balanced"
    assert sample_profile(tmp_path) is None
    ensure_sample(folder, count=12, seed=0)   # the default profile: stale, rebuilt
    assert sample_profile(folder) == "utkface"
    assert (folder / "SYNTHETIC.txt").read_text().splitlines()[0] == "faceattr synthetic sample v2: count=12 seed=0"


def test_faceattr_sample_draws_the_profile_asked_for(tmp_path, capsys):
    from faceattr.cli import main
    from faceattr.data import scan

    assert main(["sample", str(tmp_path / "faces"), "--n", "40", "--profile", "balanced"]) == 0
    assert "profile balanced" in capsys.readouterr().out
    frame = scan(tmp_path / "faces").frame
    expected = sample_labels(40, seed=0, profile="balanced")
    expected[2] = (55, 0, 0)   # the planted missing-dot name's labels
    assert sorted(map(tuple, frame[["age", "gender", "race"]].to_numpy())) == sorted(map(tuple, expected.tolist()))


def test_an_unknown_profile_is_one_line_that_names_the_choices(tmp_path, capsys):
    from faceattr.cli import main

    assert main(["sample", str(tmp_path / "faces"), "--profile", "uniform"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "'uniform'" in error and "utkface" in error and "balanced" in error
    assert not (tmp_path / "faces").exists()


def test_the_cue_figure_shows_a_typical_face_per_race_and_age_band():
    import matplotlib.pyplot as plt

    from faceattr.labels import AGE_BAND_NAMES, RACE_NAMES
    from faceattr.plots import band_ages, sample_cues
    from faceattr.sample import typical_face

    figure = sample_cues("balanced", gender=0)
    try:
        assert len(figure.axes) == len(RACE_NAMES) * len(AGE_BAND_NAMES)
        ages = band_ages()
        assert [age for age in ages] == sorted(ages) and all(str(age) in axis.get_title()
                                                            for age, axis in zip(ages, figure.axes))
        shown = figure.axes[len(AGE_BAND_NAMES) + 3].get_images()[0].get_array()   # black, 4th band
        assert np.array_equal(np.asarray(shown), np.asarray(typical_face(ages[3], 0, 1, "balanced")))
    finally:
        plt.close(figure)


def test_the_data_sheet_names_a_cue_for_every_label_from_the_drawings_constants():
    from faceattr.labels import HEAD_NAMES
    from faceattr.sample import BEARD_MIN_AGE, TONE_BORROWING, drawing_recipe

    recipe = drawing_recipe("balanced")
    assert {label for label, _cue in recipe} == set(HEAD_NAMES)
    assert f"{TONE_BORROWING:.0%}" in recipe[("race", "skin tone")]
    assert f"aged {BEARD_MIN_AGE} or more" in recipe[("gender", "beard")]


def test_the_worst_race_is_read_against_how_the_sample_draws_it(tmp_path):
    """On the default profile asian and white skin tones are near-equal: a weak asian score reads the drawing when the
    model makes the drawing's mistake. Black has a tone of its own; on the balanced profile every race does; real
    photos have no drawing at all."""
    import pandas as pd

    default = write_sample(tmp_path / "default", count=20)
    balanced = write_sample(tmp_path / "balanced", count=20, profile="balanced")
    asian, white, black = (RACE_NAMES.index(name) for name in ("asian", "white", "black"))
    assert "for white" in race_drawing_note(default, "asian female") and "hypothesis" in race_drawing_note(default, "asian")
    as_drawn = pd.DataFrame({"race": [asian] * 4, "pred_race": [asian, white, white, asian]})
    assert "The model makes the same mistake most: it takes 50% of the asian test faces for white" in \
        race_drawing_note(default, "asian", predictions=as_drawn)
    elsewhere = pd.DataFrame({"race": [asian] * 4, "pred_race": [asian, black, black, white]})
    assert "25% of the asian test faces for white but 50% for black" in \
        race_drawing_note(default, "asian", predictions=elsewhere)
    assert "look elsewhere" in race_drawing_note(default, "black male")
    assert "look elsewhere" in race_drawing_note(balanced, "asian")
    assert "real photos" in race_drawing_note(tmp_path, "asian")
