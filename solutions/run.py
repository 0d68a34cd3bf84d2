"""Run one exercise's solution: python solutions/run.py NOTEBOOK EXERCISE [--data DIR]."""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from pathlib import Path

SOLUTIONS = Path(__file__).resolve().parent


def load(notebook: str):
    """Import the solutions module of notebook `notebook` ("01" or "01_parse_data")."""
    sys.path.insert(0, str(SOLUTIONS))
    matches = sorted(SOLUTIONS.glob(f"{notebook[:2]}_*.py"))
    if not matches:
        raise SystemExit(f"no solutions for notebook {notebook!r}; there are: "
                         + ", ".join(path.stem for path in sorted(SOLUTIONS.glob("[0-9][0-9]_*.py"))))
    spec = importlib.util.spec_from_file_location(matches[0].stem, matches[0])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    """Print the exercise's written answer, then run its solution and print what it returns."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("notebook", help="the notebook's number, e.g. 01")
    parser.add_argument("exercise", type=int, help="the exercise's number")
    parser.add_argument("--data", default="auto", help="a data folder or .tar.gz (default: auto)")
    args = parser.parse_args()
    module = load(args.notebook)
    solution = getattr(module, f"exercise_{args.exercise}", None)
    if solution is None:
        raise SystemExit(f"{module.__name__} has no exercise_{args.exercise}.")
    from faceattr.data import resolve_data_dir

    print(solution.__doc__.strip(), end="\n\n")
    with tempfile.TemporaryDirectory() as work_dir:
        result = solution(str(resolve_data_dir(args.data)), Path(work_dir))
    for key, value in result.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
