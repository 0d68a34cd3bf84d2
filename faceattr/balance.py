"""Multi-task balance: each head's trivial-predictor loss, the loss-weighting schemes, learned
uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018), each head's gradient on the shared trunk (the
quantity GradNorm, Chen et al. 2018, balances), and a model-selection score in which every head counts."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import numpy as np
import pandas as pd

from faceattr import import_tensorflow
from faceattr.defaults import LOSS_BALANCES, check_choice, check_loss_weights
from faceattr.errors import SettingsError
from faceattr.labels import AGE_MAX, GENDER_NAMES, HEAD_NAMES, RACE_NAMES
from faceattr.model import AgeLoss

tf = import_tensorflow()
import keras  # noqa: E402  (after the quiet TensorFlow import)
from keras import layers, ops  # noqa: E402

CLASS_COUNTS = {"gender": len(GENDER_NAMES), "race": len(RACE_NAMES)}
SCORE = "val_score"  # what checkpointing, early stopping and the LR schedule monitor (lower is better)
SCORE_DEFINITION = ("mean over the three heads of validation error / trivial-predictor error: age MAE / MAE of "
                    "always predicting the median training age, and (1 - accuracy) / (1 - majority-class share) "
                    "for gender and race; 1 = no better than guessing, 0 = perfect")


def head_losses(age_loss: str = "huber", age_scale: float = AGE_MAX) -> dict[str, keras.losses.Loss]:
    """The loss of each head: a regression loss on scaled age, cross-entropy for the two class heads."""
    return {"age": AgeLoss(age_loss, age_scale),
            "gender": keras.losses.SparseCategoricalCrossentropy(name="gender_loss"),
            "race": keras.losses.SparseCategoricalCrossentropy(name="race_loss")}


def trivial_predictions(train: pd.DataFrame) -> dict[str, np.ndarray | float]:
    """What a model that ignores the image would predict: the median age, and each class's share."""
    return {"age": float(train["age"].median()),
            **{head: np.bincount(train[head], minlength=count) / len(train) for head, count in CLASS_COUNTS.items()}}


def trivial_losses(train: pd.DataFrame, age_loss: str = "huber", age_scale: float = AGE_MAX) -> dict[str, float]:
    """Each head's loss on the training split when it predicts `trivial_predictions`, by the very losses used in training."""
    guesses, losses = trivial_predictions(train), head_losses(age_loss, age_scale)
    rows = len(train)
    predicted = {"age": np.full((rows, 1), guesses["age"], "float32"),
                 **{head: np.tile(guesses[head], (rows, 1)).astype("float32") for head in CLASS_COUNTS}}
    targets = {"age": train["age"].to_numpy("float32"),
               **{head: train[head].to_numpy("int32") for head in CLASS_COUNTS}}
    return {head: float(losses[head](targets[head], predicted[head])) for head in HEAD_NAMES}


def trivial_errors(train: pd.DataFrame) -> dict[str, float]:
    """The trivial predictor's error per head: MAE of the median age, and 1 - the majority class's share."""
    guesses = trivial_predictions(train)
    return {"age": float((train["age"] - guesses["age"]).abs().mean()),
            **{head: float(1 - guesses[head].max()) for head in CLASS_COUNTS}}


def balance_weights(scheme: str, reference_losses: dict[str, float],
                    weights: dict[str, float] | None = None) -> dict[str, float]:
    """Loss weights per head: "fixed" uses `weights` (1 each when None); "normalised" is 1 / trivial loss, so
    every head's weighted loss starts near 1; "uncertainty" is 1 each, since its learned weights do the balancing."""
    check_choice("loss balance", scheme, LOSS_BALANCES)
    if scheme == "fixed":
        return check_loss_weights(weights) if weights is not None else {head: 1.0 for head in HEAD_NAMES}
    if weights is not None:
        raise SettingsError(f"loss weights are only for the 'fixed' balance; {scheme!r} sets its own.")
    if scheme == "uncertainty":
        return {head: 1.0 for head in HEAD_NAMES}
    return {head: 1.0 / reference_losses[head] for head in HEAD_NAMES}


@keras.saving.register_keras_serializable(package="faceattr")
class TaskUncertainty(layers.Layer):
    """Holds one learned log-variance s per head; passes the model's outputs through unchanged.

    The paper (s = log sigma^2) trains 1/2 exp(-s) L + 1/2 s for a regression head and, as it approximates,
    exp(-s) L + 1/2 s for a classification head. The kit trains exp(-s) L + s for every head (see
    `UncertaintyWeightedLoss`): the same objective written another way. Take the kit's s equal to the paper's
    for age, and to the paper's minus log 2 for gender and race: then the paper's sum is exactly half the kit's,
    plus log 2 (1/2 log 2 per classification head). Adam divides each gradient by its own running size, so half
    the loss takes the same steps (all but Adam's epsilon), and both train alike. The kit's form has one rule
    for every head, and its weight exp(-s) settles where weight x L = 1 (the paper's effective weights,
    1/2 exp(-s) for age and exp(-s) for the classes, settle at 1 / 2L).

    Two changes are the kit's own:
    - s = `rate` x a stored weight. Adam moves a weight by about the learning rate per step (0.001 by
      default), whatever its gradient, so s itself would follow the losses far too slowly in a few hundred
      steps. With rate 10, s moves ten times as far per step.
    - s starts at log(trivial loss) (`with_task_uncertainty`), not at the paper's 0: the weights start where
      the "normalised" scheme keeps them, rather than at the equal weights 1 / 1 / 1.
    """

    def __init__(self, initial_log_variance: dict[str, float] | None = None, rate: float = 10.0, **kwargs):
        kwargs.setdefault("dtype", "float32")  # outputs stay float32 under mixed precision, like the heads'
        super().__init__(**kwargs)
        self.initial_log_variance = dict(initial_log_variance or {head: 0.0 for head in HEAD_NAMES})
        self.rate = float(rate)

    def build(self, input_shape) -> None:
        """One scalar weight per head."""
        self.scaled_log_variance = {
            head: self.add_weight(shape=(), name=f"{head}_log_variance",
                                  initializer=keras.initializers.Constant(value / self.rate))
            for head, value in self.initial_log_variance.items()}

    def call(self, outputs):
        """Identity: the weights are used by the losses, not by the forward pass."""
        return {head: ops.copy(value) for head, value in outputs.items()}

    def log_variance(self, head: str):
        """The head's current s, as a tensor the loss can differentiate."""
        return self.rate * self.scaled_log_variance[head]

    def weights_now(self) -> dict[str, float]:
        """The current weight exp(-s) of each head's loss."""
        return {head: float(math.exp(-float(ops.convert_to_numpy(self.log_variance(head))))) for head in HEAD_NAMES}

    def get_config(self) -> dict:
        """Config for saving."""
        return {**super().get_config(), "initial_log_variance": self.initial_log_variance, "rate": self.rate}


class UncertaintyWeightedLoss(keras.losses.Loss):
    """Trains on exp(-s) * L + s for one head (`objective`), but its value is plain L, so the logged head losses
    compare across schemes. Keras's logged `loss` is then the unweighted sum of the head losses, not the
    objective the optimiser minimises."""

    def __init__(self, loss: keras.losses.Loss, uncertainty: TaskUncertainty, head: str):
        super().__init__(name=loss.name)
        self.loss, self.uncertainty, self.head = loss, uncertainty, head

    def objective(self, y_true, y_pred):
        """Per sample, what training minimises for this head: exp(-s) * L + s."""
        plain = self.loss.call(y_true, y_pred)
        log_variance = self.uncertainty.log_variance(self.head)
        return ops.exp(-log_variance) * plain + log_variance

    def call(self, y_true, y_pred):
        """Plain L as the value, the objective's gradient as the gradient (a straight-through trick)."""
        plain = self.loss.call(y_true, y_pred)
        objective = self.objective(y_true, y_pred)
        return ops.stop_gradient(plain) + (objective - ops.stop_gradient(objective))

    def get_config(self) -> dict:
        """The name only: the link to the layer is rebuilt by `with_task_uncertainty`."""
        return {"name": self.name}


def with_task_uncertainty(model: keras.Model, losses: dict[str, keras.losses.Loss],
                          reference_losses: dict[str, float]) -> tuple[keras.Model, dict[str, keras.losses.Loss]]:
    """Add a `TaskUncertainty` layer after the outputs, and wrap each head's loss with its learned weight.

    Each s starts at log(trivial loss), so training starts from the normalised weights and then learns
    (see `TaskUncertainty` for this and the other change from the paper).
    """
    uncertainty = TaskUncertainty({head: math.log(reference_losses[head]) for head in HEAD_NAMES},
                                  name="task_uncertainty")
    wrapped_model = keras.Model(model.inputs, uncertainty(model.output), name=model.name)
    wrapped_losses = {head: UncertaintyWeightedLoss(losses[head], uncertainty, head) for head in HEAD_NAMES}
    return wrapped_model, wrapped_losses


def task_uncertainty_layer(model: keras.Model) -> TaskUncertainty | None:
    """The model's TaskUncertainty layer, if it has one."""
    return next((layer for layer in model.layers if isinstance(layer, TaskUncertainty)), None)


def last_shared_layer(model: keras.Model) -> keras.layers.Layer:
    """The trunk's last layer with weights, before the `shared` pooling that every head reads: GradNorm's W."""
    names = [layer.name for layer in model.layers]
    if "shared" not in names:
        raise SettingsError(f"model {model.name!r} has no layer named 'shared'; pass the trunk's last layer "
                            "to trunk_gradient_norms as `layer`.")
    return next(layer for layer in reversed(model.layers[:names.index("shared")]) if layer.trainable_weights)


@contextlib.contextmanager
def same_random_draws(model: keras.Model) -> Iterator[None]:
    """Put `model`'s random layers (dropout, noise) back where they were on entry, on exit: a second measurement
    after the block draws the same masks as the block did, so an exact check holds for a model with dropout."""
    generators, pending = [], list(model.layers)
    while pending:
        layer = pending.pop()
        pending += getattr(layer, "layers", [])   # a nested model's layers too
        if isinstance(getattr(layer, "seed_generator", None), keras.random.SeedGenerator):
            generators.append(layer.seed_generator)
    saved = [generator.state.numpy() for generator in generators]
    try:
        yield
    finally:
        for generator, state in zip(generators, saved):
            generator.state.assign(state)


def trunk_gradient_norms(model: keras.Model, batches: list, losses: dict[str, keras.losses.Loss],
                         weights: dict[str, float], layer: keras.layers.Layer | None = None) -> dict[str, float]:
    """Per head, the norm of the gradient of weight x loss on `layer`'s weights (the trunk's last layer by
    default), averaged over `batches` of (images, targets): how hard each head pulls on the shared trunk."""
    layer = layer or last_shared_layer(model)
    norms = {head: [] for head in HEAD_NAMES}
    for images, targets in batches:
        with tf.GradientTape(persistent=True) as tape:
            outputs = model(images, training=True)
            weighted = {head: weights[head] * losses[head](targets[head], outputs[head]) for head in HEAD_NAMES}
        for head in HEAD_NAMES:
            gradients = tape.gradient(weighted[head], layer.trainable_weights)
            norms[head].append(float(tf.sqrt(sum(tf.reduce_sum(tf.square(g)) for g in gradients))))
        del tape
    return {head: float(np.mean(values)) for head, values in norms.items()}


def parameter_counts(model: keras.Model) -> dict[str, int]:
    """The network's parameters, and apart from them the learned loss weights (one per head under "uncertainty"),
    so that every notebook counts a model the same way."""
    uncertainty = task_uncertainty_layer(model)
    learned = uncertainty.count_params() if uncertainty is not None else 0
    return {"network": model.count_params() - learned, "learned_loss_weights": learned}


def loss_weights_now(model: keras.Model, loss_weights: dict[str, float] | None = None) -> dict[str, float]:
    """The weight each head's loss gets now: its weight in `compile` (`loss_weights`, else the compiled model's),
    times exp(-s) when the model learns its weights (so "uncertainty" starts at the normalised weights, not at 1)."""
    compiled = loss_weights or model.get_compile_config()["loss_weights"] or {head: 1.0 for head in HEAD_NAMES}
    uncertainty = task_uncertainty_layer(model)
    learned = uncertainty.weights_now() if uncertainty is not None else {head: 1.0 for head in HEAD_NAMES}
    return {head: float(compiled[head]) * learned[head] for head in HEAD_NAMES}


def kept_loss_weights(history: pd.DataFrame) -> dict[str, float] | None:
    """The learned loss weights at the kept epoch (the lowest val_score), from the history that `BalanceLog`
    wrote; None when the weights were not learned."""
    columns = [f"{head}_weight" for head in HEAD_NAMES]
    if history.empty or SCORE not in history or not set(columns) <= set(history):
        return None
    kept = history.loc[history[SCORE].idxmin()]
    return {head: float(kept[f"{head}_weight"]) for head in HEAD_NAMES}


def selection_score(logs: dict[str, float], reference_errors: dict[str, float], prefix: str = "val_") -> float:
    """Mean over heads of error / trivial error, from Keras logs (see SCORE_DEFINITION)."""
    relative = [logs[f"{prefix}age_mae"] / reference_errors["age"]]
    relative += [(1 - logs[f"{prefix}{head}_accuracy"]) / reference_errors[head] for head in CLASS_COUNTS]
    return float(np.mean(relative))


class BalanceLog(keras.callbacks.Callback):
    """Adds `score` and `val_score` to the epoch logs, and each learned head weight (`age_weight`, ...)
    when the model has a TaskUncertainty layer. Put it first, so the other callbacks see these keys."""

    def __init__(self, reference_errors: dict[str, float]):
        super().__init__()
        self.reference_errors = reference_errors

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Write the scores and learned weights into `logs` in place."""
        if logs is None:
            return
        logs["score"] = selection_score(logs, self.reference_errors, prefix="")
        if "val_age_mae" in logs:
            logs[SCORE] = selection_score(logs, self.reference_errors)
        uncertainty = task_uncertainty_layer(self.model)
        if uncertainty is not None:
            logs.update({f"{head}_weight": weight for head, weight in uncertainty.weights_now().items()})


SETTLED_SHARE = 0.1   # a learned weight has settled when its last third of the epochs moved it under a tenth as far
SETTLE_MIN_EPOCHS = 4  # fewer epochs than this cannot tell a settled weight from a moving one


def weight_settling(history: pd.DataFrame, share: float = SETTLED_SHARE) -> pd.DataFrame:
    """Per head, has its learned weight (the history's `age_weight`, ...) stopped moving? Its move over the last
    third of the epochs as a share of its whole move (on a log scale, step by step), the verdict, and the
    factors it moved by."""
    rows = {}
    for head in HEAD_NAMES:
        logs = np.log(history[f"{head}_weight"].to_numpy(float))
        steps = np.abs(np.diff(logs))
        recent = max(1, len(steps) // 3)
        row = {"first": math.exp(logs[0]), "last": math.exp(logs[-1]), "factor": math.exp(logs[-1] - logs[0])}
        if len(logs) < SETTLE_MIN_EPOCHS:
            rows[head] = row | {"from_epoch": math.nan, "recent_factor": math.nan, "share": math.nan,
                                "settled": None, "verdict": "too few epochs to tell"}
            continue
        whole, moved = float(steps.sum()), float(steps[-recent:].sum())
        recent_share = moved / whole if whole > 0 else 0.0
        settled = recent_share < share
        direction = "rising" if logs[-1] > logs[-1 - recent] else "falling"
        rows[head] = row | {"from_epoch": len(logs) - recent, "recent_factor": math.exp(logs[-1] - logs[-1 - recent]),
                            "share": recent_share, "settled": settled,
                            "verdict": "settled" if settled else f"still {direction}"}
    return pd.DataFrame(rows).T.astype({"first": float, "last": float, "factor": float, "from_epoch": float,
                                        "recent_factor": float, "share": float})


def prepare_balance(model: keras.Model, train: pd.DataFrame, scheme: str, age_loss: str, age_scale: float,
                    weights: dict[str, float] | None = None
                    ) -> tuple[keras.Model, dict[str, keras.losses.Loss], dict[str, float]]:
    """The model (with TaskUncertainty for "uncertainty"), the losses and the loss weights for `scheme`."""
    reference = trivial_losses(train, age_loss, age_scale)
    loss_weights = balance_weights(scheme, reference, weights)
    losses = head_losses(age_loss, age_scale)
    if scheme == "uncertainty":
        model, losses = with_task_uncertainty(model, losses, reference)
    return model, losses, loss_weights
