"""Paths through the lessons: every cell, or the 90-minute core path (the cells not tagged `extension`)."""

from __future__ import annotations

import ast
import builtins
import re
from pathlib import Path

from faceattr.errors import SequenceError

EXTENSION_TAG = "extension"  # the tag on every cell outside the 90-minute core path
PATHS = ("all", "core")  # `faceattr run --path`: every cell, or the cells not tagged EXTENSION_TAG
SECTION_HEADING = re.compile(r"^#{2,3} (Extension: )?(\d+)\. ", re.MULTILINE)   # "## 5. Title", "## Extension: 5. Title"
SECTION_POINTER = re.compile(r"(?:\b[Nn]otebook (\d\d)(?:'s|,)? ?\(?)?\bsections? (\d+)")   # "section 5", "notebook 03, section 5"
EXERCISES_HEADING = "## Exercises"   # the exercises may send a student anywhere: they are not checked


def check_path(path_name: str) -> str:
    """Return PATH_NAME if it names a path through the lessons, else raise naming the choices."""
    if path_name not in PATHS:
        raise SequenceError(f"unknown path {path_name!r}; choose one of: {', '.join(PATHS)}.")
    return path_name


def is_extension(cell: dict) -> bool:
    """True when the cell is tagged as outside the core path."""
    return EXTENSION_TAG in cell.get("metadata", {}).get("tags", [])


def cell_names(source: str) -> tuple[set[str], set[str]]:
    """The names a code cell binds and the names it reads (IPython magics and shell lines left out)."""
    code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))
    bound, read = set(), set()
    try:
        tree = ast.parse(code)
    except SyntaxError:  # IPython syntax (`x = !ls`, `obj?`) or a half-finished edit: running the cell will say
        return bound, read
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (bound if isinstance(node.ctx, (ast.Store, ast.Del)) else read).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return bound, read


def heading_of(cell: dict) -> str | None:
    """The first Markdown heading in a cell, without its #s, if any."""
    if cell.get("cell_type") != "markdown":
        return None
    return next((line.lstrip("#").strip() for line in cell.get("source", "").splitlines() if line.startswith("#")),
                None)


def extension_reads(notebook: dict) -> list[tuple[int, str, str]]:
    """(cell index, name, extension section) for each core code cell that reads a name bound only by an earlier
    extension cell: such a cell fails on the core path."""
    core, extension, found, section = set(dir(builtins)), {}, [], ""
    for index, cell in enumerate(notebook["cells"]):
        section = heading_of(cell) or section
        if cell["cell_type"] != "code":
            continue
        bound, read = cell_names(cell["source"])
        if is_extension(cell):
            extension.update(dict.fromkeys(bound, section))
            continue
        core |= bound
        found += [(index, name, extension[name]) for name in sorted(read & set(extension) - core)]
    return found


def path_cells(notebook_file: Path, path_name: str) -> dict | None:
    """The notebook (an nbformat node) cut to its cells on PATH_NAME, or None when no code cell is left; raises when
    a cell left would read a name only a cut cell defines, naming the section to run."""
    import nbformat

    notebook = nbformat.read(notebook_file, as_version=4)
    if path_name == "core":
        for index, name, section in extension_reads(notebook)[:1]:
            raise SequenceError(f"{notebook_file.name}: core cell {index} reads {name!r}, which only the section "
                                f"'{section}' defines; run it with --path all, or define {name!r} in a core cell.")
        notebook.cells = [cell for cell in notebook.cells if not is_extension(cell)]
    return notebook if any(cell.cell_type == "code" for cell in notebook.cells) else None


def extension_sections(notebook: dict) -> set[int]:
    """The numbers of the notebook's sections that lie outside the core path (all of them in a whole-extension
    notebook)."""
    whole = all(is_extension(cell) for cell in notebook["cells"])
    return {int(number) for cell in notebook["cells"] if cell["cell_type"] == "markdown"
            for extension, number in SECTION_HEADING.findall(cell["source"]) if extension or whole}


def extension_pointers(notebooks: dict[str, dict]) -> list[tuple[str, int, str]]:
    """(notebook number, cell index, the pointer) for each core Markdown cell, before the exercises, that sends the
    reader to "section N" (of its own notebook, or of "notebook NN") where section N is an extension, without
    saying so: a core student would be sent to read what the core path leaves out."""
    outside = {number: extension_sections(notebook) for number, notebook in notebooks.items()}
    found = []
    for number, notebook in notebooks.items():
        for index, cell in enumerate(notebook["cells"]):
            if cell["cell_type"] != "markdown" or is_extension(cell):
                continue
            text = cell["source"].split(EXERCISES_HEADING)[0]
            for pointer in SECTION_POINTER.finditer(text):
                target = pointer.group(1) or number
                said = "extension" in text[max(0, pointer.start() - 40):pointer.start()].lower()
                if int(pointer.group(2)) in outside.get(target, set()) and not said:
                    found.append((number, index, pointer.group(0)))
            if EXERCISES_HEADING in cell["source"]:
                break
    return found
