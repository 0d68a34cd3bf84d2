"""Shared fixtures: a private cache folder and small generated data sets."""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceattr.notebook import LESSON_NEEDS, lesson_notebooks

# nbval's kernels inherit this: "auto" data means the synthetic sample even where data/UTKFace exists,
# so the stored notebook outputs compare.
os.environ["FACEATTR_DATA"] = "sample"

# What a test's code (or a fixture's, or a script string it runs) says when it trains a model: such a test is marked
# `trains` automatically, and `make test-fast` (-m "not trains and not slow") leaves it out, with the tests marked
# `slow` by hand (the kit end to end without training: see pyproject.toml's markers). Notebooks from 04 on train (or read the
# run 04 trained); a CLI call checked for exit 2 (refused) trains nothing. In the fast tier, a test that still reaches Keras's fit fails and says to extend this list.
TRAINING_CALLS = ("fit(", "train_run(", "train_recipe(", "run_sequence(", '"train", "--', '"run", "--', '"faceattr.cli", "train"',
                  '"faceattr.cli", "run"', '[faceattr, "run"')
FIRST_TRAINING_NOTEBOOK = "04"
LESSONS_GROUP = "lessons"
# A lesson that reads no other's files and whose files no other reads (02) is a scope of its own under pytest-xdist,
# which the other worker takes while the rest run in order.
ON_ITS_OWN = {path.name[:2] for path in lesson_notebooks()} - set(LESSON_NEEDS) - set().union(*LESSON_NEEDS.values())


def code_of(function: object) -> str:
    """A function's source and the string constants of its module that it names (scripts it runs)."""
    try:
        source = inspect.getsource(function)
    except (OSError, TypeError):
        return ""
    module_globals = getattr(function, "__globals__", {})
    names = getattr(getattr(function, "__code__", None), "co_names", ())
    return source + "".join(value for name in names if isinstance(value := module_globals.get(name), str))


def trains(item: pytest.Item) -> bool:
    """True when the test item trains a model: by its notebook's number, or by its code and its fixtures' code."""
    if item.path.suffix == ".ipynb":
        return item.path.name >= FIRST_TRAINING_NOTEBOOK
    definitions = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    functions = [getattr(item, "function", None)] + [d.func for defs in definitions.values() for d in defs]
    return any(training_call(code_of(function)) for function in functions)


def training_call(code: str) -> bool:
    """True when `code` calls training, other than in a command it expects to be refused (exit status 2)."""
    if "returncode == 2" in code:
        return False
    return any(call in line and "== 2" not in line for line in code.splitlines() for call in TRAINING_CALLS)


# The longest scopes start first, so that two workers finish together: the lesson notebooks (one scope, about as
# long as all the rest together), then the files whose tests run a whole sequence from a wheel or train for every
# solution, then the longest of those marked `slow` (MTCNN on real photos, lessons run with papermill, a browser).
LONGEST_FIRST = ("test_install.py", "test_solutions.py", "test_sequence.py",
                 "test_photocases.py", "test_student_model.py", "test_lab.py")


def start_rank(item: pytest.Item) -> int:
    """Where an item's scope starts: notebooks first, then LONGEST_FIRST in order, then the rest."""
    if item.path.suffix == ".ipynb":
        return 0
    return 1 + LONGEST_FIRST.index(item.path.name) if item.path.name in LONGEST_FIRST else 1 + len(LONGEST_FIRST)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that trains with `trains` (see TRAINING_CALLS), and put the longest scopes first."""
    for item in items:
        if trains(item):
            item.add_marker(pytest.mark.trains)
    items.sort(key=start_rank)   # stable: notebooks stay 01 ... 09, tests keep their order within a file


def pytest_configure(config: pytest.Config) -> None:
    """Give TensorFlow in every process of the suite its worker's share of the cores (1 each on 2 cores, -n 2).

    Each pytest-xdist worker runs TensorFlow, and so do its lesson kernels and subprocesses, which inherit these
    variables. TensorFlow sizes its thread pools to every core in each process, and on 2 cores those pools spin
    against each other: the full suite took 8 min 33 s that way and 7 min 43 s this way (CPU 933 s and 829 s).
    Set either variable yourself to override."""
    workers = getattr(config.option, "numprocesses", None) or 1   # the controller sets them; workers inherit them
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    for variable in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        os.environ.setdefault(variable, str(max(1, cores // workers)))


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """pytest-xdist's workers (`-n 2`) share the suite by scope: the lesson notebooks are one scope, run in order on
    one worker (05 to 09 read the run 04 trains), but for those ON_ITS_OWN; each test file is another, so its module
    fixtures are built once."""
    from xdist.scheduler import LoadScopeScheduling

    config.option.loadscopereorder = False   # keep the collection's order: the longest scopes first

    class LessonsInOrder(LoadScopeScheduling):
        """LoadScopeScheduling with the notebooks that read each other's files in one scope."""

        def _split_scope(self, nodeid: str) -> str:
            """The scope of a test: its file, or LESSONS_GROUP for the cells of a notebook not ON_ITS_OWN."""
            path = nodeid.split("::", 1)[0]
            return LESSONS_GROUP if path.endswith(".ipynb") and Path(path).name[:2] not in ON_ITS_OWN else path

    return LessonsInOrder(config, log)


@pytest.fixture(autouse=True)
def unmarked_tests_do_not_train(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """In the fast tier (-m "not trains"), fail a test that trains without being marked, so the tier stays fast."""
    if "not trains" not in (request.config.getoption("markexpr") or "") or "keras" not in sys.modules:
        return

    def refuse(*args: object, **kwargs: object) -> None:
        pytest.fail(f"{request.node.nodeid} trains a model but is not marked `trains`: extend TRAINING_CALLS in "
                    "tests/conftest.py or mark it")

    monkeypatch.setattr(sys.modules["keras"].Model, "fit", refuse)


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the kit's cache at a per-test folder so tests never share scan caches."""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("FACEATTR_CACHE_DIR", str(cache))
    return cache


@pytest.fixture(autouse=True)
def float32_after_each_test() -> None:
    """Reset Keras's global dtype policy after a test that chose a precision, so no other test inherits it."""
    yield
    import sys

    if "keras" in sys.modules:
        sys.modules["keras"].mixed_precision.set_global_policy("float32")


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic sample (200 faces plus planted quirks), built once per session."""
    from faceattr.sample import write_sample

    return write_sample(tmp_path_factory.mktemp("sample"), count=200, seed=1)


def write_face(path: Path, mode: str = "RGB", size: int = 48, seed: int = 0, fmt: str = "JPEG") -> Path:
    """Write a small random image in the given PIL mode."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt)
    return path


@pytest.fixture(scope="session")
def trained_run(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small CLI training (2 epochs, 32 px) on a copy of the sample, from inside its parent folder with a
    relative --data; the tests that read a trained run share it (those that damage it work on a copy)."""
    import shutil

    from faceattr.cli import main

    base = tmp_path_factory.mktemp("project")
    shutil.copytree(sample_dir, base / "faces")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(base)
        assert main(["train", "--data", "faces", "--out", "run", "--epochs", "2", "--image-size", "32",
                     "--batch-size", "32"]) == 0
    return base / "run"


@pytest.fixture
def train_config(monkeypatch: pytest.MonkeyPatch) -> Callable[[list[str]], dict]:
    """`faceattr train ARGS` stopped (as by Ctrl-C) where it would fit: for tests that read only the config it
    records, which is returned."""
    from faceattr import train
    from faceattr.cli import main
    from faceattr.runs import RunFolder

    written = []

    def config_then_stop(model: object, train_data: object, validation_data: object, num_epochs: int,
                         run_dir: str | Path, *args: object, **kwargs: object) -> None:
        written.append(RunFolder(run_dir).read_config())
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "fit", config_then_stop)

    def config_of(args: list[str]) -> dict:
        assert main(["train", *args]) == 130 and len(written) == 1, "train stopped before it reached the fit"
        return written.pop()

    return config_of
