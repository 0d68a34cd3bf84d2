"""The roofline: the machine's matmul peak, each model's training FLOPs and achieved rate against it, and
TensorFlow's thread pools (benchmarks/bench.py's roofline and threads phases)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


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

    from faceattr.pipeline import tf
    from faceattr.recipe import Recipe
    from faceattr.train import train_recipe

    keras.mixed_precision.set_global_policy(precision)
    images = tf.random.uniform((batch, size, size, 3), 0, 255)
    targets = {"age": tf.fill((batch,), 30.0), "gender": tf.zeros((batch,), tf.int32),
               "race": tf.zeros((batch,), tf.int32)}
    data = tf.data.Dataset.from_tensors((images, targets)).repeat(steps)
    recipe = Recipe.named(arch, image_size=size, batch_size=batch, num_epochs=1)
    model = train_recipe(recipe, split, datasets={"train": data.take(3)}, validate=False).model  # trace, warm up
    model.jit_compile = jit
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
    from bench import load_split
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
                  f"import bench, roofline; split = bench.load_split({data!r})\n"
                  f"print(json.dumps(roofline.training_rate('default', 64, 32, {policy!r}, split)))\n")
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
        if result.returncode != 0:
            raise SystemExit(f"threads {intra}/{inter} failed:\n{result.stderr[-2000:]}")
        rows.append({"intra_op": intra, "inter_op": inter, "precision": policy,
                     "images_per_s": json.loads(result.stdout.strip().splitlines()[-1])})
    return {"rows": rows}


def roofline_ratios(roofline: dict) -> dict:
    """The default's (64 px, batch 32) and the report model's (198 px, batch 64) achieved share of the float32
    matmul peak, in float32 and in the kit's precision where it differs."""
    found = {}
    for row in roofline["rows"]:
        if not row["jit_compile"] and (row["arch"], row["batch"]) in (("default", 32), ("original", 64)):
            found[f"{row['arch']}_{row['precision']}_fraction_of_float32_peak"] = row["fraction_of_float32_peak"]
    return found
