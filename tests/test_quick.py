"""The quick pass (issue 27): each knob of faceattr.defaults.QUICK_BUDGETS cuts what it names below the notebooks'
default, every knob reaches a notebook, every notebook that trains is cut, and `faceattr run -p quick True` passes
the parameter rules before any notebook starts."""

import ast
import subprocess
import sys

import nbformat

from faceattr.defaults import QUICK_BUDGETS, quick_budget
from faceattr.notebook import lesson_notebooks, notebook_parameters, typed_parameters
from faceattr.sample import SAMPLE_SIZE


def notebook_code(path):
    """The notebook's code cells, as one Python source."""
    return "\n".join(cell.source for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code")


def default_count(node, parameters):
    """What a quick_budget call's count stands for by default: a parameter, the length of a list parameter, a
    literal, or None for the length of the data (`len(split)`)."""
    if isinstance(node, ast.Name):
        return parameters[node.id]
    if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "len" and isinstance(node.args[0], ast.Name):
        return len(parameters[node.args[0].id]) if node.args[0].id in parameters else None
    return ast.literal_eval(node)


def quick_cuts(path):
    """(kind, default count) for each quick_budget(count, quick, kind) call in a notebook."""
    parameters = notebook_parameters(path)
    cuts = []
    for node in ast.walk(ast.parse(notebook_code(path))):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "quick_budget":
            kind = ast.literal_eval(node.args[2]) if len(node.args) > 2 else "epochs"
            cuts.append((kind, default_count(node.args[0], parameters)))
    return cuts


def trains(path):
    """A notebook that trains a model has an epoch count among its parameters."""
    return any(name.endswith("_epochs") for name in notebook_parameters(path))


def test_every_quick_budget_cuts_below_the_default_it_caps():
    cuts = {path.name: quick_cuts(path) for path in lesson_notebooks()}
    for name, found in cuts.items():
        for kind, default in found:
            default = SAMPLE_SIZE if default is None else default   # the data's length: the sample's
            assert quick_budget(default, True, kind) < default, (name, kind, default, QUICK_BUDGETS[kind])
            assert quick_budget(default, False, kind) == default
    used = {kind for found in cuts.values() for kind, _ in found}
    assert used == set(QUICK_BUDGETS)   # no knob that reaches no notebook, no kind without a budget


def test_the_quick_pass_reaches_every_notebook_that_trains_and_the_model_they_follow():
    takes_quick = {path.name[:2] for path in lesson_notebooks() if "quick" in notebook_parameters(path)}
    training = {path.name[:2] for path in lesson_notebooks() if trains(path)}
    assert training and training <= takes_quick
    for path in lesson_notebooks():
        if path.name[:2] in takes_quick:
            assert notebook_parameters(path)["quick"] is False, path.name
            assert quick_cuts(path), path.name   # a quick parameter that cuts nothing is a dead knob
    notebook_03 = next(path for path in lesson_notebooks() if path.name.startswith("03"))
    assert ("image_size", notebook_parameters(notebook_03)["image_size"]) in quick_cuts(notebook_03)


def test_quick_true_passes_the_parameter_rules_for_the_whole_sequence():
    assert typed_parameters({"quick": "True"}, lesson_notebooks()) == {"quick": True}
    assert typed_parameters({"quick": "True", "image_size": "48"}, lesson_notebooks()) == {"quick": True,
                                                                                           "image_size": 48}


def test_the_lessons_that_read_data_only_never_import_tensorflow():
    """01 and 02 start without TensorFlow (about 4 s of CPU per kernel): their setup and every faceattr module they
    import leave it unimported."""
    for path in lesson_notebooks()[:2]:
        code = notebook_code(path)
        assert "setup_notebook(seed, tensorflow=False)" in code, path.name
        imports = [line for line in code.splitlines() if line.startswith(("import ", "from ")) and "faceattr" in line]
        probe = "\n".join([*imports, "from faceattr.notebook import setup_notebook", "setup_notebook(1, tensorflow=False)",
                           "import sys", "print('tensorflow' in sys.modules)"])
        result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
        assert result.stdout.split() == ["False"], path.name
