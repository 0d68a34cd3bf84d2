"""Training plumbing: compile, Keras callbacks, device strategy, and one whole training run."""

from __future__ import annotations

import csv
import io
import os
import time
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from faceattr import import_tensorflow
from faceattr.balance import (SCORE, SCORE_DEFINITION, BalanceLog, head_losses, kept_loss_weights, loss_weights_now,
                              parameter_counts, prepare_balance, trivial_errors, trivial_losses)
from faceattr.defaults import (DEFAULT_LEARNING_RATE, DEFAULT_PATIENCE, DEFAULT_PRECISION, DEFAULT_SEED,
                               PRECISION_VARIABLE, PRECISIONS, check_choice)
from faceattr.errors import SettingsError
from faceattr.evaluate import evaluate_run
from faceattr.labels import HEAD_NAMES
from faceattr.model import make_model
from faceattr.recipe import Recipe, age_scale_of
from faceattr.runs import RunFolder

tf = import_tensorflow()
import keras  # noqa: E402  (after the quiet TensorFlow import)


def device_strategy(devices: list[str] | None = None) -> tf.distribute.Strategy:
    """MirroredStrategy across several GPUs (or the given devices), else the default strategy."""
    gpus = tf.config.list_logical_devices("GPU")
    if devices:
        return tf.distribute.MirroredStrategy(devices)
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def cpu_has_bfloat16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """True when the CPU computes bfloat16 natively (the AVX-512 BF16 or AMX flag in Linux's cpuinfo)."""
    try:
        flags = set(Path(cpuinfo).read_text().split())
    except OSError:  # not Linux: assume no native bfloat16
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def choose_precision(setting: str | None = None) -> str:
    """Set Keras's global dtype policy from `setting` (else $FACEATTR_PRECISION, else "auto"; see
    faceattr.defaults.PRECISIONS) and return the policy's name."""
    setting = check_choice(f"precision (${PRECISION_VARIABLE})", setting or os.environ.get(PRECISION_VARIABLE)
                           or DEFAULT_PRECISION, PRECISIONS)
    policy = "float32"
    if setting == "auto" and tf.config.list_physical_devices("GPU"):
        policy = "mixed_float16"
    elif setting == "auto" and cpu_has_bfloat16():
        policy = "mixed_bfloat16"
    keras.mixed_precision.set_global_policy(policy)
    return policy


HEAD_METRICS = {"age": ["mae"], "gender": ["accuracy"], "race": ["accuracy"]}


def compile_model(model: keras.Model, learning_rate: float = DEFAULT_LEARNING_RATE, losses: dict | None = None,
                  loss_weights: dict[str, float] | None = None) -> keras.Model:
    """Compile with one loss per head (`head_losses()` when None), per-head weights, and readable metrics."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=losses or head_losses(),
        loss_weights=loss_weights or {head: 1.0 for head in HEAD_NAMES},
        metrics=HEAD_METRICS,
    )
    return model


class EpochLine(keras.callbacks.Callback):
    """Print one short line per epoch: the notebook-friendly progress mode."""

    def __init__(self, print_fn=print):
        super().__init__()
        self.print_fn, self.started = print_fn, 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        """Start the epoch clock."""
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Print loss, per-head validation metrics and seconds for the epoch."""
        logs = logs or {}
        parts = [f"epoch {epoch + 1:3d}", f"loss {logs.get('loss', float('nan')):.3f}"]
        for key, label in (("val_age_mae", "val age MAE"), ("val_gender_accuracy", "val gender acc"),
                           ("val_race_accuracy", "val race acc"), (SCORE, "val score")):
            if key in logs:
                parts.append(f"{label} {logs[key]:.3f}")
        parts.append(f"{time.perf_counter() - self.started:.1f}s")
        self.print_fn(" | ".join(parts))


class BestCheckpoint(keras.callbacks.Callback):
    """Keras's ModelCheckpoint(save_best_only=True, mode="min"), but atomic: the model is written to a temporary
    file and renamed, so Ctrl-C during a save never leaves a broken model.keras; and recorded in its folder's
    manifest (`faceattr.runs.Manifest`), so it never replaces a model.keras the kit did not write."""

    def __init__(self, path: str | Path, monitor: str = SCORE):
        super().__init__()
        self.path, self.monitor, self.best = Path(path), monitor, float("inf")

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Save the model when the monitored value is the lowest so far."""
        value = (logs or {}).get(self.monitor)
        if value is not None and value < self.best:
            self.best = value
            RunFolder(self.path.parent).write(self.path, self.model.save)


class HistoryLog(keras.callbacks.Callback):
    """Keras's CSVLogger (one row per epoch: `epoch`, then the first epoch's logs in sorted order), but the whole
    file is written afresh and atomically at each epoch's end, and recorded in its folder's manifest: a crash or
    SIGKILL leaves the last whole history.csv, never an empty or half-written one."""

    def __init__(self, path: str | Path):
        super().__init__()
        self.path, self.keys, self.rows = Path(path), None, []

    def on_train_begin(self, logs: dict | None = None) -> None:
        """Start a new history."""
        self.keys, self.rows = None, []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Add the epoch's row and write the whole history."""
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
            if not any(key.startswith("val_") for key in self.keys):  # as CSVLogger: room for validation columns
                self.keys += [f"val_{key}" for key in self.keys]
        self.rows.append({"epoch": epoch, **{key: logs.get(key, "NA") for key in self.keys}})
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=["epoch", *self.keys])
        writer.writeheader()
        writer.writerows(self.rows)
        RunFolder(self.path.parent).write(self.path, lambda temporary: temporary.write_text(text.getvalue()))


def standard_callbacks(run_dir: str | Path, reference_errors: dict[str, float], patience: int = DEFAULT_PATIENCE,
                       reduce_lr: bool = True, epoch_lines: bool = True) -> list[keras.callbacks.Callback]:
    """The selection score first (every head counts in it), then CSV history, best-on-`val_score`
    checkpoint, early stopping, optional LR schedule and progress."""
    run_dir = Path(run_dir)
    callbacks = [
        BalanceLog(reference_errors),
        HistoryLog(RunFolder(run_dir).history),
        BestCheckpoint(RunFolder(run_dir).model, monitor=SCORE),
        keras.callbacks.EarlyStopping(monitor=SCORE, mode="min", patience=patience, restore_best_weights=True),
    ]
    if reduce_lr:
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor=SCORE, mode="min", factor=0.5,
                                                           patience=max(1, patience // 2)))
    if epoch_lines:
        callbacks.append(EpochLine())
    return callbacks


def notebook_progress() -> str:
    """How training in a notebook shows its progress: "bar" (Keras's progress bar, moving inside each epoch) when
    a person watches, "lines" (one line per epoch) when it runs unattended (papermill, nbconvert, nbval) or
    outside Jupyter. A front end that answers `input()` (JupyterLab, VS Code, Colab) has a person behind it; the
    unattended runners (nbclient) refuse input."""
    try:
        from IPython import get_ipython
    except ImportError:
        return "lines"
    kernel = getattr(get_ipython(), "kernel", None)
    return "bar" if getattr(kernel, "_allow_stdin", False) else "lines"


def prebuild(model: keras.Model, data: tf.data.Dataset | tuple) -> keras.Model:
    """Create the model's metric, loss and optimizer state before `fit`, from the shapes of `data` (a dataset of
    batches, or the (images, targets) arrays that `fit` will get).

    TensorFlow traces a training step a second time when its first trace created variables, so building them
    first saves that second trace (about half of a small model's set-up). It is Keras's own pre-build (what `fit` runs under a
    distribution strategy); on a Keras without it, only the optimizer is built."""
    build = getattr(model, "_symbolic_build", None)
    with model.distribute_strategy.scope():
        if build is not None:
            build(data_batch=data.element_spec if isinstance(data, tf.data.Dataset) else data)
        else:
            model.optimizer.build(model.trainable_variables)
    return model


def fit(model: keras.Model, train_data: tf.data.Dataset, validation_data: tf.data.Dataset, num_epochs: int,
        run_dir: str | Path, reference_errors: dict[str, float], patience: int = DEFAULT_PATIENCE,
        progress: str = "lines", extra_callbacks: list[keras.callbacks.Callback] | None = None) -> pd.DataFrame:
    """Fit with the standard callbacks, selecting on `val_score` against `reference_errors`
    (`faceattr.balance.trivial_errors` of the training split); progress is "lines", "bar" (Keras) or "none".

    Ctrl-C stops cleanly and keeps the best checkpoint.
    """
    if num_epochs < 1:
        raise SettingsError(f"num_epochs={num_epochs} must be at least 1.")
    if progress not in ("lines", "bar", "none"):
        raise SettingsError(f"progress={progress!r} is unknown; use 'lines', 'bar' or 'none'.")
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    callbacks = standard_callbacks(run_dir, reference_errors, patience=patience, epoch_lines=progress == "lines")
    callbacks += extra_callbacks or []
    prebuild(model, train_data)
    try:
        model.fit(train_data, validation_data=validation_data, epochs=num_epochs, callbacks=callbacks, shuffle=False,
                  verbose="auto" if progress == "bar" else 0)
    except KeyboardInterrupt:
        print(f"interrupted: the best checkpoint so far is {RunFolder(run_dir).model}")
    history_file = RunFolder(run_dir).history
    return pd.read_csv(history_file) if history_file.exists() else pd.DataFrame()


def timed_fit(model: keras.Model, train_data: tf.data.Dataset, validation_data: tf.data.Dataset,
              num_epochs: int, extra_callbacks: list[keras.callbacks.Callback] | None = None) -> pd.DataFrame:
    """Plain `model.fit` for exactly `num_epochs` (no selection callbacks, only `extra_callbacks`); the history
    gains the cumulative training seconds at each epoch's end. Columns are named by head (`val_age_mae`) even for
    a one-head model, whose logs Keras leaves unprefixed."""
    seconds: list[float] = []
    started = time.perf_counter()
    clock = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seconds.append(time.perf_counter() - started))
    prebuild(model, train_data)
    history = model.fit(train_data, validation_data=validation_data, epochs=num_epochs,
                        callbacks=[clock, *(extra_callbacks or [])], shuffle=False, verbose=0)
    logs = pd.DataFrame(history.history)
    if len(model.output_names) == 1:
        head = model.output_names[0]

        def by_head(key: str) -> str:
            """`mae` -> `age_mae`, `val_loss` -> `val_age_loss`."""
            return key.replace("val_", f"val_{head}_") if key.startswith("val_") else f"{head}_{key}"

        logs = logs.rename(columns=by_head)
    return logs.assign(epoch=range(1, num_epochs + 1), seconds=seconds)


def build_compiled(recipe: Recipe, train: pd.DataFrame, age_scale: float,
                   model: keras.Model | None = None) -> keras.Model:
    """Build `recipe`'s model, or take `model` (a student's own), and compile it with the recipe's balanced losses
    and learning rate."""
    model = model or make_model(recipe.arch, recipe.image_size, age_scale, recipe.age_head, recipe.centre_pixels)
    model, losses, weights = prepare_balance(model, train, recipe.loss_balance, recipe.age_loss, age_scale,
                                             recipe.loss_weights)
    return compile_model(model, recipe.learning_rate, losses, weights)


class Trained(NamedTuple):
    """A recipe's trained model and its per-epoch history."""

    model: keras.Model
    history: pd.DataFrame


def train_recipe(recipe: Recipe, split: pd.DataFrame, seed: int = DEFAULT_SEED, run_dir: str | Path | None = None,
                 model: keras.Model | None = None, datasets: dict[str, tf.data.Dataset] | None = None,
                 validate: bool = True, patience: int = DEFAULT_PATIENCE, progress: str = "none",
                 strategy: tf.distribute.Strategy | None = None, eager: bool = False,
                 extra_callbacks: list[keras.callbacks.Callback] | None = None) -> Trained:
    """The kit's one way to train: seed, build `recipe`'s model (or take `model`) and compile it, batch `split`
    (or take `datasets`, made once by `split_datasets` for several recipes) and fit for `recipe.num_epochs`.

    With `run_dir`, `fit`: the kit's callbacks, selection on val_score, the kept epoch's model saved there and
    restored. Without, `timed_fit`: exactly num_epochs, seconds in the history. `validate=False` skips the
    validation pass (timed_fit only); `eager` runs the steps eagerly (a token budget: tracing costs more)."""
    from faceattr.pipeline import split_datasets

    train = split[split["split"] == "train"]
    age_scale = age_scale_of(train)
    strategy = strategy or tf.distribute.get_strategy()
    keras.utils.set_random_seed(seed)
    with strategy.scope():
        model = build_compiled(recipe, train, age_scale, model)
    model.run_eagerly = eager
    datasets = datasets or split_datasets(split, recipe.image_size, recipe.batch_size, seed, recipe.augment,
                                          recipe.balance, strategy.num_replicas_in_sync)
    validation = datasets["validation"] if validate else None
    if run_dir is None:
        history = timed_fit(model, datasets["train"], validation, recipe.num_epochs, extra_callbacks)
    elif validation is None:
        raise SettingsError("validate=False needs no run_dir: selection reads the validation score each epoch.")
    else:
        history = fit(model, datasets["train"], validation, recipe.num_epochs, run_dir, trivial_errors(train),
                      patience, progress, extra_callbacks)
    return Trained(model, history)


class StartingState(keras.callbacks.Callback):
    """Records what config.json says of the model as training begins: its name, parameters and loss weights."""

    def __init__(self):
        super().__init__()
        self.state: dict = {}

    def on_train_begin(self, logs: dict | None = None) -> None:
        """Read the compiled model before its first step."""
        self.state = {"model_name": self.model.name, "parameters": parameter_counts(self.model),
                      "loss_weights": loss_weights_now(self.model)}


def train_run(data: str | Path, run_dir: str | Path, recipe: Recipe | None = None, seed: int = DEFAULT_SEED,
              overwrite: bool = False, patience: int = DEFAULT_PATIENCE, progress: str = "lines",
              report=print) -> dict:
    """Scan, split, train `recipe` (the default one when None) and evaluate it; write everything into RUN_DIR
    (holding its lock, and a shared lock on the data's cached extraction, so `faceattr cache --clear` leaves it
    alone). `report` gets any note of `--overwrite` about files it left alone."""
    from faceattr.data import data_in_use, is_sample, scan, split_frame
    from faceattr.pipeline import replica_batch_size

    recipe = recipe or Recipe.named()
    RunFolder(run_dir).refuse_inside(data)
    precision = choose_precision()
    result = scan(data)
    split = split_frame(result.frame, seed=seed)
    strategy = device_strategy()
    for name, count in split["split"].value_counts().items():   # refuse before the run folder is touched
        replica_batch_size(name, count, recipe.batch_size, strategy.num_replicas_in_sync)
    with data_in_use(data), RunFolder(run_dir).writing(overwrite, report=report) as run:
        run.save_split(split)
        train = split[split["split"] == "train"]
        age_scale = age_scale_of(train)
        reference_errors = trivial_errors(train)
        config = run.write_run_config(
            result.root, is_sample(result.root), **recipe.settings(), seed=seed,
            patience=patience, precision=precision,
            age_scale=age_scale,
            trivial_losses=trivial_losses(train, recipe.age_loss, age_scale), trivial_errors=reference_errors,
            monitor={"name": SCORE, "definition": SCORE_DEFINITION},
            split_counts=split["split"].value_counts().to_dict())
        starting = StartingState()
        started = time.perf_counter()
        history = train_recipe(recipe, split, seed, run.root, patience=patience, progress=progress,
                               strategy=strategy, extra_callbacks=[starting]).history
        run.write_config(config.updated(**starting.state, train_seconds=round(time.perf_counter() - started, 2),
                                        epochs_run=len(history), loss_weights_learned=kept_loss_weights(history)))
        return evaluate_run(run.root)
