"""A training run's recipe: every setting, validated once, TensorFlow-free (the CLI checks it before importing TF).

The named recipes ("default", "original", ...) live in `faceattr.defaults.RECIPES`; `Recipe.named` starts from one
of them. Each field's rule is declared once, in PARAMETER_CONSTRAINTS (as scikit-learn declares
`_parameter_constraints`), and a Recipe checks them all when it is made, so a Recipe in hand is a valid one."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial
from numbers import Integral
from typing import TYPE_CHECKING, Any

from faceattr.defaults import (AGE_HEADS, AGE_LOSSES, ARCH_NAMES, DEFAULT_BATCH_SIZE, DEFAULT_EPOCHS,
                               EQUAL_LOSS_WEIGHTS, GROUP_BALANCES, LOSS_BALANCES, RECIPES, check_batch_size,
                               check_choice, check_epochs, check_image_size, check_learning_rate, check_loss_weights)
from faceattr.errors import SettingsError

if TYPE_CHECKING:
    import pandas as pd


def check_whole(kind: str, check: Callable[[int], int], value: object) -> int:
    """`check(value)` if `value` is a whole number (not a bool), else raise an error that names `kind`."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise SettingsError(f"{kind} {value!r} must be a whole number.")
    return check(int(value))


def check_flag(kind: str, value: object) -> bool:
    """`value` if it is True or False, else raise an error that names `kind`."""
    if not isinstance(value, bool):
        raise SettingsError(f"{kind} {value!r} must be True or False.")
    return value


def optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A rule that lets None through and checks anything else with `check`."""
    return lambda value: None if value is None else check(value)


# Each field's rule: it returns the value (normalised, e.g. weights as floats) or raises a one-line SettingsError
# that names the parameter and what it accepts. Recipe has exactly these fields (tests/test_recipe.py checks it).
PARAMETER_CONSTRAINTS: dict[str, Callable[[Any], Any]] = {
    "arch": partial(check_choice, "arch", choices=ARCH_NAMES),
    "image_size": partial(check_whole, "image size", check_image_size),
    "centre_pixels": partial(check_flag, "centre_pixels"),
    "age_head": partial(check_choice, "age head", choices=AGE_HEADS),
    "age_loss": partial(check_choice, "age loss", choices=AGE_LOSSES),
    "loss_balance": partial(check_choice, "loss balance", choices=LOSS_BALANCES),
    "loss_weights": optional(check_loss_weights),
    "learning_rate": check_learning_rate,
    "batch_size": partial(check_whole, "batch size", check_batch_size),
    "balance": partial(check_choice, "balance", choices=GROUP_BALANCES),
    "augment": partial(check_flag, "augment"),
    "num_epochs": partial(check_whole, "epochs", check_epochs),
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Recipe:
    """Every setting of a training run. Make one with `Recipe.named(arch, **changes)`; it is checked when made.

    The architecture's own settings (faceattr.defaults.RECIPES) have no default here, so that a Recipe for
    "original" cannot silently get the default architecture's image size."""

    arch: str
    image_size: int
    centre_pixels: bool        # pixels enter scaled to -1..1 (True) or to the report's 0..1 (False)
    age_head: str
    age_loss: str
    loss_balance: str
    loss_weights: dict[str, float] | None   # one per head under the "fixed" balance, else None
    learning_rate: float
    batch_size: int = DEFAULT_BATCH_SIZE
    balance: str = "none"      # group balance: faceattr.defaults.GROUP_BALANCES
    augment: bool = False
    num_epochs: int = DEFAULT_EPOCHS

    def __post_init__(self) -> None:
        """Check every field against PARAMETER_CONSTRAINTS, then the rules between fields."""
        for name, rule in PARAMETER_CONSTRAINTS.items():
            object.__setattr__(self, name, rule(getattr(self, name)))
        if self.loss_balance != "fixed":
            if self.loss_weights is not None:
                raise SettingsError(f"loss weights are only for --loss-balance fixed; {self.loss_balance!r} sets "
                                    "its own.")
        elif self.loss_weights is None:
            object.__setattr__(self, "loss_weights", dict(EQUAL_LOSS_WEIGHTS))
        if self.arch == "mobilenet" and not self.centre_pixels:
            raise SettingsError("centre_pixels=False is not for arch 'mobilenet': its backbone scales its own pixels "
                                "to -1..1; use a conv architecture (default, batchnorm, original).")

    @classmethod
    def named(cls, arch: str = "default", **changes: Any) -> Recipe:
        """The named architecture's recipe (faceattr.defaults.RECIPES) with `changes`; a change given as None keeps
        the recipe's own value. The recipe's own fixed loss weights are kept only under the "fixed" balance."""
        own = RECIPES[check_choice("arch", arch, ARCH_NAMES)]
        unknown = sorted(set(changes) - set(PARAMETER_CONSTRAINTS) - {"arch"})
        if unknown:
            raise SettingsError(f"unknown recipe setting {unknown[0]!r}; choose from: "
                                f"{', '.join(PARAMETER_CONSTRAINTS)}.")
        changes = {name: value for name, value in changes.items() if value is not None}
        settings = {**own, **changes}
        if "loss_weights" not in changes and settings["loss_balance"] != own["loss_balance"]:
            settings["loss_weights"] = None   # another balance: the recipe's own weights no longer apply
        return cls(arch=arch, **settings)

    def replace(self, **changes: Any) -> Recipe:
        """A copy with `changes` (checked again)."""
        return dataclasses.replace(self, **changes)

    def settings(self) -> dict[str, Any]:
        """Every setting by name (config.json's keys), the loss weights as a fresh dict."""
        return dataclasses.asdict(self)


def age_scale_of(train: pd.DataFrame) -> float:
    """The age head's unit: the oldest age in the training split (from training data only)."""
    return float(train["age"].max())
