"""Training plumbing: compile, Keras callbacks, device strategy, and run folders."""

from __future__ import annotations

import json
import platform
import time
from importlib import metadata
from pathlib import Path

import pandas as pd

from faceattr import import_tensorflow
from faceattr.model import AgeLoss

tf = import_tensorflow()
import keras  # noqa: E402  (after the quiet TensorFlow import)

RUN_FILES = ("model.keras", "config.json")


class RunDirError(ValueError):
    """A run folder that cannot be used as asked."""


def prepare_run_dir(run_dir: str | Path, overwrite: bool = False) -> Path:
    """Create RUN_DIR; refuse one that already holds a trained run unless `overwrite`."""
    path = Path(run_dir)
    if path.exists() and not path.is_dir():
        raise RunDirError(f"{path} is a file; give a folder for the run.")
    taken = [name for name in RUN_FILES if (path / name).exists()]
    if taken and not overwrite:
        raise RunDirError(f"{path} already holds a run ({', '.join(taken)}); choose a new folder "
                          "or pass --overwrite to replace it.")
    path.mkdir(parents=True, exist_ok=True)
    return path


def package_versions() -> dict[str, str]:
    """Versions of the packages that decide a run's numbers."""
    names = ("faceattr", "tensorflow", "keras", "numpy", "pandas", "scikit-learn", "pillow")
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def write_json(path: str | Path, payload: dict) -> Path:
    """Write a dict as indented JSON."""
    Path(path).write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return Path(path)


def write_run_config(run_dir: str | Path, data: str | Path, synthetic: bool, **settings: object) -> dict:
    """Write RUN_DIR/config.json: the data, whether it is synthetic, every setting, package versions."""
    config = {"data": str(data), "synthetic": synthetic, **settings, "versions": package_versions()}
    write_json(Path(run_dir) / "config.json", config)
    return config


def device_strategy(devices: list[str] | None = None) -> tf.distribute.Strategy:
    """MirroredStrategy across several GPUs (or the given devices), else the default strategy."""
    gpus = tf.config.list_logical_devices("GPU")
    if devices:
        return tf.distribute.MirroredStrategy(devices)
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def use_mixed_precision_on_gpu() -> bool:
    """Switch Keras to mixed float16 when a GPU is present; return whether it did."""
    if tf.config.list_physical_devices("GPU"):
        keras.mixed_precision.set_global_policy("mixed_float16")
        return True
    return False


def compile_model(model: keras.Model, learning_rate: float = 1e-3, age_loss: str = "huber",
                  age_scale: float = 116.0, loss_weights: dict[str, float] | None = None) -> keras.Model:
    """Compile with one loss per head, per-head weights, and readable metrics."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss={"age": AgeLoss(age_loss, age_scale), "gender": "sparse_categorical_crossentropy",
              "race": "sparse_categorical_crossentropy"},
        loss_weights=loss_weights or {"age": 1.0, "gender": 1.0, "race": 1.0},
        metrics={"age": ["mae"], "gender": ["accuracy"], "race": ["accuracy"]},
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
                           ("val_race_accuracy", "val race acc")):
            if key in logs:
                parts.append(f"{label} {logs[key]:.3f}")
        parts.append(f"{time.perf_counter() - self.started:.1f}s")
        self.print_fn(" | ".join(parts))


def standard_callbacks(run_dir: str | Path, patience: int = 5, reduce_lr: bool = True,
                       epoch_lines: bool = True) -> list[keras.callbacks.Callback]:
    """CSV history, best-on-validation checkpoint, early stopping, optional LR schedule and progress."""
    run_dir = Path(run_dir)
    callbacks = [
        keras.callbacks.CSVLogger(str(run_dir / "history.csv")),
        keras.callbacks.ModelCheckpoint(str(run_dir / "model.keras"), monitor="val_loss", save_best_only=True),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True),
    ]
    if reduce_lr:
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5,
                                                           patience=max(1, patience // 2)))
    if epoch_lines:
        callbacks.append(EpochLine())
    return callbacks


def fit(model: keras.Model, train_data: tf.data.Dataset, validation_data: tf.data.Dataset, num_epochs: int,
        run_dir: str | Path, patience: int = 5, progress: str = "lines") -> pd.DataFrame:
    """Fit with the standard callbacks; progress is "lines" (one per epoch), "bar" (Keras) or "none".

    Ctrl-C stops cleanly and keeps the best checkpoint.
    """
    if num_epochs < 1:
        raise ValueError(f"num_epochs={num_epochs} must be at least 1.")
    if progress not in ("lines", "bar", "none"):
        raise ValueError(f"progress={progress!r} is unknown; use 'lines', 'bar' or 'none'.")
    callbacks = standard_callbacks(run_dir, patience=patience, epoch_lines=progress == "lines")
    try:
        model.fit(train_data, validation_data=validation_data, epochs=num_epochs, callbacks=callbacks, shuffle=False,
                  verbose="auto" if progress == "bar" else 0)
    except KeyboardInterrupt:
        print(f"interrupted: the best checkpoint so far is {Path(run_dir) / 'model.keras'}")
    history_file = Path(run_dir) / "history.csv"
    return pd.read_csv(history_file) if history_file.exists() else pd.DataFrame()


def load_trained_model(run_dir: str | Path) -> keras.Model:
    """Load RUN_DIR/model.keras for prediction, with a clear error when it is missing."""
    path = Path(run_dir) / "model.keras"
    if not path.exists():
        raise RunDirError(f"{path} does not exist: train a model first with `faceattr train --out {run_dir}` "
                          "(or run notebook 04).")
    return keras.models.load_model(path, compile=False)


def train_run(data: str | Path, run_dir: str | Path, arch: str = "default", num_epochs: int = 10,
              batch_size: int = 64, image_size: int | None = None, seed: int = 42, overwrite: bool = False,
              learning_rate: float = 1e-3, patience: int = 5, augment: bool = False,
              progress: str = "lines") -> dict:
    """Scan, split, train and evaluate one architecture; write everything into RUN_DIR."""
    from faceattr.data import is_sample, save_split, scan, split_frame
    from faceattr.defaults import check_settings
    from faceattr.evaluate import evaluate_run
    from faceattr.model import ARCH_SETTINGS, make_model
    from faceattr.pipeline import split_datasets

    check_settings(arch, num_epochs, image_size, batch_size)
    result = scan(data)
    split = split_frame(result.frame, seed=seed)
    run_dir = prepare_run_dir(run_dir, overwrite)
    save_split(split, run_dir / "split.csv")
    settings = ARCH_SETTINGS[arch]
    image_size = image_size or settings["image_size"]
    age_scale = float(split.loc[split["split"] == "train", "age"].max())  # from training data only
    config = write_run_config(
        run_dir, data, is_sample(result.root), arch=arch, image_size=image_size, num_epochs=num_epochs,
        batch_size=batch_size, seed=seed, learning_rate=learning_rate, patience=patience, augment=augment,
        age_scale=age_scale, age_loss=settings["age_loss"], loss_weights=settings["loss_weights"],
        split_counts=split["split"].value_counts().to_dict())
    keras.utils.set_random_seed(seed)
    use_mixed_precision_on_gpu()
    with device_strategy().scope():
        model = compile_model(make_model(arch, image_size, age_scale), learning_rate, settings["age_loss"],
                              age_scale, settings["loss_weights"])
    datasets = split_datasets(split, image_size, batch_size, seed, augment)
    started = time.perf_counter()
    history = fit(model, datasets["train"], datasets["validation"], num_epochs, run_dir, patience, progress)
    config["train_seconds"] = round(time.perf_counter() - started, 2)
    config["epochs_run"] = len(history)
    write_json(run_dir / "config.json", config)
    return evaluate_run(run_dir)
