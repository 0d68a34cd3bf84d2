"""Uncertainty weighting in three forms, over seeds: does the kit's form train like the paper's?

- "kit": exp(-s) L + s for every head, s started at log(trivial loss) (faceattr.balance, today);
- "paper 1/2": Kendall, Gal & Cipolla's 1/2 exp(-s) L + 1/2 s for age and exp(-s) L + 1/2 s for gender and race,
  started at the same weights (s + log 2 for the class heads): half the kit's objective plus log 2;
- "before the fix": the kit's form with the straight-through value that also passed the plain loss's gradient,
  so the model moved by (1 + exp(-s)) dL (faceattr before issue 24).

Each trains the default recipe on the sample with the kit's callbacks; the kept epoch's validation metrics are
compared, mean ± sd over seeds. Usage: python benchmarks/kendall.py [--seeds 3] [--epochs 10]
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
METRICS = ("val_score", "val_age_mae", "val_gender_accuracy", "val_race_accuracy")


def loss_forms() -> dict:
    """The loss class and the class heads' shift of s, per form."""
    from keras import ops

    from faceattr.balance import UncertaintyWeightedLoss

    class BeforeTheFix(UncertaintyWeightedLoss):
        """The old straight-through: value L, gradient dL + d(objective)."""

        def call(self, y_true, y_pred):
            objective = self.objective(y_true, y_pred)
            return self.loss.call(y_true, y_pred) + (objective - ops.stop_gradient(objective))

    class Paper(UncertaintyWeightedLoss):
        """Kendall et al.: 1/2 exp(-s) L + 1/2 s (regression), exp(-s) L + 1/2 s (classification)."""

        def objective(self, y_true, y_pred):
            s = self.uncertainty.log_variance(self.head)
            return (0.5 if self.head == "age" else 1.0) * ops.exp(-s) * self.loss.call(y_true, y_pred) + 0.5 * s

    return {"kit": (UncertaintyWeightedLoss, 0.0), "paper 1/2": (Paper, math.log(2)),
            "before the fix": (BeforeTheFix, 0.0)}


def run_one(split, form: str, seed: int, epochs: int) -> dict:
    """Train the default recipe with one form of uncertainty weighting; the kept epoch's validation metrics."""
    import keras

    from faceattr.balance import TaskUncertainty, head_losses, trivial_errors, trivial_losses
    from faceattr.labels import HEAD_NAMES
    from faceattr.model import make_model
    from faceattr.pipeline import split_datasets
    from faceattr.recipe import Recipe, age_scale_of
    from faceattr.train import compile_model, fit

    train = split[split["split"] == "train"]
    age_scale, recipe = age_scale_of(train), Recipe.named("default")
    reference = trivial_losses(train, recipe.age_loss, age_scale)
    loss_class, shift = loss_forms()[form]
    keras.utils.set_random_seed(seed)
    base = make_model("default", recipe.image_size, age_scale)
    layer = TaskUncertainty({head: math.log(reference[head]) + (0.0 if head == "age" else shift) for head in HEAD_NAMES},
                            name="task_uncertainty")
    model = keras.Model(base.inputs, layer(base.output), name=base.name)
    plain = head_losses(recipe.age_loss, age_scale)
    compile_model(model, recipe.learning_rate, {head: loss_class(plain[head], layer, head) for head in HEAD_NAMES},
                  {head: 1.0 for head in HEAD_NAMES})
    data = split_datasets(split, recipe.image_size, recipe.batch_size, seed=seed)
    with tempfile.TemporaryDirectory() as run_dir:
        history = fit(model, data["train"], data["validation"], epochs, run_dir, trivial_errors(train), progress="none")
    best = history.loc[history["val_score"].idxmin()]
    return {"form": form, "seed": seed, "epoch": int(best["epoch"]) + 1, **{key: float(best[key]) for key in METRICS}}


def table(rows: list[dict]) -> str:
    """Markdown: mean ± sd over seeds per form."""
    lines = ["| form | val score | age MAE | gender acc | race acc |", "| --- | ---: | ---: | ---: | ---: |"]
    for form in dict.fromkeys(row["form"] for row in rows):
        runs = [row for row in rows if row["form"] == form]
        lines.append(f"| {form} | " + " | ".join(
            f"{np.mean([r[key] for r in runs]):.3f} ± {np.std([r[key] for r in runs], ddof=1):.3f}" for key in METRICS)
            + " |")
    return "\n".join(lines)


def main() -> int:
    """Run every form and seed; print the table; write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", help="the JSON to write (default: results/kendall-<this CPU>.json)")
    args = parser.parse_args()
    from machine import machine, machine_slug
    from faceattr.data import resolve_data_dir, scan, split_frame
    from faceattr.defaults import DEFAULT_SEED
    from faceattr.train import choose_precision

    precision, info = choose_precision(), machine()
    split = split_frame(scan(resolve_data_dir("sample")).frame, seed=DEFAULT_SEED)
    rows = [run_one(split, form, seed, args.epochs) for seed in range(args.seeds) for form in loss_forms()]
    print(table(rows))
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"kendall-{machine_slug(info)}.json")
    out.write_text(json.dumps({"data": "sample", "precision": precision, "epochs": args.epochs, "machine": info,
                               "runs": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
