"""The UTKFace label vocabulary: the one place it is defined."""

from __future__ import annotations

GENDER_NAMES: tuple[str, ...] = ("male", "female")
RACE_NAMES: tuple[str, ...] = ("white", "black", "asian", "indian", "others")
HEAD_NAMES: tuple[str, ...] = ("age", "gender", "race")  # the model's outputs
AGE_MIN: int = 1
AGE_MAX: int = 116

# Age bands used for stratifying splits and for the age-band metrics.
AGE_BAND_EDGES: tuple[int, ...] = (0, 3, 10, 20, 30, 40, 50, 60, 70)
AGE_BAND_NAMES: tuple[str, ...] = (
    "0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+",
)


def age_band(age: float) -> str:
    """Return the name of the age band that `age` (in years) falls into."""
    index = 0
    for position, edge in enumerate(AGE_BAND_EDGES):
        if age >= edge:
            index = position
    return AGE_BAND_NAMES[index]


def age_band_index(age: float) -> int:
    """Return the position of `age`'s band in AGE_BAND_NAMES."""
    return AGE_BAND_NAMES.index(age_band(age))
