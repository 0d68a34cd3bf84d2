"""Every exercise in every lesson ends with a hint, and has a written answer and a worked solution that runs."""

from __future__ import annotations

import importlib.util
import math
import re
import sys
import traceback
from functools import cache
from pathlib import Path

import nbformat
import pytest

from faceattr.notebook import lesson_notebooks

SOLUTIONS = Path(__file__).resolve().parents[1] / "solutions"
HOMEWORK = "**Homework:**"                       # how an exercise item starts when it is homework
TIME_LINE = re.compile(r"^ {3}\*Time:\* about (\d+) minutes (in class|\(homework\))\.$", re.MULTILINE)
ANSWER_TIME = re.compile(r"(In class|Homework), about (\d+) minutes\.")   # how a solution's answer starts
CLASS_MINUTES = 5                                # an exercise that takes longer is homework
REAL_DATA = ("data/README.md", "data/UTKFace")   # an exercise or answer that points at the real data set needs it


@cache
def exercises(path: Path) -> dict[int, str]:
    """The numbered items of a notebook's "## Exercises" section, by number."""
    notebook = nbformat.read(path, as_version=4)
    text = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")
    section = text.split("## Exercises", 1)[1]
    items = re.split(r"^(\d+)\. ", section, flags=re.MULTILINE)[1:]
    return {int(number): body for number, body in zip(items[::2], items[1::2])}


@cache
def solutions_of(path: Path):
    """Import solutions/<notebook stem>.py."""
    sys.path.insert(0, str(SOLUTIONS))
    file = SOLUTIONS / f"{path.stem}.py"
    spec = importlib.util.spec_from_file_location(f"solutions_{path.stem}", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stated_time(path: Path, number: int) -> tuple[int, bool, bool]:
    """The minutes an exercise states, whether it is marked homework, and whether it needs real UTKFace; checks that
    the notebook's item and its solution's answer state the same."""
    name, body = f"{path.name} exercise {number}", exercises(path)[number]
    times = TIME_LINE.findall(body)
    assert len(times) == 1, f"{name} states no time: end it with '   *Time:* about N minutes in class.' (or (homework))"
    minutes, homework = int(times[0][0]), body.startswith(HOMEWORK)
    assert homework == (times[0][1] == "(homework)"), f"{name}: its {HOMEWORK} marker and its time line disagree"
    answer = getattr(solutions_of(path), f"exercise_{number}").__doc__.strip()
    stated = ANSWER_TIME.match(answer)
    assert stated, f"{name}: the solution's answer does not start with 'In class, about N minutes.' or 'Homework, ...'"
    assert (int(stated[2]), stated[1] == "Homework") == (minutes, homework), f"{name}: the solution states another time"
    return minutes, homework, any(marker in body or marker in answer for marker in REAL_DATA)


CASES = [(path, number) for path in lesson_notebooks() for number in exercises(path)]


def test_every_notebook_has_exercises_and_a_solutions_module_with_nothing_extra():
    for path in lesson_notebooks():
        numbers = sorted(exercises(path))
        assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) >= 3, path.name
        assert (SOLUTIONS / f"{path.stem}.py").is_file(), f"solutions/{path.stem}.py is missing"
        defined = sorted(int(name.split("_")[1]) for name in vars(solutions_of(path)) if re.fullmatch(r"exercise_\d+", name))
        assert defined == numbers, f"{path.name}: exercises {numbers}, solutions {defined}"
        assert f"solutions/{path.stem}.py" in path.read_text(), f"{path.name} does not say where its solutions are"


def test_every_exercise_states_its_class_time_and_long_ones_and_those_on_real_data_are_homework():
    for path, number in CASES:
        minutes, homework, needs_real_data = stated_time(path, number)
        if minutes > CLASS_MINUTES or needs_real_data:
            assert homework, (f"{path.name} exercise {number} takes {minutes} minutes"
                              + (" on real UTKFace" if needs_real_data else "") + f": start it with {HOMEWORK}")


@pytest.mark.trains
@pytest.mark.parametrize("path, number", CASES, ids=[f"{path.name[:2]}-{number}" for path, number in CASES])
def test_each_exercise_has_a_hint_and_its_solution_runs(path, number, sample_dir, tmp_path, monkeypatch):
    import keras

    assert "*Hint:*" in exercises(path)[number], f"{path.name} exercise {number} has no hint"
    solution = getattr(solutions_of(path), f"exercise_{number}")
    assert solution.__doc__ and len(solution.__doc__.split()) >= 25, "the docstring is the written answer"
    fits, fit = [], keras.Model.fit

    def counted_fit(model, *args, **kwargs):
        """Count the models the solution trains itself (not the shared small run, trained once for all)."""
        if not any(frame.name == "small_run" for frame in traceback.extract_stack()):
            fits.append(model.name)
        return fit(model, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", counted_fit)
    result = solution(str(sample_dir), tmp_path)
    minutes, homework, needs_real_data = stated_time(path, number)
    assert homework == (minutes > CLASS_MINUTES or needs_real_data or bool(fits)), \
        (f"{path.name} exercise {number}: homework is what retrains a model ({len(fits)} here), needs real UTKFace "
         f"({needs_real_data}) or takes over {CLASS_MINUTES} minutes ({minutes}), and nothing else")
    assert isinstance(result, dict) and result, "a solution returns the numbers its answer rests on"
    for key, value in result.items():
        if isinstance(value, float):
            assert math.isfinite(value), key
