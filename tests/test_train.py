"""Training for real on tiny data: loss falls, checkpoints survive Ctrl-C, the strategy path runs."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from faceattr.balance import trivial_errors
from faceattr.data import scan, split_frame
from faceattr.model import build_model
from faceattr.pipeline import make_dataset, split_datasets
from faceattr.errors import RunDirError
from faceattr.runs import RunFolder
from faceattr.train import compile_model, fit


@pytest.fixture(scope="module")
def tiny_split(sample_dir):
    return split_frame(scan(sample_dir, cache=False).frame, seed=0)


def reference(split):
    """The trivial predictor's errors on the training rows: what val_score is measured against."""
    return trivial_errors(split[split["split"] == "train"])


def tiny_model():
    """A small, fast model for tests."""
    return compile_model(build_model(image_size=32, trunk_filters=(8, 16)), learning_rate=3e-3)


def test_loss_goes_down_over_a_few_steps(tiny_split):
    keras.utils.set_random_seed(0)
    model = tiny_model()
    batch = next(iter(make_dataset(tiny_split.head(32), image_size=32, batch_size=32)))
    losses = [float(model.train_on_batch(*batch, return_dict=True)["loss"]) for _ in range(60)]
    assert losses[-1] < 0.75 * losses[0]  # about 0.6 here: a stalled trainer stays near 1.0


def test_fit_writes_history_and_a_loadable_best_checkpoint(tiny_split, tmp_path):
    keras.utils.set_random_seed(0)
    datasets = split_datasets(tiny_split, image_size=32, batch_size=32)
    history = fit(tiny_model(), datasets["train"], datasets["validation"], 3, tmp_path, reference(tiny_split),
                  progress="none")
    assert len(history) == 3
    assert {"loss", "val_loss", "val_gender_accuracy", "val_race_accuracy", "val_age_mae", "val_score",
            "val_age_loss"} <= set(history.columns)
    restored = RunFolder(tmp_path).load_model()
    assert restored(np.zeros((1, 32, 32, 3), "float32"))["race"].shape == (1, 5)


class InterruptAt(keras.callbacks.Callback):
    """Raise KeyboardInterrupt at the start of a given epoch, like Ctrl-C."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt


def test_ctrl_c_keeps_the_best_checkpoint(tiny_split, tmp_path, monkeypatch, capsys):
    from faceattr import train

    real_callbacks = train.standard_callbacks
    monkeypatch.setattr(train, "standard_callbacks", lambda *a, **k: real_callbacks(*a, **k) + [InterruptAt(2)])
    datasets = split_datasets(tiny_split, image_size=32, batch_size=32)
    history = fit(tiny_model(), datasets["train"], datasets["validation"], 10, tmp_path, reference(tiny_split),
                  progress="none")
    assert len(history) == 2
    assert "interrupted" in capsys.readouterr().out
    restored = RunFolder(tmp_path).load_model()
    images = next(iter(datasets["test"]))[0]
    assert np.isfinite(restored.predict(images, verbose=0)["age"]).all()


def test_epochs_below_one_is_an_error(tiny_split, tmp_path):
    datasets = split_datasets(tiny_split, image_size=32, batch_size=32)
    with pytest.raises(ValueError, match="at least 1"):
        fit(tiny_model(), datasets["train"], datasets["validation"], 0, tmp_path, reference(tiny_split))


def test_run_dir_that_holds_a_run_is_refused_unless_overwrite(tmp_path):
    RunFolder(tmp_path).write(RunFolder(tmp_path).model, lambda temporary: temporary.write_bytes(b"x"))  # the kit's
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RunDirError, match="--overwrite"):
        with RunFolder(tmp_path).writing():
            pass
    with RunFolder(tmp_path).writing(overwrite=True) as run:
        assert not run.model.exists()  # the old model is gone before anything new is written
    assert (tmp_path / "notes.txt").read_text() == "mine"  # the user's own files are kept


GPU_PATH_SCRIPT = """
import sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
import faceattr.train as train
# What "auto" chooses on a machine with several GPUs, on two logical CPUs: mixed float16 (a loss-scaling optimizer)
# and a MirroredStrategy. Everything else is the kit's own run.
train.choose_precision = lambda setting=None: keras.mixed_precision.set_global_policy("mixed_float16") or "mixed_float16"
mirrored = train.device_strategy(["/cpu:0", "/cpu:1"])
assert mirrored.num_replicas_in_sync == 2, mirrored.num_replicas_in_sync
train.device_strategy = lambda devices=None: mirrored
from faceattr.errors import SettingsError
from faceattr.recipe import Recipe
try:
    train.train_run(sys.argv[1], sys.argv[2], Recipe.named(image_size=32, num_epochs=1, batch_size=15))
except SettingsError as error:
    print("refused:", error, "| run folder written:", __import__("os").path.exists(sys.argv[2]))
metrics = train.train_run(sys.argv[1], sys.argv[2], Recipe.named(image_size=32, num_epochs=1, batch_size=16))
print("trained", sorted(metrics))
"""

RELOAD_SCRIPT = """
import shutil, sys
from faceattr.evaluate import evaluate_run
from faceattr.runs import RunFolder
shutil.copy(RunFolder(sys.argv[1]).root / "predictions.csv", sys.argv[2])
evaluate_run(sys.argv[1])           # a fresh process: float32 by default, no strategy
print("reloaded", RunFolder(sys.argv[1]).load_model().get_layer("conv1").compute_dtype)
"""


def test_a_mixed_float16_mirrored_run_reloads_in_a_plain_process_and_predicts_the_same(tmp_path):
    import pandas as pd
    from faceattr.sample import write_sample

    faces = write_sample(tmp_path / "faces", count=60, seed=1)   # float16 on a CPU is emulated, so keep it small
    run, environment = tmp_path / "run", {**os.environ, "FACEATTR_PRECISION": "float32"}
    trained = subprocess.run([sys.executable, "-c", GPU_PATH_SCRIPT, str(faces), str(run)], capture_output=True,
                             text=True, env=environment)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "refused: batch_size=15 does not split evenly over 2 GPUs" in trained.stdout
    assert "run folder written: False" in trained.stdout
    assert json.loads((run / "config.json").read_text())["precision"] == "mixed_float16"
    reloaded = subprocess.run([sys.executable, "-c", RELOAD_SCRIPT, str(run), str(tmp_path / "first.csv")],
                              capture_output=True, text=True, env=environment)
    assert reloaded.returncode == 0, reloaded.stderr[-3000:]
    assert "reloaded float16" in reloaded.stdout     # the saved layers keep the precision they were trained in
    first, again = pd.read_csv(tmp_path / "first.csv"), pd.read_csv(run / "predictions.csv")
    assert len(again) == json.loads((run / "config.json").read_text())["split_counts"]["test"]
    numeric = [column for column in first if column.startswith(("pred_", "prob_"))]
    np.testing.assert_allclose(again[numeric], first[numeric], atol=1e-3)


def test_timed_fit_names_a_single_heads_columns_by_head_and_times_each_epoch(tiny_split):
    from faceattr.balance import head_losses
    from faceattr.train import HEAD_METRICS, timed_fit

    full = build_model(image_size=32, trunk_filters=(8,))
    model = keras.Model(full.input, {"race": full.output["race"]})
    model.compile(optimizer="adam", loss={"race": head_losses()["race"]}, metrics={"race": HEAD_METRICS["race"]})
    datasets = split_datasets(tiny_split, image_size=32, batch_size=32)

    def race_only(images, targets):
        return images, {"race": targets["race"]}

    history = timed_fit(model, datasets["train"].map(race_only), datasets["validation"].map(race_only), 2)
    assert {"race_loss", "race_accuracy", "val_race_loss", "val_race_accuracy"} <= set(history.columns)
    assert list(history["epoch"]) == [1, 2] and history["seconds"].is_monotonic_increasing


@pytest.mark.parametrize("flags, expected", [("fpu avx512f avx512_bf16 sse", True), ("fpu amx_bf16", True),
                                             ("fpu avx512f avx512_vnni", False)])
def test_cpu_has_bfloat16_reads_the_cpuinfo_flags(tmp_path, flags, expected):
    from faceattr.train import cpu_has_bfloat16

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    assert cpu_has_bfloat16(cpuinfo) is expected
    assert cpu_has_bfloat16(tmp_path / "missing") is False   # not Linux: no native bfloat16 assumed


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_is_bfloat16_only_on_a_cpu_that_has_it(monkeypatch, native):
    import faceattr.train as train

    monkeypatch.setattr(train, "cpu_has_bfloat16", lambda: native)
    monkeypatch.setattr(train.tf.config, "list_physical_devices", lambda kind=None: [])   # no GPU
    monkeypatch.delenv("FACEATTR_PRECISION", raising=False)
    expected = "mixed_bfloat16" if native else "float32"
    assert train.choose_precision() == expected
    assert keras.mixed_precision.global_policy().name == expected
    assert build_model(image_size=32, trunk_filters=(8,)).get_layer("conv1").compute_dtype == expected.removeprefix("mixed_")
    monkeypatch.setenv("FACEATTR_PRECISION", "float32")      # the user's switch wins over the CPU
    assert train.choose_precision() == "float32" == keras.mixed_precision.global_policy().name


def test_unknown_precision_names_the_choices(monkeypatch):
    from faceattr.errors import SettingsError
    from faceattr.train import choose_precision

    monkeypatch.setenv("FACEATTR_PRECISION", "float8")
    with pytest.raises(SettingsError, match=r"'float8'.*auto, float32"):
        choose_precision()


def test_prebuild_makes_fit_trace_the_training_step_once():
    import tensorflow as tf

    from faceattr.train import prebuild

    images = np.zeros((8, 32, 32, 3), "float32")
    targets = {"age": np.full(8, 30.0, "float32"), "gender": np.zeros(8, "int32"), "race": np.zeros(8, "int32")}
    data = tf.data.Dataset.from_tensor_slices((images, targets)).batch(4)
    model = compile_model(build_model(image_size=32, trunk_filters=(8,)))
    traces, train_step = [], model.train_step

    def counted(batch):
        traces.append(1)
        return train_step(batch)

    model.train_step = counted
    prebuild(model, data)
    assert model.optimizer.built
    model.fit(data, epochs=2, verbose=0)
    assert len(traces) == 1   # without the pre-build, the first trace creates variables and TensorFlow traces again


def test_auto_precision_is_float16_on_a_gpu_whatever_the_cpu(monkeypatch):
    import faceattr.train as train

    monkeypatch.setattr(train, "cpu_has_bfloat16", lambda: True)
    monkeypatch.setattr(train.tf.config, "list_physical_devices", lambda kind=None: ["GPU:0"] if kind == "GPU" else [])
    monkeypatch.delenv("FACEATTR_PRECISION", raising=False)
    assert train.choose_precision() == "mixed_float16" == keras.mixed_precision.global_policy().name
    monkeypatch.setenv("FACEATTR_PRECISION", "float32")
    assert train.choose_precision() == "float32"
