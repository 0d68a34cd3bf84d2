"""Every exercise in every lesson ends with a hint, and has a written answer and a worked solution that runs."""

from __future__ import annotations

import importlib.util
import math
import re
import sys
from pathlib import Path

import nbformat
import pytest

from faceattr.notebook import lesson_notebooks

SOLUTIONS = Path(__file__).resolve().parents[1] / "solutions"


def exercises(path: Path) -> dict[int, str]:
    """The numbered items of a notebook's "## Exercises" section, by number."""
    notebook = nbformat.read(path, as_version=4)
    text = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")
    section = text.split("## Exercises", 1)[1]
    items = re.split(r"^(\d+)\. ", section, flags=re.MULTILINE)[1:]
    return {int(number): body for number, body in zip(items[::2], items[1::2])}


def solutions_of(path: Path):
    """Import solutions/<notebook stem>.py."""
    sys.path.insert(0, str(SOLUTIONS))
    file = SOLUTIONS / f"{path.stem}.py"
    spec = importlib.util.spec_from_file_location(f"solutions_{path.stem}", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CASES = [(path, number) for path in lesson_notebooks() for number in exercises(path)]


def test_every_notebook_has_exercises_and_a_solutions_module_with_nothing_extra():
    for path in lesson_notebooks():
        numbers = sorted(exercises(path))
        assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) >= 3, path.name
        assert (SOLUTIONS / f"{path.stem}.py").is_file(), f"solutions/{path.stem}.py is missing"
        defined = sorted(int(name.split("_")[1]) for name in vars(solutions_of(path)) if re.fullmatch(r"exercise_\d+", name))
        assert defined == numbers, f"{path.name}: exercises {numbers}, solutions {defined}"
        assert f"solutions/{path.stem}.py" in path.read_text(), f"{path.name} does not say where its solutions are"


@pytest.mark.trains
@pytest.mark.parametrize("path, number", CASES, ids=[f"{path.name[:2]}-{number}" for path, number in CASES])
def test_each_exercise_has_a_hint_and_its_solution_runs(path, number, sample_dir, tmp_path):
    assert "*Hint:*" in exercises(path)[number], f"{path.name} exercise {number} has no hint"
    solution = getattr(solutions_of(path), f"exercise_{number}")
    assert solution.__doc__ and len(solution.__doc__.split()) >= 25, "the docstring is the written answer"
    result = solution(str(sample_dir), tmp_path)
    assert isinstance(result, dict) and result, "a solution returns the numbers its answer rests on"
    for key, value in result.items():
        if isinstance(value, float):
            assert math.isfinite(value), key
