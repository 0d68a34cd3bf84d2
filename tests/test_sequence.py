"""The lesson sequence's contract: one literal parameters cell each, the package's defaults, bad parameters, a failing
notebook, the Colab guard. The whole chain with non-default parameters runs in test_install.py, from a wheel."""

import itertools
import multiprocessing
import socket
import subprocess
import sys
import threading
from pathlib import Path
from unittest import mock

import nbformat
import psutil
import pytest
from papermill.exceptions import PapermillExecutionError

from faceattr.cli import main
from faceattr.errors import SequenceError
from faceattr.notebook import (LESSON_NEEDS, LESSONS_AT_ONCE, PARAMETER_RULES, WARM_TENSORFLOW, execute_notebooks,
                               lesson_notebooks, notebook_parameters, run_notebook, run_sequence, start_kernel,
                               stop_kernel, typed_parameters, warm_imports)
from faceattr.paths import is_extension


def test_every_notebook_has_one_literal_parameters_cell_and_the_lesson_parts():
    notebooks = lesson_notebooks()
    assert [path.name[:2] for path in notebooks] == ["01", "02", "03", "04", "05", "06", "07", "08", "09"]
    for path in notebooks:
        assert "seed" in notebook_parameters(path), path.name
        notebook = nbformat.read(path, as_version=4)
        text = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")
        assert text.startswith("# "), path.name
        for part in ("You will learn", "## Summary", "## Exercises"):
            assert part in text, f"{path.name} lacks {part}"
    for name in ("01_parse_data.ipynb", "05_evaluate.ipynb", "06_faces_in_the_wild.ipynb",
                 "08_what_the_model_sees.ipynb", "09_fairness.ipynb"):
        assert "Responsible use" in (notebooks[0].parent / name).read_text()


def test_notebook_defaults_are_the_package_defaults():
    from faceattr.defaults import (DEFAULT_BATCH_SIZE, DEFAULT_IMAGE_SIZE, DEFAULT_SEED, DEFAULT_TRUNK, GROUP_BALANCES,
                                   LOSS_BALANCES, MIN_IMAGE_SIZE, RECIPES)

    by_name = {path.name[:2]: notebook_parameters(path) for path in lesson_notebooks()}
    assert by_name["04"]["loss_balance"] == RECIPES["default"]["loss_balance"]
    assert by_name["04"]["learning_rate"] == RECIPES["default"]["learning_rate"]
    assert by_name["07"]["loss_balances"] == list(LOSS_BALANCES)
    assert by_name["09"]["balances"] == list(GROUP_BALANCES)
    assert len(by_name["09"]["study_seeds"]) >= 3 and by_name["09"]["study_image_size"] >= MIN_IMAGE_SIZE
    assert by_name["03"]["trunk_filters"] == list(DEFAULT_TRUNK)
    assert by_name["03"]["image_size"] == by_name["07"]["image_size"] == DEFAULT_IMAGE_SIZE
    assert {parameters["seed"] for parameters in by_name.values()} == {DEFAULT_SEED}
    assert by_name["04"]["batch_size"] == by_name["07"]["batch_size"] == DEFAULT_BATCH_SIZE  # 05's is for prediction
    from faceattr.defaults import DEFAULT_MIN_FACE_SIZE
    from faceattr.detect import MIN_CONFIDENCE

    assert by_name["06"]["min_confidence"] == MIN_CONFIDENCE
    assert by_name["06"]["min_face_size"] == DEFAULT_MIN_FACE_SIZE


@pytest.mark.parametrize("args, fragment", [
    (["-p", "no_such_thing", "1"], "unknown parameter 'no_such_thing'"),
    (["-p", "num_epochs", "many"], "'num_epochs' must be of type int"),
    (["-p", "architectures", "default"], "'architectures' must be of type list"),
    (["-p", "image_size", "10000"], "image size 10000 is outside 32..512"),
    (["-p", "num_epochs", "-1"], "epochs=-1 must be at least 1"),
    (["-p", "study_seeds", "[0,'x']"], "'study_seeds' element 1 ('x') must be of type int"),
    (["-p", "model_name", "2fast"], "model_name '2fast' must start with a letter"),
    (["-p", "quick", "sometimes"], "'quick' must be of type bool"),
    (["-p", "study_seeds", "[0, -3]"], "element 1 (-3): seed -3 must lie in 0..4294967295"),
    (["-p", "trunk_filters", "[]"], "'trunk_filters' (-p trunk_filters []): the list is empty"),
    (["-p", "trunk_filters", "[8]", "-p", "image_size", "24"], "image size 24 is outside 32..512"),
    (["-p", "trunk_filters", "[8, 8, 8, 8, 8, 8]", "-p", "image_size", "32"], "too small for 6 pooling blocks"),
    (["-p", "loss_balance", "normalized"], "unknown loss balance 'normalized'; choose one of: fixed, normalised, "
                                           "uncertainty"),
    (["-p", "architectures", "['default', 'resnet']"], "unknown arch 'resnet'; choose one of: default"),
    (["-p", "balances", "['none', 'oversample']"], "unknown balance 'oversample'"),
    (["-p", "cue_race", "martian"], "unknown race 'martian'; choose one of: white"),
    (["-p", "learning_rate", "0"], "learning rate 0.0 must be more than 0"),
    (["-p", "min_confidence", "5"], "minimum confidence 5.0 must lie in 0..1"),
    (["-p", "min_face_size", "-5"], "minimum face size -5 must be more than 0"),
    (["-p", "run_dir", "elsewhere"], "--out"),
    (["--data", "/no/such/folder"], "/no/such/folder does not exist"),
])
def test_bad_parameters_fail_before_any_notebook_runs(args, fragment, tmp_path, capsys):
    assert main(["run", "--out", str(tmp_path / "run"), *args]) == 2
    assert fragment in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("train_args, run_args", [
    (["--image-size", "10000"], ["-p", "image_size", "10000"]),
    (["--epochs", "0"], ["-p", "num_epochs", "0"]),
    (["--batch-size", "0"], ["-p", "batch_size", "0"]),
    (["--learning-rate", "-1"], ["-p", "learning_rate", "-1"]),
    (["--loss-balance", "normalized"], ["-p", "loss_balance", "normalized"]),
])
def test_run_refuses_what_train_refuses_with_the_same_rule(train_args, run_args, tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "trained"), *train_args]) == 2
    reason = capsys.readouterr().err.split("error: ", 1)[1].strip()
    assert main(["run", "--out", str(tmp_path / "run"), *run_args]) == 2
    assert reason in capsys.readouterr().err
    assert not (tmp_path / "trained").exists() and not (tmp_path / "run").exists()


def test_a_parameter_without_a_rule_is_still_checked_for_its_type_element_by_element(monkeypatch):
    monkeypatch.delitem(PARAMETER_RULES, "study_seeds")
    assert typed_parameters({"study_seeds": "[7, 8]"}, lesson_notebooks()) == {"study_seeds": [7, 8]}
    assert typed_parameters({"study_seeds": "[-7]"}, lesson_notebooks()) == {"study_seeds": [-7]}  # no rule: no range
    with pytest.raises(SequenceError, match=r"'study_seeds' element 1 \(2.5\) must be of type int"):
        typed_parameters({"study_seeds": "[1, 2.5]"}, lesson_notebooks())


def test_every_rule_belongs_to_a_notebook_parameter():
    names = {name for path in lesson_notebooks() for name in notebook_parameters(path)}
    assert set(PARAMETER_RULES) <= names


def kernels_left() -> list:
    """This process's kernel processes that are still running."""
    return [child for child in psutil.Process().children(recursive=True)
            if child.is_running() and child.status() != psutil.STATUS_ZOMBIE and "ipykernel" in " ".join(child.cmdline())]


@pytest.mark.slow
def test_a_failing_notebook_names_itself_and_the_cell_and_leaves_no_kernel_running(tmp_path, capsys):
    """02's kernel was already starting when 01 failed: it is stopped too."""
    (tmp_path / "empty").mkdir()
    assert main(["run", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err
    assert "01_parse_data.ipynb failed in cell" in error and "holds no valid UTKFace images" in error
    assert kernels_left() == []


@pytest.mark.slow
def test_a_warm_kernel_has_tensorflow_imported_and_the_lesson_counts_from_one(tmp_path):
    """The next lesson's kernel starts, and imports TensorFlow, while the lesson before it runs; silently, so the
    executed notebook reads as from a fresh kernel: its first cell is number 1, and nothing else was printed."""
    lesson = tiny_notebook(tmp_path / "lesson.ipynb", "import sys\nprint('tensorflow' in sys.modules)")
    kernel = start_kernel(tmp_path, tmp_path, WARM_TENSORFLOW)
    try:
        run_notebook(lesson, tmp_path / "out.ipynb", {"run_dir": "y"}, kernel)
    finally:
        stop_kernel(kernel)
    cells = [cell for cell in nbformat.read(tmp_path / "out.ipynb", 4).cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in cells] == list(range(1, len(cells) + 1))
    assert [output.get("text") for output in cells[-1].outputs] == ["True\n"]
    assert not kernel.is_alive() and kernels_left() == []


def test_each_lesson_warms_what_its_setup_cell_imports_and_no_more():
    lessons = {path.name[:2]: nbformat.read(path, 4) for path in lesson_notebooks()}
    assert [WARM_TENSORFLOW in warm_imports(lessons[number]) for number in sorted(lessons)] == [False] * 2 + [True] * 7
    assert all(warm_imports(lesson).startswith("import faceattr.plots") for lesson in lessons.values())
    assert warm_imports(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])) == ""


def test_without_the_kit_installed_the_first_code_cell_says_what_to_run(tmp_path):
    """Colab, or a Jupyter outside .venv: the setup cell stops with one line naming the kernel and the install."""
    for path in lesson_notebooks():
        notebook = nbformat.read(path, as_version=4)
        assert notebook.metadata.kernelspec.name == "faceattr", path.name
        setup = next(cell.source for cell in notebook.cells if "print(setup_notebook(seed" in cell.source)
        guard = setup.split("\n\n")[0]
        # -I -S: no site-packages and not the checkout, so faceattr cannot be imported, as on a fresh Colab
        result = subprocess.run([sys.executable, "-I", "-S", "-c", guard], capture_output=True, text=True, cwd=tmp_path)
        assert result.returncode == 1, path.name
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("ModuleNotFoundError: faceattr is not installed"), path.name
        assert "make lab" in last and "%pip install" in last, path.name


def tiny_notebook(path: Path, source: str) -> Path:
    """A one-cell lesson notebook with the parameters cell `run_dir = "x"`."""
    parameters = nbformat.v4.new_code_cell('run_dir = "x"')
    parameters.metadata["tags"] = ["parameters"]
    notebook = nbformat.v4.new_notebook(cells=[parameters, nbformat.v4.new_code_cell(source)])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, path)
    return path


MEET = """import pathlib, time
here = pathlib.Path(run_dir)
(here / "started").write_text("")
deadline = time.time() + 30
while len(list(here.parent.glob("*/started"))) < 2 and time.time() < deadline:  # both kernels up at once
    time.sleep(0.1)
"""


def sequence_offered_ports(out: str, notebook: str, ports: list[int]) -> None:
    """Run the kit's sequence over one notebook, every kernel port being picked from `ports`: what two processes
    that each look for a free port at the same moment get (the race behind `ZMQError: Address already in use`)."""
    from jupyter_client.provisioning.local_provisioner import LocalPortCache

    offered = itertools.cycle(ports)
    LocalPortCache.find_available_port = lambda self, ip: next(offered)
    with mock.patch("faceattr.notebook.lesson_notebooks", lambda folder=None: [Path(notebook)]):
        run_sequence(out, "sample")


@pytest.mark.slow
def test_two_sequences_started_at_once_both_finish_and_their_kernels_stay_quiet(tmp_path):
    notebook = tiny_notebook(tmp_path / "01_meet.ipynb", MEET)
    sockets = [socket.socket() for _ in range(5)]
    for each in sockets:
        each.bind(("127.0.0.1", 0))
    ports = [each.getsockname()[1] for each in sockets]
    for each in sockets:
        each.close()
    context = multiprocessing.get_context("spawn")
    runs = [context.Process(target=sequence_offered_ports, args=(str(tmp_path / name), str(notebook), ports))
            for name in ("first", "second")]
    for run in runs:
        run.start()
    for run in runs:
        run.join(180)
    assert [run.exitcode for run in runs] == [0, 0]
    for name in ("first", "second"):
        assert (tmp_path / name / "started").exists()
        log = (tmp_path / name / "notebooks" / "kernel-stderr.log").read_text()
        assert "without encryption" not in log, log


@pytest.fixture()
def fake_lessons(monkeypatch):
    """execute_notebooks over the nine lessons, with no kernel; returns the ("start" | "end", number) events in the
    order they happened, the set of lesson numbers that fail, and each lesson's notebook as it was given to run. 01
    and 02 each wait (up to 60 s) for the other to start, so the two run side by side or the test fails."""
    import faceattr.notebook as notebook

    events, lock, failing, started = [], threading.Lock(), set(), {number: threading.Event() for number in "0123456789"}
    given = {}

    def run_notebook(cells, target, parameters, kernel):
        number = target.name[:2]
        with lock:
            events.append(("start", number))
            given[number] = cells
        started[number[-1]].set()
        if number in ("01", "02"):
            other = "02" if number == "01" else "01"
            events.append((f"{other} seen", started[other[-1]].wait(60)))
        if number in failing:
            raise PapermillExecutionError(1, 1, "", "ValueError", "planted", [])
        with lock:
            events.append(("end", number))

    monkeypatch.setattr(notebook, "start_kernel", lambda *args: None)
    monkeypatch.setattr(notebook, "stop_kernel", lambda kernel: None)
    monkeypatch.setattr(notebook, "run_notebook", run_notebook)
    return events, failing, given


def test_lessons_start_after_what_they_read_two_at_a_time_in_order(fake_lessons, tmp_path):
    events, _, _ = fake_lessons
    written = execute_notebooks(lesson_notebooks(), {}, "sample", tmp_path, report=lambda line: None)
    assert [path.name[:2] for path in written] == [f"0{number}" for number in range(1, 10)]
    assert {("01 seen", True), ("02 seen", True)} <= set(events)   # 01 and 02 side by side: neither reads the other's files
    order = [event for event in events if event[0] in ("start", "end")]
    for number, needs in LESSON_NEEDS.items():
        assert all(order.index(("end", need)) < order.index(("start", number)) for need in needs), number
    running = list(itertools.accumulate(1 if kind == "start" else -1 for kind, _ in order))
    assert max(running) == LESSONS_AT_ONCE
    starts = [number for kind, number in order if kind == "start"]
    assert set(starts[:2]) == {"01", "02"} and starts[2:4] == ["03", "04"]   # 01 and 02 start together, in either order


def test_a_failing_lesson_stops_the_sequence_before_the_lessons_that_need_it(fake_lessons, tmp_path):
    events, failing, _ = fake_lessons
    failing.add("04")
    with pytest.raises(SequenceError, match="04_train.ipynb failed in cell 1 \\(ValueError: planted\\)"):
        execute_notebooks(lesson_notebooks(), {}, "sample", tmp_path, report=lambda line: None)
    assert not {number for kind, number in events if kind == "start"} & {"05", "06", "07", "08", "09"}


def test_when_lessons_side_by_side_both_fail_the_earlier_one_is_reported(fake_lessons, tmp_path):
    events, failing, _ = fake_lessons
    failing.update({"01", "02"})   # an empty data folder: both read it, either may fail first
    with pytest.raises(SequenceError, match="^01_parse_data.ipynb failed"):
        execute_notebooks(lesson_notebooks(), {}, "sample", tmp_path, report=lambda line: None)
    assert {number for kind, number in events if kind == "start"} == {"01", "02"}


def test_the_core_path_runs_01_to_06_without_their_extension_cells_and_says_what_it_skips(fake_lessons, tmp_path):
    _, _, given = fake_lessons
    said = []
    written = execute_notebooks(lesson_notebooks(), {}, "sample", tmp_path, report=said.append, path_name="core")
    lessons = {path.name[:2]: path for path in lesson_notebooks()}
    assert [path.name[:2] for path in written] == sorted(given) == ["01", "02", "03", "04", "05", "06"]
    for number, notebook in given.items():
        whole = nbformat.read(lessons[number], 4).cells
        assert [cell.source for cell in notebook.cells] == [cell.source for cell in whole if not is_extension(cell)]
        assert len(notebook.cells) < len(whole) or number == "01", number   # 02 to 06 have extension sections
    assert [line.split()[0] for line in said if "skipped (not on the core path)" in line] == [
        lessons[number].name for number in ("07", "08", "09")]


def test_lessons_side_by_side_run_in_the_run_folder_and_leave_the_process_where_it_was(tmp_path, monkeypatch):
    """Two real kernels at once: each lesson runs in the run folder, and the caller's folder is unchanged after
    (papermill's own `cwd` changes the whole process's folder, which two threads would leave wrong)."""
    lessons = [tiny_notebook(tmp_path / f"0{number}_lesson.ipynb", "import os\nprint(os.getcwd())")
               for number in (1, 2)]
    out, here = tmp_path / "out", tmp_path / "caller"
    out.mkdir()
    here.mkdir()
    monkeypatch.chdir(here)
    written = execute_notebooks(lessons, {}, "sample", out, report=lambda line: None)
    assert Path.cwd() == here
    for path in written:
        cell = nbformat.read(path, 4).cells[-1]
        assert [output.get("text") for output in cell.outputs] == [f"{out}\n"], path.name
