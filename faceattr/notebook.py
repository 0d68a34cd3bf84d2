"""One-call notebook setup and small helpers the lessons share."""

from __future__ import annotations

import ast
import json
import os
import random
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import suppress
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from faceattr import stderr_to
from faceattr.defaults import (ARCH_NAMES, DEFAULT_SEED, GROUP_BALANCES, LOSS_BALANCES, check_at_least,
                               check_batch_size, check_choice, check_epochs, check_image_size, check_learning_rate,
                               check_min_confidence, check_min_face_size, check_model_name, check_seed,
                               check_trunk)
from faceattr.errors import SequenceError, SettingsError
from faceattr.labels import RACE_NAMES
from faceattr.data import PROJECT_ROOT, data_in_use, data_location, is_sample
from faceattr.files import full_disk_as_error
from faceattr.paths import check_path, path_cells
from faceattr.runs import RunFolder, saved_image_size, saved_precision


def setup_notebook(seed: int = DEFAULT_SEED, tensorflow: bool = True) -> str:
    """Seed everything, set plot defaults and describe the machine; return a one-line summary. `tensorflow=False`
    (a lesson that only reads data) seeds Python and NumPy and leaves TensorFlow unimported, which saves its start-up
    (about 4 s of CPU per kernel, a class's wait on a shared machine)."""
    from faceattr import __version__, import_tensorflow
    from faceattr.plots import set_style

    set_style()
    if not tensorflow:
        random.seed(seed)
        np.random.seed(seed)
        return f"faceattr {__version__} | no TensorFlow in this lesson: it reads data only (notebook 03 loads it)"
    tf = import_tensorflow()
    import keras
    from faceattr.train import choose_precision

    keras.utils.set_random_seed(seed)
    precision = choose_precision()
    tf.get_logger().setLevel("ERROR")  # no retracing notes when a lesson trains several models in a loop
    gpus = tf.config.list_physical_devices("GPU")
    device = (f"{len(gpus)} GPU(s): training runs on the GPU" if gpus
              else f"no GPU, {os.cpu_count()} CPU cores: fine for the sample (seconds per epoch)")
    return (f"faceattr {__version__} | TensorFlow {tf.__version__} | Keras {keras.__version__} | {device} | "
            f"precision {precision}")


def display_path(path: str | Path) -> str:
    """Show a path relative to the project when it is inside it (no absolute paths in outputs)."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)


def describe_data(path: str | Path) -> str:
    """Say which data a notebook is using, and plainly when it is the synthetic sample."""
    if is_sample(path):
        return (f"Using the SYNTHETIC sample at {display_path(path)}: cartoon faces drawn by the kit. "
                "Numbers measured on it show the code works; they say nothing about real faces.")
    return f"Using real data at {display_path(path)}."


def stale_notes(run: RunFolder, before_training: bool = False, precision: str | None = None) -> list[str]:
    """Warnings for the edit-and-retrain loop: notebook 03's model older than the split, or (unless about to
    train) newer than the trained model, so 05 would evaluate an older model than the one the student built;
    and, given the `precision` training will use, 03's model built in another one."""
    notes = []
    built_in = saved_precision(run.untrained) if precision and run.untrained.exists() else None
    if built_in and built_in != precision:
        notes.append(f"{run.untrained.name} was built in {built_in} and its layers keep it, but the kit now "
                     f"computes in {precision}: rerun notebook 03 to build it in {precision}.")
    if run.untrained.exists() and run.split.exists() and \
            run.untrained.stat().st_mtime < run.split.stat().st_mtime:
        notes.append(f"{run.untrained.name} was saved before {run.split.name} was made: rerun notebook 03 "
                     "if you changed the data or the split.")
    if not before_training and run.untrained.exists() and run.model.exists() and \
            run.untrained.stat().st_mtime > run.model.stat().st_mtime:
        notes.append(f"{run.untrained.name} is newer than {run.model.name}: notebook 03 has run since this "
                     "model was trained; rerun notebook 04 to train the model you built.")
    built, trained = saved_image_size(run.untrained), saved_image_size(run.model)
    if not before_training and built and trained and built != trained:
        notes.append(f"{run.untrained.name} takes {built} px images but {run.model.name} was trained at "
                     f"{trained} px: rerun notebook 04 to train the model you built.")
    return notes


def notebook_dir() -> Path:
    """The lesson notebooks: the checkout's notebooks/ folder, else the copy installed with the package."""
    for folder in (PROJECT_ROOT / "notebooks", Path(__file__).resolve().parent / "notebooks"):
        if list(folder.glob("[0-9][0-9]_*.ipynb")):
            return folder
    raise SequenceError(f"no lesson notebooks found (looked in {PROJECT_ROOT / 'notebooks'} and in the installed "
                        "package); reinstall faceattr, or run from a checkout of the kit.")


def lesson_notebooks(folder: Path | None = None) -> list[Path]:
    """The numbered lesson notebooks, in order."""
    return sorted((folder or notebook_dir()).glob("[0-9][0-9]_*.ipynb"))


def notebook_parameters(path: Path) -> dict[str, object]:
    """The literal defaults in a notebook's single `parameters` cell."""
    cells = [cell for cell in json.loads(path.read_text())["cells"]
             if "parameters" in cell.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise SequenceError(f"{path.name} has {len(cells)} cells tagged 'parameters'; it needs exactly one.")
    values = {}
    for node in ast.parse("".join(cells[0]["source"])).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            values[node.targets[0].id] = ast.literal_eval(node.value)
    return values


def each(check: Callable[[Any], Any]) -> Callable[[list], list]:
    """A rule for a list parameter: at least one element, and every element passing `check`."""

    def check_each(values: list) -> list:
        """Check every element of `values`."""
        if not values:
            raise SettingsError("the list is empty; give at least one element.")
        for index, value in enumerate(values):
            try:
                check(value)
            except SettingsError as error:
                raise SettingsError(f"element {index} ({value!r}): {error}") from None
        return values

    return check_each


def check_data_dir(data_dir: str) -> str:
    """Return `data_dir` if it is "auto", "sample" or a path that exists, else raise."""
    if data_dir not in ("auto", "sample") and not Path(data_dir).expanduser().exists():
        raise SettingsError(f"{data_dir} does not exist; give a UTKFace folder or .tar.gz, \"sample\" or \"auto\".")
    return data_dir


def check_photo_path(photo_path: str) -> str:
    """Return `photo_path` if it is "grace_hopper" (matplotlib's sample photo) or a file that exists, else raise."""
    if photo_path != "grace_hopper" and not Path(photo_path).expanduser().is_file():
        raise SettingsError(f"{photo_path} is not a file; give a photo, or \"grace_hopper\" for the sample portrait.")
    return photo_path


def set_by_out(run_dir: str) -> str:
    """Refuse a run folder given as a parameter: `faceattr run --out` sets it for every notebook."""
    raise SettingsError("the run folder is set for every notebook by `faceattr run --out RUN_DIR`, not by -p.")


# Each notebook parameter's rule beyond its type (the type of its default, list elements included): the checks that
# `faceattr train` uses, from faceattr.defaults. A parameter without a rule is checked for its type only; a new
# parameter gets its rule by adding one line here.
PARAMETER_RULES: dict[str, Callable[[Any], Any]] = {
    "data_dir": check_data_dir,
    "run_dir": set_by_out,
    "model_name": check_model_name,
    "seed": check_seed,
    "image_size": check_image_size,
    "trunk_filters": each(partial(check_at_least, "trunk filters")),  # and against image_size: typed_parameters
    "num_epochs": check_epochs,
    "batch_size": check_batch_size,
    "learning_rate": check_learning_rate,
    "loss_balance": partial(check_choice, "loss balance", choices=LOSS_BALANCES),
    "patience": partial(check_at_least, "patience"),
    "probe_epochs": check_epochs,
    "photo_path": check_photo_path,
    "min_face_size": check_min_face_size,
    "min_confidence": check_min_confidence,
    "architectures": each(partial(check_choice, "arch", choices=ARCH_NAMES)),
    "loss_balances": each(partial(check_choice, "loss balance", choices=LOSS_BALANCES)),
    "experiment_epochs": check_epochs,
    "num_faces": partial(check_at_least, "number of faces"),
    "occlusion_patch": partial(check_at_least, "occlusion patch"),
    "cue_race": partial(check_choice, "race", choices=RACE_NAMES),
    "shortcut_image_size": check_image_size,
    "shortcut_epochs": check_epochs,
    "num_bootstrap": partial(check_at_least, "number of bootstrap samples"),
    "balances": each(partial(check_choice, "balance", choices=GROUP_BALANCES)),
    "study_seeds": each(check_seed),
    "study_image_size": check_image_size,
    "study_epochs": check_epochs,
}


def parse_value(text: str) -> object:
    """A `-p` value as Python reads it: a literal, else (a bare word) the string itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text


def typed_like(value: object, default: object) -> object:
    """`value` with the type of `default` (an int where a float is expected becomes a float; lists element by
    element, against the type of the default's elements); raise SettingsError naming the type when it differs."""
    if isinstance(default, float) and type(value) is int:
        return float(value)
    if type(value) is not type(default):
        raise SettingsError(f"must be of type {type(default).__name__}")
    if isinstance(default, list) and default:
        typed = []
        for index, element in enumerate(value):
            try:
                typed.append(typed_like(element, default[0]))
            except SettingsError as error:
                raise SettingsError(f"element {index} ({element!r}) {error}") from None
        return typed
    return value


def checked_parameter(name: str, text: str, default: object) -> object:
    """One `-p NAME VALUE`: parsed, typed like the notebooks' default and checked by its rule."""
    try:
        value = typed_like(parse_value(text), default)
    except SettingsError as error:
        raise SequenceError(f"parameter {name!r} {error} (default {default!r}); got {text!r}.") from None
    try:
        PARAMETER_RULES.get(name, lambda value: value)(value)
    except SettingsError as error:
        raise SequenceError(f"parameter {name!r} (-p {name} {text}): {error}") from None
    return value


def typed_parameters(overrides: dict[str, str], notebooks: list[Path]) -> dict[str, object]:
    """Parse `-p NAME VALUE` strings and check each against the notebooks' parameter defaults and its rule in
    PARAMETER_RULES, before any notebook runs."""
    defaults: dict[str, object] = {}
    for path in notebooks:
        for name, value in notebook_parameters(path).items():
            defaults.setdefault(name, value)
    typed = {}
    for name, text in overrides.items():
        if name not in defaults:
            raise SequenceError(f"unknown parameter {name!r}; the notebooks take: {', '.join(sorted(defaults))}.")
        typed[name] = checked_parameter(name, text, defaults[name])
    chosen = {**defaults, **typed}
    if "trunk_filters" in chosen and "image_size" in chosen:
        try:
            check_trunk(chosen["trunk_filters"], chosen["image_size"])
        except SettingsError as error:
            raise SequenceError(f"parameters 'trunk_filters' and 'image_size' together: {error}") from None
    return typed


UNIX_SOCKET_PATH_MAX = 100  # bytes: Linux allows 107, macOS 103


def kernel_options(sockets: Path) -> dict:
    """papermill's options for a kernel that talks over IPC sockets in `sockets` (a folder only this user can
    enter), where the platform has them: kernels started at once never race for a TCP port (ZMQError: Address
    already in use), and no other user can reach them. Elsewhere (Windows), TCP as papermill's default."""
    import zmq
    from traitlets.config import Config

    if not zmq.has("ipc") or len(str(sockets / "kernel-00")) > UNIX_SOCKET_PATH_MAX:
        return {}
    return {"config": Config({"KernelManager": {"transport": "ipc", "ip": str(sockets / "kernel")}})}


KERNEL_START_SECONDS = 300   # a kernel's start, and its TensorFlow import, on a loaded machine
KERNELS_AHEAD = 2            # lessons whose kernels start while one runs (each holds about 0.5 GB once warm)
LESSONS_AT_ONCE = 2          # lessons that run side by side when neither needs the other's files
# The earlier lessons whose files each lesson reads (none for a lesson not named): 03 the split 01 makes; 04 the
# split and 03's model; 05 to 09 the run 04 trained (07 reads 03's model, and 04's for its stale-model notes); 06
# the metrics 05 writes.
LESSON_NEEDS = {"03": ("01",), "04": ("01", "03"), "05": ("04",), "06": ("04", "05"), "07": ("03", "04"),
                "08": ("04",), "09": ("04",)}
WARM_IMPORTS = "import faceattr.plots"   # pandas, matplotlib, seaborn: every lesson plots
WARM_TENSORFLOW = "from faceattr import import_tensorflow\nimport_tensorflow()\nimport keras"


def start_kernel(cwd: Path, sockets: Path, imports: str = "") -> Any:
    """A started kernel (jupyter_client's KernelManager) for one lesson, in `cwd`, its sockets under `sockets`, that
    has run `imports` (see `warm_imports`) silently: the notebook's cells, outputs and execution counts read as in a
    fresh kernel."""
    from jupyter_client.manager import KernelManager

    own = Path(tempfile.mkdtemp(dir=sockets))   # its own folder: two kernels' sockets never share a name
    manager = KernelManager(kernel_name="python3", client_class="jupyter_client.asynchronous.AsyncKernelClient",
                            **kernel_options(own))
    manager.start_kernel(cwd=str(cwd))
    if imports:
        client = manager.blocking_client()
        client.start_channels()
        try:
            client.wait_for_ready(timeout=KERNEL_START_SECONDS)
            client.execute_interactive(imports, silent=True, store_history=False, timeout=KERNEL_START_SECONDS,
                                       output_hook=lambda message: None)
        finally:
            client.stop_channels()
    return manager


def stop_kernel(manager: Any) -> None:
    """Stop a lesson's kernel at once: its cells have run and every file it writes is written whole (atomically), so
    the graceful exit's TensorFlow teardown (about 1.7 s a kernel) buys nothing. A stopped kernel stays stopped."""
    if manager.has_kernel:
        manager.shutdown_kernel(now=True)


def warm_imports(notebook: dict) -> str:
    """What a lesson's kernel imports before its cells run: what its setup cell will (the plotting stack, and
    TensorFlow unless it calls setup_notebook with tensorflow=False, as 01 and 02 do); nothing for another notebook."""
    setups = [cell.source for cell in notebook.cells if cell.cell_type == "code" and "setup_notebook(" in cell.source]
    if not setups:
        return ""
    return WARM_IMPORTS + ("" if "tensorflow=False" in setups[0] else "\n" + WARM_TENSORFLOW)


def run_notebook(path: Path | dict, target: Path, parameters: dict[str, object], kernel: Any) -> None:
    """Execute one notebook (a file, or an nbformat node) with papermill into `target`, in `kernel` (from
    `start_kernel`, which set its folder; the caller stops it). No `cwd` for papermill: it would change the whole
    process's folder, which two lessons side by side would leave wrong."""
    import papermill

    papermill.execute_notebook(path if isinstance(path, dict) else str(path), str(target), parameters=parameters,
                               kernel_name="python3", progress_bar=False, km=kernel)


def run_sequence(out_dir: str | Path, data: str = "auto", overrides: dict[str, str] | None = None,
                 report=print, path_name: str = "all") -> list[Path]:
    """Execute every lesson notebook (only its cells on PATH_NAME, see PATHS) with papermill into OUT_DIR/notebooks;
    return their paths.

    OUT_DIR is refused when it is inside the data, or holds a file under one of the kit's names that the kit did not
    write. Its lock is held throughout and lent to the notebooks' kernels, so a `faceattr train` into it meanwhile is
    refused (and the other way round); a shared lock keeps `faceattr cache --clear` off the data's extraction."""
    check_path(path_name)
    notebooks = lesson_notebooks()
    values = typed_parameters(overrides or {}, notebooks)
    data = str(values.pop("data_dir", data))
    try:
        check_data_dir(data)
    except SettingsError as error:
        raise SequenceError(f"--data: {error}") from None
    if data not in ("auto", "sample"):
        data = str(Path(data).expanduser().resolve())
    if values.get("photo_path", "grace_hopper") != "grace_hopper":  # the notebooks run in the run folder
        values["photo_path"] = str(Path(values["photo_path"]).expanduser().resolve())
    out = Path(out_dir).resolve()
    run, data_path = RunFolder(out), data_location(data)[0]
    run.refuse_inside(data_path)
    outputs = run.notebook_outputs(notebooks)
    with run.writing(replacing=[]), run.lock_lent_to_children(), data_in_use(data_path), full_disk_as_error(out):
        run.refuse_foreign([*run.named_files(), *outputs])
        try:
            return execute_notebooks(notebooks, values, data, out, report, path_name)
        finally:
            run.manifest.record(*(path for path in outputs if path.exists()))


def execute_notebooks(notebooks: list[Path], values: dict[str, object], data: str, out: Path,
                      report=print, path_name: str = "all") -> list[Path]:
    """Execute `notebooks` with papermill into OUT/notebooks, in order, two side by side where LESSON_NEEDS allow,
    each given those of `values` it takes (and its run_dir and data_dir), each cut to its cells on PATH_NAME (one
    with no code there is skipped); return the executed copies' paths."""
    from papermill.exceptions import PapermillExecutionError

    run = RunFolder(out)
    run.notebooks.mkdir(parents=True, exist_ok=True)
    lessons = []
    for path in notebooks:
        cells = path_cells(path, path_name)
        if cells is None:
            report(f"{path.name:32s} skipped (not on the {path_name} path)")
        else:
            lessons.append((path, cells))
    numbers = [path.name[:2] for path, _ in lessons]
    # Kernels start KERNELS_AHEAD lessons ahead (and import TensorFlow): about 5 s a notebook that the sequence no
    # longer waits for. Lessons whose LESSON_NEEDS have finished run side by side, LESSONS_AT_ONCE at a time, in
    # order. Kernel chatter goes to the run's kernel log.
    with (tempfile.TemporaryDirectory(prefix="faceattr-kernel-") as sockets,
          ThreadPoolExecutor(KERNELS_AHEAD) as starter, ThreadPoolExecutor(LESSONS_AT_ONCE) as runner,
          stderr_to(str(run.kernel_log))):
        kernels: dict[int, Future] = {}

        def warm(count: int) -> None:
            """Start the kernels of the first `count` lessons that have none yet."""
            for index in range(min(count, len(lessons))):
                if index not in kernels:
                    kernels[index] = starter.submit(start_kernel, out, Path(sockets), warm_imports(lessons[index][1]))

        def run_lesson(index: int) -> float:
            """Run lesson `index` in its kernel and stop the kernel; its seconds, waiting for the kernel included."""
            started, (path, cells) = time.perf_counter(), lessons[index]
            kernel = kernels[index].result()
            accepted = notebook_parameters(path)
            parameters = {name: value for name, value in values.items() if name in accepted}
            parameters.update({name: value for name, value in (("run_dir", str(out)), ("data_dir", data))
                               if name in accepted})
            target = run.notebooks / path.name
            try:
                run_notebook(cells, target, parameters, kernel)
            except PapermillExecutionError as error:
                raise SequenceError(f"{path.name} failed in cell {error.exec_count} ({error.ename}: "
                                    f"{error.evalue}); the executed notebook is {target}") from None
            finally:
                stop_kernel(kernel)
            return time.perf_counter() - started

        pending, running, finished, failed = list(range(len(lessons))), {}, set(), {}
        try:
            while pending or running:
                ready = [index for index in pending
                         if set(LESSON_NEEDS.get(numbers[index], ())) & set(numbers) <= finished]
                for index in ready[:LESSONS_AT_ONCE - len(running)]:
                    warm(index + 1 + KERNELS_AHEAD)
                    pending.remove(index)
                    running[runner.submit(run_lesson, index)] = index
                if not running:
                    raise RuntimeError(f"LESSON_NEEDS leaves {[numbers[index] for index in pending]} waiting forever")
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in sorted(done, key=running.get):
                    index = running.pop(future)
                    try:
                        seconds = future.result()
                    except Exception as error:  # the earliest lesson's failure is the one to report
                        failed[index] = error
                        pending.clear()
                        for later in (other for other in running.values() if other > index):
                            stop_kernel(kernels[later].result())   # it stops; an earlier one may still fail
                        continue
                    finished.add(numbers[index])
                    report(f"{lessons[index][0].name:32s} {seconds:6.1f} s")
            if failed:
                raise failed[min(failed)]
        finally:  # a lesson failed or was interrupted: every kernel goes, so a lesson still running stops too
            for future in kernels.values():
                if not future.cancel():
                    with suppress(Exception):
                        stop_kernel(future.result())
    return [run.notebooks / path.name for path, _ in lessons]
