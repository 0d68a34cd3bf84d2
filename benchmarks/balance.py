"""Multi-task balance study: the report's recipe, today's default and each balancing scheme, over seeds.

Every candidate trains on the same split for EPOCHS epochs with the kit's callbacks (selection on
val_score). From each run's history we read the validation metrics of the epoch the checkpoint keeps,
after 5 epochs and after EPOCHS epochs, and the seconds spent. The winner is chosen on validation only
(`choose`, among the candidates at the kit's batch: the fewest cells where the report's recipe is ahead
beyond the spread over seeds, then the lowest mean val_score); only it and the report's recipe are then scored
once on the test split.

Usage: python benchmarks/balance.py [--data sample --data generated:3000] [--seeds 3] [--epochs 15]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from faceattr.defaults import ADAM_LEARNING_RATE, DEFAULT_BATCH_SIZE, DEFAULT_SEED, REPORT_LOSS_WEIGHTS  # no TF

ROOT = Path(__file__).resolve().parent.parent
HEADS = ("gender_accuracy", "race_accuracy", "age_mae")

# name: the changes to its architecture's recipe (faceattr.recipe.Recipe.named: "arch", then any setting, e.g.
# "batch_size", "augment", or "centre_pixels" False for the report's 0..1 pixels). Each candidate spells out how it differs from the kit's default today. The first study (docs/balance.md, float32
# at batch 64) ran before batch 32 and centred pixels became the default; its candidates keep their settings so
# that it can be rerun.
FIRST_STUDY = {"batch_size": 64, "learning_rate": ADAM_LEARNING_RATE, "centre_pixels": False}
CANDIDATES = {
    "kit default": {"arch": "default"},
    "report (198 px, its losses)": {"arch": "original"},   # the kit's batch
    "default, pixels 0..1 (the previous default)": {"arch": "default", "centre_pixels": False},
    "default at Adam 2e-3": {"arch": "default", "learning_rate": 2e-3},
    "default at batch 16": {"arch": "default", "batch_size": 16},
    "default, augment": {"arch": "default", "augment": True},
    "default, normalised": {"arch": "default", "loss_balance": "normalised"},
    "default, fixed 2/1/1.5 (report weights)": {"arch": "default", "loss_balance": "fixed",
                                                "loss_weights": REPORT_LOSS_WEIGHTS},
    # the first study
    "old default (fixed 1/1/1)": {"arch": "default", "loss_balance": "fixed", "age_head": "linear", **FIRST_STUDY},
    "fixed 2/1/1.5 (report weights)": {"arch": "default", "loss_balance": "fixed", "age_head": "linear",
                                       "loss_weights": REPORT_LOSS_WEIGHTS, **FIRST_STUDY},
    "normalised": {"arch": "default", "loss_balance": "normalised", "age_head": "linear", **FIRST_STUDY},
    "uncertainty": {"arch": "default", "loss_balance": "uncertainty", "age_head": "linear", **FIRST_STUDY},
    "normalised + expectation age": {"arch": "default", "loss_balance": "normalised", **FIRST_STUDY},
    "report, batch 64": {"arch": "original", "batch_size": 64},
}
REPORT = "report (198 px, its losses)"
CURRENT = list(CANDIDATES)[:list(CANDIDATES).index("old default (fixed 1/1/1)")]  # the study `make bench-balance` runs


def resolve_data(spec: str, workdir: Path) -> Path:
    """"sample" is the embedded sample; "generated:N" writes an N-image UTKFace-format folder."""
    from faceattr.data import resolve_data_dir
    from faceattr.sample import write_sample

    if spec.startswith("generated:"):
        count = int(spec.split(":", 1)[1])
        return write_sample(workdir / f"generated-{count}", count=count, seed=3)
    return resolve_data_dir(spec)


def selected(history, upto: int) -> dict:
    """The validation metrics of the epoch the checkpoint keeps among the first `upto` epochs."""
    window = history.iloc[:upto]
    best = window["val_score"].idxmin()
    return {"epoch": int(best) + 1, "val_score": float(window.loc[best, "val_score"]),
            **{head: float(window.loc[best, f"val_{head}"]) for head in HEADS}}


def run_one(name: str, settings: dict, split, seed: int, epochs: int, run_dir: Path) -> dict:
    """Train one candidate with one seed; return its selected validation metrics and timings."""
    import keras

    from faceattr.recipe import Recipe
    from faceattr.train import train_recipe

    recipe = Recipe.named(**settings, num_epochs=epochs)
    started, seconds = [0.0], []   # seconds from the start of training to each epoch's end
    clock = keras.callbacks.LambdaCallback(on_train_begin=lambda logs: started.__setitem__(0, time.perf_counter()),
                                           on_epoch_end=lambda epoch, logs: seconds.append(time.perf_counter()
                                                                                           - started[0]))
    model, history = train_recipe(recipe, split, seed, run_dir, extra_callbacks=[clock])
    return {"candidate": name, "seed": seed, "parameters": model.count_params(), "image_size": recipe.image_size,
            "epochs_run": len(history), "seconds": seconds,
            "at_5": selected(history, 5), "at_end": selected(history, epochs),
            "history": history.round(5).to_dict("list")}


def summarise(rows: list[dict], key: str) -> dict:
    """Mean and sd over seeds per data set and candidate, with the mean seconds spent up to that point."""
    table = {}
    for row in rows:
        table.setdefault((row["data"], row["candidate"]), []).append(row)
    out = {}
    for (data, name), group in table.items():
        values = {metric: [r[key][metric] for r in group] for metric in ("val_score", *HEADS)}
        out[f"{data} | {name}"] = {metric: {"mean": float(np.mean(v)), "sd": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0}
                                   for metric, v in values.items()}
        upto = 5 if key == "at_5" else None
        out[f"{data} | {name}"]["seconds"] = float(np.mean([r["seconds"][:upto][-1] for r in group]))
    return out


def verdict(summary: dict, data: str, name: str, metric: str) -> str:
    """Against the report's recipe: "better", "level" (the gap lies inside either one's sd over seeds) or
    "behind"."""
    mine, report = summary[f"{data} | {name}"][metric], summary[f"{data} | {REPORT}"][metric]
    gain = (report["mean"] - mine["mean"]) if metric == "age_mae" else (mine["mean"] - report["mean"])
    if gain > 0:
        return "better"
    return "level" if -gain <= max(mine["sd"], report["sd"]) else "behind"


def choosable(candidates: list[str]) -> list[str]:
    """The candidates the default may be chosen from: those at the kit's batch, which takes the same steps per
    epoch as the report's recipe here (a smaller batch takes more, and more time); all but the report if none is."""
    others = [name for name in candidates if name != REPORT]
    same_batch = [name for name in others
                  if CANDIDATES[name].get("batch_size", DEFAULT_BATCH_SIZE) == DEFAULT_BATCH_SIZE]
    return same_batch or others


def choose(summaries: list[dict], data_specs: list[str], candidates: list[str]) -> str:
    """The default's rule: the candidate that the report's recipe is ahead of in the fewest cells (head x data set
    x summary), then the lowest mean val_score. Needs the report in every summary."""
    def behind(name: str) -> int:
        if f"{data_specs[0]} | {REPORT}" not in summaries[0]:
            return 0
        return sum(verdict(summary, data, name, metric) == "behind"
                   for summary in summaries for data in data_specs for metric in HEADS)

    def score(name: str) -> float:
        return float(np.mean([summaries[-1][f"{data} | {name}"]["val_score"]["mean"] for data in data_specs]))

    return min(candidates, key=lambda name: (behind(name), score(name)))


def test_scores(name: str, data: str, split, seed: int, run_dir: Path) -> dict:
    """Score one kept checkpoint on the full test split."""
    from faceattr.evaluate import predict, summary_metrics
    from faceattr.runs import RunFolder

    model = RunFolder(run_dir).load_model()
    metrics = summary_metrics(predict(model, split[split["split"] == "test"], model.input_shape[1]))
    return {"candidate": name, "data": data, "seed": seed,
            **{key: metrics[key] for key in ("n", "gender_accuracy", "race_accuracy", "age_mae")}}


def study(data_specs: list[str], candidates: list[str], seeds: int, epochs: int, test: bool = True,
          log: str | None = None) -> dict:
    """Run the grid; choose on validation; with `test`, score the winner and the report once on the test split."""
    import keras

    from faceattr.data import scan, split_frame

    precision = keras.mixed_precision.global_policy().name  # main() sets the kit's own
    rows, tests = [], []
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        splits = {spec: split_frame(scan(resolve_data(spec, workdir)).frame, seed=DEFAULT_SEED) for spec in data_specs}
        for spec, split in splits.items():
            for name in candidates:
                for seed in range(seeds):
                    row = run_one(name, CANDIDATES[name], split, seed, epochs, workdir / "runs" / f"{len(rows)}")
                    row["data"], row["run"] = spec, len(rows)
                    rows.append(row)
                    if log:
                        with open(log, "a") as stream:  # survives an interrupted study
                            stream.write(json.dumps(row) + "\n")
                    print(f"{spec:16s} {name:32s} seed {seed}: " + ", ".join(
                        f"{k} {row['at_end'][k]:.3f}" for k in ("val_score", *HEADS))
                        + f" | {row['seconds'][-1]:.0f} s", file=sys.stderr, flush=True)
        at_5, at_end = summarise(rows, "at_5"), summarise(rows, "at_end")
        by_candidate = {name: float(np.mean([v["val_score"]["mean"] for k, v in at_end.items() if k.endswith(f"| {name}")]))
                        for name in candidates}
        winner = choose([at_5, at_end], data_specs, choosable(candidates))
        if test:
            for row in rows:
                if row["candidate"] in (winner, REPORT):
                    tests.append(test_scores(row["candidate"], row["data"], splits[row["data"]], row["seed"],
                                             workdir / "runs" / f"{row['run']}"))
    return {"precision": precision, "epochs": epochs, "seeds": seeds, "winner_on_validation": winner,
            "mean_val_score": by_candidate, "at_5": at_5, "at_end": at_end, "test": tests, "runs": rows}


def markdown_table(summary: dict, data: str) -> str:
    """One data set's rows of `summarise` output as a Markdown table, mean ± sd over seeds."""
    lines = ["| candidate | gender acc | race acc | age MAE (years) | val score | seconds |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for key, row in summary.items():
        if key.startswith(f"{data} | "):
            cells = [f"{row[m]['mean']:.3f} ± {row[m]['sd']:.3f}" for m in ("gender_accuracy", "race_accuracy")]
            cells += [f"{row['age_mae']['mean']:.2f} ± {row['age_mae']['sd']:.2f}",
                      f"{row['val_score']['mean']:.3f} ± {row['val_score']['sd']:.3f}", f"{row['seconds']:.0f}"]
            lines.append(f"| {key.split(' | ')[1]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    """Run the full study and write its JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", action="append", help='"sample" or "generated:N" (repeatable)')
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--candidates", nargs="*", default=list(CURRENT))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "balance.json"))
    args = parser.parse_args()
    from faceattr.train import choose_precision

    choose_precision()  # the kit's own: mixed_bfloat16 on CPUs with AVX-512 BF16, as every run trains
    payload = study(args.data or ["sample", "generated:3000"], args.candidates, args.seeds, args.epochs,
                    log=f"{args.out}.partial.jsonl")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(payload, indent=1) + "\n")
    for data in args.data or ["sample", "generated:3000"]:
        for key in ("at_5", "at_end"):
            print(f"\n{data}, validation, epoch kept among the first {5 if key == 'at_5' else args.epochs}:")
            print(markdown_table(payload[key], data))
    print(f"chosen on validation: {payload['winner_on_validation']}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
