"""Multi-task balance: trivial-predictor losses by hand, the schemes, uncertainty weighting, the selection score."""

import math

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from faceattr.balance import (SCORE, BalanceLog, UncertaintyWeightedLoss, balance_weights, head_losses,
                              last_shared_layer, prepare_balance, selection_score, task_uncertainty_layer,
                              trivial_errors, trivial_losses, trunk_gradient_norms, with_task_uncertainty)
from faceattr.balance import same_random_draws
from faceattr.defaults import (ADAM_LEARNING_RATE, RECIPES, REPORT_LOSS_WEIGHTS, check_loss_weights,
                               parse_loss_weights)
from faceattr.errors import SettingsError
from faceattr.labels import HEAD_NAMES
from faceattr.model import build_model
from faceattr.recipe import Recipe
from faceattr.train import build_compiled, compile_model, standard_callbacks

# 8 training rows: ages, genders, races chosen so every number below is easy to check by hand
TRAIN = pd.DataFrame({"age": [10, 20, 20, 30, 30, 30, 40, 100], "gender": [0, 0, 0, 0, 0, 1, 1, 1],
                      "race": [0, 0, 0, 0, 1, 1, 2, 4]})


def huber(error: float, delta: float) -> float:
    """Huber loss of one error, written out."""
    return 0.5 * error ** 2 if abs(error) <= delta else delta * (abs(error) - 0.5 * delta)


def test_trivial_losses_match_hand_computed_values():
    age_scale = 100.0
    median = 30.0  # median of the 8 ages
    by_hand_age = np.mean([huber((median - age) / age_scale, 0.1) for age in TRAIN["age"]])
    gender_shares = np.array([5, 3]) / 8
    race_shares = np.array([4, 2, 1, 0, 1]) / 8
    # cross-entropy of always predicting the class shares = their entropy
    by_hand_gender = -(gender_shares * np.log(gender_shares)).sum()
    by_hand_race = -sum(p * math.log(p) for p in race_shares if p > 0)
    losses = trivial_losses(TRAIN, "huber", age_scale)
    assert losses["age"] == pytest.approx(by_hand_age, rel=1e-5)
    assert losses["gender"] == pytest.approx(by_hand_gender, rel=1e-5)
    assert losses["race"] == pytest.approx(by_hand_race, rel=1e-5)
    assert trivial_losses(TRAIN, "mae", age_scale)["age"] == pytest.approx(
        np.mean(np.abs(median - TRAIN["age"])) / age_scale, rel=1e-5)


def test_normalised_weights_are_one_over_the_trivial_losses():
    reference = trivial_losses(TRAIN, "huber", 100.0)
    weights = balance_weights("normalised", reference)
    assert weights == pytest.approx({head: 1 / value for head, value in reference.items()})
    assert weights["age"] > 50 * weights["race"]  # the age loss is tiny, so its weight is large


def test_trivial_errors_match_hand_computed_values():
    errors = trivial_errors(TRAIN)
    assert errors["age"] == pytest.approx(np.mean([20, 10, 10, 0, 0, 0, 10, 70]))
    assert errors["gender"] == pytest.approx(3 / 8)
    assert errors["race"] == pytest.approx(4 / 8)


def test_fixed_weights_default_to_equal_and_take_the_report_weights():
    assert balance_weights("fixed", {}) == {"age": 1.0, "gender": 1.0, "race": 1.0}
    assert balance_weights("fixed", {}, REPORT_LOSS_WEIGHTS) == REPORT_LOSS_WEIGHTS
    assert Recipe.named("original").loss_weights == REPORT_LOSS_WEIGHTS
    assert Recipe.named("original", loss_balance="normalised").loss_weights is None
    assert Recipe.named("default", loss_balance="fixed").loss_weights == {"age": 1.0, "gender": 1.0, "race": 1.0}


@pytest.mark.parametrize("arch, override", [("default", None), ("original", None), ("default", 5e-3)])
def test_each_recipe_trains_at_its_own_learning_rate(arch, override):
    recipe = Recipe.named(arch, image_size=32, learning_rate=override)
    model = build_compiled(recipe, TRAIN, 100.0)
    assert float(model.optimizer.learning_rate) == pytest.approx(override or RECIPES[arch]["learning_rate"])
    assert RECIPES["original"]["learning_rate"] == ADAM_LEARNING_RATE  # the report's: Keras's own default
    assert float(keras.optimizers.Adam().learning_rate) == pytest.approx(ADAM_LEARNING_RATE)


@pytest.mark.parametrize("call, message", [
    (lambda: balance_weights("magic", {}), "choose one of: fixed, normalised, uncertainty"),
    (lambda: check_loss_weights({"age": -1.0, "gender": 1.0, "race": 1.0}), "must be 0 or more"),
    (lambda: check_loss_weights({"age": float("nan"), "gender": 1.0, "race": 1.0}), "must be 0 or more"),
    (lambda: check_loss_weights({"age": 1.0, "gender": 1.0}), "no loss weight for head 'race'"),
    (lambda: check_loss_weights({"age": 1.0, "gender": 1.0, "race": 1.0, "beard": 1.0}), "unknown head 'beard'"),
    (lambda: parse_loss_weights("age:2"), "age=2,gender=1,race=1.5"),
    (lambda: Recipe.named("default", loss_balance="normalised", loss_weights=REPORT_LOSS_WEIGHTS), "only for"),
    (lambda: Recipe.named("default", age_head="cubic"), "choose one of: linear, sigmoid, expectation"),
    (lambda: Recipe.named("default", learning_rate=0.0), "learning rate 0.0 must be more than 0"),
    (lambda: Recipe.named("default", learning_rate=float("nan")), "must be more than 0"),
])
def test_bad_balance_settings_name_the_choices(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_uncertainty_loss_reports_the_plain_loss_but_trains_the_weighted_one():
    model = build_model(image_size=32, trunk_filters=(8,))
    reference = {"age": 0.01, "gender": 0.7, "race": 1.4}
    _, losses = with_task_uncertainty(model, head_losses("huber", 100.0), reference)
    layer = losses["race"].uncertainty
    targets, predicted = np.array([0, 1]), np.array([[0.7, 0.1, 0.1, 0.05, 0.05], [0.2, 0.5, 0.1, 0.1, 0.1]], "float32")
    plain = float(keras.losses.SparseCategoricalCrossentropy()(targets, predicted))
    with tf.GradientTape() as tape:
        value = losses["race"](targets, predicted)
    gradient = tape.gradient(value, layer.scaled_log_variance["race"])
    assert float(value) == pytest.approx(plain, rel=1e-5)
    log_variance = math.log(1.4)  # starts at log(trivial loss)
    # d/dw [exp(-s) L + s] with s = rate * w
    assert float(gradient) == pytest.approx(layer.rate * (1 - math.exp(-log_variance) * plain), rel=1e-4)


def one_batch(image_size: int = 32) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Eight random images with TRAIN's labels."""
    images = np.random.default_rng(0).uniform(0, 255, (8, image_size, image_size, 3)).astype("float32")
    return images, {"age": TRAIN["age"].to_numpy("float32"), "gender": TRAIN["gender"].to_numpy("int32"),
                    "race": TRAIN["race"].to_numpy("int32")}


def test_uncertainty_loss_moves_the_model_by_the_learned_weight_alone():
    keras.utils.set_random_seed(0)
    model, losses = with_task_uncertainty(build_model(image_size=32, trunk_filters=(4, 8)), head_losses("huber", 100.0),
                                          {"age": 0.01, "gender": 0.7, "race": 1.4})
    batch = one_batch()
    through_the_loss = trunk_gradient_norms(model, [batch], losses, {head: 1.0 for head in HEAD_NAMES})
    learned = task_uncertainty_layer(model).weights_now()   # exp(-s): 100, 1/0.7, 1/1.4
    by_the_weight = trunk_gradient_norms(model, [batch], head_losses("huber", 100.0), learned)
    # d/dtheta [exp(-s) L + s] = exp(-s) dL/dtheta: nothing of the plain loss's own gradient may leak in
    assert through_the_loss == pytest.approx(by_the_weight, rel=1e-4)
    objective = losses["race"].objective(batch[1]["race"], model(batch[0])["race"])
    plain = keras.losses.SparseCategoricalCrossentropy(reduction=None)(batch[1]["race"], model(batch[0])["race"])
    assert np.allclose(objective, plain / 1.4 + math.log(1.4), rtol=1e-5)


def test_trunk_gradient_norms_are_the_slope_of_each_weighted_loss():
    keras.utils.set_random_seed(1)
    model = build_model(image_size=32, trunk_filters=(4, 8))
    layer = last_shared_layer(model)
    assert layer.name == "conv2"
    images, targets = one_batch()
    losses, weights = head_losses("huber", 100.0), {"age": 50.0, "gender": 1.0, "race": 0.5}
    norms = trunk_gradient_norms(model, [(images, targets)], losses, weights)
    start = [variable.numpy() for variable in layer.trainable_weights]
    for head in HEAD_NAMES:
        def weighted() -> tf.Tensor:
            return weights[head] * losses[head](targets[head], model(images, training=True)[head])

        with tf.GradientTape() as tape:
            value = weighted()
        gradient = tape.gradient(value, layer.trainable_weights)
        length = math.sqrt(sum(float(tf.reduce_sum(g * g)) for g in gradient))
        step = 1e-3
        values = []
        for sign in (1, -1):   # the loss's slope along its own gradient's direction is the gradient's norm
            for variable, origin, g in zip(layer.trainable_weights, start, gradient):
                variable.assign(origin + sign * step * g.numpy() / length)
            values.append(float(weighted()))
        for variable, origin in zip(layer.trainable_weights, start):
            variable.assign(origin)
        assert (values[0] - values[1]) / (2 * step) == pytest.approx(norms[head], rel=0.05), head
    halved = trunk_gradient_norms(model, [(images, targets)], losses, {h: w / 2 for h, w in weights.items()})
    assert halved == pytest.approx({head: norm / 2 for head, norm in norms.items()}, rel=1e-5)


def test_a_model_with_dropout_measures_the_same_twice_only_with_the_same_random_draws():
    keras.utils.set_random_seed(2)
    model = build_model(image_size=32, trunk_filters=(4, 8), dropout=0.5)
    images, targets = one_batch()
    losses, weights = head_losses("huber", 100.0), {head: 1.0 for head in HEAD_NAMES}
    first = trunk_gradient_norms(model, [(images, targets)], losses, weights)
    assert trunk_gradient_norms(model, [(images, targets)], losses, weights) != first   # new masks each call
    with same_random_draws(model):
        inside = trunk_gradient_norms(model, [(images, targets)], losses, weights)
    assert trunk_gradient_norms(model, [(images, targets)], losses, weights) == inside


def test_the_last_shared_layer_is_the_trunks_last_with_weights():
    assert last_shared_layer(build_model(image_size=32, trunk_filters=(4, 8), batch_norm=True)).name == "bn2"
    with pytest.raises(SettingsError, match="no layer named 'shared'"):
        last_shared_layer(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]))


def test_uncertainty_weighting_learns(tmp_path):
    keras.utils.set_random_seed(0)
    frame = TRAIN.assign(age=TRAIN["age"].astype(float))
    model, losses, weights = prepare_balance(build_model(image_size=32, trunk_filters=(8, 16), age_head="linear"), frame,
                                             "uncertainty", "huber", 100.0)
    compile_model(model, 3e-3, losses, weights)
    layer = task_uncertainty_layer(model)
    before = layer.weights_now()
    images = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    targets = {"age": frame["age"].to_numpy("float32"), "gender": frame["gender"].to_numpy("int32"),
               "race": frame["race"].to_numpy("int32")}
    history = [float(model.train_on_batch(images, targets, return_dict=True)["loss"]) for _ in range(60)]
    after = layer.weights_now()
    assert history[-1] < 0.75 * history[0]
    assert all(abs(math.log(after[head] / before[head])) > 0.05 for head in before), (before, after)
    model.save(tmp_path / "m.keras")  # the layer is registered, so the saved model loads
    restored = keras.models.load_model(tmp_path / "m.keras", compile=False)
    assert task_uncertainty_layer(restored).weights_now() == pytest.approx(after)


LOGS = {"val_age_mae": 10.0, "val_gender_accuracy": 0.9, "val_race_accuracy": 0.7}
REFERENCE = {"age": 20.0, "gender": 0.4, "race": 0.5}


def test_selection_score_counts_every_head_equally():
    score = selection_score(LOGS, REFERENCE)
    assert score == pytest.approx(np.mean([10 / 20, 0.1 / 0.4, 0.3 / 0.5]))
    # halving one head's error lowers the score by a third of that head's relative error halved, for every head
    moves = [score - selection_score({**LOGS, "val_age_mae": 5.0}, REFERENCE),
             score - selection_score({**LOGS, "val_gender_accuracy": 0.95}, REFERENCE),
             score - selection_score({**LOGS, "val_race_accuracy": 0.85}, REFERENCE)]
    assert moves == pytest.approx([0.5 / 6, 0.25 / 6, 0.6 / 6])


def test_callbacks_select_on_the_score_and_it_is_logged_first(tmp_path):
    callbacks = standard_callbacks(tmp_path, REFERENCE)
    assert isinstance(callbacks[0], BalanceLog)
    monitors = {type(c).__name__: c.monitor for c in callbacks if hasattr(c, "monitor")}
    assert monitors == {"BestCheckpoint": SCORE, "EarlyStopping": SCORE, "ReduceLROnPlateau": SCORE}
    logs = {**LOGS, "age_mae": 10.0, "gender_accuracy": 0.9, "race_accuracy": 0.7}
    callbacks[0].set_model(build_model(image_size=32, trunk_filters=(8,)))
    callbacks[0].on_epoch_end(0, logs)
    assert logs[SCORE] == pytest.approx(selection_score(LOGS, REFERENCE))
