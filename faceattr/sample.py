"""The embedded synthetic sample: cartoon faces named in UTKFace format, for offline runs."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from faceattr.defaults import check_choice
from faceattr.errors import DataError
from faceattr.files import current_umask, locked
from faceattr.labels import AGE_MAX, AGE_MIN, GENDER_NAMES, RACE_NAMES

SAMPLE_SIZE = 2000
SAMPLE_SEED = 0
SAMPLE_VERSION = "2"  # bump when the drawing changes, so stale samples are rebuilt
IMAGE_PIXELS = 200
MARKER = "SYNTHETIC.txt"

# UTKFace's race counts (white, black, asian, indian, others) out of 23,708 images.
RACE_COUNTS = np.array([10078, 4528, 3434, 3976, 1692])
MALE_SHARE = 0.52
# Age mixture: (weight, low, high, mode) triangular components; most mass at 20-35, a tail past 100.
AGE_MIXTURE = [(0.10, 1, 9, 1), (0.08, 10, 19, 17), (0.50, 20, 40, 27), (0.22, 40, 65, 45),
               (0.095, 65, 100, 70), (0.005, 100, AGE_MAX, 101)]
SKIN_TONES = np.array([[232, 198, 178], [105, 72, 52], [236, 204, 158], [168, 118, 86], [196, 156, 124]])
HAIR_COLOURS = np.array([[60, 40, 25], [20, 18, 16], [25, 22, 20], [30, 25, 22], [90, 60, 35]])

# The drawing's cues, one constant each (the data sheet in notebook 02 reads them).
TONE_BORROWING = 0.2   # label noise: this share of faces gets a random race's skin tone (their own race included)
SKIN_SPREAD = 14       # sd of the per-channel noise on a face's skin tone
GREY_HAIR = np.array([200, 200, 200])
GREYING_START, GREYING_SPAN = 25, 55      # hair greys linearly from 25, fully grey 55 years later
WRINKLE_START, WRINKLE_YEARS, MAX_WRINKLES = 28, 9, 7   # one forehead line per 9 years past 28, at most 7
GROWTH_YEARS = 18      # heads grow and eyes shrink (relatively) until this age
LONG_HAIR_SHARE = (0.15, 0.8)   # per gender code (male, female)
RED_LIPS_SHARE = 0.7   # of female faces; every other face gets plain lips
BEARD_SHARE, BEARD_MIN_AGE = 0.35, 16   # of male faces this old or older
WIDER_MALE_FACE = 6    # pixels added to a male face's half-width


@dataclass(frozen=True)
class Profile:
    """How a synthetic sample draws its labels, and the colours that carry race (one row per race)."""

    summary: str
    race_shares: tuple[float, ...]
    male_share: float
    age_mixture: tuple[tuple[float, int, int, int], ...] | None   # triangular components; None: uniform ages
    skin_tones: tuple[tuple[int, int, int], ...]
    hair_colours: tuple[tuple[int, int, int], ...]


PROFILES: dict[str, Profile] = {
    "utkface": Profile(
        summary="UTKFace's race, gender and age frequencies; white and asian skin tones nearly equal",
        race_shares=tuple(RACE_COUNTS / RACE_COUNTS.sum()), male_share=MALE_SHARE, age_mixture=tuple(AGE_MIXTURE),
        skin_tones=tuple(map(tuple, SKIN_TONES.tolist())), hair_colours=tuple(map(tuple, HAIR_COLOURS.tolist()))),
    "balanced": Profile(
        summary=f"equal races and genders, ages uniform over {AGE_MIN} to {AGE_MAX}, a distinct skin tone per race",
        race_shares=(0.2,) * len(RACE_NAMES), male_share=0.5, age_mixture=None,
        skin_tones=((240, 206, 188), (96, 62, 44), (214, 178, 106), (160, 108, 72), (188, 136, 150)),
        hair_colours=tuple(map(tuple, HAIR_COLOURS.tolist()))),
}
DEFAULT_PROFILE = "utkface"   # the sample the stored notebook outputs were made from: keep its files unchanged

# Broken and odd files from the real UTKFace release, planted so the cleaning lesson has material.
PLANTED_BAD_NAMES = {
    "39_1_20170116174525125.jpg.chip.jpg": "image",    # no race field
    "61_1_20170109142408075.jpg.chip.jpg": "image",    # no race field
    "61_1_20170109150557335.jpg.chip.jpg": "image",    # no race field
    "61_3_0_20170109150557336.jpg.chip.jpg": "image",  # gender code 3 out of range
    "53__0_20170119180131045.jpg.chip.jpg": "image",   # empty gender field
    "25_0_1_20170117000000001.jpg.chip.jpg": "empty",  # zero bytes
    "30_1_2_20170117000000002.jpg.chip.jpg": "truncated",
    "Thumbs.db": "junk",                               # not an image
}
MISSING_DOT_NAME = "55_0_0_20170116232725357jpg.chip.jpg"  # labels valid: keep it


def profile_named(name: str) -> Profile:
    """The profile called `name`, or an error that names the choices."""
    return PROFILES[check_choice("sample profile", name, tuple(PROFILES))]


def sample_labels(count: int, seed: int, profile: str = DEFAULT_PROFILE) -> np.ndarray:
    """Draw `count` (age, gender, race) rows with the profile's frequencies (default: UTKFace-like)."""
    chosen_profile = profile_named(profile)
    rng = np.random.default_rng([seed, 1])
    race = rng.choice(len(RACE_NAMES), size=count, p=np.array(chosen_profile.race_shares))
    gender = (rng.random(count) > chosen_profile.male_share).astype(int)
    if chosen_profile.age_mixture is None:
        age = rng.integers(AGE_MIN, AGE_MAX + 1, size=count)
    else:
        weights = np.array([component[0] for component in chosen_profile.age_mixture])
        component = rng.choice(len(chosen_profile.age_mixture), size=count, p=weights / weights.sum())
        age = np.empty(count, dtype=int)
        for position, (_weight, low, high, mode) in enumerate(chosen_profile.age_mixture):
            chosen = component == position
            age[chosen] = np.rint(rng.triangular(low, mode, high, size=chosen.sum()))
    return np.stack([np.clip(age, AGE_MIN, AGE_MAX), gender, race], axis=1)


def jitter(rng: np.random.Generator, colour: np.ndarray, spread: float) -> tuple[int, int, int]:
    """Add Gaussian noise to an RGB colour and clip it to 0..255."""
    return tuple(int(c) for c in np.clip(colour + rng.normal(0, spread, 3), 0, 255))


def greying_trend(age: float) -> float:
    """The share of grey in a face's hair at `age`, before noise and clipping to 0..1."""
    return (age - GREYING_START) / GREYING_SPAN


def wrinkle_trend(age: float) -> float:
    """The number of forehead lines at `age`, before noise, rounding down and clipping to 0..MAX_WRINKLES."""
    return (age - WRINKLE_START) / WRINKLE_YEARS


def growth(age: float) -> float:
    """How grown a face is at `age`: 0 at birth, 1 from GROWTH_YEARS on (bigger head, relatively smaller eyes)."""
    return min(age, GROWTH_YEARS) / GROWTH_YEARS


def face_colours(age: int, race: int, rng: np.random.Generator,
                 profile: str = DEFAULT_PROFILE) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """The skin and hair colours of one face: the only cues to its race label (benchmarks/ceiling.py)."""
    chosen_profile = profile_named(profile)
    # Label noise: some faces borrow a random group's skin tone.
    tone_race = race if rng.random() > TONE_BORROWING else rng.integers(len(RACE_NAMES))
    skin = jitter(rng, np.array(chosen_profile.skin_tones[tone_race]), SKIN_SPREAD)
    greying = np.clip(greying_trend(age) + rng.normal(0, 0.12), 0, 1)
    hair = jitter(rng, (1 - greying) * np.array(chosen_profile.hair_colours[race]) + greying * GREY_HAIR, 10)
    return skin, hair


class TypicalDraws:
    """Stands in for a numpy Generator in `draw_face`: every draw takes its likeliest value (noise is 0, a coin
    flip lands on its likelier side, a uniform draw at its middle), so the face drawn is its labels' typical face."""

    def random(self) -> float:
        """A coin flip's draw: 0.5 lands on whichever side has probability over one half."""
        return 0.5

    def normal(self, loc: float = 0.0, scale: float = 1.0, size: int | tuple | None = None) -> float | np.ndarray:
        """The normal's mode, `loc`."""
        return loc if size is None else np.full(size, loc, dtype=float)

    def uniform(self, low: float = 0.0, high: float = 1.0, size: int | tuple | None = None) -> float | np.ndarray:
        """The middle of the interval."""
        return (low + high) / 2 if size is None else np.full(size, (low + high) / 2, dtype=float)


def draw_face(age: int, gender: int, race: int, rng: np.random.Generator | TypicalDraws,
              profile: str = DEFAULT_PROFILE) -> Image.Image:
    """Draw one cartoon face whose look depends, noisily, on its labels."""
    size = IMAGE_PIXELS
    image = Image.new("RGB", (size, size), jitter(rng, rng.uniform(60, 220, 3), 0))
    draw = ImageDraw.Draw(image)
    skin, hair = face_colours(age, race, rng, profile)
    grown = growth(age)
    long_hair = rng.random() < LONG_HAIR_SHARE[gender]
    centre_x = size / 2 + rng.normal(0, 5)
    centre_y = size / 2 + 8 + rng.normal(0, 5)
    half_width = 50 + 12 * grown + (0 if gender == 1 else WIDER_MALE_FACE) + rng.normal(0, 3)
    half_height = 60 + 18 * grown + rng.normal(0, 3)
    if long_hair:
        draw.rectangle([centre_x - half_width - 12, centre_y - half_height * 0.6,
                        centre_x + half_width + 12, centre_y + half_height * 0.9], fill=hair)
    draw.ellipse([centre_x - half_width - 6, centre_y - half_height - 12,
                  centre_x + half_width + 6, centre_y + half_height * 0.3], fill=hair)
    draw.ellipse([centre_x - half_width, centre_y - half_height * 0.8,
                  centre_x + half_width, centre_y + half_height], fill=skin)
    eye_radius = 10 - 4 * grown + rng.normal(0, 0.7)
    eye_y = centre_y - half_height * (0.05 + 0.1 * grown)
    for side in (-1, 1):
        eye_x = centre_x + side * half_width * 0.42
        draw.ellipse([eye_x - eye_radius * 1.5, eye_y - eye_radius, eye_x + eye_radius * 1.5,
                      eye_y + eye_radius], fill=(245, 245, 245))
        draw.ellipse([eye_x - eye_radius * 0.6, eye_y - eye_radius * 0.6, eye_x + eye_radius * 0.6,
                      eye_y + eye_radius * 0.6], fill=(40, 30, 25))
    wrinkles = int(np.clip(wrinkle_trend(age) + rng.normal(0, 0.8), 0, MAX_WRINKLES))
    for line in range(wrinkles):
        y = centre_y - half_height * 0.6 + line * 5
        draw.line([centre_x - half_width * 0.45, y, centre_x + half_width * 0.45, y], fill=(80, 55, 45), width=2)
    mouth_y = centre_y + half_height * 0.5
    lips = (185, 50, 70) if gender == 1 and rng.random() < RED_LIPS_SHARE else (150, 80, 70)
    draw.chord([centre_x - 18, mouth_y - 8, centre_x + 18, mouth_y + 8], 0, 180, fill=lips)
    if gender == 0 and age >= BEARD_MIN_AGE and rng.random() < BEARD_SHARE:
        draw.chord([centre_x - half_width * 0.7, mouth_y - 10, centre_x + half_width * 0.7,
                    centre_y + half_height + 4], 0, 180, fill=hair)
    pixels = np.asarray(image, dtype=np.int16) + rng.normal(0, 6, (size, size, 3)).astype(np.int16)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def sample_file_name(age: int, gender: int, race: int, index: int) -> str:
    """Build a UTKFace-style name; the timestamp encodes the index so names are unique."""
    return f"{age}_{gender}_{race}_2017{index:013d}.jpg.chip.jpg"


def typical_face(age: int, gender: int, race: int, profile: str = DEFAULT_PROFILE) -> Image.Image:
    """The face `draw_face` draws for these labels when every draw takes its likeliest value."""
    return draw_face(age, gender, race, TypicalDraws(), profile)


def drawing_recipe(profile: str = DEFAULT_PROFILE) -> dict[tuple[str, str], str]:
    """The data sheet: {(label, cue): how it is drawn}, read from this module's constants (the profile's
    frequencies are its `summary`)."""
    profile_named(profile)
    male, female = GENDER_NAMES
    rows = [
        ("race", "skin tone", f"one tone per race, noise sd {SKIN_SPREAD} per RGB channel; {TONE_BORROWING:.0%} of "
                              "faces get a random race's tone instead"),
        ("race", "hair colour", "one colour per race, greying with age"),
        ("gender", "long hair", f"{LONG_HAIR_SHARE[1]:.0%} of {female} faces, {LONG_HAIR_SHARE[0]:.0%} of {male}"),
        ("gender", "red lips", f"{RED_LIPS_SHARE:.0%} of {female} faces"),
        ("gender", "beard", f"{BEARD_SHARE:.0%} of {male} faces aged {BEARD_MIN_AGE} or more"),
        ("gender", "face width", f"{male} faces {WIDER_MALE_FACE} px wider (of {IMAGE_PIXELS})"),
        ("age", "head and eye size", f"the head grows and the eyes shrink (relatively) until {GROWTH_YEARS}"),
        ("age", "grey hair", f"from {GREYING_START}, fully grey at {GREYING_START + GREYING_SPAN}"),
        ("age", "forehead lines", f"one per {WRINKLE_YEARS} years past {WRINKLE_START}, at most {MAX_WRINKLES}"),
    ]
    return {(label, cue): how for label, cue, how in rows}


def skin_tone_confusion(profile: str = DEFAULT_PROFILE, count: int = 10_000, seed: int = SAMPLE_SEED) -> pd.DataFrame:
    """How often a reader that sees only skin colour (the nearest of the profile's tones) takes each race (row)
    for each race (column), over `count` faces drawn as the sample draws them; each row sums to 1."""
    tones = np.array(profile_named(profile).skin_tones, dtype=float)
    labels = sample_labels(count, seed, profile)
    rng = np.random.default_rng([seed, 4])
    skins = np.array([face_colours(int(age), int(race), rng, profile)[0] for age, _gender, race in labels], float)
    nearest = np.argmin(((skins[:, None, :] - tones[None, :, :]) ** 2).sum(axis=2), axis=1)
    counts = np.zeros((len(RACE_NAMES), len(RACE_NAMES)))
    np.add.at(counts, (labels[:, 2], nearest), 1)
    shares = counts / counts.sum(axis=1, keepdims=True)
    return pd.DataFrame(shares, index=pd.Index(RACE_NAMES, name="race"),
                        columns=pd.Index(RACE_NAMES, name="read as"))


def marker_line(count: int, seed: int, profile: str = DEFAULT_PROFILE) -> str:
    """The first line of a sample's marker file: what was drawn, so a stale sample is rebuilt."""
    return (f"faceattr synthetic sample v{SAMPLE_VERSION}: count={count} seed={seed}"
            + ("" if profile == DEFAULT_PROFILE else f" profile={profile}"))


def write_sample(out_dir: str | Path, count: int = SAMPLE_SIZE, seed: int = SAMPLE_SEED,
                 profile: str = DEFAULT_PROFILE) -> Path:
    """Write `count` synthetic faces, drawn with `profile`, plus the planted quirks into `out_dir`; return it."""
    out = Path(out_dir)
    labels = sample_labels(count, seed, profile)  # checks the profile before anything is written
    out.mkdir(parents=True, exist_ok=True)
    for index, (age, gender, race) in enumerate(labels):
        image = draw_face(int(age), int(gender), int(race), np.random.default_rng([seed, 2, index]), profile)
        name = sample_file_name(age, gender, race, index)
        if index == 0:
            image = image.convert("L")  # a grayscale face: valid, converted to RGB later
        if index == 1:
            name = name.replace(".jpg.chip.jpg", ".png")
            image = image.convert("RGBA")  # a PNG with alpha: valid too
        if index == 2:
            name = MISSING_DOT_NAME  # the real release's missing-dot name, labels 55/male/white
            image = draw_face(55, 0, 0, np.random.default_rng([seed, 2, index]), profile)
        image.save(out / name, quality=90)
    quirk_rng = np.random.default_rng([seed, 3])
    for name, kind in PLANTED_BAD_NAMES.items():
        path = out / name
        if kind == "image":
            draw_face(40, 1, 0, quirk_rng, profile).save(path, format="JPEG", quality=90)
        elif kind == "empty":
            path.write_bytes(b"")
        elif kind == "truncated":
            draw_face(30, 1, 2, quirk_rng, profile).save(path, format="JPEG", quality=90)
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
        else:
            path.write_bytes(b"\x00" * 64)
    (out / MARKER).write_text(
        f"{marker_line(count, seed, profile)}\n"
        "These cartoon faces are SYNTHETIC. Results on them say nothing about real faces.\n")
    return out


def sample_profile(folder: str | Path) -> str | None:
    """The profile a synthetic sample in `folder` was drawn with, or None when `folder` is not one."""
    marker = Path(folder) / MARKER
    if not marker.is_file():
        return None
    found = re.search(r" profile=(\S+)", marker.read_text().split("\n", 1)[0])
    return found.group(1) if found else DEFAULT_PROFILE


def race_drawing_note(folder: str | Path, group: str, seed: int = SAMPLE_SEED,
                      predictions: pd.DataFrame | None = None) -> str:
    """Where a weak score for `group` (a race name, or a group naming one, e.g. "asian female") may come from on the
    data in `folder`, as notebook 02's data sheet reads it: on a synthetic sample, whether skin colour alone already
    mixes that race up with another (the sample draws race as a skin tone and a hair colour) and, given the model's
    `predictions` (race and pred_race columns), whether the model makes the same mistake; on real photos, that no
    recipe drew them."""
    race = next((word for word in group.split() if word in RACE_NAMES), None)
    profile = sample_profile(folder)
    if profile is None or race is None:
        return ("These are real photos, not the kit's drawing (notebook 02, section 5): the race labels are "
                f"annotators' judgements, and a weak {group} score can come from the data, the labels or the model")
    row = skin_tone_confusion(profile, seed=seed).loc[race]
    others = row.drop(race)
    drawn = (f"Notebook 02's data sheet (section 5) shows how this sample draws race: as a skin tone and a hair "
             f"colour. Skin colour alone reads {row[race]:.0%} of {race} faces right")
    if others.max() <= 2 * TONE_BORROWING / len(RACE_NAMES):   # no more than borrowed tones give: notebook 02's rule
        return (f"{drawn} and takes at most {others.max():.0%} of them for any other race, so skin colour does not "
                f"make {race} faces harder to tell apart than the others; look elsewhere for a weak {race} score (the "
                "groups' sizes, the budget, chance)")
    drawn += f" and takes {others.max():.0%} of them for {others.idxmax()}"
    if predictions is None:
        return (f"{drawn}: expect a weak {race} score to come from how the kit draws the faces, not from anything "
                f"about people (a hypothesis until the model is seen taking {race} faces for {others.idxmax()})")
    said = predictions.loc[predictions["race"] == RACE_NAMES.index(race), "pred_race"].map(dict(enumerate(RACE_NAMES)))
    shares = said[said != race].value_counts() / len(said)   # the model's mistakes, as shares of this race's faces
    confused = others.idxmax()
    if shares.empty:
        return f"{drawn}, yet the model gets every {race} test face right"
    elsewhere = shares.drop(confused, errors="ignore")
    if elsewhere.empty or shares.get(confused, 0.0) >= elsewhere.max():
        return (f"{drawn}. The model makes the same mistake most: it takes {shares.get(confused, 0.0):.0%} of the "
                f"{race} test faces for {confused}, so a weak {race} score here comes mostly from how the kit draws "
                "the faces, not from anything about people")
    return (f"{drawn}. The model takes {shares.get(confused, 0.0):.0%} of the {race} test faces for {confused} but "
            f"{elsewhere.max():.0%} for {elsewhere.idxmax()}, which the drawing does not confuse with {race}: the "
            "drawing explains part of its mistakes at most")


SAMPLE_FILE = re.compile(r"\d+_\d_\d_2017\d{13}\.(jpg\.chip\.jpg|png)")


def is_sample_file(name: str) -> bool:
    """True for a name that `write_sample` writes (faces, planted quirks, the marker)."""
    return bool(SAMPLE_FILE.fullmatch(name)) or name in PLANTED_BAD_NAMES or name in (MISSING_DOT_NAME, MARKER)


def ensure_sample(out_dir: str | Path, count: int = SAMPLE_SIZE, seed: int = SAMPLE_SEED,
                  profile: str = DEFAULT_PROFILE) -> Path:
    """Return `out_dir`, building the sample there first if it is missing or stale.

    The folder is built beside `out_dir` and renamed into place under a lock, with the user's umask for its
    permissions (a shared class sample stays readable). A folder holding anything but the kit's own sample files
    is refused, never deleted."""
    out = Path(out_dir)
    profile_named(profile)  # an unknown profile fails before anything is touched
    expected = marker_line(count, seed, profile)
    marker = out / MARKER
    out.parent.mkdir(parents=True, exist_ok=True)
    with locked(out.parent / f".{out.name}.lock"):  # a second process waits, then finds the sample ready
        if marker.exists() and marker.read_text().split("\n", 1)[0] == expected:
            return out
        if out.exists():
            foreign = [path.name for path in out.iterdir() if not is_sample_file(path.name)] if out.is_dir() \
                else [out.name]
            if foreign:
                raise DataError(f"{out} holds files that are not the kit's synthetic sample (first: {foreign[0]}); "
                                "choose an empty or new folder for the sample.")
        staging = Path(tempfile.mkdtemp(prefix=".sample-", dir=out.parent))
        try:
            os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp makes it private (0700)
            write_sample(staging, count, seed, profile)
            shutil.rmtree(out, ignore_errors=True)
            staging.rename(out)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return out
