"""The run folder: its file names, its config schema, its split and its model, in one place.

Every file is written atomically, so Ctrl-C or a crash never leaves a half-written one, and recorded with its hash in
the folder's manifest: the kit replaces or deletes only a file that is still as it wrote it, never a user's own. A
writer holds the folder's lock (`RunFolder.writing`; config.json, a `RunConfig`, is never written without it), so two
trainings (or a training and `faceattr run`, or notebook 04) cannot mix their files, and
`--overwrite` clears the kit's own files before anything new is written, so a stale model can never sit beside a new
config."""

from __future__ import annotations

import errno
import json
import os
import platform
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import MISSING, dataclass, fields, replace
from importlib import metadata
from pathlib import Path

import pandas as pd

from faceattr.defaults import DEFAULT_SEED
from faceattr.errors import DataError, FaceattrError, RunDirError
from faceattr.files import atomic_write, atomic_write_json, file_digest, full_disk_as_error, locked, write_json

CONFIG_VERSION = 2
SPLIT_COLUMNS = ["file", "age", "gender", "race", "split"]
MANIFEST_NAME = ".faceattr-manifest.json"  # in each folder the kit writes into: the files it wrote, with their hashes
RUN_LOCK_VARIABLE = "FACEATTR_RUN_LOCK_HELD"  # `faceattr run` sets it, for its notebooks, to the folder it has locked
KERNEL_LOG = "kernel-stderr.log"  # `faceattr run`'s notebook kernels' start-up chatter, in RUN_DIR/notebooks
_locks_held: set[str] = set()  # the run folders (resolved) whose lock this process holds (RunFolder.lock_held)


@dataclass(frozen=True)
class RunConfig(Mapping):
    """config.json: every setting of a run, the data it was trained on, and what training measured. Written and read
    only by `RunFolder`; it reads as a mapping of its JSON keys (those that are set), so `config["seed"]` works.

    A key left None is not written (an older config lacks the keys added since, and reads back the same)."""

    data: str
    seed: int
    image_size: int
    arch: str
    config_version: int | None = None       # stamped by RunFolder.write_config
    data_from_run_dir: str | None = None
    synthetic: bool | None = None
    model_name: str | None = None           # the Keras model's name (a student's own, or the architecture's)
    parameters: dict | None = None          # faceattr.balance.parameter_counts
    centre_pixels: bool | None = None       # recorded once the recipe carries it (faceattr.model.build_model's)
    age_head: str | None = None
    age_loss: str | None = None
    loss_balance: str | None = None
    loss_weights: dict | None = None        # each head's weight at the start
    learning_rate: float | None = None
    num_epochs: int | None = None
    batch_size: int | None = None
    patience: int | None = None
    augment: bool | None = None
    balance: str | None = None              # the mitigation across race x gender groups
    precision: str | None = None
    age_scale: float | None = None          # from the training split
    trivial_losses: dict | None = None
    trivial_errors: dict | None = None
    monitor: dict | None = None             # the score early stopping and the checkpoint watch
    split_counts: dict | None = None
    train_seconds: float | None = None
    epochs_run: int | None = None
    loss_weights_learned: dict | None = None  # at the kept epoch; None unless the balance learns them
    versions: dict | None = None            # package_versions()

    def __getitem__(self, key: str) -> object:
        """A set key's value, as config.json holds it."""
        value = getattr(self, key, None) if key in CONFIG_KEYS else None
        if value is None:
            raise KeyError(key)
        return value

    def __iter__(self) -> Iterator[str]:
        """The keys that are set, in the schema's order."""
        return (key for key in CONFIG_KEYS if getattr(self, key) is not None)

    def __len__(self) -> int:
        """How many keys are set."""
        return sum(1 for _ in self)

    def updated(self, **changes: object) -> RunConfig:
        """This config with `changes`."""
        return replace(self, **changes)

    def to_json(self) -> dict:
        """config.json's content: the keys that are set."""
        return dict(self)

    @classmethod
    def from_json(cls, payload: Mapping) -> RunConfig:
        """A config from config.json's content; keys of another kit version's schema are left out."""
        return cls(**{key: payload[key] for key in CONFIG_KEYS if payload.get(key) is not None})


CONFIG_KEYS: tuple[str, ...] = ("config_version", *(field.name for field in fields(RunConfig)
                                                    if field.name != "config_version"))  # config.json's order
REQUIRED_CONFIG_KEYS: tuple[str, ...] = tuple(field.name for field in fields(RunConfig) if field.default is MISSING)
# What every new run records of how it was trained (`faceattr train` and notebook 04 alike; tests check both).
RUN_SETTINGS: tuple[str, ...] = ("arch", "model_name", "parameters", "image_size", "age_head", "age_loss",
                                 "loss_balance", "loss_weights", "learning_rate", "num_epochs", "batch_size", "seed",
                                 "patience", "augment", "balance", "precision", "age_scale", "trivial_losses",
                                 "trivial_errors", "monitor", "split_counts")


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


def reached_directly(path: Path, folder: Path) -> bool:
    """True when `path` is a plain file inside `folder`, reached through no symbolic link (so deleting it can never
    delete anything elsewhere)."""
    inside = os.path.join(os.path.realpath(folder), os.path.relpath(path, folder))
    return path.is_file() and not path.is_symlink() and os.path.realpath(path) == inside


class Manifest:
    """The files faceattr wrote in one folder, each with its SHA-256. The kit replaces or deletes a file only while
    its content is still what the kit wrote, so a user's own file, or one they changed, is never touched."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    path = property(lambda self: self.folder / MANIFEST_NAME, doc="the manifest itself (JSON)")
    lock = property(lambda self: self.folder / ".faceattr-manifest.lock", doc="held while the manifest is updated")

    def name_of(self, path: Path) -> str:
        """`path` relative to the folder, as the manifest names it."""
        relative = os.path.relpath(path, self.folder)
        if relative == os.curdir or relative.startswith(os.pardir):
            raise ValueError(f"{path} is not a file inside {self.folder}")
        return Path(relative).as_posix()

    def entries(self) -> dict[str, str]:
        """Each recorded file (relative path) and its SHA-256; a missing or damaged manifest records nothing, so
        nothing counts as the kit's own."""
        try:
            files = json.loads(self.path.read_text())["files"]
        except (OSError, ValueError, KeyError, TypeError):
            return {}
        return {str(name): str(digest) for name, digest in files.items()} if isinstance(files, dict) else {}

    def update(self, change: Callable[[dict[str, str]], object]) -> None:
        """Apply `change` to the entries and write them back, under the manifest's lock."""
        with locked(self.lock):
            entries = self.entries()
            change(entries)
            if entries:
                atomic_write_json(self.path, {"version": 1, "files": dict(sorted(entries.items()))})
            else:
                self.path.unlink(missing_ok=True)

    def record(self, *paths: Path) -> None:
        """Record `paths` as written by the kit, as they are now."""
        digests = {self.name_of(Path(path)): file_digest(path) for path in paths}
        self.update(lambda entries: entries.update(digests))

    def owns(self, path: Path) -> bool:
        """True when the kit wrote `path` and it is unchanged since."""
        recorded = self.entries().get(self.name_of(path))
        try:
            return recorded is not None and path.is_file() and file_digest(path) == recorded
        except OSError:
            return False

    def foreign(self, paths: Iterable[Path]) -> list[Path]:
        """Those of `paths` that exist but are not the kit's own (see `owns`)."""
        return [path for path in paths if (path.exists() or path.is_symlink()) and not self.owns(path)]

    def write(self, path: Path, write: Callable[[Path], object]) -> Path:
        """Write `path` atomically with `write(temporary_path)` and record it; a file there that the kit did not
        write (or that changed since) is refused, never replaced."""
        path = Path(path)
        if self.foreign([path]):
            raise RunDirError(f"{path} was not written by faceattr (or was changed since), and the kit never writes "
                              "over such a file: move it away, or choose another folder.")
        atomic_write(path, write)
        self.record(path)
        return path

    def remove(self, paths: Iterable[Path] | None = None) -> list[Path]:
        """Delete the kit's own files among `paths` (default: every recorded one), each only if unchanged and
        reached through no link; return the recorded ones left alone."""
        entries = self.entries()
        names = entries.keys() if paths is None else {self.name_of(Path(path)) for path in paths} & entries.keys()
        removed, kept = [], []
        for name in sorted(names):
            path = self.folder / name
            if not (path.exists() or path.is_symlink()):
                removed.append(name)
            elif reached_directly(path, self.folder) and file_digest(path) == entries[name]:
                path.unlink()
                removed.append(name)
            else:
                kept.append(path)
        self.update(lambda current: [current.pop(name, None) for name in removed])
        return kept


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
    notebooks = property(lambda self: self.root / "notebooks", doc="the lessons `faceattr run` executed")
    kernel_log = property(lambda self: self.notebooks / KERNEL_LOG, doc="their kernels' start-up chatter")
    manifest = property(lambda self: Manifest(self.root), doc="the files the kit wrote here, with their hashes")

    def named_files(self) -> list[Path]:
        """The files the kit writes here under fixed names."""
        return [self.model, self.untrained, self.config, self.split, self.history, self.metrics, self.predictions,
                self.model_card]

    def notebook_outputs(self, notebooks: Iterable[Path]) -> list[Path]:
        """What `faceattr run` writes into notebooks/: each executed lesson (by its name) and the kernels' log."""
        return [self.notebooks / Path(notebook).name for notebook in notebooks] + [self.kernel_log]

    def has_run(self) -> bool:
        """True when a trained run (a model or a config) is here."""
        return self.model.exists() or self.config.exists()

    def write(self, path: Path, write: Callable[[Path], object]) -> Path:
        """Write one of this folder's files atomically and record it in the manifest (see `Manifest.write`)."""
        return self.manifest.write(path, write)

    def refuse_inside(self, data: str | Path) -> None:
        """Refuse a run folder that is the data, or inside the data folder: the kit never writes into the user's
        data."""
        data, root = Path(data).expanduser().resolve(), self.root.expanduser().resolve()
        if root == data or data in root.parents:
            where = "is the data folder" if root == data else f"is inside the data folder {data}"
            raise RunDirError(f"the run folder {self.root} {where}, and the kit never writes into your data: "
                              "choose an --out folder outside it.")

    def refuse_foreign(self, paths: Iterable[Path]) -> None:
        """Refuse (one line, before anything is deleted) when any of `paths` is a file the kit did not write here,
        or one changed since."""
        foreign = self.manifest.foreign(paths)
        if foreign:
            names = ", ".join(os.path.relpath(path, self.root) for path in foreign)
            raise RunDirError(f"{self.root} holds {names}, which faceattr did not write (or which changed since), "
                              "and the kit never deletes or replaces such files: move them away, or choose another "
                              "folder.")

    def prepare(self) -> None:
        """Make the folder, or say in one line why it cannot hold a run: it is a file, a part of its path is a file,
        this user cannot write there, or the disk is full."""
        if self.root.exists() and not self.root.is_dir():
            raise RunDirError(f"{self.root} is a file; give a folder for the run.")
        try:
            with full_disk_as_error(self.root):
                self.root.mkdir(parents=True, exist_ok=True)
                tempfile.TemporaryFile(dir=self.root).close()
        except FaceattrError:
            raise
        except OSError as error:
            why = "a part of that path is a file" if error.errno in (errno.ENOTDIR, errno.EEXIST) else \
                (error.strerror or str(error))
            raise RunDirError(f"cannot write the run folder {self.root} ({why}); choose an --out folder you can "
                              "write to.") from None

    @contextmanager
    def lock_held(self) -> Iterator[None]:
        """Hold the folder's lock for the block, refusing (one line) when another process holds it; in the notebooks
        that `faceattr run` executes, the sequence holds it for them (see `lock_lent_to_children`)."""
        if os.environ.get(RUN_LOCK_VARIABLE) == str(self.root.resolve()):
            yield
            return
        with locked(self.lock, blocking=False) as acquired:
            if not acquired:
                raise RunDirError(f"another process is writing a run into {self.root}; wait for it to finish, "
                                  "or choose another folder.")
            _locks_held.add(str(self.root.resolve()))
            try:
                yield
            finally:
                _locks_held.discard(str(self.root.resolve()))

    def lock_is_held(self) -> bool:
        """True inside `lock_held` (or `writing`) in this process, or in a notebook `faceattr run` lent it to."""
        root = str(self.root.resolve())
        return root in _locks_held or os.environ.get(RUN_LOCK_VARIABLE) == root

    @contextmanager
    def lock_lent_to_children(self) -> Iterator[None]:
        """For the block (which holds the lock), let child processes started in it, the sequence's notebook
        kernels, write here as if they held it."""
        previous = os.environ.get(RUN_LOCK_VARIABLE)
        os.environ[RUN_LOCK_VARIABLE] = str(self.root.resolve())
        try:
            yield
        finally:
            if previous is None:
                os.environ.pop(RUN_LOCK_VARIABLE, None)
            else:
                os.environ[RUN_LOCK_VARIABLE] = previous

    @contextmanager
    def writing(self, overwrite: bool = False, replacing: Sequence[Path] | None = None,
                report: Callable[[str], object] = lambda note: None) -> Iterator[RunFolder]:
        """Make the folder and hold its lock for the block. By default, refuse a folder that already holds a run;
        with `overwrite`, first delete the kit's own files (see `clear`, whose note goes to `report`); with
        `replacing`, delete just those of the kit's own files (notebook 04 replaces its model, config and history;
        `faceattr run` passes none). A file the kit did not write is never deleted: it is refused instead."""
        self.prepare()
        with self.lock_held():
            if replacing is not None:
                self.refuse_foreign(replacing)
                self.manifest.remove(replacing)
            elif overwrite:
                for note in self.clear():
                    report(note)
            elif self.has_run():
                taken = [path.name for path in (self.model, self.config) if path.exists()]
                raise RunDirError(f"{self.root} already holds a run ({', '.join(taken)}); choose a new folder "
                                  "or pass --overwrite to replace it.")
            yield self

    def clear(self) -> list[str]:
        """`--overwrite`: delete every file the kit wrote here that is unchanged since (empty kit folders too);
        refuse, before deleting anything, when a file under one of the kit's names is not such a file. Return a
        note naming any other file left alone."""
        self.refuse_foreign(self.named_files())
        kept = self.manifest.remove()
        for folder in (self.figures, self.notebooks):
            if folder.is_dir() and not folder.is_symlink() and not any(folder.iterdir()):
                folder.rmdir()
        hidden = {self.lock.name, self.manifest.path.name, self.manifest.lock.name}
        left = sorted({*kept, *(path for folder in (self.root, self.figures, self.notebooks)
                                if folder.is_dir() and not folder.is_symlink()
                                for path in folder.iterdir() if path.name not in hidden and
                                not (folder == self.root and path in (self.figures, self.notebooks)))})
        if not left:
            return []
        names = [os.path.relpath(path, self.root) + ("/" if path.is_dir() else "") for path in left]
        return [f"--overwrite left {len(names)} entr{'y' if len(names) == 1 else 'ies'} in {self.root} alone, not "
                "being the run's own files as the kit wrote them (yours, changed since, in a folder of their own, "
                f"or reached through a link): {', '.join(names[:5])}"
                + (f" and {len(names) - 5} more" if len(names) > 5 else "")]

    def check_idle(self) -> None:
        """Refuse to read a run that another process is still writing."""
        if self.lock.exists():
            with locked(self.lock, blocking=False) as acquired:
                if not acquired:
                    raise RunDirError(f"{self.root} is still being written by another process (a training); "
                                      "wait for it to finish.")

    def write_run_config(self, data_root: str | Path, synthetic: bool, **settings: object) -> RunConfig:
        """Write a new config.json: the data (absolute, and relative to the run folder), whether it is synthetic,
        every setting (RunConfig's keys), and package versions."""
        data_root = Path(data_root).resolve()
        return self.write_config(RunConfig(data=str(data_root),
                                           data_from_run_dir=os.path.relpath(data_root, self.root.resolve()),
                                           synthetic=synthetic, **settings, versions=package_versions()))

    def write_config(self, config: RunConfig) -> RunConfig:
        """Write config.json (atomically), stamped with the schema version; the writer holds the folder's lock
        (`writing`), so no other process mixes its files in."""
        if not isinstance(config, RunConfig):
            raise TypeError(f"write_config takes a RunConfig, not {type(config).__name__}")
        if not self.lock_is_held():
            raise RuntimeError(f"config.json in {self.root} is written only inside `with RunFolder(...).writing()`, "
                               "which holds the run folder's lock")
        config = config.updated(config_version=CONFIG_VERSION)
        self.write(self.config, lambda temporary: write_json(temporary, config.to_json()))
        return config

    def read_config(self) -> RunConfig:
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
        missing = [key for key in REQUIRED_CONFIG_KEYS if config.get(key) is None]
        if missing:
            raise RunDirError(f"{self.config} has no {missing[0]!r} key; retrain with --overwrite.")
        if config.get("config_version", 1) > CONFIG_VERSION:
            raise RunDirError(f"{self.config} was written by a newer faceattr (config version "
                              f"{config['config_version']}); upgrade faceattr to read it.")
        return RunConfig.from_json(config)

    def provenance(self) -> dict:
        """What the model was trained on, for its predictions to carry: the data, and whether it is synthetic
        (both None when the folder holds a model but no config.json)."""
        if not self.config.exists():
            return {"run": str(self.root), "trained_on": None, "synthetic": None}
        config = self.read_config()
        return {"run": str(self.root), "trained_on": str(config["data"]), "synthetic": bool(config.get("synthetic"))}

    def data_path(self, config: Mapping) -> Path:
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
        return self.write(self.split, lambda temporary: split[SPLIT_COLUMNS].to_csv(temporary, index=False))

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
        return self.write(self.metrics, lambda temporary: write_json(temporary, metrics))

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

    def write_model_card(self, config: Mapping, metrics: dict) -> Path:
        """Write model_card.md (atomically) from the run's config and metrics."""
        from faceattr.card import model_card

        text = model_card(config, metrics, self.root.resolve().name)
        return self.write(self.model_card, lambda temporary: temporary.write_text(text))

    def save_predictions(self, predictions: pd.DataFrame) -> Path:
        """Write predictions.csv atomically."""
        return self.write(self.predictions, lambda temporary: predictions.to_csv(temporary, index=False))
