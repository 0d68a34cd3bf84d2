"""The 90-minute plan's live compute: the core path (`faceattr run --path core`) timed cell by cell, on the sample and
on a generated 24,000-image folder, and the table in notebooks/README.md that holds each segment against its slot.

Usage:
  python benchmarks/plan.py measure --data sample                  # the day before (cold cache), then the class
  python benchmarks/plan.py measure --data /tmp/gen24k --label 24000 --runs day-before
  python benchmarks/plan.py table [--write]                        # the table; --write puts it in notebooks/README.md

`measure` runs the core path twice with papermill, as the plan does: "day before" from an empty cache (a fresh
FACEATTR_CACHE_DIR: what the instructor pre-runs) and "class" into a second run folder with that cache warm (what
runs live). Each run keeps, per notebook, its wall seconds and the CPU seconds of its kernel (user + system, all
threads: the machine may be shared, and CPU time hardly depends on the load), and per code cell papermill's
`duration` and the kernel's CPU seconds (an IPython start-up hook in a private IPYTHONDIR; the notebooks are not
touched). It writes benchmarks/results/plan-<label>-<machine>.json. `table` reads those files and the plan's slots
from the minute-by-minute table in notebooks/README.md (its one owner).
(`faceattr sample /tmp/gen24k --n 24000` makes the folder. On 2 cores at a load average near 20, the sample's two runs
took 19 min and the 24,000-image day-before run 26 min, for 3 and 7.5 min of CPU time.)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "notebooks" / "README.md"
RESULTS_GLOB = "plan-*.json"
CLOCK_ENV = "FACEATTR_PLAN_CLOCK"  # the file the kernels' start-up hook appends one JSON line per cell to
LIVE_SHARE = 0.5  # a segment's live compute may take at most this share of its slot: the rest is reading,
#                   the in-class exercise and the discussion (students work on a task while a long cell runs).
#                   Judged on CPU seconds: about the wall time of a 2-core machine that runs nothing else (the
#                   kernels use both cores only while training), whatever the load met while measuring.
RUN_NAMES = {"day-before": "the day before (empty cache)", "class": "in class (warm cache)"}
RUN_LABELS = {"day-before": "day before", "class": "in class"}  # the table's column names
START, END = "<!-- benchmarks/plan.py: live compute -->", "<!-- /benchmarks/plan.py -->"
SLOT_ROW = re.compile(r"^\|\s*(\d+)\s*[–-]\s*(\d+)\s*\|\s*(\d\d)\b", re.M)  # | 40–55 | 04, sections 1 to 4 | ...

CLOCK_HOOK = f'''
def _faceattr_plan_clock():
    """Append each cell's wall and CPU seconds (this kernel process, all threads) to ${CLOCK_ENV}."""
    import json, os, time
    path, started = os.environ["{CLOCK_ENV}"], {{}}

    def before(info):
        started.update(wall=time.perf_counter(), cpu=time.process_time())

    def after(result):
        if not started:  # the cell that registered the hook
            return
        with open(path, "a") as clock:
            clock.write(json.dumps({{"source": result.info.raw_cell, "wall": time.perf_counter() - started["wall"],
                                    "cpu": time.process_time() - started["cpu"]}}) + "\\n")

    get_ipython().events.register("pre_run_cell", before)
    get_ipython().events.register("post_run_cell", after)


if "{CLOCK_ENV}" in __import__("os").environ:
    _faceattr_plan_clock()
del _faceattr_plan_clock
'''


def children_cpu() -> float:
    """CPU seconds (user + system) of this process's finished children: the notebook kernels."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def section_of(cells: list[dict], index: int) -> str:
    """The last Markdown heading at or before cell INDEX, without its #s ("" if none)."""
    for cell in reversed(cells[:index + 1]):
        if cell["cell_type"] == "markdown":
            heading = next((line.lstrip("#").strip() for line in reversed("".join(cell["source"]).splitlines())
                            if line.startswith("#")), None)
            if heading:
                return heading
    return ""


def cell_times(executed: dict, clock: list[dict]) -> list[dict]:
    """Per code cell of an executed notebook: its section, first line, papermill's wall seconds and, where the clock
    holds a line with the same source (matched in order), the kernel's CPU seconds."""
    remaining, cells = list(clock), []
    for index, cell in enumerate(executed["cells"]):
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        match = next((entry for entry in remaining if entry["source"] == source), None)
        if match is not None:
            remaining.remove(match)
        cells.append({"index": index, "section": section_of(executed["cells"], index),
                      "first_line": next((line for line in source.splitlines() if line.strip()), ""),
                      "wall": cell["metadata"].get("papermill", {}).get("duration"),
                      "cpu": None if match is None else match["cpu"]})
    return cells


def read_clock(path: Path) -> list[dict]:
    """The clock's lines, then empty it for the next notebook."""
    lines = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    path.write_text("")
    return lines


def run_core(data: str, out: Path, clock: Path) -> dict:
    """Run the core path once into OUT; return the run's wall and CPU seconds, load averages and each notebook's."""
    from faceattr.notebook import run_sequence

    notebooks, marks = {}, {"cpu": children_cpu()}

    def report(line: str) -> None:
        """After each notebook: its wall (the CLI's line) and its kernel's CPU time, and its cells."""
        name, rest = line.split(maxsplit=1)
        cpu = children_cpu()
        if not rest.startswith("skipped"):
            seconds = float(rest.split()[0])
            executed = json.loads((out / "notebooks" / name).read_text())
            notebooks[name.removesuffix(".ipynb")] = {"wall": seconds, "cpu": cpu - marks["cpu"],
                                                      "cells": cell_times(executed, read_clock(clock))}
        marks["cpu"] = cpu
        print(f"  {line}  cpu {notebooks.get(name.removesuffix('.ipynb'), {}).get('cpu', 0):.1f} s", flush=True)

    load_before, started, cpu_before = os.getloadavg(), time.perf_counter(), children_cpu()
    run_sequence(out, data, {}, report=report, path_name="core")
    return {"wall": time.perf_counter() - started, "cpu": children_cpu() - cpu_before,
            "load_before": load_before, "load_after": os.getloadavg(), "notebooks": notebooks}


def measure(data: str, label: str, runs: list[str], results: Path) -> Path:
    """Run the core path for each of RUNS (day before: cold cache; class: warm) on DATA; write and return the JSON."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench  # the machine facts and the results' naming are bench.py's

    info = bench.machine()
    target = results / f"plan-{label}-{bench.machine_slug(info)}.json"
    payload = {"machine": info, "data": data, "label": label, "images": None, "runs": {}}
    with tempfile.TemporaryDirectory(prefix="faceattr-plan-") as work:
        work = Path(work)
        (work / "ipython" / "profile_default" / "startup").mkdir(parents=True)
        (work / "ipython" / "profile_default" / "startup" / "00-plan-clock.py").write_text(CLOCK_HOOK)
        os.environ.update({"IPYTHONDIR": str(work / "ipython"), CLOCK_ENV: str(work / "clock.jsonl"),
                           "FACEATTR_CACHE_DIR": str(work / "cache")})
        for name in runs:
            print(f"{label}: the core path, {name} ...", flush=True)
            payload["runs"][name] = run_core(data, work / name, work / "clock.jsonl")
            payload["images"] = payload["images"] or image_count(data)  # the scan the first run cached
            target.write_text(json.dumps(payload, indent=1) + "\n")  # a stopped measurement keeps its runs
    return target


def image_count(data: str) -> int:
    """The images the notebooks train and test on: those that parse and decode (the planted broken files left out)."""
    from faceattr.data import resolve_data_dir, scan

    return len(scan(resolve_data_dir(data)).frame)


def slots(readme: str) -> dict[str, tuple[int, int]]:
    """The plan's live segments: notebook number ("04") -> (first minute, last minute), read from its table."""
    found = {}
    for first, last, number in SLOT_ROW.findall(readme):
        found.setdefault(number, (int(first), int(last)))
    return found


def longest_cell(notebook: dict) -> dict:
    """The notebook's code cell with the most CPU seconds (its wall seconds where the CPU time is unknown)."""
    return max(notebook["cells"], key=lambda cell: cell["wall"] if cell["cpu"] is None else cell["cpu"])


def fits(cpu_seconds: float, slot_minutes: float) -> bool:
    """True when a segment's live compute (its CPU seconds) takes at most LIVE_SHARE of its slot."""
    return cpu_seconds <= LIVE_SHARE * slot_minutes * 60


def verdict(times: dict | None, slot_minutes: float) -> str:
    """'yes (share of the slot)', '**no** (share)', or 'not run'."""
    if not times:
        return "not run"
    share = f"({times['cpu'] / (slot_minutes * 60):.0%})"
    return f"yes {share}" if fits(times["cpu"], slot_minutes) else f"**no** {share}"


def notebook_named(run: dict, number: str) -> tuple[str, dict] | None:
    """The run's notebook whose name starts with NUMBER, as (name, times), if it ran."""
    return next(((name, times) for name, times in run["notebooks"].items() if name.startswith(number)), None)


def seconds(times: dict) -> str:
    """'CPU s (wall s)' for a notebook or a cell ('? (wall s)' where the CPU time is unknown)."""
    cpu = "?" if times.get("cpu") is None else f"{times['cpu']:.0f}"
    return f"{cpu} ({times['wall']:.0f})"


def live_run(result: dict) -> tuple[str, dict]:
    """The run that shows what runs live: the class run (warm cache), else the only one."""
    name = "class" if "class" in result["runs"] else next(iter(result["runs"]))
    return name, result["runs"][name]


def table(results: list[dict], readme: str) -> str:
    """The Markdown block: per live segment its slot, each measured size's live compute, the longest cell and the
    fit; then each size's day-before (cold) run, which is what to pre-run."""
    results = sorted(results, key=lambda result: result.get("images") or 0)
    plan = slots(readme)
    header = ["segment", "slot"] + [f"{size_name(result)}, {RUN_LABELS[live_run(result)[0]]}: CPU (wall) s"
                                    for result in results]
    header += [f"longest cell, {size_name(results[-1])}", f"fits: CPU within {LIVE_SHARE:.0%} of the slot"]
    rows = []
    for number, (first, last) in sorted(plan.items()):
        cells, longest_at = [], None
        for result in results:
            found = notebook_named(live_run(result)[1], number)
            cells.append("not run" if found is None else seconds(found[1]))
            longest_at = found
        if longest_at is None:
            continue
        name, times = longest_at
        longest = longest_cell(times)
        verdicts = [verdict(found and found[1], last - first)
                    for found in (notebook_named(live_run(result)[1], number) for result in results)]
        rows.append([f"`{name}` ({first}–{last} min)", f"{last - first} min", *cells,
                     f"{longest['section'] or 'setup'}: {seconds(longest)}",
                     " / ".join(f"{size_name(result)} {verdict}" for result, verdict in zip(results, verdicts))])
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(["---", "---:"] + ["---:"] * len(results)
                                                                  + ["---", "---"]) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["", *(run_sentence(result) for result in results), prerun_sentence(results[-1], plan)]
    return "\n".join(lines)


def prerun_sentence(result: dict, plan: dict[str, tuple[int, int]]) -> str:
    """What to pre-run at the largest measured size: the segments whose live compute does not fit their slot."""
    run = live_run(result)[1]
    late = [found[0] for number, (first, last) in sorted(plan.items())
            if (found := notebook_named(run, number)) and not fits(found[1]["cpu"], last - first)]
    size = size_name(result)
    if not late:
        return (f"- **At {size}** every segment's live compute fits its slot: pre-run only the core path the day "
                f"before, which fills the cache.")
    names, one = ", ".join(f"`{name}`" for name in late), len(late) == 1
    return (f"- **At {size}** {names} {'does' if one else 'do'} not fit {'its slot' if one else 'their slots'}: "
            f"pre-run {'it' if one else 'them'} the day before (the core path, as measured above) and show the "
            f"executed {'notebook' if one else 'notebooks'} in class.")


def size_name(result: dict) -> str:
    """The column name of one measured folder: 'sample' or '24,000 images'."""
    return "sample" if result["label"] == "sample" else f"{result['images']:,} images"


def run_sentence(result: dict) -> str:
    """One line per measured folder: each run's total wall and CPU time and the load it met."""
    parts = []
    for name, run in result["runs"].items():
        parts.append(f"{RUN_NAMES.get(name, name)}: {run['wall'] / 60:.1f} min wall, {run['cpu'] / 60:.1f} min CPU, "
                     f"load average {run['load_before'][0]:.1f} at the start and {run['load_after'][0]:.1f} at the end")
    return f"- **{size_name(result)}**, the whole core path: " + "; ".join(parts) + "."



def write_block(readme: str, block: str) -> str:
    """README text with the block between START and END replaced by BLOCK."""
    if START not in readme or END not in readme:
        raise SystemExit(f"{README} has no {START} ... {END} block; add both markers where the table belongs.")
    head, rest = readme.split(START, 1)
    return head + START + "\n" + block + "\n" + END + rest.split(END, 1)[1]


def main() -> int:
    """measure or table, as the module's docstring says."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    measuring = commands.add_parser("measure")
    measuring.add_argument("--data", required=True, help='"sample" or a UTKFace-format folder')
    measuring.add_argument("--label", default=None, help="the results' name (default: sample, or the image count)")
    measuring.add_argument("--runs", default="day-before,class", help="day-before (cold cache), class (warm), or both")
    measuring.add_argument("--results", default=str(RESULTS))
    tabling = commands.add_parser("table")
    tabling.add_argument("--results", default=str(RESULTS))
    tabling.add_argument("--write", action="store_true", help=f"replace the block in {README.relative_to(ROOT)}")
    args = parser.parse_args()
    if args.command == "measure":
        label = args.label or ("sample" if args.data == "sample" else Path(args.data).name)
        print(f"wrote {measure(args.data, label, args.runs.split(','), Path(args.results))}")
        return 0
    results = [json.loads(path.read_text()) for path in sorted(Path(args.results).glob(RESULTS_GLOB))]
    if not results:
        raise SystemExit(f"no {RESULTS_GLOB} in {args.results}: run `python benchmarks/plan.py measure` first.")
    readme = README.read_text()
    block = table(results, readme)
    print(block)
    if args.write:
        README.write_text(write_block(readme, block))
        print(f"wrote {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
