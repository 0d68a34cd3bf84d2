"""The embedded synthetic sample: cartoon faces named in UTKFace format, for offline runs."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from faceattr.errors import DataError
from faceattr.files import current_umask, locked
from faceattr.labels import AGE_MAX, RACE_NAMES

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


def sample_labels(count: int, seed: int) -> np.ndarray:
    """Draw `count` (age, gender, race) rows with UTKFace-like frequencies."""
    rng = np.random.default_rng([seed, 1])
    race = rng.choice(len(RACE_NAMES), size=count, p=RACE_COUNTS / RACE_COUNTS.sum())
    gender = (rng.random(count) > MALE_SHARE).astype(int)
    weights = np.array([component[0] for component in AGE_MIXTURE])
    component = rng.choice(len(AGE_MIXTURE), size=count, p=weights / weights.sum())
    age = np.empty(count, dtype=int)
    for position, (_weight, low, high, mode) in enumerate(AGE_MIXTURE):
        chosen = component == position
        age[chosen] = np.rint(rng.triangular(low, mode, high, size=chosen.sum()))
    return np.stack([np.clip(age, 1, AGE_MAX), gender, race], axis=1)


def jitter(rng: np.random.Generator, colour: np.ndarray, spread: float) -> tuple[int, int, int]:
    """Add Gaussian noise to an RGB colour and clip it to 0..255."""
    return tuple(int(c) for c in np.clip(colour + rng.normal(0, spread, 3), 0, 255))


def face_colours(age: int, race: int, rng: np.random.Generator) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """The skin and hair colours of one face: the only cues to its race label (benchmarks/ceiling.py)."""
    # Label noise: one face in five borrows another group's skin tone.
    tone_race = race if rng.random() > 0.2 else rng.integers(len(RACE_NAMES))
    skin = jitter(rng, SKIN_TONES[tone_race], 14)
    greying = np.clip((age - 25) / 55 + rng.normal(0, 0.12), 0, 1)  # hair greys steadily from ~25
    hair = jitter(rng, (1 - greying) * HAIR_COLOURS[race] + greying * np.array([200, 200, 200]), 10)
    return skin, hair


def draw_face(age: int, gender: int, race: int, rng: np.random.Generator) -> Image.Image:
    """Draw one cartoon face whose look depends, noisily, on its labels."""
    size = IMAGE_PIXELS
    image = Image.new("RGB", (size, size), jitter(rng, rng.uniform(60, 220, 3), 0))
    draw = ImageDraw.Draw(image)
    skin, hair = face_colours(age, race, rng)
    growth = min(age, 18) / 18  # heads grow and eyes shrink (relatively) until adulthood
    long_hair = rng.random() < (0.8 if gender == 1 else 0.15)
    centre_x = size / 2 + rng.normal(0, 5)
    centre_y = size / 2 + 8 + rng.normal(0, 5)
    half_width = 50 + 12 * growth + (0 if gender == 1 else 6) + rng.normal(0, 3)
    half_height = 60 + 18 * growth + rng.normal(0, 3)
    if long_hair:
        draw.rectangle([centre_x - half_width - 12, centre_y - half_height * 0.6,
                        centre_x + half_width + 12, centre_y + half_height * 0.9], fill=hair)
    draw.ellipse([centre_x - half_width - 6, centre_y - half_height - 12,
                  centre_x + half_width + 6, centre_y + half_height * 0.3], fill=hair)
    draw.ellipse([centre_x - half_width, centre_y - half_height * 0.8,
                  centre_x + half_width, centre_y + half_height], fill=skin)
    eye_radius = 10 - 4 * growth + rng.normal(0, 0.7)
    eye_y = centre_y - half_height * (0.05 + 0.1 * growth)
    for side in (-1, 1):
        eye_x = centre_x + side * half_width * 0.42
        draw.ellipse([eye_x - eye_radius * 1.5, eye_y - eye_radius, eye_x + eye_radius * 1.5,
                      eye_y + eye_radius], fill=(245, 245, 245))
        draw.ellipse([eye_x - eye_radius * 0.6, eye_y - eye_radius * 0.6, eye_x + eye_radius * 0.6,
                      eye_y + eye_radius * 0.6], fill=(40, 30, 25))
    wrinkles = int(np.clip((age - 28) / 9 + rng.normal(0, 0.8), 0, 7))
    for line in range(wrinkles):
        y = centre_y - half_height * 0.6 + line * 5
        draw.line([centre_x - half_width * 0.45, y, centre_x + half_width * 0.45, y], fill=(80, 55, 45), width=2)
    mouth_y = centre_y + half_height * 0.5
    lips = (185, 50, 70) if gender == 1 and rng.random() < 0.7 else (150, 80, 70)
    draw.chord([centre_x - 18, mouth_y - 8, centre_x + 18, mouth_y + 8], 0, 180, fill=lips)
    if gender == 0 and age >= 16 and rng.random() < 0.35:
        draw.chord([centre_x - half_width * 0.7, mouth_y - 10, centre_x + half_width * 0.7,
                    centre_y + half_height + 4], 0, 180, fill=hair)
    pixels = np.asarray(image, dtype=np.int16) + rng.normal(0, 6, (size, size, 3)).astype(np.int16)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def sample_file_name(age: int, gender: int, race: int, index: int) -> str:
    """Build a UTKFace-style name; the timestamp encodes the index so names are unique."""
    return f"{age}_{gender}_{race}_2017{index:013d}.jpg.chip.jpg"


def write_sample(out_dir: str | Path, count: int = SAMPLE_SIZE, seed: int = SAMPLE_SEED) -> Path:
    """Write `count` synthetic faces plus the planted quirks into `out_dir`; return it."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels = sample_labels(count, seed)
    for index, (age, gender, race) in enumerate(labels):
        image = draw_face(int(age), int(gender), int(race), np.random.default_rng([seed, 2, index]))
        name = sample_file_name(age, gender, race, index)
        if index == 0:
            image = image.convert("L")  # a grayscale face: valid, converted to RGB later
        if index == 1:
            name = name.replace(".jpg.chip.jpg", ".png")
            image = image.convert("RGBA")  # a PNG with alpha: valid too
        if index == 2:
            name = MISSING_DOT_NAME  # the real release's missing-dot name, labels 55/male/white
            image = draw_face(55, 0, 0, np.random.default_rng([seed, 2, index]))
        image.save(out / name, quality=90)
    quirk_rng = np.random.default_rng([seed, 3])
    for name, kind in PLANTED_BAD_NAMES.items():
        path = out / name
        if kind == "image":
            draw_face(40, 1, 0, quirk_rng).save(path, format="JPEG", quality=90)
        elif kind == "empty":
            path.write_bytes(b"")
        elif kind == "truncated":
            draw_face(30, 1, 2, quirk_rng).save(path, format="JPEG", quality=90)
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
        else:
            path.write_bytes(b"\x00" * 64)
    (out / MARKER).write_text(
        f"faceattr synthetic sample v{SAMPLE_VERSION}: count={count} seed={seed}\n"
        "These cartoon faces are SYNTHETIC. Results on them say nothing about real faces.\n")
    return out


SAMPLE_FILE = re.compile(r"\d+_\d_\d_2017\d{13}\.(jpg\.chip\.jpg|png)")


def is_sample_file(name: str) -> bool:
    """True for a name that `write_sample` writes (faces, planted quirks, the marker)."""
    return bool(SAMPLE_FILE.fullmatch(name)) or name in PLANTED_BAD_NAMES or name in (MISSING_DOT_NAME, MARKER)


def ensure_sample(out_dir: str | Path, count: int = SAMPLE_SIZE, seed: int = SAMPLE_SEED) -> Path:
    """Return `out_dir`, building the sample there first if it is missing or stale.

    The folder is built beside `out_dir` and renamed into place under a lock, with the user's umask for its
    permissions (a shared class sample stays readable). A folder holding anything but the kit's own sample files
    is refused, never deleted."""
    out = Path(out_dir)
    expected = f"faceattr synthetic sample v{SAMPLE_VERSION}: count={count} seed={seed}"
    marker = out / MARKER
    out.parent.mkdir(parents=True, exist_ok=True)
    with locked(out.parent / f".{out.name}.lock"):  # a second process waits, then finds the sample ready
        if marker.exists() and marker.read_text().startswith(expected):
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
            write_sample(staging, count, seed)
            shutil.rmtree(out, ignore_errors=True)
            staging.rename(out)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return out
