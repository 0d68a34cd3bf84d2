"""Each head's pull on the shared trunk, per loss-balancing scheme, over seeds.

For each seed and scheme (equal 1 / 1 / 1, normalised, learned = uncertainty) a fresh default model trains for
EPOCHS epochs on the sample. Before and after, `faceattr.balance.trunk_gradient_norms` measures the norm of each
head's weighted-loss gradient on the trunk's last layer (the quantity GradNorm, Chen et al. 2018, balances),
averaged over the first BATCHES training batches in file order. Notebook 04, section 7, measures the same
with one seed. Prints a Markdown table (mean ± sd over seeds) and writes the JSON.

Usage: python benchmarks/gradients.py [--data sample] [--seeds 3] [--epochs 3] [--batches 4]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
SCHEMES = {"equal": "fixed", "normalised": "normalised", "learned": "uncertainty"}


def measure(split: pd.DataFrame, scheme: str, seed: int, epochs: int, batches: int) -> dict:
    """Train one fresh default model under `scheme`; each head's trunk gradient norm before and after."""
    import keras

    from faceattr.balance import head_losses, prepare_balance, task_uncertainty_layer, trunk_gradient_norms
    from faceattr.defaults import DEFAULT_BATCH_SIZE, resolve_recipe
    from faceattr.model import make_model
    from faceattr.pipeline import make_dataset, split_datasets
    from faceattr.train import compile_model, timed_fit

    train = split[split["split"] == "train"]
    age_scale = float(train["age"].max())
    recipe = resolve_recipe("default", loss_balance=SCHEMES[scheme])
    keras.utils.set_random_seed(seed)
    model, losses, weights = prepare_balance(make_model("default", recipe["image_size"], age_scale), train,
                                             recipe["loss_balance"], recipe["age_loss"], age_scale)
    compile_model(model, recipe["learning_rate"], losses, weights)
    fixed = list(make_dataset(train, recipe["image_size"], DEFAULT_BATCH_SIZE).take(batches))
    plain = head_losses(recipe["age_loss"], age_scale)

    def now() -> dict[str, float]:
        """The head weights in force now (the learned exp(-s) under "learned")."""
        layer = task_uncertainty_layer(model)
        return layer.weights_now() if layer else weights

    start = trunk_gradient_norms(model, fixed, plain, now())
    data = split_datasets(split, recipe["image_size"], DEFAULT_BATCH_SIZE, seed=seed)
    history = timed_fit(model, data["train"], data["validation"], epochs)
    end = trunk_gradient_norms(model, fixed, plain, now())
    last = history.iloc[-1]
    return {"scheme": scheme, "seed": seed, "start": start, "end": end, "weights_start": weights,
            "weights_end": now(), **{key: float(last[key]) for key in
                                     ("val_age_mae", "val_gender_accuracy", "val_race_accuracy")}}


def table(rows: list[dict], when: str) -> str:
    """Markdown: per scheme, each head's gradient norm (mean ± sd over seeds) and the age / race ratio."""
    lines = ["| scheme | age | gender | race | age / race |", "| --- | ---: | ---: | ---: | ---: |"]
    for scheme in SCHEMES:
        runs = [row[when] for row in rows if row["scheme"] == scheme]
        cells = [f"{np.mean([r[h] for r in runs]):.4g} ± {np.std([r[h] for r in runs], ddof=1):.2g}"
                 for h in ("age", "gender", "race")]
        ratio = [r["age"] / r["race"] for r in runs]
        cells.append(f"{np.mean(ratio):.3g} ± {np.std(ratio, ddof=1):.2g}")
        lines.append(f"| {scheme} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    """Run every scheme and seed; print the tables; write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="sample")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--out", help="the JSON to write (default: results/gradients-<this CPU>.json)")
    args = parser.parse_args()
    from bench import machine, machine_slug
    from faceattr.train import choose_precision

    info = machine()
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"gradients-{machine_slug(info)}.json")

    precision = choose_precision()
    from faceattr.data import resolve_data_dir, scan, split_frame

    split = split_frame(scan(resolve_data_dir(args.data)).frame, seed=42)
    rows = []
    for seed in range(args.seeds):
        for scheme in SCHEMES:
            rows.append(measure(split, scheme, seed, args.epochs, args.batches))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    for when in ("start", "end"):
        print(f"\nTrunk gradient norm per head, {'before training' if when == 'start' else f'after {args.epochs} epochs'}"
              f" ({args.data}, {precision}, {args.seeds} seeds, mean ± sd):\n{table(rows, when)}")
    out.write_text(json.dumps({"data": args.data, "precision": precision, "epochs": args.epochs,
                               "batches": args.batches, "machine": info, "runs": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
