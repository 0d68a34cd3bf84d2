"""benchmarks/plan.py: the plan's slots, the per-cell times it reads from an executed notebook, its fit verdicts and
the table in notebooks/README.md (not its timings: nothing here runs the measurement)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import plan  # noqa: E402  (benchmarks/ on the path, as tests/test_bench.py does)

PLAN_ROWS = """| minutes | what runs live | what students do | stop and discuss |
| --- | --- | --- | --- |
| 0–5 | nothing | read | talk |
| 5–15 | 01, top to bottom | predict | why |
| 40–55 | 04, sections 1 to 4; *3. Fit* is the long cell | write | curves |
"""


def executed_notebook(durations: list[float]) -> dict:
    """A tiny notebook as papermill leaves it: a heading, then one code cell per duration under two sections."""
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_markdown_cell("# 04 · Train\n\n## Setup")]
    for index, seconds in enumerate(durations):
        if index == 1:
            notebook.cells.append(nbformat.v4.new_markdown_cell("Some words.\n\n## 3. Fit"))
        cell = nbformat.v4.new_code_cell(f"x = {index}\nprint(x)")
        cell.metadata["papermill"] = {"duration": seconds}
        notebook.cells.append(cell)
    return json.loads(nbformat.writes(notebook))


def result(label: str, images: int, cpus: dict[str, float]) -> dict:
    """A results file's content with one class run: per notebook its CPU seconds, wall twice that (a loaded
    machine), and two cells."""
    notebooks = {name: {"wall": 2 * cpu, "cpu": cpu,
                        "cells": [{"index": 3, "section": "3. Fit", "first_line": "history = model.fit(",
                                   "wall": 2 * cpu - 2, "cpu": cpu - 1},
                                  {"index": 1, "section": "Setup", "first_line": "import keras", "wall": 2, "cpu": 1}]}
                 for name, cpu in cpus.items()}
    run = {"wall": 2 * sum(cpus.values()), "cpu": sum(cpus.values()), "load_before": [2.0, 2, 2],
           "load_after": [3.0, 3, 3], "notebooks": notebooks}
    return {"label": label, "images": images, "runs": {"class": run}}


def test_slots_are_read_from_the_plans_minute_table():
    assert plan.slots(PLAN_ROWS) == {"01": (5, 15), "04": (40, 55)}


def test_the_readme_plan_gives_every_core_notebook_a_slot_inside_90_minutes():
    found = plan.slots(plan.README.read_text())
    assert sorted(found) == ["01", "02", "03", "04", "05", "06"]
    assert all(0 <= first < last <= 90 for first, last in found.values())


def test_cell_times_take_papermills_durations_sections_and_the_clocks_cpu_by_source():
    executed = executed_notebook([0.5, 30.0, 2.0])
    clock = [{"source": "x = 2\nprint(x)", "cpu": 3.5, "wall": 2.0},   # out of order: matched by source
             {"source": "x = 0\nprint(x)", "cpu": 0.25, "wall": 0.5}]
    cells = plan.cell_times(executed, clock)
    assert [(cell["section"], cell["wall"], cell["cpu"]) for cell in cells] == \
        [("Setup", 0.5, 0.25), ("3. Fit", 30.0, None), ("3. Fit", 2.0, 3.5)]
    assert cells[1]["first_line"] == "x = 1" and cells[1]["index"] == 3
    assert plan.longest_cell({"cells": cells})["index"] == 3


def test_a_segment_fits_only_when_its_cpu_seconds_are_inside_its_share_of_the_slot():
    slot_seconds = 15 * 60 * plan.LIVE_SHARE
    assert plan.fits(slot_seconds, 15) and not plan.fits(slot_seconds + 1, 15)


def test_the_table_marks_a_segment_that_outgrows_its_slot_at_full_size():
    sample = result("sample", 2000, {"01_parse_data": 10, "04_train": 40})
    full = result("24000", 24000, {"01_parse_data": 20, "04_train": 600})   # 10 CPU min of a 15-min slot
    text = plan.table([full, sample], PLAN_ROWS)                             # sorted by size whatever the order
    rows = {line.split("|")[1].strip(): [part.strip() for part in line.split("|")[2:-1]]
            for line in text.splitlines() if line.startswith("| `")}
    assert text.splitlines()[0].split("|")[3:5] == [" sample, in class: CPU (wall) s ",
                                                    " 24,000 images, in class: CPU (wall) s "]
    assert rows["`04_train` (40–55 min)"] == ["15 min", "40 (80)", "600 (1200)", "3. Fit: 599 (1198)",
                                               "sample yes (4%) / 24,000 images **no** (67%)"]
    assert rows["`01_parse_data` (5–15 min)"][-1] == "sample yes (2%) / 24,000 images yes (3%)"
    assert "24,000 images**, the whole core path: in class (warm cache): 20.7 min wall, 10.3 min CPU" in text
    assert "**At 24,000 images** `04_train` does not fit its slot: pre-run it the day before" in text
    small = plan.table([result("24000", 24000, {"01_parse_data": 20, "04_train": 450})], PLAN_ROWS)
    assert "**At 24,000 images** every segment's live compute fits its slot" in small


def test_write_block_replaces_only_the_marked_block_and_refuses_a_readme_without_it():
    readme = f"before\n{plan.START}\nold table\n{plan.END}\nafter\n"
    written = plan.write_block(readme, "new table")
    assert written == f"before\n{plan.START}\nnew table\n{plan.END}\nafter\n"
    assert plan.write_block(written, "new table") == written
    with pytest.raises(SystemExit, match="no <!-- benchmarks/plan.py"):
        plan.write_block("before\nafter\n", "new table")


def test_the_readme_table_is_the_scripts_output_on_the_committed_results():
    results = [json.loads(path.read_text()) for path in sorted(plan.RESULTS.glob(plan.RESULTS_GLOB))]
    assert results, "no plan-*.json in benchmarks/results"
    readme = plan.README.read_text()
    assert plan.write_block(readme, plan.table(results, readme)) == readme, \
        "notebooks/README.md's live-compute table is stale: run `python benchmarks/plan.py table --write`"


def test_the_clock_hook_records_each_cells_source_and_cpu_seconds(tmp_path, monkeypatch):
    from IPython.core.interactiveshell import InteractiveShell

    clock = tmp_path / "clock.jsonl"
    monkeypatch.setenv(plan.CLOCK_ENV, str(clock))
    shell = InteractiveShell.instance()
    try:
        shell.run_cell(plan.CLOCK_HOOK)
        shell.run_cell("total = sum(range(200_000))")
        lines = plan.read_clock(clock)
        assert lines[-1]["source"] == "total = sum(range(200_000))" and lines[-1]["cpu"] >= 0
        assert "_faceattr_plan_clock" not in shell.user_ns and clock.read_text() == ""
    finally:
        InteractiveShell.clear_instance()
