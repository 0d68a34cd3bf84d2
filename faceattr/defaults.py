"""Training defaults, the table of architecture recipes, and settings checks, in one TensorFlow-free
place (the CLI checks before importing TF)."""

from __future__ import annotations

import re

from faceattr.errors import SettingsError
from faceattr.labels import HEAD_NAMES

DEFAULT_IMAGE_SIZE = 64
DEFAULT_TRUNK: tuple[int, ...] = (32, 64, 128, 256)
DEFAULT_BATCH_SIZE = 32  # at equal epochs, twice the steps of 64: better on every head in the balance study
DEFAULT_EPOCHS = 10
ADAM_LEARNING_RATE = 1e-3  # Keras's own default for Adam, which the report used
# Adam's default for the kit too: in the balance study's fourth round (docs/balance.md) 2e-3 scored no better on the
# mean val_score and fell behind the report's race accuracy after 5 epochs on the 3,000-image folder
DEFAULT_LEARNING_RATE = ADAM_LEARNING_RATE
DEFAULT_SEED = 42
DEFAULT_PATIENCE = 5  # epochs without a better val_score before early stopping
MIN_IMAGE_SIZE = 32
# Arithmetic precision: "auto" computes in mixed_float16 on a GPU and in mixed_bfloat16 on a CPU with native
# bfloat16 (AVX-512 BF16 or AMX; faster at equal accuracy: docs/performance.md), else float32;
# "float32" always computes in float32. The environment variable PRECISION_VARIABLE overrides the default.
PRECISIONS: tuple[str, ...] = ("auto", "float32")
DEFAULT_PRECISION = "auto"
PRECISION_VARIABLE = "FACEATTR_PRECISION"
MAX_IMAGE_SIZE = 512  # a 512 px batch of 64 already needs several GB; larger sizes only exhaust memory
# Face detection (faceattr.detect): faces smaller than this many pixels (MTCNN's own default minimum) are too small
# to read and are not reported; the confidence floor lies in 0..1.
DEFAULT_MIN_FACE_SIZE = 20

AGE_HEADS: tuple[str, ...] = ("linear", "sigmoid", "expectation")
AGE_LOSSES: tuple[str, ...] = ("huber", "mae", "mse")
LOSS_BALANCES: tuple[str, ...] = ("fixed", "normalised", "uncertainty")
# Mitigation across race x gender groups: none; "sample", each training batch drawn evenly from every group;
# "weight", each image's loss weighted by the inverse of its group's share of the training split.
GROUP_BALANCES: tuple[str, ...] = ("none", "sample", "weight")
REPORT_LOSS_WEIGHTS = {"age": 2.0, "gender": 1.0, "race": 1.5}
EQUAL_LOSS_WEIGHTS = {head: 1.0 for head in HEAD_NAMES}

# One recipe per architecture: its default image size, pixel scaling (-1..1 when centred, else the report's 0..1),
# age head and loss, how the head losses are balanced, and Adam's learning rate. faceattr.recipe.Recipe.named starts
# from these (with the kit's batch size, group balance, augmentation and epochs);
# faceattr.model.BUILDERS holds the matching builders; everything else reads this table.
RECIPES: dict[str, dict] = {
    # measured on validation over 3 seeds: see benchmarks/balance.py and docs/balance.md
    "default": {"image_size": DEFAULT_IMAGE_SIZE, "centre_pixels": True, "age_head": "expectation",
                "age_loss": "huber", "loss_balance": "uncertainty", "loss_weights": None,
                "learning_rate": DEFAULT_LEARNING_RATE},
    "batchnorm": {"image_size": DEFAULT_IMAGE_SIZE, "centre_pixels": True, "age_head": "expectation",
                  "age_loss": "huber", "loss_balance": "uncertainty", "loss_weights": None,
                  "learning_rate": DEFAULT_LEARNING_RATE},
    "original": {"image_size": 198, "centre_pixels": False, "age_head": "sigmoid", "age_loss": "mse",
                 "loss_balance": "fixed", "loss_weights": REPORT_LOSS_WEIGHTS, "learning_rate": ADAM_LEARNING_RATE},
    "mobilenet": {"image_size": 96, "centre_pixels": True,  # its backbone scales pixels to -1..1 itself
                  "age_head": "linear", "age_loss": "huber", "loss_balance": "normalised", "loss_weights": None,
                  "learning_rate": ADAM_LEARNING_RATE},
}
ARCH_NAMES: tuple[str, ...] = tuple(RECIPES)


# A quick first pass (`quick = True` in notebooks 03, 04, 07, 08 and 09; `faceattr run -p quick True`): each knob
# below caps what it names, and every lesson still prints its tables, figures and readings (their numbers mean little
# then, and each notebook says it is a quick pass). On the sample (`faceattr run`, 2 shared cores, quick and default
# alternated, 3 runs each) the whole sequence took 80.1 +- 1.8 s of wall time against 249.0 +- 14.1 s for the
# default: 32% (31 to 34% pair by pair); of CPU time 131 s against 416 s, 32%. What remains is each kernel's start
# (about 6 s of CPU with TensorFlow), each training's fixed cost (tracing, validation and prediction passes, about
# 2 s) and the lessons that train nothing (01, 02, 03, 05, 06: about 25 s).
# - epochs: every epoch count (04's training and probes, 07's experiments, 09's study);
# - image_size: the images of 03's model (so 04 to 07 follow it), 07's candidates and 08's small models;
# - shortcut_epochs: 08's two small models (at 32 px and 2 epochs, one run on the sample still learnt the square:
#   98% of the cue race found with it, 0% without);
# - seeds, resamples: 09's seeds per mitigation, and its bootstrap and permutation resamples;
# - candidates: 07's architectures besides yours (the first of `architectures`);
# - gradient_batches: the training batches 04's gradient pulls are averaged over (4 otherwise);
# - train_images: the training images of 04, 07 and 09's trainings (faceattr.data.training_subset keeps the
#   oldest face, so the age scale stays the split's), which also keeps a quick pass on full UTKFace short.
QUICK_BUDGETS = {"epochs": 1, "image_size": 32, "shortcut_epochs": 2, "seeds": 1, "resamples": 100, "candidates": 1,
                 "gradient_batches": 1, "train_images": 640}


def quick_budget(count: int, quick: bool, kind: str = "epochs") -> int:
    """`count`, or at most QUICK_BUDGETS[kind] for a quick pass (the same when applied twice, as a rerun cell does)."""
    return min(count, QUICK_BUDGETS[kind]) if quick else count


# A student's model (notebook 03's `model_name`) is named like a folder, since notebook 07 trains it into one, and
# unlike any architecture above, since notebook 07 compares it with them by name.
MODEL_NAME_PATTERN = r"[A-Za-z][A-Za-z0-9_-]{0,39}"
DEFAULT_MODEL_NAME = "yours"


def check_model_name(name: str) -> str:
    """Return `name` if it can name a student's model, else raise an error that says what can."""
    if not isinstance(name, str) or not re.fullmatch(MODEL_NAME_PATTERN, name):
        raise SettingsError(f"model_name {name!r} must start with a letter and hold only letters, digits, _ or - "
                            f"(at most 40); {DEFAULT_MODEL_NAME!r} is the default.")
    if name in ARCH_NAMES:
        raise SettingsError(f"model_name {name!r} is one of the kit's architectures, which notebook 07 compares yours "
                            f"with; choose another name, e.g. {DEFAULT_MODEL_NAME!r}.")
    return name


def check_choice(kind: str, value: str, choices: tuple[str, ...]) -> str:
    """Return `value` if it is one of `choices`, else raise an error that names them."""
    if value not in choices:
        raise SettingsError(f"unknown {kind} {value!r}; choose one of: {', '.join(choices)}.")
    return value


def check_loss_weights(weights: dict[str, float]) -> dict[str, float]:
    """Return the weights as floats if there is one non-negative weight per head, else raise."""
    unknown = sorted(set(weights) - set(HEAD_NAMES))
    if unknown:
        raise SettingsError(f"loss weight for unknown head {unknown[0]!r}; the heads are: {', '.join(HEAD_NAMES)}.")
    missing = [head for head in HEAD_NAMES if head not in weights]
    if missing:
        raise SettingsError(f"no loss weight for head {missing[0]!r}; give one for each of: {', '.join(HEAD_NAMES)}.")
    checked = {head: float(weights[head]) for head in HEAD_NAMES}
    negative = [head for head, weight in checked.items() if not weight >= 0]  # also catches NaN
    if negative:
        raise SettingsError(f"loss weight {negative[0]}={weights[negative[0]]} must be 0 or more.")
    return checked


def parse_loss_weights(text: str) -> dict[str, float]:
    """Parse "age=2,gender=1,race=1.5" into checked weights."""
    weights = {}
    for item in text.split(","):
        name, _, value = item.partition("=")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            raise SettingsError(f"loss weights {text!r} must look like age=2,gender=1,race=1.5.") from None
    return check_loss_weights(weights)


def check_learning_rate(learning_rate: float) -> float:
    """Return `learning_rate` if it is a positive number, else raise an error that says so."""
    if not learning_rate > 0:  # also catches NaN
        raise SettingsError(f"learning rate {learning_rate} must be more than 0; {DEFAULT_LEARNING_RATE} is the default.")
    return float(learning_rate)


def check_image_size(image_size: int) -> int:
    """Return `image_size` if it lies in MIN_IMAGE_SIZE..MAX_IMAGE_SIZE, else raise an error that says so."""
    if not MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE:
        raise SettingsError(f"image size {image_size} is outside {MIN_IMAGE_SIZE}..{MAX_IMAGE_SIZE}; "
                            f"{DEFAULT_IMAGE_SIZE} is the default.")
    return image_size


def check_at_least(kind: str, value: int, minimum: int = 1) -> int:
    """Return `value` if it is at least `minimum`, else raise an error that names `kind`."""
    if not value >= minimum:  # also catches NaN
        raise SettingsError(f"{kind} {value} must be at least {minimum}.")
    return value


def check_epochs(num_epochs: int) -> int:
    """Return `num_epochs` if it is at least 1, else raise an error that says so."""
    if num_epochs < 1:
        raise SettingsError(f"epochs={num_epochs} must be at least 1.")
    return num_epochs


def check_batch_size(batch_size: int) -> int:
    """Return `batch_size` if it is at least 1, else raise an error that says so."""
    return check_at_least("batch size", batch_size)


def check_seed(seed: int) -> int:
    """Return `seed` if NumPy, Python and TensorFlow all accept it (0 .. 2**32 - 1), else raise."""
    if not 0 <= seed < 2 ** 32:
        raise SettingsError(f"seed {seed} must lie in 0..{2 ** 32 - 1}; {DEFAULT_SEED} is the default.")
    return seed


def check_trunk(trunk_filters: list[int] | tuple[int, ...], image_size: int) -> tuple[int, ...]:
    """Return the trunk's filter counts if there is at least one block, each with at least one filter, and the
    image survives its 2x2 poolings; else raise an error that says which."""
    if not trunk_filters:
        raise SettingsError(f"the trunk needs at least one block; {list(DEFAULT_TRUNK)} is the default.")
    for filters in trunk_filters:
        check_at_least("trunk filters", filters)
    smallest = max(MIN_IMAGE_SIZE, 2 ** len(trunk_filters))
    if image_size < smallest:
        raise SettingsError(f"image_size={image_size} is too small for {len(trunk_filters)} pooling blocks; "
                            f"use at least {smallest}.")
    return tuple(trunk_filters)


def check_min_face_size(min_face_size: int) -> int:
    """Return the smallest face size to report, in pixels, if it is more than 0, else raise."""
    if not min_face_size > 0:
        raise SettingsError(f"minimum face size {min_face_size} must be more than 0 pixels; "
                            f"{DEFAULT_MIN_FACE_SIZE} is the default.")
    return min_face_size


def check_min_confidence(min_confidence: float) -> float:
    """Return the detection confidence floor if it lies in 0..1, else raise."""
    if not 0 <= min_confidence <= 1:  # also catches NaN
        raise SettingsError(f"minimum confidence {min_confidence} must lie in 0..1 (a detector's probability).")
    return float(min_confidence)
