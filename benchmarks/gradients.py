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

    from faceattr.balance import head_losses, loss_weights_now, trunk_gradient_norms
    from faceattr.pipeline import make_dataset
    from faceattr.recipe import Recipe, age_scale_of
    from faceattr.train import train_recipe

    train = split[split["split"] == "train"]
    age_scale = age_scale_of(train)
    recipe = Recipe.named("default", loss_balance=SCHEMES[scheme], num_epochs=epochs)
    fixed = list(make_dataset(train, recipe.image_size, recipe.batch_size).take(batches))
    plain = head_losses(recipe.age_loss, age_scale)
    start = {}   # before the first step: the norms, and the weights compiled in

    def measure_start(logs: dict | None = None) -> None:
        """Each head's trunk gradient norm under the weights in force (the learned exp(-s) under "learned")."""
        model = at_start.model
        start.update(norms=trunk_gradient_norms(model, fixed, plain, loss_weights_now(model)),
                     weights=dict(model.get_compile_config()["loss_weights"]))

    at_start = keras.callbacks.LambdaCallback(on_train_begin=measure_start)
    model, history = train_recipe(recipe, split, seed, extra_callbacks=[at_start])
    end = trunk_gradient_norms(model, fixed, plain, loss_weights_now(model))
    last = history.iloc[-1]
    return {"scheme": scheme, "seed": seed, "start": start["norms"], "end": end, "weights_start": start["weights"],
            "weights_end": loss_weights_now(model), **{key: float(last[key]) for key in
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
    from machine import machine, machine_slug
    from faceattr.train import choose_precision

    info = machine()
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"gradients-{machine_slug(info)}.json")

    precision = choose_precision()
    from faceattr.data import resolve_data_dir, scan, split_frame
    from faceattr.defaults import DEFAULT_SEED

    split = split_frame(scan(resolve_data_dir(args.data)).frame, seed=DEFAULT_SEED)
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
