"""The 90-minute core path: the cells not tagged `extension`, which `faceattr run --path core` runs alone, need
nothing an extension defines."""

import nbformat
import pytest

from faceattr.cli import main
from faceattr.errors import SequenceError
from faceattr.notebook import lesson_notebooks
from faceattr.paths import extension_pointers, extension_reads, is_extension, path_cells


def test_the_core_path_is_marked_in_tags_and_headings():
    for path in lesson_notebooks():
        notebook = nbformat.read(path, as_version=4)
        tagged = [cell for cell in notebook.cells if is_extension(cell)]
        if len(tagged) == len(notebook.cells):  # a whole notebook outside the core path says so in its title
            assert notebook.cells[0].source.startswith("# Extension: "), path.name
            continue
        parameters = next(cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", []))
        assert not is_extension(parameters), path.name
        for index, cell in enumerate(notebook.cells):  # each extension section opens with its heading
            if is_extension(cell) and (index == 0 or not is_extension(notebook.cells[index - 1])):
                assert cell.source.startswith(("## Extension: ", "### Extension: ")), (path.name, index)
    core = [path.name[:2] for path in lesson_notebooks()
            if not all(is_extension(cell) for cell in nbformat.read(path, as_version=4).cells)]
    assert core == ["01", "02", "03", "04", "05", "06"]


def test_no_core_cell_reads_a_name_only_an_extension_cell_defines():
    for path in lesson_notebooks():
        assert extension_reads(nbformat.read(path, as_version=4)) == [], path.name


def test_no_core_text_sends_the_reader_into_an_extension_section_unsaid():
    notebooks = {path.name[:2]: nbformat.read(path, as_version=4) for path in lesson_notebooks()}
    assert extension_pointers(notebooks) == []


def test_the_pointer_check_finds_core_text_that_points_into_an_extension():
    extension = {"tags": ["extension"]}
    cells = [nbformat.v4.new_markdown_cell("## 1. Core"),
             nbformat.v4.new_markdown_cell("## Extension: 2. More", metadata=extension),
             nbformat.v4.new_markdown_cell("As section 2 shows, and notebook 10, section 2, and section 1."),
             nbformat.v4.new_markdown_cell("The extension section 2 below, and its section 2 (an extension cell).",
                                           metadata=extension),
             nbformat.v4.new_markdown_cell("Try the extension section 2 below."),
             nbformat.v4.new_markdown_cell("Notebook 11 (section 3) is an extension as a whole."),
             nbformat.v4.new_markdown_cell("## Summary\n- see section 2\n\n## Exercises\n1. Rerun section 2."),
             nbformat.v4.new_markdown_cell("2. Then section 2 again.")]
    other = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Extension: 11", metadata=extension),
                                            nbformat.v4.new_markdown_cell("## 3. All of it", metadata=extension)])
    found = extension_pointers({"10": nbformat.v4.new_notebook(cells=cells), "11": other})
    assert found == [("10", 2, "section 2"), ("10", 2, "notebook 10, section 2"), ("10", 5, "Notebook 11 (section 3"),
                     ("10", 6, "section 2")]


def test_the_static_check_finds_a_core_cell_that_needs_an_extension():
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"),
                                               nbformat.v4.new_code_cell("y = x + 1", metadata={"tags": ["extension"]}),
                                               nbformat.v4.new_code_cell("print(y, [z for z in range(x)])")])
    assert extension_reads(notebook) == [(2, "y", "")]


def test_a_core_run_that_needs_an_extension_names_the_section(tmp_path):
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_markdown_cell("## Extension: 2. More", metadata={"tags": ["extension"]}),
        nbformat.v4.new_code_cell("y = x + 1", metadata={"tags": ["extension"]}),
        nbformat.v4.new_code_cell("print(y)")])
    nbformat.write(notebook, tmp_path / "10_more.ipynb")
    with pytest.raises(SequenceError, match=r"core cell 3 reads 'y', which only the section 'Extension: 2. More'"):
        path_cells(tmp_path / "10_more.ipynb", "core")
    assert len(path_cells(tmp_path / "10_more.ipynb", "all").cells) == 4


def test_an_unknown_path_is_one_line_naming_the_choices(tmp_path, capsys):
    assert main(["run", "--path", "short", "--out", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err.strip()
    assert "unknown path 'short'" in error and "all, core" in error and len(error.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_a_cell_that_does_not_parse_binds_and_reads_nothing():
    from faceattr.paths import cell_names

    assert cell_names("files = !ls\nmodel?") == (set(), set())  # IPython syntax: running it will say
    assert cell_names("x = y + 1") == ({"x"}, {"y"})
