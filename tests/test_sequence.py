"""The lesson sequence's contract: one literal parameters cell each, the package's defaults, bad parameters, a failing
notebook, the Colab guard. The whole chain with non-default parameters runs in test_install.py, from a wheel."""

import subprocess
import sys

import nbformat
import pytest

from faceattr.cli import main
from faceattr.notebook import lesson_notebooks, notebook_parameters


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
    from faceattr.detect import MIN_CONFIDENCE

    assert by_name["06"]["min_confidence"] == MIN_CONFIDENCE


@pytest.mark.parametrize("args, fragment", [
    (["-p", "no_such_thing", "1"], "unknown parameter 'no_such_thing'"),
    (["-p", "num_epochs", "many"], "'num_epochs' must be of type int"),
    (["-p", "architectures", "default"], "'architectures' must be of type list"),
])
def test_bad_parameters_fail_before_any_notebook_runs(args, fragment, tmp_path, capsys):
    assert main(["run", "--out", str(tmp_path / "run"), *args]) == 2
    assert fragment in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_failing_notebook_names_itself_and_the_cell(tmp_path, capsys):
    assert main(["run", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err
    assert "01_parse_data.ipynb failed in cell" in error and "does not exist" in error


def test_without_the_kit_installed_the_first_code_cell_says_what_to_run(tmp_path):
    """Colab, or a Jupyter outside .venv: the setup cell stops with one line naming the kernel and the install."""
    for path in lesson_notebooks():
        notebook = nbformat.read(path, as_version=4)
        assert notebook.metadata.kernelspec.name == "faceattr", path.name
        setup = next(cell.source for cell in notebook.cells if "print(setup_notebook(seed))" in cell.source)
        guard = setup.split("\n\n")[0]
        # -I -S: no site-packages and not the checkout, so faceattr cannot be imported, as on a fresh Colab
        result = subprocess.run([sys.executable, "-I", "-S", "-c", guard], capture_output=True, text=True, cwd=tmp_path)
        assert result.returncode == 1, path.name
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("ModuleNotFoundError: faceattr is not installed"), path.name
        assert "make lab" in last and "%pip install" in last, path.name
