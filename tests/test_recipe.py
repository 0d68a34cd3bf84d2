"""faceattr.recipe.Recipe: every setting of a training run, each field's rule declared once and checked once, and
faceattr.train.train_recipe, the one way to train it; no second build-compile-fit sequence anywhere else."""

from __future__ import annotations

import ast
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from faceattr.defaults import (AGE_HEADS, AGE_LOSSES, ARCH_NAMES, DEFAULT_BATCH_SIZE, EQUAL_LOSS_WEIGHTS,
                               GROUP_BALANCES, LOSS_BALANCES, RECIPES, REPORT_LOSS_WEIGHTS)
from faceattr.errors import SettingsError
from faceattr.recipe import PARAMETER_CONSTRAINTS, Recipe, age_scale_of

ROOT = Path(__file__).resolve().parent.parent

# one bad value per field, and what the one-line refusal must say: the parameter, and the choices where there are
BAD_SETTINGS = [
    ("arch", "resnet", ["arch 'resnet'", *ARCH_NAMES]),
    ("image_size", 16, ["image size 16", "32..512"]),
    ("image_size", 64.5, ["image size 64.5", "whole number"]),
    ("batch_size", 0, ["batch size 0", "at least 1"]),
    ("centre_pixels", "yes", ["centre_pixels 'yes'", "True or False"]),
    ("age_head", "cubic", ["age head 'cubic'", *AGE_HEADS]),
    ("age_loss", "hinge", ["age loss 'hinge'", *AGE_LOSSES]),
    ("loss_balance", "magic", ["loss balance 'magic'", *LOSS_BALANCES]),
    ("loss_weights", {"age": -1.0, "gender": 1.0, "race": 1.0}, ["loss weight age", "0 or more"]),
    ("learning_rate", 0.0, ["learning rate 0.0", "more than 0"]),
    ("balance", "fair", ["balance 'fair'", *GROUP_BALANCES]),
    ("augment", 1, ["augment 1", "True or False"]),
    ("num_epochs", 0, ["epochs=0", "at least 1"]),
]


def test_every_field_has_one_rule_and_every_rule_a_field():
    assert [field.name for field in dataclasses.fields(Recipe)] == list(PARAMETER_CONSTRAINTS)
    assert {field for field, _, _ in BAD_SETTINGS} == set(PARAMETER_CONSTRAINTS)


@pytest.mark.parametrize("field, value, said", BAD_SETTINGS, ids=[f"{f}={v!r}" for f, v, _ in BAD_SETTINGS])
def test_each_rule_refuses_in_one_line_naming_the_parameter_and_the_choices(field, value, said):
    changes = {"loss_balance": "fixed"} if field == "loss_weights" else {}
    with pytest.raises(SettingsError) as refused:
        Recipe.named(value) if field == "arch" else Recipe.named("default", **changes, **{field: value})
    message = str(refused.value)
    assert "\n" not in message
    for part in said:
        assert part in message


@pytest.mark.parametrize("arch", ARCH_NAMES)
def test_a_named_recipe_is_its_row_of_the_table_at_the_kits_defaults(arch):
    recipe = Recipe.named(arch)
    own = {key: value for key, value in recipe.settings().items() if key in RECIPES[arch]}
    assert own == RECIPES[arch]
    assert recipe.batch_size == DEFAULT_BATCH_SIZE and recipe.balance == "none" and recipe.augment is False


def test_fixed_weights_belong_to_the_fixed_balance_only():
    assert Recipe.named("original").loss_weights == REPORT_LOSS_WEIGHTS
    assert Recipe.named("original", loss_balance="normalised").loss_weights is None
    assert Recipe.named("default", loss_balance="fixed").loss_weights == EQUAL_LOSS_WEIGHTS
    with pytest.raises(SettingsError, match="only for --loss-balance fixed; 'uncertainty' sets its own"):
        Recipe.named("default", loss_weights=REPORT_LOSS_WEIGHTS)
    with pytest.raises(SettingsError, match="arch 'mobilenet'"):
        Recipe.named("mobilenet", centre_pixels=False)


def test_a_recipe_is_frozen_checked_again_when_changed_and_refuses_unknown_settings():
    recipe = Recipe.named("default", image_size=48)
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipe.image_size = 32
    assert recipe.replace(batch_size=16).batch_size == 16 and recipe.batch_size == DEFAULT_BATCH_SIZE
    with pytest.raises(SettingsError, match="batch size 0"):
        recipe.replace(batch_size=0)
    with pytest.raises(SettingsError, match="unknown recipe setting 'epochs'"):
        Recipe.named("default", epochs=3)


def test_the_age_scale_is_the_oldest_training_age():
    import pandas as pd

    assert age_scale_of(pd.DataFrame({"age": [3, 80, 41]})) == 80.0


def test_a_recipe_is_made_and_checked_without_tensorflow():
    code = ("import sys; from faceattr.recipe import Recipe; Recipe.named('original', batch_size=8); "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TensorFlow was imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.trains
def test_train_recipe_trains_the_recipe_it_is_given(sample_dir, tmp_path):
    import numpy as np

    from faceattr.data import scan, split_frame
    from faceattr.runs import RunFolder
    from faceattr.train import train_recipe

    split = split_frame(scan(sample_dir, cache=False).frame, seed=0)
    recipe = Recipe.named("default", image_size=32, batch_size=16, num_epochs=2, learning_rate=3e-3,
                          loss_balance="fixed", loss_weights={"age": 2.0, "gender": 1.0, "race": 1.0})
    model, history = train_recipe(recipe, split, seed=1)
    assert model.input_shape == (None, 32, 32, 3)
    assert float(model.optimizer.learning_rate) == pytest.approx(3e-3)
    assert model.get_compile_config()["loss_weights"] == recipe.loss_weights
    assert list(history["epoch"]) == [1, 2] and "val_race_accuracy" in history
    assert model.loss["age"].age_scale == age_scale_of(split[split["split"] == "train"])   # derived once, there
    assert np.isfinite(history["loss"]).all()

    selected = train_recipe(recipe.replace(num_epochs=1), split, seed=1, run_dir=tmp_path)
    assert "val_score" in selected.history and RunFolder(tmp_path).model.exists()
    unvalidated = train_recipe(recipe.replace(num_epochs=1), split, seed=1, validate=False).history
    assert not any(column.startswith("val_") for column in unvalidated)


SEQUENCE_HOMES = {  # the one function that builds, compiles and fits; and what cannot use it, with the reason
    ("faceattr/train.py", "train_recipe"),
    ("solutions/07_experiments.py", "train_single_head"),  # a one-head model: no recipe's losses fit it
    ("benchmarks/kendall.py", "run_one"),  # forms of Kendall's weighting that no recipe names: its own losses
}
COMPILES = {"build_compiled", "compile_model", "compile"}
FITS = {"fit", "timed_fit"}


def called_names(function: ast.AST) -> set[str]:
    """The names a function calls, by their last part (`model.fit(...)` -> "fit")."""
    names = set()
    for node in ast.walk(function):
        if isinstance(node, ast.Call):
            target = node.func
            names.add(target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", ""))
    return names


def build_compile_fit_sequences(path: Path) -> list[str]:
    """The outermost functions in `path` that both compile a model and fit one."""
    found = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                calls = called_names(child)
                if calls & COMPILES and calls & FITS:
                    found.append(child.name)
                    continue
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def test_the_build_compile_fit_sequence_is_written_once():
    found = {(str(path.relative_to(ROOT)), name)
             for folder in ("faceattr", "solutions", "benchmarks") for path in sorted((ROOT / folder).glob("*.py"))
             for name in build_compile_fit_sequences(path)}
    assert found == SEQUENCE_HOMES, f"train a recipe with faceattr.train.train_recipe instead: {sorted(found - SEQUENCE_HOMES)}"


def test_the_sequence_finder_finds_a_sequence(tmp_path):
    copy = tmp_path / "copy.py"
    copy.write_text("def train(model, data):\n    model.compile(optimizer='adam')\n    return model.fit(data)\n\n"
                    "def only_fit(model, data):\n    return fit(model, data)\n")
    assert build_compile_fit_sequences(copy) == ["train"]
