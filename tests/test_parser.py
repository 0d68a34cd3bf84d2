"""The filename parser, on real UTKFace names including its malformed ones."""

import pytest

from faceattr.data import parse_filename
from faceattr.labels import AGE_BAND_NAMES, age_band


@pytest.mark.parametrize("name, labels", [
    ("26_0_1_20170116000000000.jpg.chip.jpg", (26, 0, 1)),
    ("1_1_4_20161221193016140.jpg.chip.jpg", (1, 1, 4)),
    ("116_1_0_20170120134921760.jpg.chip.jpg", (116, 1, 0)),
    ("40_0_3_20170119180131045.jpg", (40, 0, 3)),
    ("UTKFace/35_1_2_20170116184028385.jpg.chip.jpg", (35, 1, 2)),
    # The real release's missing-dot name: its labels are valid, so it is kept.
    ("55_0_0_20170116232725357jpg.chip.jpg", (55, 0, 0)),
])
def test_valid_names_give_labels(name, labels):
    parsed = parse_filename(name)
    assert parsed.ok
    assert (parsed.age, parsed.gender, parsed.race) == labels


@pytest.mark.parametrize("name, reason", [
    # The three real files with no race field.
    ("39_1_20170116174525125.jpg.chip.jpg", "missing field"),
    ("61_1_20170109142408075.jpg.chip.jpg", "missing field"),
    ("61_1_20170109150557335.jpg.chip.jpg", "missing field"),
    ("61_3_0_20170109150557335.jpg.chip.jpg", "gender code out of range"),
    ("30_0_5_20170109150557335.jpg.chip.jpg", "race code out of range"),
    ("0_0_1_20170109150557335.jpg.chip.jpg", "age out of range"),
    ("117_0_1_20170109150557335.jpg.chip.jpg", "age out of range"),
    ("53__0_20170119180131045.jpg.chip.jpg", "empty field"),
    ("ab_0_1_20170119180131045.jpg.chip.jpg", "non-numeric field"),
    ("-5_0_1_20170119180131045.jpg.chip.jpg", "non-numeric field"),
    ("Thumbs.db", "not an image file"),
    ("26_0_1_20170116000000000.txt", "not an image file"),
])
def test_malformed_names_give_reasons(name, reason):
    parsed = parse_filename(name)
    assert not parsed.ok
    assert parsed.reason == reason
    assert parsed.age is None


@pytest.mark.parametrize("age, band", [(1, "0-2"), (2, "0-2"), (3, "3-9"), (19, "10-19"),
                                       (20, "20-29"), (69, "60-69"), (70, "70+"), (116, "70+")])
def test_age_bands_edges(age, band):
    assert age_band(age) == band
    assert band in AGE_BAND_NAMES
