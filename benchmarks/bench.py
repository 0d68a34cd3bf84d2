"""Side-by-side speed benchmarks: the student report's pipeline vs faceattr, same files, same run.

Usage: python benchmarks/bench.py [--data DATA] [--epochs 3] [--out benchmarks/results] [--only PHASE,...]
Each phase runs in its own subprocess, so its peak resident memory is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
REPORT_SIZE = 198
REPORT_BATCH = 64


# ---------------------------------------------------------------- the report's pipeline, reimplemented
def report_generator(frame, max_age: float, image_size: int = REPORT_SIZE, batch_size: int = REPORT_BATCH):
    """The report's generator: per-row df.iloc, PIL open + resize, /255, to_categorical, every epoch.

    (Keras 3 needs the targets as a tuple; the report, on Keras 2, yielded a list.)
    """
    from keras.utils import to_categorical
    from PIL import Image

    while True:
        images, ages, races, genders = [], [], [], []
        for index in range(len(frame)):
            row = frame.iloc[index]
            image = Image.open(row["path"]).convert("RGB").resize((image_size, image_size))
            images.append(np.array(image) / 255.0)
            ages.append(row["age"] / max_age)
            races.append(to_categorical(row["race"], 5))
            genders.append(to_categorical(row["gender"], 2))
            if len(images) >= batch_size:
                yield np.array(images), (np.array(ages), np.array(races), np.array(genders))
                images, ages, races, genders = [], [], [], []
        if images:
            yield np.array(images), (np.array(ages), np.array(races), np.array(genders))


def report_model():
    """original_model() wired for the report's generator: inputs already /255, list outputs, age / max age."""
    import keras

    from faceattr.model import original_model

    model = original_model(age_scale=1.0)
    inputs = keras.Input((REPORT_SIZE, REPORT_SIZE, 3))
    outputs = model(inputs * 255.0)  # the kit's model rescales 0..255 itself
    wrapped = keras.Model(inputs, [outputs["age"], outputs["race"], outputs["gender"]])
    wrapped.compile(optimizer="adam", loss=["mse", "categorical_crossentropy", "categorical_crossentropy"],
                    loss_weights=[2.0, 1.5, 1.0])
    return wrapped, model


# ---------------------------------------------------------------- phases (each in its own process)
def load_split(data: str):
    """Scan DATA and split it with the kit's defaults."""
    from faceattr.data import scan, split_frame

    return split_frame(scan(data).frame, seed=42)


def phase_input(data: str, epochs: int) -> dict:
    """Input images/s at 198 px: the report's generator against faceattr's tf.data, for a cold first epoch (decoding
    into an empty decoded-image store), the first epoch of a rerun (a new dataset reading the store) and a later epoch."""
    from faceattr.pipeline import make_dataset

    split = load_split(data)
    train = split[split["split"] == "train"]
    generator = report_generator(train, float(train["age"].max()))
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

    keras.utils.set_random_seed(42)
    keras.mixed_precision.set_global_policy("float32")  # the report's setup
    split = load_split(data)
    train, test = split[split["split"] == "train"], split[split["split"] == "test"]
    max_age = float(train["age"].max())
    wrapped, model = report_model()
    steps = int(np.ceil(len(train) / REPORT_BATCH))
    wrapped.fit(report_generator(train, max_age), steps_per_epoch=1, epochs=1, verbose=0, shuffle=False)  # warm-up
    started = time.perf_counter()
    wrapped.fit(report_generator(train, max_age), steps_per_epoch=steps, epochs=epochs, verbose=0, shuffle=False)
    seconds = time.perf_counter() - started
    images = np.stack([np.array(_open(path, REPORT_SIZE)) / 255.0 for path in test["path"]])
    age, race, gender = wrapped.predict(images, batch_size=REPORT_BATCH, verbose=0)
    metrics = summary_metrics(predictions_frame(test, {"age": age * max_age, "gender": gender, "race": race}))
    return {"epochs": epochs, "train_images_per_s": epochs * len(train) / seconds, "seconds_per_epoch": seconds / epochs,
            **pick(metrics)}


def phase_train_default(data: str, epochs: int) -> dict:
    """The kit's default: 64 px, cached tf.data, default trunk; speed and accuracy after EPOCHS."""
    import keras

    from faceattr.defaults import DEFAULT_IMAGE_SIZE, resolve_recipe
    from faceattr.evaluate import predict, summary_metrics
    from faceattr.pipeline import split_datasets
    from faceattr.train import build_compiled

    keras.utils.set_random_seed(42)
    split = load_split(data)
    train, test = split[split["split"] == "train"], split[split["split"] == "test"]
    model = build_compiled(resolve_recipe("default"), train, float(train["age"].max()))
    datasets = split_datasets(split, DEFAULT_IMAGE_SIZE, 64, seed=42)
    model.fit(datasets["train"].take(1), verbose=0)  # warm-up step
    started = time.perf_counter()
    model.fit(datasets["train"], epochs=epochs, verbose=0)
    seconds = time.perf_counter() - started
    metrics = summary_metrics(predict(model, test, DEFAULT_IMAGE_SIZE))
    return {"epochs": epochs, "train_images_per_s": epochs * len(train) / seconds, "seconds_per_epoch": seconds / epochs,
            **pick(metrics)}


def phase_inference(data: str, epochs: int) -> dict:
    """Batched tf.data inference vs the report's one image at a time (PIL + model.predict), same model."""
    import keras

    from faceattr.defaults import DEFAULT_IMAGE_SIZE
    from faceattr.evaluate import predict
    from faceattr.model import make_model

    keras.utils.set_random_seed(42)
    test = load_split(data).query("split == 'test'")
    model = make_model("default", DEFAULT_IMAGE_SIZE)
    predict(model, test.head(8), DEFAULT_IMAGE_SIZE)  # warm-up
    started = time.perf_counter()
    predict(model, test, DEFAULT_IMAGE_SIZE, batch_size=128)
    batched = len(test) / (time.perf_counter() - started)
    sample = test.head(100)
    started = time.perf_counter()
    for path in sample["path"]:
        model.predict(np.array(_open(path, DEFAULT_IMAGE_SIZE), "float32")[None], verbose=0)
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
    """Peak memory while training the default configuration for one epoch on 24,000 images."""
    from faceattr.data import scan, split_frame
    from faceattr.defaults import DEFAULT_IMAGE_SIZE, resolve_recipe
    from faceattr.pipeline import split_datasets
    from faceattr.sample import write_sample
    from faceattr.train import build_compiled

    with tempfile.TemporaryDirectory() as folder:
        os.environ["FACEATTR_CACHE_DIR"] = str(Path(folder) / "cache")
        split = split_frame(scan(write_sample(Path(folder) / "faces", count=24000, seed=7)).frame, seed=42)
        train = split[split["split"] == "train"]
        model = build_compiled(resolve_recipe("default"), train, float(train["age"].max()))
        started = time.perf_counter()
        model.fit(split_datasets(split, DEFAULT_IMAGE_SIZE, 64)["train"], epochs=1, verbose=0)
        return {"train_images": int((split["split"] == "train").sum()), "epoch_seconds": time.perf_counter() - started}


TRADEOFF = [("default", 48), ("default", 64), ("default", 96), ("batchnorm", 64)]


def phase_tradeoff(data: str, epochs: int) -> dict:
    """Image size and batch norm: seconds per (cached) epoch vs best validation scores, EPOCHS*2 epochs each."""
    import keras

    from faceattr.defaults import resolve_recipe
    from faceattr.pipeline import split_datasets
    from faceattr.train import build_compiled

    split = load_split(data)
    train = split[split["split"] == "train"]
    rows = []
    for arch, size in TRADEOFF:
        keras.utils.set_random_seed(42)
        model = build_compiled(resolve_recipe(arch, size), train, float(train["age"].max()))
        datasets = split_datasets(split, size, 64, seed=42)
        for _batch in datasets["train"]:  # fill the cache: time training, not decoding
            pass
        for _batch in datasets["validation"]:
            pass
        started = time.perf_counter()
        history = model.fit(datasets["train"], validation_data=datasets["validation"], epochs=2 * epochs, verbose=0)
        seconds = (time.perf_counter() - started) / (2 * epochs)
        best = int(np.argmin(history.history["val_loss"]))  # one recipe per row: its own weighted loss is comparable
        rows.append({"arch": arch, "image_size": size, "parameters": model.count_params(), "seconds_per_epoch": seconds,
                     **{key: history.history[f"val_{key}"][best] for key in ("gender_accuracy", "race_accuracy", "age_mae")}})
    return {"epochs": 2 * epochs, "rows": rows}


def forward_flops(model) -> int:
    """Floating-point operations of one image's forward pass through the convolutions and dense layers
    (2 per multiply-add; activations, pooling and normalisation are left out: under 1% here)."""
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += forward_flops(layer)
        elif isinstance(layer, keras.layers.Conv2D):
            height, width, channels_out = layer.output.shape[1:]
            kernel_h, kernel_w = layer.kernel_size
            total += 2 * height * width * kernel_h * kernel_w * layer.input.shape[-1] * channels_out
        elif isinstance(layer, keras.layers.Dense):
            total += 2 * layer.input.shape[-1] * layer.units
    return total


def matmul_peak(dtype: str, size: int = 4096, repeats: int = 4, tries: int = 3) -> float:
    """GFLOP/s of a large square matmul in `dtype`, the best of `tries` timings: the machine's practical peak for
    dense maths."""
    from faceattr.pipeline import tf

    matrix = tf.cast(tf.random.normal((size, size)), dtype)
    product = tf.function(lambda m: tf.matmul(m, m))
    product(matrix).numpy()  # warm-up
    best = 0.0
    for _ in range(tries):
        started = time.perf_counter()
        for _ in range(repeats):
            result = product(matrix)
        result.numpy()
        best = max(best, 2 * size ** 3 * repeats / (time.perf_counter() - started) / 1e9)
    return best


def training_rate(arch: str, size: int, batch: int, precision: str, split, steps: int = 30,
                  jit: bool = False, tries: int = 3) -> float:
    """Steady-state training images/s of ARCH at SIZE px: the best of `tries` timings of `steps` batches of random
    pixels after a warm-up (pure compute: the input pipeline is measured in the input phase). The best, as timeit
    takes, because other work on shared cores only ever slows a timing down."""
    import keras

    from faceattr.defaults import resolve_recipe
    from faceattr.pipeline import tf
    from faceattr.train import build_compiled

    keras.mixed_precision.set_global_policy(precision)
    train = split[split["split"] == "train"]
    keras.utils.set_random_seed(42)
    model = build_compiled(resolve_recipe(arch, size), train, float(train["age"].max()))
    model.jit_compile = jit
    images = tf.random.uniform((batch, size, size, 3), 0, 255)
    targets = {"age": tf.fill((batch,), 30.0), "gender": tf.zeros((batch,), tf.int32),
               "race": tf.zeros((batch,), tf.int32)}
    data = tf.data.Dataset.from_tensors((images, targets)).repeat(steps)
    model.fit(data.take(3), verbose=0)  # trace and warm up
    rate = 0.0
    for _ in range(tries):
        started = time.perf_counter()
        model.fit(data, verbose=0)
        rate = max(rate, steps * batch / (time.perf_counter() - started))
    keras.mixed_precision.set_global_policy("float32")
    return rate


ROOFLINE_TRIES = [  # (arch, size, batch, precision, jit): the kit's default first, then each thing tried
    ("default", 64, 32, "float32", False), ("default", 64, 128, "float32", False),
    ("default", 64, 32, "float32", True), ("default", 64, 32, "mixed_bfloat16", False),
    ("default", 64, 128, "mixed_bfloat16", False), ("original", 198, 64, "float32", False),
    ("original", 198, 64, "mixed_bfloat16", False)]


def phase_roofline(data: str, epochs: int) -> dict:
    """The machine's matmul peak (float32, bfloat16) and each model's achieved GFLOP/s while training, against it.
    Training counts 3x the forward FLOPs (forward, gradient of the inputs, gradient of the weights)."""
    from faceattr.model import make_model
    from faceattr.pipeline import tf
    from faceattr.train import cpu_has_bfloat16

    split = load_split(data)
    dtypes = {"float32": "float32", **({"mixed_bfloat16": "bfloat16"} if cpu_has_bfloat16() else {})}
    before = {policy: matmul_peak(dtype) for policy, dtype in dtypes.items()}
    rows = []
    for arch, size, batch, precision, jit in ROOFLINE_TRIES:
        if precision not in dtypes:
            continue
        flops = 3 * forward_flops(make_model(arch, size))
        rate = training_rate(arch, size, batch, precision, split, jit=jit)
        rows.append({"arch": arch, "image_size": size, "batch": batch, "precision": precision, "jit_compile": jit,
                     "train_gflop_per_image": flops / 1e9, "images_per_s": rate, "gflop_per_s": rate * flops / 1e9})
    # the peak is measured before and after the rows and the higher kept: a neighbour on shared cores during one
    # measurement would otherwise put a row above "100%" of it
    after = {policy: matmul_peak(dtype) for policy, dtype in dtypes.items()}
    peaks = {policy: max(before[policy], after[policy]) for policy in dtypes}
    for row in rows:
        row["fraction_of_float32_peak"] = row["gflop_per_s"] / peaks["float32"]
        row["fraction_of_own_peak"] = row["gflop_per_s"] / peaks[row["precision"]]
    return {"peak_gflop_per_s": peaks, "peak_measurements": {"before_rows": before, "after_rows": after},
            "threads": {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                        "inter_op": tf.config.threading.get_inter_op_parallelism_threads()},
            "rows": rows}


THREAD_SETTINGS = [(0, 0), (1, 1), (2, 1), (1, 2), (2, 2)]  # (intra-op, inter-op); 0 lets TensorFlow choose


def phase_threads(data: str, epochs: int) -> dict:
    """TensorFlow's thread pools: the default's steady-state training images/s (64 px, batch 32, the kit's
    precision) for each setting in THREAD_SETTINGS, each in a fresh process (they are fixed at start-up)."""
    import keras

    policy = keras.mixed_precision.global_policy().name
    rows = []
    for intra, inter in THREAD_SETTINGS:
        script = ("import json, sys; sys.path.insert(0, 'benchmarks'); import tensorflow as tf\n"
                  f"tf.config.threading.set_intra_op_parallelism_threads({intra})\n"
                  f"tf.config.threading.set_inter_op_parallelism_threads({inter})\n"
                  f"import bench; split = bench.load_split({data!r})\n"
                  f"print(json.dumps(bench.training_rate('default', 64, 32, {policy!r}, split)))\n")
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
        if result.returncode != 0:
            raise SystemExit(f"threads {intra}/{inter} failed:\n{result.stderr[-2000:]}")
        rows.append({"intra_op": intra, "inter_op": inter, "precision": policy,
                     "images_per_s": json.loads(result.stdout.strip().splitlines()[-1])})
    return {"rows": rows}


def phase_precision(data: str, epochs: int) -> dict:
    """float32 against mixed_bfloat16 (where the CPU has it): the default recipe, 3 seeds, DEFAULT_EPOCHS epochs
    each, validation scores after the last epoch and seconds per cached epoch."""
    import keras

    from faceattr.defaults import DEFAULT_BATCH_SIZE, DEFAULT_EPOCHS, DEFAULT_IMAGE_SIZE, resolve_recipe
    from faceattr.pipeline import split_datasets
    from faceattr.train import build_compiled, cpu_has_bfloat16, timed_fit

    split = load_split(data)
    train = split[split["split"] == "train"]
    datasets = split_datasets(split, DEFAULT_IMAGE_SIZE, DEFAULT_BATCH_SIZE, seed=42)
    rows = []
    for precision in ("float32", "mixed_bfloat16") if cpu_has_bfloat16() else ("float32",):
        keras.mixed_precision.set_global_policy(precision)
        for seed in range(3):
            keras.utils.set_random_seed(seed)
            model = build_compiled(resolve_recipe("default"), train, float(train["age"].max()))
            history = timed_fit(model, datasets["train"], datasets["validation"], DEFAULT_EPOCHS)
            last = history.iloc[-1]
            rows.append({"precision": precision, "seed": seed, "first_epoch_seconds": history["seconds"].iloc[0],
                         "seconds_per_epoch": (last["seconds"] - history["seconds"].iloc[0]) / (DEFAULT_EPOCHS - 1),
                         **{key: last[f"val_{key}"] for key in ("gender_accuracy", "race_accuracy", "age_mae")}})
    return {"epochs": DEFAULT_EPOCHS, "rows": rows}


BALANCE_CANDIDATES = ["old default (fixed 1/1/1)", "kit default", "report (198 px, its losses)"]


def phase_balance(data: str, epochs: int) -> dict:
    """The multi-task balance study in short: old default, kit default and the report's recipe, 3 seeds,
    EPOCHS*2 epochs, validation split (benchmarks/balance.py runs the full study)."""
    from balance import study  # benchmarks/balance.py, beside this script

    return study([data], BALANCE_CANDIDATES, seeds=3, epochs=2 * epochs, test=False)


def _open(path: str, size: int):
    """PIL open, RGB, resize: the report's per-image loading."""
    from PIL import Image

    return Image.open(path).convert("RGB").resize((size, size))


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


def machine() -> dict:
    """CPU model, cores and package versions."""
    from faceattr.runs import package_versions

    model = platform.processor() or "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpu": model, "cores": os.cpu_count(), "platform": platform.platform(), "versions": package_versions()}


def machine_slug(info: dict) -> str:
    """A results file's name for this machine: its CPU model and core count, e.g. amd-epyc-2cores."""
    return "".join(c if c.isalnum() else "-" for c in info["cpu"].lower()).strip("-")[:40] + f"-{info['cores']}cores"


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


def roofline_ratios(roofline: dict) -> dict:
    """The default's (64 px, batch 32) and the report model's (198 px, batch 64) achieved share of the float32
    matmul peak, in float32 and in the kit's precision where it differs."""
    found = {}
    for row in roofline["rows"]:
        if not row["jit_compile"] and (row["arch"], row["batch"]) in (("default", 32), ("original", 64)):
            found[f"{row['arch']}_{row['precision']}_fraction_of_float32_peak"] = row["fraction_of_float32_peak"]
    return found


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
