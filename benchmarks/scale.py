"""The real experiment at full size: a 24,000-image UTKFace-format folder, the default trained for 20 epochs, and
the whole notebook sequence with `-p num_epochs 20`, against the student report's recipe extrapolated from a
measured stretch of its training.

Usage: python benchmarks/scale.py [--n 24000] [--epochs 20] [--out benchmarks/results]
(`make bench-scale`; over an hour on 2 cores, most of it the sequence. `--n 3000 --epochs 2` checks it in minutes.)
Every step runs in its own process, so each peak resident memory is its own; the kit's cache is a fresh
temporary folder, so the first decode is cold.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FACEATTR = [sys.executable, "-m", "faceattr.cli"]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (benchmarks/ on the path: the machine facts and results names are bench.py's)


PEAK_WRAPPER = ("import resource, subprocess, sys; status = subprocess.call(sys.argv[2:]); "
                "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); "
                "sys.exit(status)")


def timed(command: list[str], env: dict) -> dict:
    """Run a command in a fresh wrapper process; return its wall seconds, its peak RSS in MB (the largest of its
    processes, notebook kernels included) and its output."""
    with tempfile.NamedTemporaryFile("r", suffix=".peak") as peak:
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-c", PEAK_WRAPPER, peak.name, *command], capture_output=True,
                                text=True, env=env, cwd=ROOT)
        seconds = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
        return {"seconds": seconds, "peak_rss_mb": int(peak.read()) / 1024, "stdout": result.stdout}


DECODE_SCRIPT = """
import json, sys, time
from faceattr.data import scan, split_frame
from faceattr.pipeline import make_dataset
from faceattr.store import decoded_images
split = split_frame(scan(sys.argv[1]).frame, seed=42)
train = split[split["split"] == "train"]
rates = {}
started = time.perf_counter()
for _ in make_dataset(train, 64, 256, cache=False):   # what every run and notebook paid before the store
    pass
rates["decode_seconds_without_store"] = time.perf_counter() - started
started = time.perf_counter()
decoded_images(train["path"], 64)                     # cold: decodes and writes the store
rates["store_first_seconds"] = time.perf_counter() - started
started = time.perf_counter()
for _ in make_dataset(train, 64, 256):                # any later run: reads the store
    pass
rates["store_later_seconds"] = time.perf_counter() - started
rates["train_images"] = len(train)
print(json.dumps(rates))
"""


def report_seconds_per_epoch(data: str, env: dict, steps: int = 8) -> dict:
    """The report's recipe (original_model() at 198 px, its generator, batch 64, float32): seconds for `steps`
    batches after a warm-up, extrapolated to one epoch of the training split."""
    script = (f"import json, sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); import bench, time, keras, numpy as np\n"
              f"from faceattr.recipe import age_scale_of\n"
              f"keras.mixed_precision.set_global_policy('float32')\n"
              f"split = bench.load_split({data!r}); train = split[split['split'] == 'train']\n"
              f"wrapped, _ = bench.report_model(); generator = bench.report_generator(train, age_scale_of(train))\n"
              f"wrapped.fit(generator, steps_per_epoch=1, epochs=1, verbose=0)\n"
              f"started = time.perf_counter(); wrapped.fit(generator, steps_per_epoch={steps}, epochs=1, verbose=0)\n"
              f"per_image = (time.perf_counter() - started) / ({steps} * bench.REPORT_BATCH)\n"
              f"print(json.dumps({{'seconds_per_image': per_image, 'train_images': len(train),\n"
              f"                  'seconds_per_epoch': per_image * len(train)}}))\n")
    result = timed([sys.executable, "-c", script], env)
    return {**json.loads(result["stdout"].strip().splitlines()[-1]), "peak_rss_mb": result["peak_rss_mb"]}


def main() -> int:
    """Generate the folder, time every step, write benchmarks/results/scale-<n>-<machine>.json."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=24000, help="images to generate (default 24000, UTKFace's size)")
    parser.add_argument("--epochs", type=int, default=20, help="epochs for the default and the sequence (default 20)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--skip-sequence", action="store_true",
                        help="leave out the whole sequence (about two thirds of the time)")
    args = parser.parse_args()
    info = bench.machine()
    results: dict = {"machine": info, "n": args.n, "epochs": args.epochs}
    out = Path(args.out) / f"scale-{args.n}-{bench.machine_slug(info)}.json"
    out.parent.mkdir(parents=True, exist_ok=True)

    def record(step: str, value: dict) -> None:
        """Keep a finished step (its output dropped) and rewrite the results file, so a stopped run keeps it."""
        value.pop("stdout", None)
        results[step] = value
        if "report" in results and "train_default" in results:
            report_total = results["report"]["seconds_per_epoch"] * args.epochs
            results["ratios"] = {"default_vs_report_x": report_total / results["train_default"]["seconds"],
                                 "default_training_only_vs_report_x": report_total
                                 / results["train_default"]["train_seconds"],
                                 "decode_store_later_x": results["decode"]["decode_seconds_without_store"]
                                 / results["decode"]["store_later_seconds"]}
            if "sequence" in results:
                results["ratios"]["sequence_vs_report_04_x"] = report_total / results["sequence"]["seconds"]
        out.write_text(json.dumps(results, indent=2) + "\n")

    with tempfile.TemporaryDirectory(prefix="faceattr-scale-") as work:
        work = Path(work)
        env = {**os.environ, "FACEATTR_CACHE_DIR": str(work / "cache")}
        data = str(work / "faces")
        print(f"generating {args.n} faces ...", flush=True)
        record("generate", timed(FACEATTR + ["sample", data, "--n", str(args.n)], env))
        print("decoding: without the store, then into and out of it ...", flush=True)
        decode = timed([sys.executable, "-c", DECODE_SCRIPT, data], env)
        record("decode", {**json.loads(decode["stdout"].strip().splitlines()[-1]), "peak_rss_mb": decode["peak_rss_mb"]})
        print(f"training the default for {args.epochs} epochs ...", flush=True)
        trained = timed(FACEATTR + ["train", "--data", data, "--out", str(work / "run"), "--epochs", str(args.epochs)], env)
        config = json.loads((work / "run" / "config.json").read_text())
        record("train_default", {**trained, **{key: config[key] for key in ("epochs_run", "train_seconds", "precision")}})
        print("the report's recipe, a measured stretch ...", flush=True)
        record("report", report_seconds_per_epoch(data, env))
        if not args.skip_sequence:
            print(f"the whole sequence with num_epochs {args.epochs} ...", flush=True)
            sequence = timed(FACEATTR + ["run", "--data", data, "--out", str(work / "sequence"),
                                         "-p", "num_epochs", str(args.epochs)], env)
            sequence["notebooks"] = {name: float(seconds) for name, seconds in re.findall(
                r"^(\d\d_\w+)\.ipynb\s+([\d.]+) s$", sequence["stdout"], re.M)}
            record("sequence", sequence)
    report_total = results["report"]["seconds_per_epoch"] * args.epochs
    print(json.dumps(results["ratios"], indent=2))
    print(f"the report's recipe would take {report_total / 60:.0f} min for {args.epochs} epochs; the kit's default took "
          f"{results['train_default']['seconds'] / 60:.1f} min" + (f" and the whole sequence "
                                                                   f"{results['sequence']['seconds'] / 60:.1f} min"
                                                                   if "sequence" in results else ""))
    print(f"wrote {out}")
    return 0

if __name__ == "__main__":
    sys.exit(main())
