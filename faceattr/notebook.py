"""One-call notebook setup and small helpers the lessons share."""

from __future__ import annotations

import ast
import json
import os
import time
from pathlib import Path

from faceattr import stderr_to
from faceattr.defaults import DEFAULT_SEED
from faceattr.errors import SequenceError
from faceattr.data import PROJECT_ROOT, data_in_use, data_location, is_sample
from faceattr.files import full_disk_as_error
from faceattr.paths import check_path, path_cells
from faceattr.runs import RunFolder


def setup_notebook(seed: int = DEFAULT_SEED) -> str:
    """Seed everything, set plot defaults and describe the machine; return a one-line summary."""
    from faceattr import __version__, import_tensorflow

    tf = import_tensorflow()
    import keras
    from faceattr.plots import set_style
    from faceattr.train import choose_precision

    keras.utils.set_random_seed(seed)
    precision = choose_precision()
    tf.get_logger().setLevel("ERROR")  # no retracing notes when a lesson trains several models in a loop
    set_style()
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


def typed_parameters(overrides: dict[str, str], notebooks: list[Path]) -> dict[str, object]:
    """Parse `-p NAME VALUE` strings and check each against the notebooks' parameter defaults."""
    defaults: dict[str, object] = {}
    for path in notebooks:
        for name, value in notebook_parameters(path).items():
            defaults.setdefault(name, value)
    typed = {}
    for name, text in overrides.items():
        if name not in defaults:
            raise SequenceError(f"unknown parameter {name!r}; the notebooks take: {', '.join(sorted(defaults))}.")
        default = defaults[name]
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text  # a bare word is a string
        if isinstance(default, float) and type(value) is int:
            value = float(value)
        if type(value) is not type(default):
            raise SequenceError(f"parameter {name!r} must be of type {type(default).__name__} (default {default!r}); "
                                f"got {text!r}.")
        typed[name] = value
    return typed


KERNEL_LOG = "kernel-stderr.log"  # the kernels' start-up chatter, in OUT_DIR/notebooks
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
    if data not in ("auto", "sample"):
        data = str(Path(data).expanduser().resolve())
    out = Path(out_dir).resolve()
    run, data_path = RunFolder(out), data_location(data)[0]
    run.refuse_inside(data_path)
    outputs = [run.notebooks / path.name for path in notebooks] + [run.notebooks / KERNEL_LOG]
    with run.writing(replacing=[]), run.lock_lent_to_children(), data_in_use(data_path), full_disk_as_error(out):
        run.refuse_foreign([*run.named_files(), *outputs])
        try:
            return execute_notebooks(notebooks, values, data, out, report, path_name)
        finally:
            run.manifest.record(*(path for path in outputs if path.exists()))


def execute_notebooks(notebooks: list[Path], values: dict[str, object], data: str, out: Path,
                      report=print, path_name: str = "all") -> list[Path]:
    """Execute `notebooks` in order with papermill into OUT/notebooks, each given those of `values` it takes (and
    its run_dir and data_dir), each cut to its cells on PATH_NAME (one with no code there is skipped); return the
    executed copies' paths."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    (out / "notebooks").mkdir(parents=True, exist_ok=True)
    written = []
    for path in notebooks:
        cells = path_cells(path, path_name)
        if cells is None:
            report(f"{path.name:32s} skipped (not on the {path_name} path)")
            continue
        accepted = notebook_parameters(path)
        parameters = {name: value for name, value in values.items() if name in accepted}
        parameters.update({name: value for name, value in (("run_dir", str(out)), ("data_dir", data))
                           if name in accepted})
        target = out / "notebooks" / path.name
        started = time.perf_counter()
        try:
            with stderr_to(str(out / "notebooks" / KERNEL_LOG)):  # kernel start-up chatter
                papermill.execute_notebook(cells, str(target), parameters=parameters, cwd=str(out),
                                           kernel_name="python3", progress_bar=False)
        except PapermillExecutionError as error:
            raise SequenceError(f"{path.name} failed in cell {error.exec_count} ({error.ename}: {error.evalue}); "
                                f"the executed notebook is {target}") from None
        report(f"{path.name:32s} {time.perf_counter() - started:6.1f} s")
        written.append(target)
    return written
