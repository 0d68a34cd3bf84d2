"""Solutions to the exercises of notebook 04, train."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from _shared import SEED, TOKEN_EPOCHS, TOKEN_IMAGE_SIZE, split_of

BATCH_SIZE = 32
METRICS = ("val_age_mae", "val_gender_accuracy", "val_race_accuracy")


def _train_frame(data_dir: str) -> pd.DataFrame:
    """The training part of the kit's split."""
    split = split_of(data_dir)
    return split[split["split"] == "train"]


def _train_briefly(data_dir: str, loss_balance: str = "uncertainty", loss_weights: dict[str, float] | None = None,
                   batch_size: int = BATCH_SIZE, augment: bool = False, num_epochs: int = TOKEN_EPOCHS, **options):
    """The default recipe at TOKEN_IMAGE_SIZE with `loss_balance` (and fixed `loss_weights`), `batch_size` and
    `augment`, trained by `faceattr.train.train_recipe` (`options`: its run_dir, extra_callbacks...) for
    `num_epochs`; its model and history (with cumulative seconds when there is no run_dir)."""
    from faceattr.recipe import Recipe
    from faceattr.train import train_recipe

    recipe = Recipe.named("default", image_size=TOKEN_IMAGE_SIZE, loss_balance=loss_balance, loss_weights=loss_weights,
                          batch_size=batch_size, augment=augment, num_epochs=num_epochs)
    return train_recipe(recipe, split_of(data_dir), SEED, **options)


def _last(history: pd.DataFrame, prefix: str) -> dict[str, float]:
    """The last epoch's validation metrics, keyed `prefix_metric`."""
    return {f"{prefix}_{key}": float(history[key].iloc[-1]) for key in METRICS}


def exercise_1(data_dir: str, work_dir: Path) -> dict:
    """Homework, about 10 minutes. Augmentation is random only in training mode: with `training=False` the
    augmenter returns its input unchanged, so validation and test images are never altered (both asserted). On the
    sample it did not improve validation accuracy. The balance study (docs/balance.md, 3 seeds, validation split)
    measured the default with augmentation against without: on the sample race fell, 0.778 ± 0.005 against
    0.821 ± 0.004 after 15 epochs (0.734 ± 0.019 against 0.773 ± 0.023 among the first 5), while gender
    (0.890 ± 0.024 against 0.877 ± 0.006) and age MAE (5.37 ± 0.32 against 5.52 ± 0.45 years) stayed level; on
    the 3,000-image folder every head stayed level. The sample's faces are drawn front-on under one light, so flips
    and small brightness and contrast changes add little variety. Real photos vary in pose, lighting and camera,
    which is why it might help more there: a hypothesis, since the kit has no measurement on UTKFace."""
    import keras

    from faceattr.pipeline import augmenter, split_datasets

    images, _ = next(iter(split_datasets(split_of(data_dir), TOKEN_IMAGE_SIZE, BATCH_SIZE)["train"]))
    augment = augmenter(SEED)
    changed = keras.ops.convert_to_numpy(augment(images, training=True))
    unchanged = keras.ops.convert_to_numpy(augment(images, training=False))
    assert np.array_equal(unchanged, images.numpy()), "no augmentation at inference"
    pixel_change = float(np.abs(changed - images.numpy()).mean())
    assert pixel_change > 0, "training-mode augmentation must change the pixels"
    result = {"mean_pixel_change": pixel_change}
    for augmented in (False, True):
        history = _train_briefly(data_dir, augment=augmented).history
        result.update(_last(history, "augmented" if augmented else "plain"))
    print(f"augmentation changes a pixel by {pixel_change:.1f} (of 255) on average; after {TOKEN_EPOCHS} epoch(s) "
          f"validation gender / race accuracy: plain {result['plain_val_gender_accuracy']:.3f} / "
          f"{result['plain_val_race_accuracy']:.3f}, augmented {result['augmented_val_gender_accuracy']:.3f} / "
          f"{result['augmented_val_race_accuracy']:.3f}")
    return result


def exercise_2(data_dir: str, work_dir: Path) -> dict:
    """Homework, about 10 minutes. Age loses, and nothing gains beyond the spread. The report's fixed weights
    2 / 1 / 1.5 ignore the scales of the losses: the age loss is far smaller than the others, and doubling it
    leaves it far smaller. (How much each head then pulls on the shared trunk is its gradient there, not its loss:
    notebook 04's section 7 measures it.) The balance study (docs/balance.md, 3 seeds, validation split) measured
    the report's weights against the learned ones: age MAE 6.95 ± 0.26 against 5.52 ± 0.45 years after 15 epochs
    on the sample and 5.60 ± 0.49 against 4.57 ± 0.31 on the 3,000-image folder (10.13 against 6.60 and 7.45
    against 5.06 among the first 5 epochs); race 0.797 ± 0.015 against 0.821 ± 0.004 on the sample, level on the
    folder (0.813 both); gender level on both (0.852 ± 0.028 against 0.877 ± 0.006, 0.929 against 0.920). The
    token run below shows the method."""
    from faceattr.defaults import REPORT_LOSS_WEIGHTS

    result = {}
    for name, balance, weights in (("report", "fixed", REPORT_LOSS_WEIGHTS), ("learned", "uncertainty", None)):
        history = _train_briefly(data_dir, balance, weights).history
        result.update(_last(history, name))
    print(pd.DataFrame({name: {key: result[f"{name}_{key}"] for key in METRICS}
                        for name in ("report", "learned")}).round(3))
    return result


def exercise_3(data_dir: str, work_dir: Path) -> dict:
    """Homework, about 10 minutes. Learning the weights helped race on the sample, and no head beyond the spread
    elsewhere. Both schemes start from the same weights, 1 / trivial loss (asserted). The learned weights then
    follow 1 / each head's current training loss, since `exp(-s) * L + s` is smallest at `exp(-s) = 1 / L`: as a
    head's loss falls, its weight rises, and the normalised scheme keeps the starting weights. They had not settled
    after 3 epochs on the sample (benchmarks/results/gradients-amd-epyc-2cores.json, 3 seeds): age's weight rose
    from 97.5 to between 235 and 256, gender's from 1.44 to 2.07 to 2.28, race's from 0.69 to 1.10 or 1.11, still
    heading up, age's fastest. Which head it helped, from the balance study (docs/balance.md, 3 seeds, validation
    split, learned against normalised): race on the sample after 15 epochs, 0.821 ± 0.004 against 0.801 ± 0.013;
    age did not move beyond the spread (5.52 ± 0.45 against 5.66 ± 0.26 years; 4.57 ± 0.31 against 4.42 ± 0.43 on
    the 3,000-image folder), nor gender (0.877 against 0.878), nor any head on the folder or among the first 5
    epochs. The token run below shows the method and prints the weights beside 1 / training loss."""
    import keras

    from faceattr.balance import balance_weights, task_uncertainty_layer, trivial_losses
    from faceattr.labels import HEAD_NAMES
    from faceattr.recipe import age_scale_of

    train = _train_frame(data_dir)
    start = balance_weights("normalised", trivial_losses(train, "huber", age_scale_of(train)))
    initial = {}
    at_start = keras.callbacks.LambdaCallback(   # the weights before the first step
        on_train_begin=lambda logs: initial.update(task_uncertainty_layer(at_start.model).weights_now()))
    learned_model, learned = _train_briefly(data_dir, "uncertainty", extra_callbacks=[at_start])
    assert all(math.isclose(initial[head], start[head], rel_tol=1e-4) for head in HEAD_NAMES), \
        "the learned weights start at the normalised ones"
    settled = task_uncertainty_layer(learned_model).weights_now()
    assert any(not math.isclose(settled[head], initial[head], rel_tol=1e-6) for head in HEAD_NAMES), \
        "the learned weights move as the model trains"
    normalised = _train_briefly(data_dir, "normalised").history
    table = pd.DataFrame({"start": start, "learned": settled,
                          "1 / training loss": {head: 1 / learned[f"{head}_loss"].iloc[-1] for head in HEAD_NAMES}})
    print(table.round(3))
    return {**{f"learned_{head}_weight": settled[head] for head in HEAD_NAMES},
            **_last(learned, "learned"), **_last(normalised, "normalised")}


def exercise_4(data_dir: str, work_dir: Path) -> dict:
    """Homework, about 10 minutes. A batch of 64 halves the optimiser steps per epoch (asserted). Each step costs
    more but uses the hardware better, so an epoch gets faster: docs/performance.md's roofline measured 917
    training images/s at batch 128 against 757 at batch 32 (bfloat16, steady state). At equal epochs the model
    takes half as many steps, each an average over more images rather than a new move, so it can learn less. The
    balance study measured the other direction (docs/balance.md, 3 seeds, batch 16 against 32, twice the steps):
    val_score 0.307 ± 0.020 against 0.305 ± 0.011 on the sample after 15 epochs, level, but 0.249 ± 0.012 against
    0.262 ± 0.004 on the 3,000-image folder, better, in 1.7x the time (69 s against 40 s on the sample). To compare
    batch sizes fairly, raise the learning rate or train longer. The token run below prints seconds and steps."""
    from faceattr.pipeline import split_datasets

    result = {}
    for batch_size in (32, 64):
        steps = int(split_datasets(split_of(data_dir), TOKEN_IMAGE_SIZE, batch_size)["train"].cardinality())
        history = _train_briefly(data_dir, batch_size=batch_size).history
        result.update({f"steps_{batch_size}": steps, f"seconds_{batch_size}": float(history["seconds"].iloc[-1]),
                       **_last(history, f"batch_{batch_size}")})
    assert result["steps_64"] == math.ceil(result["steps_32"] / 2), "twice the batch, half the steps"
    print(f"{result['steps_32']} steps per epoch at batch 32, {result['steps_64']} at 64; first-epoch seconds "
          f"(compilation included) {result['seconds_32']:.1f} and {result['seconds_64']:.1f}")
    return result


def exercise_5(data_dir: str, work_dir: Path) -> dict:
    """Homework, about 5 minutes. Yes. `faceattr.train.fit` catches the interrupt and says so, and the checkpoint
    callback saves only whole, finished epochs, written to a temporary file and renamed: `model.keras` holds the best
    epoch before the interrupt and loads and predicts like any saved model (`compile=False` skips the training losses,
    which prediction does not need). Here a callback presses Interrupt for us, in the middle of the second epoch;
    history.csv has the finished epoch only."""
    import keras

    from faceattr.pipeline import split_datasets
    from faceattr.runs import RunFolder

    class PressInterrupt(keras.callbacks.Callback):
        """Raise KeyboardInterrupt after the first batch of the second epoch, as Ctrl-C would."""

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            """Interrupt once the first epoch is saved."""
            if self.epoch == 1:
                raise KeyboardInterrupt

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            """Remember the epoch."""
            self.epoch = epoch

    run_dir = work_dir / "run"
    datasets = split_datasets(split_of(data_dir), TOKEN_IMAGE_SIZE, BATCH_SIZE)
    history = _train_briefly(data_dir, num_epochs=2, run_dir=run_dir, datasets=datasets,
                             extra_callbacks=[PressInterrupt()]).history
    model = keras.models.load_model(RunFolder(run_dir).model, compile=False)   # to predict, not to train
    images, _ = next(iter(datasets["validation"]))
    predictions = model.predict(images, verbose=0)
    assert len(history) == 1, "only the finished epoch is in history.csv"
    assert {name: value.shape[0] for name, value in predictions.items()} == {"age": len(images),
                                                                            "gender": len(images),
                                                                            "race": len(images)}
    print(f"interrupted in epoch 2; model.keras (epoch 1) predicts ages {np.round(predictions['age'][:3, 0], 1)} ...")
    return {"epochs_finished": len(history), "predicted_images": len(images),
            "first_predicted_age": float(predictions["age"][0, 0])}
