"""The run folder: its file names, its config schema, its split and its model, in one place.

Every file is written atomically, so Ctrl-C or a crash never leaves a half-written one. A writer holds the
folder's lock, so two trainings cannot mix their files, and `--overwrite` clears the kit's own files before
anything new is written, so a stale model can never sit beside a new config."""

from __future__ import annotations

import json
import os
import platform
import shutil
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pandas as pd

from faceattr.defaults import DEFAULT_SEED
from faceattr.errors import DataError, RunDirError
from faceattr.files import atomic_write, atomic_write_json, atomic_write_text, locked

CONFIG_VERSION = 2
REQUIRED_CONFIG_KEYS = ("data", "seed", "image_size", "arch")
SPLIT_COLUMNS = ["file", "age", "gender", "race", "split"]


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


def saved_layers(path: Path) -> list[dict] | None:
    """The layer configs of a saved .keras model, read without TensorFlow; None if unreadable."""
    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("config.json"))["config"]["layers"]
    except (OSError, KeyError, TypeError, ValueError, zipfile.BadZipFile):
        return None


def saved_image_size(path: Path) -> int | None:
    """The image size a saved .keras model takes; None if unreadable."""
    try:
        shape = next(layer["config"]["batch_shape"] for layer in saved_layers(path) if layer["class_name"] == "InputLayer")
        return int(shape[1])
    except (KeyError, TypeError, ValueError, StopIteration):
        return None


def saved_precision(path: Path) -> str | None:
    """The dtype policy a saved model's first convolution computes in ("float32", "mixed_bfloat16", ...): a layer
    keeps the precision it was built in. None if unreadable or without a convolution."""
    try:
        dtype = next(layer["config"]["dtype"] for layer in saved_layers(path) if layer["class_name"] == "Conv2D")
        return dtype["config"]["name"] if isinstance(dtype, dict) else str(dtype)
    except (KeyError, TypeError, StopIteration):
        return None


@dataclass(frozen=True)
class RunFolder:
    """One run folder and the names of the files the kit keeps in it."""

    root: Path

    def __init__(self, root: str | Path):
        object.__setattr__(self, "root", Path(root))

    model = property(lambda self: self.root / "model.keras", doc="the kept (best) model")
    untrained = property(lambda self: self.root / "untrained.keras", doc="notebook 03's model, before training")
    config = property(lambda self: self.root / "config.json", doc="every setting, the data, package versions")
    split = property(lambda self: self.root / "split.csv", doc="which image is in which part")
    history = property(lambda self: self.root / "history.csv", doc="per-epoch losses and metrics")
    metrics = property(lambda self: self.root / "metrics.json", doc="test-split metrics")
    predictions = property(lambda self: self.root / "predictions.csv", doc="one row per test image")
    model_card = property(lambda self: self.root / "model_card.md", doc="what the model is for, and where it fails")
    figures = property(lambda self: self.root / "figures", doc="PNG figures")
    lock = property(lambda self: self.root / ".faceattr.lock", doc="held by the process writing the run")

    def kit_files(self) -> list[Path]:
        """The files (and the figures folder) the kit writes here; nothing else in the folder is touched."""
        return [self.model, self.untrained, self.config, self.split, self.history, self.metrics, self.predictions,
                self.model_card, self.figures]

    def has_run(self) -> bool:
        """True when a trained run (a model or a config) is here."""
        return self.model.exists() or self.config.exists()

    @contextmanager
    def writing(self, overwrite: bool = False) -> Iterator[RunFolder]:
        """Hold the folder's lock for the block; refuse a folder that already holds a run unless `overwrite`,
        which first removes the kit's own files."""
        if self.root.exists() and not self.root.is_dir():
            raise RunDirError(f"{self.root} is a file; give a folder for the run.")
        self.root.mkdir(parents=True, exist_ok=True)
        with locked(self.lock, blocking=False) as acquired:
            if not acquired:
                raise RunDirError(f"another process is writing a run into {self.root}; wait for it to finish, "
                                  "or choose another folder.")
            if self.has_run() and not overwrite:
                taken = [path.name for path in (self.model, self.config) if path.exists()]
                raise RunDirError(f"{self.root} already holds a run ({', '.join(taken)}); choose a new folder "
                                  "or pass --overwrite to replace it.")
            for path in self.kit_files():
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
            yield self

    def check_idle(self) -> None:
        """Refuse to read a run that another process is still writing."""
        if self.lock.exists():
            with locked(self.lock, blocking=False) as acquired:
                if not acquired:
                    raise RunDirError(f"{self.root} is still being written by another process (a training); "
                                      "wait for it to finish.")

    def stale_notes(self, before_training: bool = False, precision: str | None = None) -> list[str]:
        """Warnings for the edit-and-retrain loop: notebook 03's model older than the split, or (unless about to
        train) newer than the trained model, so 05 would evaluate an older model than the one the student built;
        and, given the `precision` training will use, 03's model built in another one."""
        notes = []
        built_in = saved_precision(self.untrained) if precision and self.untrained.exists() else None
        if built_in and built_in != precision:
            notes.append(f"{self.untrained.name} was built in {built_in} and its layers keep it, but the kit now "
                         f"computes in {precision}: rerun notebook 03 to build it in {precision}.")
        if self.untrained.exists() and self.split.exists() and \
                self.untrained.stat().st_mtime < self.split.stat().st_mtime:
            notes.append(f"{self.untrained.name} was saved before {self.split.name} was made: rerun notebook 03 "
                         "if you changed the data or the split.")
        if not before_training and self.untrained.exists() and self.model.exists() and \
                self.untrained.stat().st_mtime > self.model.stat().st_mtime:
            notes.append(f"{self.untrained.name} is newer than {self.model.name}: notebook 03 has run since this "
                         "model was trained; rerun notebook 04 to train the model you built.")
        built, trained = saved_image_size(self.untrained), saved_image_size(self.model)
        if not before_training and built and trained and built != trained:
            notes.append(f"{self.untrained.name} takes {built} px images but {self.model.name} was trained at "
                         f"{trained} px: rerun notebook 04 to train the model you built.")
        return notes

    def write_run_config(self, data_root: str | Path, synthetic: bool, **settings: object) -> dict:
        """Write a new config.json: the data (absolute, and relative to the run folder), whether it is synthetic,
        every setting, and package versions."""
        data_root = Path(data_root).resolve()
        return self.write_config({"data": str(data_root),
                                  "data_from_run_dir": os.path.relpath(data_root, self.root.resolve()),
                                  "synthetic": synthetic, **settings, "versions": package_versions()})

    def write_config(self, config: dict) -> dict:
        """Write config.json (atomically), stamped with the schema version."""
        config = {"config_version": CONFIG_VERSION, **config}
        atomic_write_json(self.config, config)
        return config

    def read_config(self) -> dict:
        """Read config.json; a missing, garbled or incomplete one is an error that names the file and the key."""
        if not self.config.exists():
            raise RunDirError(f"{self.config} does not exist: train a model first with "
                              f"`faceattr train --out {self.root}`.")
        try:
            config = json.loads(self.config.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise RunDirError(f"{self.config} is not valid JSON ({error}); retrain with --overwrite.") from None
        if not isinstance(config, dict):
            raise RunDirError(f"{self.config} does not hold a JSON object; retrain with --overwrite.")
        missing = [key for key in REQUIRED_CONFIG_KEYS if key not in config]
        if missing:
            raise RunDirError(f"{self.config} has no {missing[0]!r} key; retrain with --overwrite.")
        if config.get("config_version", 1) > CONFIG_VERSION:
            raise RunDirError(f"{self.config} was written by a newer faceattr (config version "
                              f"{config['config_version']}); upgrade faceattr to read it.")
        return config

    def provenance(self) -> dict:
        """What the model was trained on, for its predictions to carry: the data, and whether it is synthetic
        (both None when the folder holds a model but no config.json)."""
        if not self.config.exists():
            return {"run": str(self.root), "trained_on": None, "synthetic": None}
        config = self.read_config()
        return {"run": str(self.root), "trained_on": str(config["data"]), "synthetic": bool(config.get("synthetic"))}

    def data_path(self, config: dict) -> Path:
        """The data the run was trained on: its absolute path, else the same path relative to the run folder
        (for a project moved as a whole)."""
        absolute = Path(config["data"])
        if not absolute.is_absolute():  # config version 1 stored --data as typed ("sample", "s300")
            from faceattr.data import resolve_data_dir

            absolute = resolve_data_dir(config["data"]).resolve()
        if absolute.exists():
            return absolute
        relative = config.get("data_from_run_dir")
        if relative and (self.root / relative).exists():
            return (self.root / relative).resolve()
        raise DataError(f"the data this run was trained on ({absolute}) no longer exists; pass --data to say "
                        "where it is now.")

    def save_split(self, split: pd.DataFrame) -> Path:
        """Write split.csv (paths relative to the data folder), atomically."""
        return atomic_write(self.split, lambda temporary: split[SPLIT_COLUMNS].to_csv(temporary, index=False))

    def load_split(self, data_root: str | Path) -> pd.DataFrame:
        """Read split.csv and rebuild its full frame against `data_root`."""
        from faceattr.data import build_frame

        if not self.split.exists():
            raise RunDirError(f"{self.split} does not exist: run notebook 01 (or `faceattr train`) first to "
                              "make the split.")
        try:
            stored = pd.read_csv(self.split)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
            raise RunDirError(f"{self.split} is not a readable CSV ({error}); delete it to make a new split.") from None
        missing = [column for column in SPLIT_COLUMNS if column not in stored.columns]
        if missing:
            raise RunDirError(f"{self.split} has no {missing[0]!r} column; delete it to make a new split.")
        return build_frame(stored.drop(columns="split").to_dict("records"), Path(data_root)).merge(
            stored[["file", "split"]], on="file")

    def load_or_make_split(self, result, seed: int = DEFAULT_SEED) -> tuple[pd.DataFrame, bool]:
        """split.csv if one exists (notebook 01 or a train run made it), else a new seeded split saved here;
        the flag says whether it was made now."""
        from faceattr.data import split_frame

        if self.split.exists():
            return self.load_split(result.root), False
        split = split_frame(result.frame, seed=seed)
        self.save_split(split)
        return split, True

    def load_model(self):
        """Load model.keras for prediction, with a clear error when it is missing or is not a Keras model."""
        import faceattr.balance  # noqa: F401  (registers the custom layers and losses a saved model names)
        import faceattr.model  # noqa: F401  (and imports TensorFlow quietly, before Keras)
        import keras

        if not self.model.exists():
            raise RunDirError(f"{self.model} does not exist: train a model first with "
                              f"`faceattr train --out {self.root}` (or run notebook 04).")
        try:
            return keras.models.load_model(self.model, compile=False, safe_mode=True)  # never run a file's code
        except (ValueError, OSError, KeyError, TypeError) as error:
            if "safe_mode" in str(error):
                raise RunDirError(f"{self.model} holds Python code (a Lambda layer), which the kit never runs from a "
                                  f"file; retrain with `faceattr train --out {self.root} --overwrite`.") from None
            if zipfile.is_zipfile(self.model):
                raise  # a whole Keras archive that fails to load is a bug, not bad input
            raise RunDirError(f"{self.model} is not a Keras model file ({type(error).__name__}); retrain with "
                              "--overwrite.") from None

    def write_metrics(self, metrics: dict) -> Path:
        """Write metrics.json atomically."""
        return atomic_write_json(self.metrics, metrics)

    def read_metrics(self) -> dict:
        """Read metrics.json; a missing or garbled one is an error that says which command writes it."""
        try:
            return json.loads(self.metrics.read_text())
        except FileNotFoundError:
            raise RunDirError(f"{self.metrics} does not exist: evaluate the run first with "
                              f"`faceattr evaluate {self.root}`.") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise RunDirError(f"{self.metrics} is not valid JSON ({error}); run `faceattr evaluate {self.root}` "
                              "again.") from None

    def write_model_card(self, config: dict, metrics: dict) -> Path:
        """Write model_card.md (atomically) from the run's config and metrics."""
        from faceattr.card import model_card

        return atomic_write_text(self.model_card, model_card(config, metrics, self.root.resolve().name))

    def save_predictions(self, predictions: pd.DataFrame) -> Path:
        """Write predictions.csv atomically."""
        return atomic_write(self.predictions, lambda temporary: predictions.to_csv(temporary, index=False))
