"""A student's model (issue 27): checked against the kit's contract before training, one line per problem; named,
and counted the same way, through the run's config and card; its real loss weights; the quick pass; progress."""

from __future__ import annotations

import json
import types

import keras
import nbformat
import numpy as np
import pytest
from keras import layers

from faceattr.balance import (kept_loss_weights, loss_weights_now, parameter_counts, prepare_balance,
                              trivial_losses)
from faceattr.card import model_card, parameters_text
from faceattr.defaults import QUICK_BUDGETS, check_model_name, quick_budget
from faceattr.errors import ModelContractError, SettingsError
from faceattr.model import (build_model, check_model, comparison_problem, head, make_model, matching_arch,
                            model_problems)
from faceattr.notebook import lesson_notebooks, notebook_parameters
from faceattr.train import compile_model, notebook_progress

AGE_SCALE = 80.0


def student_model(size=32, channels=3, race_units=5, race_name="race", race_activation="softmax",
                  with_age=True, age_years=True, gender_dtype="float32") -> keras.Model:
    """Notebook 03's cell, written as a student might edit it: one block, the three heads."""
    inputs = keras.Input(shape=(size, size, channels), name="face")
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inputs)
    shared = layers.GlobalMaxPooling2D(name="shared")(layers.MaxPooling2D(2)(x))
    outputs = {"gender": layers.Dense(2, activation="softmax", name="gender", dtype=gender_dtype)(shared),
               "race": head(shared, race_units, race_name, activation=race_activation)}
    if with_age:
        unit = head(shared, 1, "age_unit", activation="sigmoid")
        years = layers.Rescaling(AGE_SCALE, name="age_years", dtype="float32")(unit) if age_years else unit
        outputs["age"] = layers.Activation("linear", name="age", dtype="float32")(years)
    return keras.Model(inputs, outputs, name="yours")


@pytest.mark.parametrize("edit, line", [
    ({"race_units": 4}, 'the race head has 4 outputs; the data has 5 races (white, black, asian, indian, others): '
                        'change `head(shared, 4, "race")` to `head(shared, 5, "race")` in notebook 03, section 3'),
    ({"race_name": "ethnicity"}, 'the race head\'s last layer is named "ethnicity"; the kit finds it by the name '
                                 '"race"'),
    ({"size": 48}, "the input takes 48 px images, but image_size is 32: use `keras.Input(shape=(image_size, "
                   "image_size, 3), name=\"face\")` in notebook 03, section 2"),
    ({"channels": 1}, "the input is 32 x 32 x 1; the kit feeds square RGB images"),
    ({"race_activation": None}, "the race head's activation is linear; its loss (cross-entropy) needs probabilities"),
    ({"with_age": False}, "no age head: the outputs are gender, race; the kit needs three, named age, gender and race"),
    ({"age_years": False}, "the age head's largest possible output is 1 (its layer \"age_unit\" ends in a sigmoid); "
                           "training ages go up to 80 years"),
    ({"gender_dtype": "bfloat16"}, "the gender head outputs bfloat16; the kit needs float32 outputs"),
])
def test_each_broken_model_is_one_line_naming_the_layer_the_need_and_the_cell(edit, line):
    problems = model_problems(student_model(**edit), AGE_SCALE, image_size=32)
    assert len(problems) == 1, problems
    assert problems[0].startswith(line)
    with pytest.raises(ModelContractError) as caught:
        check_model(student_model(**edit), AGE_SCALE, image_size=32)
    assert caught.value.problems == problems and "\n- " + problems[0] in str(caught.value)
    # in Jupyter the student sees the error's lines, not a TensorFlow traceback
    assert caught.value._render_traceback_() == [f"ModelContractError: {caught.value}"]


def test_every_problem_of_one_model_is_listed_at_once():
    broken = student_model(race_units=4, race_activation=None, with_age=False)
    problems = model_problems(broken, AGE_SCALE, image_size=32)
    assert len(problems) == 3 and problems[0].startswith("no age head")
    assert "does not fit the kit (3 problems)" in str(pytest.raises(ModelContractError, check_model, broken,
                                                                    AGE_SCALE).value)


@pytest.mark.parametrize("arch, reach", [("default", "up to 79"), ("original", "up to 80"), ("batchnorm", "up to 79")])
def test_the_kits_own_models_fit_the_contract(arch, reach):
    summary = check_model(make_model(arch, 32, AGE_SCALE), AGE_SCALE, image_size=32)
    assert summary.startswith(f"'{arch}' fits the kit: 32 x 32 x 3 faces in; age in years ({reach})")
    assert check_model(student_model(), AGE_SCALE).startswith("'yours' fits the kit")


def test_a_linear_age_head_has_no_upper_bound_and_fits():
    assert "(no upper bound)" in check_model(build_model(32, (8,), age_head="linear", age_scale=AGE_SCALE), AGE_SCALE)


def test_matching_arch_tells_the_kits_architectures_from_a_students_edit():
    assert matching_arch(build_model(48, age_scale=AGE_SCALE, name="yours"), AGE_SCALE) == "default"
    assert matching_arch(make_model("batchnorm", 48, AGE_SCALE), AGE_SCALE) == "batchnorm"
    assert matching_arch(build_model(48, (32, 64, 128, 256, 256), age_scale=AGE_SCALE), AGE_SCALE) is None
    assert matching_arch(student_model(), AGE_SCALE) is None


def test_a_later_notebook_says_why_it_leaves_the_students_model_out():
    other_size = comparison_problem(student_model(size=48), AGE_SCALE, 32, "shortcut_image_size")
    assert other_size == ("'yours' (notebook 03) takes 48 px images but this notebook trains at 32 px, so it is left "
                          "out: set shortcut_image_size = 48 in the parameters cell to include it.")
    broken = comparison_problem(student_model(race_units=4, with_age=False), AGE_SCALE, 32)
    assert broken.startswith("'yours' (notebook 03) is left out: it does not fit the kit (no age head")
    assert "; and 1 more)" in broken
    assert comparison_problem(student_model(), AGE_SCALE, 32) is None


def test_parameters_are_counted_alike_with_the_learned_loss_weights_apart():
    model = build_model(32, (8,), age_scale=AGE_SCALE)
    train = (np.arange(20) % 2, np.arange(20) % 5)
    frame = __import__("pandas").DataFrame({"age": np.arange(20) + 10, "gender": train[0], "race": train[1]})
    wrapped, _, _ = prepare_balance(build_model(32, (8,), age_scale=AGE_SCALE), frame, "uncertainty", "huber",
                                    AGE_SCALE)
    assert parameter_counts(model) == {"network": model.count_params(), "learned_loss_weights": 0}
    assert parameter_counts(wrapped) == {"network": model.count_params(), "learned_loss_weights": 3}
    assert wrapped.count_params() == model.count_params() + 3
    assert parameters_text(parameter_counts(wrapped)) == f"{model.count_params():,} parameters + 3 learned loss weights"
    assert parameters_text(parameter_counts(model)) == f"{model.count_params():,} parameters"


def test_uncertainty_starts_at_the_normalised_weights_not_at_one():
    import pandas as pd

    frame = pd.DataFrame({"age": np.arange(30) + 10, "gender": np.arange(30) % 2, "race": np.arange(30) % 5})
    trivial = trivial_losses(frame, "huber", AGE_SCALE)
    model, losses, weights = prepare_balance(build_model(32, (8,), age_scale=AGE_SCALE), frame, "uncertainty", "huber",
                                             AGE_SCALE)
    assert weights == {"age": 1.0, "gender": 1.0, "race": 1.0}   # what compile gets
    compile_model(model, losses=losses, loss_weights=weights)
    for head_name, weight in loss_weights_now(model).items():
        assert weight == pytest.approx(1 / trivial[head_name], rel=1e-5)
    fixed, _, fixed_weights = prepare_balance(build_model(32, (8,), age_scale=AGE_SCALE), frame, "fixed", "huber",
                                              AGE_SCALE, {"age": 2.0, "gender": 1.0, "race": 1.5})
    assert loss_weights_now(fixed, fixed_weights) == {"age": 2.0, "gender": 1.0, "race": 1.5}


def test_kept_loss_weights_are_the_best_epochs():
    import pandas as pd

    history = pd.DataFrame({"val_score": [0.9, 0.5, 0.7], "age_weight": [10.0, 20.0, 30.0],
                            "gender_weight": [1.0, 2.0, 3.0], "race_weight": [0.5, 0.6, 0.7]})
    assert kept_loss_weights(history) == {"age": 20.0, "gender": 2.0, "race": 0.6}
    assert kept_loss_weights(history.drop(columns="age_weight")) is None


def test_the_card_names_the_model_counts_it_and_gives_its_real_loss_weights():
    from tests.test_card import BY_GROUP, TEST

    config = {"arch": "custom", "model_name": "two_convs", "image_size": 64, "seed": 1, "loss_balance": "uncertainty",
              "parameters": {"network": 1275747, "learned_loss_weights": 3},
              "loss_weights": {"age": 97.5, "gender": 1.44, "race": 0.69},
              "loss_weights_learned": {"age": 12.0, "gender": 2.5, "race": 1.25}}
    card = model_card(config, {"data": "/d/sample", "synthetic": True, "test": TEST, "by_group": BY_GROUP}, "latest")
    assert card.startswith("# Model card: two_convs (latest)")
    assert "**two_convs**: a Keras CNN with a shared trunk and three heads (age in years, gender, race); 1,275,747 " \
           "parameters + 3 learned loss weights." in card
    assert "Settings: arch custom, image_size 64, loss_balance uncertainty, seed 1." in card
    assert "Loss weights (uncertainty): age 97.5, gender 1.44, race 0.69 at the start; learned, at the kept epoch: " \
           "age 12, gender 2.5, race 1.25." in card


@pytest.mark.trains
def test_a_trained_run_records_the_name_the_counts_and_the_real_loss_weights(trained_run):
    from faceattr.runs import RunFolder

    config = RunFolder(trained_run).read_config()
    model = make_model("default", 32, config["age_scale"])
    assert config["model_name"] == "default"
    assert config["parameters"] == {"network": model.count_params(), "learned_loss_weights": 3}
    for head_name, trivial in config["trivial_losses"].items():   # uncertainty starts at 1 / trivial loss, not at 1
        assert config["loss_weights"][head_name] == pytest.approx(1 / trivial, rel=1e-5)
    assert set(config["loss_weights_learned"]) == {"age", "gender", "race"}
    assert config["loss_weights_learned"] != config["loss_weights"]
    card = RunFolder(trained_run).model_card.read_text()
    assert f"**default**: a Keras CNN" in card and "+ 3 learned loss weights" in card


def test_model_names_that_would_clash_or_make_a_bad_folder_are_refused():
    assert check_model_name("two_convs-v2") == "two_convs-v2"
    for bad, fragment in (("default", "one of the kit's architectures"), ("my model", "only letters, digits"),
                          ("", "must start with a letter"), ("../x", "must start with a letter")):
        with pytest.raises(SettingsError, match=fragment):
            check_model_name(bad)


def test_the_quick_knob_cuts_every_epoch_count_and_reruns_alike():
    assert quick_budget(8, False) == 8 and quick_budget(8, True) == QUICK_BUDGETS["epochs"] < 8
    assert quick_budget(quick_budget(8, True), True) == QUICK_BUDGETS["epochs"]
    assert quick_budget(500, True, "resamples") == QUICK_BUDGETS["resamples"] < 500
    by_name = {path.name[:2]: notebook_parameters(path) for path in lesson_notebooks()}
    for number, parameters in by_name.items():
        counts = [name for name in parameters if name.endswith("_epochs")]
        assert parameters.get("quick") is (False if counts or number == "03" else None), number   # 03: image size
        code = "\n".join(c.source for c in nbformat.read(next(p for p in lesson_notebooks() if p.name[:2] == number),
                                                         4).cells if c.cell_type == "code")
        for name in counts:
            assert f"{name} = quick_budget({name}, quick" in code, (number, name)
    assert {number for number, parameters in by_name.items() if "quick" in parameters} == {"03", "04", "07", "08", "09"}
    assert by_name["03"]["model_name"] == check_model_name(by_name["03"]["model_name"])


@pytest.mark.parametrize("shell, expected", [
    (None, "lines"),                                                                     # a script, the CLI
    (types.SimpleNamespace(kernel=types.SimpleNamespace(_allow_stdin=False)), "lines"),  # papermill, nbconvert
    (types.SimpleNamespace(kernel=types.SimpleNamespace(_allow_stdin=True)), "bar"),     # JupyterLab, VS Code
    (types.SimpleNamespace(), "lines"),                                                  # a terminal IPython
])
def test_progress_is_keras_bar_only_where_a_person_watches(monkeypatch, shell, expected):
    import IPython

    monkeypatch.setattr(IPython, "get_ipython", lambda: shell)
    assert notebook_progress() == expected


def run_notebook(path, tmp_path, **parameters):
    """Execute a lesson notebook as `faceattr run` does; return papermill's error (None if it ran through)."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    try:
        papermill.execute_notebook(str(path), str(tmp_path / f"out-{path.name}"), parameters=parameters,
                                   cwd=str(tmp_path), kernel_name="python3", progress_bar=False)
    except PapermillExecutionError as error:
        return error
    return None


def error_output(path):
    """The traceback lines of the executed notebook's failing cell."""
    notebook = nbformat.read(path, 4)
    return next(output.traceback for c in notebook.cells if c.cell_type == "code" for output in c.get("outputs", [])
                if output.output_type == "error")


@pytest.mark.slow
def test_a_broken_edit_is_one_line_per_problem_in_notebook_03_and_again_in_04(tmp_path):
    """Notebook 03 edited as a student might (another input size, no age head, the race head renamed with 4 units,
    a sigmoid on gender) stops at its check; 04, given such a model, stops when it loads it. No TensorFlow
    traceback in either: the lines are the output."""
    notebooks = {path.name[:2]: path for path in lesson_notebooks()}
    lesson = nbformat.read(notebooks["03"], 4)
    edits = (('keras.Input(shape=(image_size, image_size, 3)', 'keras.Input(shape=(48, 48, 3)'),
             ('head(shared, 5, "race", activation="softmax")', 'head(shared, 4, "ethnicity", activation="softmax")'),
             ('head(shared, 2, "gender", activation="softmax")', 'head(shared, 2, "gender", activation="sigmoid")'),
             ('{"age": age, "gender": gender, "race": race}, name=', '{"gender": gender, "race": race}, name='))
    for c in lesson.cells:
        for old, new in edits:
            c.source = c.source.replace(old, new)
    edited = tmp_path / "03_edited.ipynb"
    nbformat.write(lesson, edited)
    run_dir = tmp_path / "run"
    error = run_notebook(edited, tmp_path, run_dir=str(run_dir), data_dir="sample", model_name="two_convs")
    assert error is not None and error.ename == "ModelContractError"
    lines = error.evalue.splitlines()
    assert lines[0] == "model 'two_convs' does not fit the kit (5 problems); fix them and rerun notebook 03 from there:"
    assert [line[:40] for line in lines[1:]] == [line[:40] for line in (
        "- the input takes 48 px images, but image_size is 64",
        "- no age head: the outputs are gender, race",
        "- the race head's last layer is named \"ethnicity\"",
        "- the gender head's activation is sigmoid",
        "- the race head has 4 outputs; the data has 5 races")]
    assert error_output(tmp_path / "out-03_edited.ipynb") == [f"ModelContractError: {error.evalue}"]
    assert not (run_dir / "untrained.keras").exists()   # the check comes before the save

    broken = student_model(size=48, channels=1, race_units=4, race_name="ethnicity", with_age=False)
    broken.save(run_dir / "untrained.keras")
    error = run_notebook(notebooks["04"], tmp_path, run_dir=str(run_dir), data_dir="sample")
    assert error is not None and error.ename == "ModelContractError"
    assert error.evalue.splitlines()[1:] == [f"- {line}" for line in model_problems(broken, 1.0)]
    assert "the input is 48 x 48 x 1" in error.evalue and not (run_dir / "config.json").exists()
