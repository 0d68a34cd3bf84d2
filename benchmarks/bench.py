"""Side-by-side speed benchmarks: the student report's pipeline vs faceattr, same files, same run.

Usage: python benchmarks/bench.py [--data DATA] [--epochs 3] [--out benchmarks/results] [--only PHASE,...]
Each phase runs in its own subprocess, so its peak resident memory is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from faceattr.defaults import DEFAULT_SEED  # TensorFlow-free, as are the three modules beside this script:
from machine import machine, machine_slug  # what the machine is
from report_pipeline import REPORT_BATCH, REPORT_SIZE, open_resized, report_generator, report_model  # the report's
from roofline import forward_flops, phase_roofline, phase_threads, roofline_ratios  # noqa: F401  (tests: FLOPs)

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- phases (each in its own process)
def load_split(data: str):
    """Scan DATA and split it with the kit's defaults."""
    from faceattr.data import scan, split_frame

    return split_frame(scan(data).frame, seed=DEFAULT_SEED)


def phase_input(data: str, epochs: int) -> dict:
    """Input images/s at 198 px: the report's generator against faceattr's tf.data, for a cold first epoch (decoding
    into an empty decoded-image store), the first epoch of a rerun (a new dataset reading the store) and a later epoch."""
    from faceattr.pipeline import make_dataset
    from faceattr.recipe import age_scale_of

    split = load_split(data)
    train = split[split["split"] == "train"]
    generator = report_generator(train, age_scale_of(train))
    started = time.perf_counter()
    for _ in range(int(np.ceil(len(train) / REPORT_BATCH))):
        next(generator)
    report_rate = len(train) / (time.perf_counter() - started)

    def epoch_rate(dataset) -> float:
        """Images/s of one pass over `dataset`."""
        started = time.perf_counter()
        for _batch in dataset:
            pass
        return len(train) / (time.perf_counter() - started)

    with tempfile.TemporaryDirectory() as cache:
        os.environ["FACEATTR_CACHE_DIR"] = cache  # an empty store: the cold first pass decodes every image
        cold = epoch_rate(make_dataset(train, REPORT_SIZE, REPORT_BATCH, shuffle=True))
        rerun_dataset = make_dataset(train, REPORT_SIZE, REPORT_BATCH, shuffle=True)  # as a new run or notebook would
        rerun, later = epoch_rate(rerun_dataset), epoch_rate(rerun_dataset)
    return {"images": len(train), "report_images_per_s": report_rate, "faceattr_first_epoch_images_per_s": cold,
            "faceattr_rerun_first_epoch_images_per_s": rerun, "faceattr_cached_epoch_images_per_s": later}


def phase_train_report(data: str, epochs: int) -> dict:
    """The report's setup: original_model() at 198 px fed by its generator; speed and accuracy after EPOCHS."""
    import keras

    from faceattr.evaluate import predictions_frame, summary_metrics
    from faceattr.recipe import age_scale_of

    keras.utils.set_random_seed(DEFAULT_SEED)
    keras.mixed_precision.set_global_policy("float32")  # the report's setup
    split = load_split(data)
    train, test = split[split["split"] == "train"], split[split["split"] == "test"]
    max_age = age_scale_of(train)
    wrapped, model = report_model()
    steps = int(np.ceil(len(train) / REPORT_BATCH))
    wrapped.fit(report_generator(train, max_age), steps_per_epoch=1, epochs=1, verbose=0, shuffle=False)  # warm-up
    started = time.perf_counter()
    wrapped.fit(report_generator(train, max_age), steps_per_epoch=steps, epochs=epochs, verbose=0, shuffle=False)
    seconds = time.perf_counter() - started
    images = np.stack([np.array(open_resized(path, REPORT_SIZE)) / 255.0 for path in test["path"]])
    age, race, gender = wrapped.predict(images, batch_size=REPORT_BATCH, verbose=0)
    metrics = summary_metrics(predictions_frame(test, {"age": age * max_age, "gender": gender, "race": race}))
    return {"epochs": epochs, "train_images_per_s": epochs * len(train) / seconds, "seconds_per_epoch": seconds / epochs,
            **pick(metrics)}


def phase_train_default(data: str, epochs: int) -> dict:
    """The kit's default recipe (its image size, batch size and trunk; cached tf.data): speed and accuracy after
    EPOCHS. The speed leaves out the first epoch, which builds the graph, when there are more."""
    from faceattr.evaluate import predict, summary_metrics
    from faceattr.recipe import Recipe
    from faceattr.train import train_recipe

    recipe = Recipe.named("default", num_epochs=epochs)
    split = load_split(data)
    train, test = split[split["split"] == "train"], split[split["split"] == "test"]
    model, history = train_recipe(recipe, split, DEFAULT_SEED, validate=False)
    seconds = history["seconds"]
    per_epoch = (seconds.iloc[-1] - seconds.iloc[0]) / (epochs - 1) if epochs > 1 else seconds.iloc[0]
    metrics = summary_metrics(predict(model, test, recipe.image_size))
    return {"epochs": epochs, "batch_size": recipe.batch_size, "train_images_per_s": len(train) / per_epoch,
            "seconds_per_epoch": per_epoch, **pick(metrics)}


def phase_inference(data: str, epochs: int) -> dict:
    """Batched tf.data inference vs the report's one image at a time (PIL + model.predict), same model."""
    import keras

    from faceattr.defaults import DEFAULT_IMAGE_SIZE
    from faceattr.evaluate import predict
    from faceattr.model import make_model

    keras.utils.set_random_seed(DEFAULT_SEED)
    test = load_split(data).query("split == 'test'")
    model = make_model("default", DEFAULT_IMAGE_SIZE)
    predict(model, test.head(8), DEFAULT_IMAGE_SIZE)  # warm-up
    started = time.perf_counter()
    predict(model, test, DEFAULT_IMAGE_SIZE, batch_size=128)
    batched = len(test) / (time.perf_counter() - started)
    sample = test.head(100)
    started = time.perf_counter()
    for path in sample["path"]:
        model.predict(np.array(open_resized(path, DEFAULT_IMAGE_SIZE), "float32")[None], verbose=0)
    one_at_a_time = len(sample) / (time.perf_counter() - started)
    return {"batched_images_per_s": batched, "one_at_a_time_images_per_s": one_at_a_time}


def phase_scan(data: str, epochs: int) -> dict:
    """Scan time for 24,000 UTKFace-format files (generated), cold and cached."""
    from faceattr.data import scan
    from faceattr.sample import write_sample

    with tempfile.TemporaryDirectory() as folder:
        os.environ["FACEATTR_CACHE_DIR"] = str(Path(folder) / "cache")
        started = time.perf_counter()
        faces = write_sample(Path(folder) / "faces", count=24000, seed=7)
        generated = time.perf_counter() - started
        started = time.perf_counter()
        files = len(scan(faces).frame)
        cold = time.perf_counter() - started
        started = time.perf_counter()
        scan(faces)
        cached = time.perf_counter() - started
    return {"files": files, "generate_seconds": generated, "cold_seconds": cold, "cached_seconds": cached}


def phase_memory_24k(data: str, epochs: int) -> dict:
    """Peak memory while training the default recipe for one epoch on 24,000 images."""
    from faceattr.data import scan, split_frame
    from faceattr.recipe import Recipe
    from faceattr.sample import write_sample
    from faceattr.train import train_recipe

    with tempfile.TemporaryDirectory() as folder:
        os.environ["FACEATTR_CACHE_DIR"] = str(Path(folder) / "cache")
        split = split_frame(scan(write_sample(Path(folder) / "faces", count=24000, seed=7)).frame, seed=DEFAULT_SEED)
        started = time.perf_counter()
        train_recipe(Recipe.named("default", num_epochs=1), split, DEFAULT_SEED, validate=False)
        return {"train_images": int((split["split"] == "train").sum()), "epoch_seconds": time.perf_counter() - started}


TRADEOFF = [("default", 48), ("default", 64), ("default", 96), ("batchnorm", 64)]


def phase_tradeoff(data: str, epochs: int) -> dict:
    """Image size and batch norm: seconds per (cached) epoch vs best validation scores, EPOCHS*2 epochs each, at
    each recipe's own batch size."""
    from faceattr.pipeline import split_datasets
    from faceattr.recipe import Recipe
    from faceattr.train import train_recipe

    split = load_split(data)
    rows = []
    for arch, size in TRADEOFF:
        recipe = Recipe.named(arch, image_size=size, num_epochs=2 * epochs)
        datasets = split_datasets(split, size, recipe.batch_size, DEFAULT_SEED)
        for _batch in datasets["train"]:  # fill the cache: time training, not decoding
            pass
        for _batch in datasets["validation"]:
            pass
        model, history = train_recipe(recipe, split, DEFAULT_SEED, datasets=datasets)
        seconds = history["seconds"].iloc[-1] / recipe.num_epochs
        best = history["val_loss"].idxmin()  # one recipe per row: its own weighted loss is comparable
        rows.append({"arch": arch, "image_size": size, "batch_size": recipe.batch_size,
                     "parameters": model.count_params(), "seconds_per_epoch": seconds,
                     **{key: history.loc[best, f"val_{key}"] for key in ("gender_accuracy", "race_accuracy", "age_mae")}})
    return {"epochs": 2 * epochs, "rows": rows}


def phase_precision(data: str, epochs: int) -> dict:
    """float32 against mixed_bfloat16 (where the CPU has it): the default recipe, 3 seeds, its own epochs each,
    validation scores after the last epoch and seconds per cached epoch."""
    import keras

    from faceattr.pipeline import split_datasets
    from faceattr.recipe import Recipe
    from faceattr.train import cpu_has_bfloat16, train_recipe

    recipe = Recipe.named("default")
    split = load_split(data)
    datasets = split_datasets(split, recipe.image_size, recipe.batch_size, DEFAULT_SEED)
    rows = []
    for precision in ("float32", "mixed_bfloat16") if cpu_has_bfloat16() else ("float32",):
        keras.mixed_precision.set_global_policy(precision)
        for seed in range(3):
            history = train_recipe(recipe, split, seed, datasets=datasets).history
            last = history.iloc[-1]
            rows.append({"precision": precision, "seed": seed, "first_epoch_seconds": history["seconds"].iloc[0],
                         "seconds_per_epoch": (last["seconds"] - history["seconds"].iloc[0]) / (recipe.num_epochs - 1),
                         **{key: last[f"val_{key}"] for key in ("gender_accuracy", "race_accuracy", "age_mae")}})
    return {"epochs": recipe.num_epochs, "rows": rows}


BALANCE_CANDIDATES = ["old default (fixed 1/1/1)", "kit default", "report (198 px, its losses)"]


def phase_balance(data: str, epochs: int) -> dict:
    """The multi-task balance study in short: old default, kit default and the report's recipe, 3 seeds,
    EPOCHS*2 epochs, validation split (benchmarks/balance.py runs the full study)."""
    from balance import study  # benchmarks/balance.py, beside this script

    return study([data], BALANCE_CANDIDATES, seeds=3, epochs=2 * epochs, test=False)


def pick(metrics: dict) -> dict:
    """The headline test metrics."""
    return {key: metrics[key] for key in ("n", "gender_accuracy", "race_accuracy", "age_mae")}


PHASES = {"input": phase_input, "train_report": phase_train_report, "train_default": phase_train_default,
          "inference": phase_inference, "scan": phase_scan, "memory_24k": phase_memory_24k,
          "tradeoff": phase_tradeoff, "balance": phase_balance, "roofline": phase_roofline,
          "threads": phase_threads, "precision": phase_precision}


# ---------------------------------------------------------------- driver
def run_phase(name: str, data: str, epochs: int) -> dict:
    """Run one phase in a fresh interpreter; return its result with peak RSS (MB) and wall seconds."""
    started = time.perf_counter()
    result = subprocess.run([sys.executable, __file__, "--phase", name, "--data", data, "--epochs", str(epochs)],
                            capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        raise SystemExit(f"bench phase {name} failed:\n{result.stderr[-3000:]}")
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    payload["phase_wall_seconds"] = time.perf_counter() - started
    return payload


def ratios(results: dict) -> dict:
    """The targets, as ratios measured in this run."""
    data_input, report, default = results["input"], results["train_report"], results["train_default"]
    inference, scan = results["inference"], results["scan"]
    return {
        "input_first_epoch_x": data_input["faceattr_first_epoch_images_per_s"] / data_input["report_images_per_s"],
        "input_rerun_first_epoch_x": (data_input["faceattr_rerun_first_epoch_images_per_s"]
                                      / data_input["report_images_per_s"]),
        "input_cached_epoch_x": data_input["faceattr_cached_epoch_images_per_s"] / data_input["report_images_per_s"],
        "training_x": default["train_images_per_s"] / report["train_images_per_s"],
        "gender_accuracy_delta": default["gender_accuracy"] - report["gender_accuracy"],
        "race_accuracy_delta": default["race_accuracy"] - report["race_accuracy"],
        "age_mae_delta_years": default["age_mae"] - report["age_mae"],
        "inference_x": inference["batched_images_per_s"] / inference["one_at_a_time_images_per_s"],
        "scan_24k_cold_seconds": scan["cold_seconds"],
        "scan_24k_cached_seconds": scan["cached_seconds"],
        "memory_24k_training_peak_mb": results["memory_24k"]["peak_rss_mb"],
        **roofline_ratios(results["roofline"]),
        **precision_ratios(results["precision"]),
    }


def precision_ratios(precision: dict) -> dict:
    """mixed_bfloat16 against float32: the speed-up per epoch and the change in each validation score (means)."""
    import pandas as pd

    means = pd.DataFrame(precision["rows"]).groupby("precision").mean(numeric_only=True)
    if "mixed_bfloat16" not in means.index:
        return {}
    half, full = means.loc["mixed_bfloat16"], means.loc["float32"]
    return {"bfloat16_epoch_speedup_x": full["seconds_per_epoch"] / half["seconds_per_epoch"],
            **{f"bfloat16_{key}_delta": half[key] - full[key] for key in ("gender_accuracy", "race_accuracy", "age_mae")}}


def print_table(results: dict, summary: dict) -> None:
    """Print the side-by-side table and the target ratios."""
    data_input, report, default = results["input"], results["train_report"], results["train_default"]
    inference = results["inference"]
    rows = [
        ("input images/s (198 px)", f"{data_input['report_images_per_s']:.0f}",
         f"{data_input['faceattr_first_epoch_images_per_s']:.0f} cold / "
         f"{data_input['faceattr_rerun_first_epoch_images_per_s']:.0f} rerun / "
         f"{data_input['faceattr_cached_epoch_images_per_s']:.0f} later"),
        ("training images/s", f"{report['train_images_per_s']:.1f} (original, 198 px)",
         f"{default['train_images_per_s']:.0f} (default, 64 px)"),
        (f"test gender acc after {report['epochs']} epochs", f"{report['gender_accuracy']:.3f}", f"{default['gender_accuracy']:.3f}"),
        (f"test race acc after {report['epochs']} epochs", f"{report['race_accuracy']:.3f}", f"{default['race_accuracy']:.3f}"),
        (f"test age MAE after {report['epochs']} epochs", f"{report['age_mae']:.1f}", f"{default['age_mae']:.1f}"),
        ("inference images/s", f"{inference['one_at_a_time_images_per_s']:.0f} (one at a time)",
         f"{inference['batched_images_per_s']:.0f} (batched)"),
        ("peak RSS, training (MB)", f"{report['peak_rss_mb']:.0f}", f"{default['peak_rss_mb']:.0f}"),
    ]
    print(f"{'':34s} {'report':>26s} {'faceattr':>30s}")
    for name, left, right in rows:
        print(f"{name:34s} {left:>26s} {right:>30s}")
    scan = results["scan"]
    print(f"scan of {scan['files']} files: {scan['cold_seconds']:.1f} s cold, {scan['cached_seconds']:.2f} s cached")
    print(f"training the default on {results['memory_24k']['train_images']} images: peak RSS "
          f"{results['memory_24k']['peak_rss_mb']:.0f} MB")
    print(f"trade-off on the validation split after {results['tradeoff']['epochs']} epochs:")
    print(f"  {'arch':10s} {'size':>5s} {'params':>9s} {'s/epoch':>8s} {'gender':>7s} {'race':>6s} {'age MAE':>8s}")
    for row in results["tradeoff"]["rows"]:
        print(f"  {row['arch']:10s} {row['image_size']:5d} {row['parameters']:9,d} {row['seconds_per_epoch']:8.2f} "
              f"{row['gender_accuracy']:7.3f} {row['race_accuracy']:6.3f} {row['age_mae']:8.1f}")
    if "balance" in results:  # a results file from before the balance phase has none
        print(f"balance on the validation split after {results['balance']['epochs']} epochs, mean ± sd over "
              f"{results['balance']['seeds']} seeds:")
        for key, row in results["balance"]["at_end"].items():
            print(f"  {key.split(' | ')[1]:34s} " + "  ".join(f"{metric} {row[metric]['mean']:.3f} ± "
                                                       f"{row[metric]['sd']:.3f}"
                                                       for metric in ("gender_accuracy", "race_accuracy", "age_mae")))
    roofline = results["roofline"]
    print("roofline: matmul peak " + ", ".join(f"{name} {value:.0f} GFLOP/s" for name, value in roofline["peak_gflop_per_s"].items())
          + f"; TensorFlow threads {roofline['threads']}")
    print(f"  {'arch':9s} {'size':>4s} {'batch':>5s} {'precision':>15s} {'jit':>5s} {'GFLOP/img':>9s} {'img/s':>7s} "
          f"{'GFLOP/s':>8s} {'of fp32 peak':>12s}")
    for row in roofline["rows"]:
        print(f"  {row['arch']:9s} {row['image_size']:4d} {row['batch']:5d} {row['precision']:>15s} {str(row['jit_compile']):>5s} "
              f"{row['train_gflop_per_image']:9.3f} {row['images_per_s']:7.0f} {row['gflop_per_s']:8.1f} "
              f"{row['fraction_of_float32_peak']:12.0%}")
    print("threads (intra-op / inter-op; 0 = TensorFlow's choice): " + ", ".join(
        f"{row['intra_op']}/{row['inter_op']} {row['images_per_s']:.0f} img/s" for row in results["threads"]["rows"]))
    print(f"precision: {results['precision']['epochs']} epochs, validation, per seed:")
    for row in results["precision"]["rows"]:
        print(f"  {row['precision']:15s} seed {row['seed']}  {row['seconds_per_epoch']:.2f} s/epoch  gender "
              f"{row['gender_accuracy']:.3f}  race {row['race_accuracy']:.3f}  age MAE {row['age_mae']:.2f}")
    print("ratios: " + ", ".join(f"{k} {v:.2f}" for k, v in summary.items()))


def main() -> int:
    """Run every phase (or one, with --phase) and write the results JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="sample")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--phase", choices=sorted(PHASES))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--only", metavar="PHASES", help="comma-separated phases to run again; the others are kept "
                                                         "from this machine's last results file")
    args = parser.parse_args()
    from faceattr.data import resolve_data_dir

    data = str(resolve_data_dir(args.data))
    if args.phase:
        from faceattr.train import choose_precision

        # the kit's own precision (FACEATTR_PRECISION, else "auto"); the report's phases and the precision and
        # roofline phases set theirs
        choose_precision()
        payload = PHASES[args.phase](data, args.epochs)
        payload["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(payload))
        return 0
    info = machine()
    out = Path(args.out) / f"{machine_slug(info)}.json"
    names = ["scan", "input", "train_default", "train_report", "inference", "memory_24k", "tradeoff", "roofline",
             "threads", "precision", "balance"]
    results = {}
    if args.only:
        unknown = sorted(set(args.only.split(",")) - set(names))
        if unknown:
            raise SystemExit(f"unknown phase {unknown[0]!r}; the phases are: {', '.join(names)}")
        if not out.exists():
            raise SystemExit(f"--only needs an earlier full run's {out.relative_to(ROOT)}; run `make bench` first")
        results = json.loads(out.read_text())["results"]
        names = args.only.split(",")
    for name in names:
        print(f"running {name} ...", flush=True)
        results[name] = run_phase(name, data, args.epochs)
    summary = ratios(results)
    out.parent.mkdir(parents=True, exist_ok=True)  # written before printing: a printing bug loses nothing
    out.write_text(json.dumps({"machine": info, "data": args.data, "epochs": args.epochs, "ratios": summary,
                               "results": results}, indent=2) + "\n")
    print_table(results, summary)
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
