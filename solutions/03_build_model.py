"""Solutions to the exercises of notebook 03, build the model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from _shared import SEED, TOKEN_EPOCHS, TOKEN_IMAGE_SIZE, split_of

BATCH_SIZE = 32


def _age_scale(data_dir: str) -> float:
    """The oldest training age: the age head's unit, as in the notebook."""
    from faceattr.recipe import age_scale_of

    split = split_of(data_dir)
    return age_scale_of(split[split["split"] == "train"])


def _datasets(data_dir: str, image_size: int = TOKEN_IMAGE_SIZE) -> dict:
    """Training (shuffled) and validation batches of the kit's split at `image_size`."""
    from faceattr.pipeline import split_datasets

    return split_datasets(split_of(data_dir), image_size, BATCH_SIZE)


def _train_briefly(model, data_dir: str, loss_balance: str = "uncertainty") -> pd.DataFrame:
    """Compile `model` with the default recipe's losses (or `loss_balance`) and train it for TOKEN_EPOCHS;
    return the per-epoch history (training and validation metrics)."""
    from faceattr.recipe import Recipe
    from faceattr.train import train_recipe

    recipe = Recipe.named("default", image_size=TOKEN_IMAGE_SIZE, loss_balance=loss_balance, batch_size=BATCH_SIZE,
                          num_epochs=TOKEN_EPOCHS)
    return train_recipe(recipe, split_of(data_dir), SEED, model=model).history


def exercise_1(data_dir: str, work_dir: Path) -> dict:
    """Homework, about 10 minutes. Each batch-norm layer holds 4 numbers per filter: a trainable scale and offset, and
    a moving mean and variance that are not trained. After 32+64+128+256 filters that is 1,920 parameters, 960 of them
    trainable; `use_bias=False` removes the convolutions' 480 biases, so the net gain is 1,440 (480 trainable),
    exactly as for the package's `batchnorm` architecture, which uses the same momentum 0.9. While training, batch
    norm normalises with each batch's own mean and variance; at inference it uses the moving averages, updated once
    per step as `moving = momentum * moving + (1 - momentum) * batch`, so after n steps `momentum ** n` of their
    starting values (mean 0, variance 1) remain: with Keras's default 0.99 that takes 459 steps to fall to 1%, with
    0.9 44 (both asserted). Until then inference normalises with the wrong statistics, the two modes disagree on the
    same images, and validation accuracy can sit at chance while training accuracy climbs. The diagnosis below trains
    the exercise's model briefly, compares `model(images, training=True)` with `training=False` on one validation
    batch, then lets the statistics catch up (momentum 0.9 and 44 more steps, weights unchanged) and compares again:
    the gap between the modes shrinks (asserted; on the 200-face test sample from 0.23 to 0.05 in gender
    probability)."""
    import math

    import keras
    from keras import layers

    from faceattr.defaults import DEFAULT_MODEL_NAME, DEFAULT_TRUNK
    from faceattr.model import build_model

    age_scale = _age_scale(data_dir)
    plain = build_model(TOKEN_IMAGE_SIZE, age_scale=age_scale, name=DEFAULT_MODEL_NAME)   # notebook 03's model
    as_written = build_model(TOKEN_IMAGE_SIZE, age_scale=age_scale, name=DEFAULT_MODEL_NAME, batch_norm=True,
                             batch_norm_momentum=0.99)   # the exercise's edit, at Keras's default momentum
    added = as_written.count_params() - plain.count_params()
    trainable_added = (sum(int(np.prod(weight.shape)) for weight in as_written.trainable_weights)
                       - sum(int(np.prod(weight.shape)) for weight in plain.trainable_weights))
    # 4 numbers per filter (2 trainable), less the convolutions' biases that batch norm's offset replaces
    assert added == 3 * sum(DEFAULT_TRUNK) and trainable_added == sum(DEFAULT_TRUNK)
    package_added = (build_model(TOKEN_IMAGE_SIZE, batch_norm=True, age_scale=age_scale).count_params()
                     - build_model(TOKEN_IMAGE_SIZE, age_scale=age_scale).count_params())
    assert package_added == added, "the package's batchnorm architecture differs from the exercise's only in momentum"
    print(f"batch norm after each convolution, in place of the convolutions' biases, adds {added:,} parameters "
          f"({trainable_added:,} trainable), as the package's batchnorm architecture does ({package_added:,})")

    datasets = _datasets(data_dir)
    steps = int(datasets["train"].cardinality()) * TOKEN_EPOCHS
    history = _train_briefly(as_written, data_dir)
    images, _ = next(iter(datasets["validation"]))

    def mode_gap() -> tuple[float, float]:
        """Mean gender-probability difference between the two modes, and the share of equal predicted classes."""
        inference = keras.ops.convert_to_numpy(as_written(images, training=False)["gender"])
        training = keras.ops.convert_to_numpy(as_written(images, training=True)["gender"])  # updates the statistics
        return float(np.abs(training - inference).mean()), float((training.argmax(1) == inference.argmax(1)).mean())

    gap, agreement = mode_gap()
    assert gap > 0, "batch norm behaves differently in the two modes"
    print(f"momentum 0.99 after {steps} training steps: the moving statistics keep {0.99 ** steps:.0%} of their "
          f"starting values; gender probability differs by {gap:.3f} between the modes, the predicted class agrees "
          f"on {agreement:.0%}; train gender accuracy {history['gender_accuracy'].iloc[-1]:.3f}, "
          f"validation {history['val_gender_accuracy'].iloc[-1]:.3f}")
    catch_up = math.ceil(math.log(0.01) / math.log(0.9))          # steps for momentum 0.9 to forget 99%
    assert (catch_up, math.ceil(math.log(0.01) / math.log(0.99))) == (44, 459)
    for layer in as_written.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = 0.9
    for train_images, _ in datasets["train"].repeat().take(catch_up):
        as_written(train_images, training=True)                    # moves the statistics, not the weights
    caught_up_gap, caught_up_agreement = mode_gap()
    assert caught_up_gap < gap, "with statistics that caught up, the two modes agree better"
    print(f"after {catch_up} more training-mode steps at momentum 0.9 (weights unchanged): the modes differ by "
          f"{caught_up_gap:.3f}, the predicted class agrees on {caught_up_agreement:.0%}")
    return {"parameters_added": added, "trainable_added": trainable_added, "package_added": package_added,
            "training_steps": steps, "stale_share": 0.99 ** steps, "mode_gap": gap, "mode_agreement": agreement,
            "train_gender_accuracy": float(history["gender_accuracy"].iloc[-1]),
            "val_gender_accuracy": float(history["val_gender_accuracy"].iloc[-1]),
            "catch_up_steps": catch_up, "caught_up_mode_gap": caught_up_gap,
            "caught_up_mode_agreement": caught_up_agreement}


def exercise_2(data_dir: str, work_dir: Path) -> dict:
    """Homework, about 10 minutes. Pooling has no weights, so the parameter count does not change at all (asserted).
    Global max pooling keeps each filter's strongest response anywhere in the face; global average pooling keeps its
    mean over the whole face, which is smoother but dilutes a feature that appears in one small place. Measured
    (docs/balance.md's probes, `screens` in benchmarks/results/balance-centred-bf16-intel-xeon-2cores.json: the
    sample, 3 seeds, 5 epochs, pixels 0..1): average pooling reached race accuracy 0.682 ± 0.029 against max pooling's
    0.712 ± 0.027, lower by 0.030, just beyond either spread, and gender 0.664 ± 0.036 against 0.761 ± 0.037 and age
    MAE 9.63 ± 0.21 against 6.20 ± 0.51 years, also worse beyond it: max pooling stays. The token run below (one
    epoch, one seed) shows the method, beside the majority class's share."""
    from faceattr.balance import trivial_errors
    from faceattr.model import build_model

    age_scale = _age_scale(data_dir)
    split = split_of(data_dir)
    majority = 1 - trivial_errors(split[split["split"] == "train"])["race"]
    result = {"majority_race_share": majority}
    counts = {}
    for pooling in ("max", "average"):
        model = build_model(TOKEN_IMAGE_SIZE, pooling=pooling, age_scale=age_scale)
        counts[pooling] = model.count_params()
        history = _train_briefly(model, data_dir)
        result[f"{pooling}_val_race_accuracy"] = float(history["val_race_accuracy"].iloc[-1])
    assert counts["max"] == counts["average"], "pooling layers have no parameters"
    print(f"{counts['max']:,} parameters either way; validation race accuracy after {TOKEN_EPOCHS} epoch(s): "
          f"max {result['max_val_race_accuracy']:.3f}, average {result['average_val_race_accuracy']:.3f} "
          f"(majority class {majority:.3f})")
    return {**result, "parameters": counts["max"]}


def exercise_3(data_dir: str, work_dir: Path) -> dict:
    """In class, about 5 minutes. The sigmoid head predicts sigmoid(z) x age_scale, and a sigmoid stays below 1, so no
    prediction can reach age_scale, the oldest age in the training split; it only approaches it as z grows, and the
    gradient vanishes there. The expectation head is bounded too: its largest prediction is the centre of the last age
    bin, just below age_scale. Forcing each head's last layer to its extreme shows both limits."""
    import keras

    from faceattr.model import AGE_BINS, build_model

    age_scale = _age_scale(data_dir)
    blank = np.zeros((1, TOKEN_IMAGE_SIZE, TOKEN_IMAGE_SIZE, 3), "float32")
    sigmoid = build_model(TOKEN_IMAGE_SIZE, age_head="sigmoid", age_scale=age_scale)
    kernel, _ = sigmoid.get_layer("age_unit").get_weights()
    sigmoid.get_layer("age_unit").set_weights([kernel * 0, np.array([30.0], "float32")])  # z = 30: sigmoid ~ 1
    sigmoid_max = float(keras.ops.convert_to_numpy(sigmoid(blank)["age"])[0, 0])
    expectation = build_model(TOKEN_IMAGE_SIZE, age_head="expectation", age_scale=age_scale)
    kernel, bias = expectation.get_layer("age_bins").get_weights()
    bias = np.zeros_like(bias)
    bias[-1] = 100.0                                                   # all probability on the last bin
    expectation.get_layer("age_bins").set_weights([kernel * 0, bias])
    expectation_max = float(keras.ops.convert_to_numpy(expectation(blank)["age"])[0, 0])
    last_centre = (AGE_BINS - 0.5) * age_scale / AGE_BINS
    assert sigmoid_max <= age_scale * (1 + 1e-6) and abs(expectation_max - last_centre) < 1e-3 * age_scale
    print(f"age_scale {age_scale:g}: the sigmoid head tops out at {sigmoid_max:.2f} years, the expectation head "
          f"at {expectation_max:.2f} (the last bin's centre)")
    return {"age_scale": age_scale, "sigmoid_max": sigmoid_max, "expectation_max": expectation_max}


def exercise_4(data_dir: str, work_dir: Path) -> dict:
    """Homework, about 10 minutes. Yes, after a full budget. The kit's first balance study (docs/balance.md's
    "first two studies", benchmarks/results/balance-amd-epyc-2cores.json: the sample, 3 seeds, normalised weights,
    pixels 0..1, batch 64, validation split) measured the linear head at 6.01 ± 0.09 years after 15 epochs against
    5.32 ± 0.22 for the expectation head, a gap beyond the spread; after 5 epochs they were level (7.78 ± 0.84
    against 7.91 ± 1.66). Both beat the trivial predictor (always the median age, 15.6 years there). A
    distribution over bins can hedge ("somewhere in the 20s"): a face whose label is noisy pulls probability
    towards neighbouring bins instead of dragging one number, and the expected age can never leave 0..age_scale.
    A linear unit must commit to one number and can predict negative ages while training. The token run below
    shows the method."""
    from faceattr.balance import trivial_errors
    from faceattr.model import build_model

    age_scale = _age_scale(data_dir)
    split = split_of(data_dir)
    result = {"trivial_age_mae": trivial_errors(split[split["split"] == "train"])["age"]}
    for age_head in ("expectation", "linear"):
        history = _train_briefly(build_model(TOKEN_IMAGE_SIZE, age_head=age_head, age_scale=age_scale), data_dir)
        result[f"{age_head}_val_age_mae"] = float(history["val_age_mae"].iloc[-1])
    print(f"validation age MAE after {TOKEN_EPOCHS} epoch(s): expectation {result['expectation_val_age_mae']:.2f}, "
          f"linear {result['linear_val_age_mae']:.2f} (trivial {result['trivial_age_mae']:.2f})")
    return result


def exercise_5(data_dir: str, work_dir: Path) -> dict:
    """In class, about 5 minutes. With MSE the trivial predictor's age loss is the mean squared error of the
    median age on age / age_scale, still far below the cross-entropies of gender and race. Huber with delta 0.1 is
    never more than half the squared error, so MSE makes the age loss larger than Huber, but it stays a small
    fraction of race's: on the embedded sample 38 times smaller (0.038 against 1.445). The report's weight of 2
    only doubles it: the age loss is then 2.6% of the weighted total there (asserted below 10% on any data), which
    is why the kit divides each loss by its trivial value instead. That is a statement about the
    losses' sizes; how hard each head then pulls on the shared trunk is a gradient, which notebook 04 (section 7)
    and benchmarks/gradients.py measure."""
    import keras

    from faceattr.balance import trivial_losses
    from faceattr.defaults import REPORT_LOSS_WEIGHTS

    split = split_of(data_dir)
    train = split[split["split"] == "train"]
    age_scale = _age_scale(data_dir)
    huber, mse = trivial_losses(train, "huber", age_scale), trivial_losses(train, "mse", age_scale)
    assert huber["age"] <= mse["age"] / 2 + 1e-9, "Huber is at most half the squared error"
    assert huber["gender"] == mse["gender"] and huber["race"] == mse["race"]
    weighted = {head: mse[head] * REPORT_LOSS_WEIGHTS[head] for head in mse}
    age_share_equal = mse["age"] / sum(mse.values())
    age_share_report = weighted["age"] / sum(weighted.values())
    assert age_share_report < 0.1, "doubled, the age loss is still a small share of the total"
    print(pd.DataFrame({"huber": huber, "mse": mse, "mse x report weight": weighted}).round(4))
    print(f"with MSE the age loss is {mse['race'] / mse['age']:.0f} times smaller than race's; its share of the "
          f"total is {age_share_equal:.1%} with equal weights and {age_share_report:.1%} with the report's 2 / 1 / 1.5")
    return {"huber_age": huber["age"], "mse_age": mse["age"], "race_over_age_mse": mse["race"] / mse["age"],
            "age_share_equal": age_share_equal, "age_share_report": age_share_report}


def exercise_6(data_dir: str, work_dir: Path) -> dict:
    """In class, about 3 minutes. At 198 pixels each 2x2 pooling halves (rounding down) 198 to 99, 49, 24 and 12, so
    the trunk ends in a 12x12x256 feature map instead of 4x4x256 at 64 pixels: nine times as many positions, and about
    9.6 times the pixels for every convolution to cover. The time follows the pixels: docs/performance.md's trade-off
    table (one seed, 6 epochs) measured 2.46 s per epoch at 64 px and 4.97 at 96 (2.25 times the pixels, 2.0 times the
    time). The parameter count does not move at all (asserted): a convolution's weights depend only on its kernel and
    channels, not on the image size, and global max pooling reduces any map to one number per filter, so the heads see
    256 features either way."""
    from faceattr.defaults import DEFAULT_IMAGE_SIZE
    from faceattr.model import build_model

    age_scale = _age_scale(data_dir)
    result = {}
    for size in (DEFAULT_IMAGE_SIZE, 198):
        model = build_model(size, age_scale=age_scale)
        result[f"parameters_{size}"] = model.count_params()
        result[f"feature_map_{size}"] = tuple(model.get_layer("pool4").output.shape[1:])
    assert result[f"parameters_{DEFAULT_IMAGE_SIZE}"] == result["parameters_198"]
    assert result["feature_map_198"] == (12, 12, 256)
    print(f"feature map {result[f'feature_map_{DEFAULT_IMAGE_SIZE}']} at {DEFAULT_IMAGE_SIZE} px, "
          f"{result['feature_map_198']} at 198 px; {result['parameters_198']:,} parameters at both sizes")
    return result


def exercise_7(data_dir: str, work_dir: Path) -> dict:
    """Homework, about 15 minutes. Scaled to 0..1, no input the first convolution sees is below 0, so for one image
    patch all of a filter's weight gradients share the sign of the error there: the weights move together and plain
    gradient descent zig-zags. Scaled to -1..1 about half the inputs are below 0 and the gradients can point every
    way. Centring changes no parameter and no arithmetic. The balance study (docs/balance.md, 3 seeds, validation
    split) measured the answer: centred pixels learn race sooner, 0.773 ± 0.023 against 0.712 ± 0.027 among the first
    5 epochs on the sample (0.796 against 0.771 on the 3,000-image folder), and after 15 epochs race is 0.821 against
    0.799 on the sample but 0.813 against 0.828 on the folder, and age MAE 5.52 against 5.03 years on the sample and
    4.57 against 4.12 on the folder: 0..1 ends with the lower age error. The run below (one epoch at 32 px, one seed)
    asserts the share of inputs below 0 and shows the method."""
    import keras

    from faceattr.model import build_model

    age_scale = _age_scale(data_dir)
    images, _ = next(iter(_datasets(data_dir)["train"]))
    result = {}
    for name, centre in (("centred", True), ("report", False)):
        model = build_model(TOKEN_IMAGE_SIZE, age_scale=age_scale, centre_pixels=centre)
        scaled = keras.ops.convert_to_numpy(model.get_layer("scale_pixels")(images))
        result[f"{name}_mean_input"] = float(scaled.mean())
        result[f"{name}_negative_share"] = float((scaled < 0).mean())
        history = _train_briefly(model, data_dir)
        result[f"{name}_val_race_accuracy"] = float(history["val_race_accuracy"].iloc[-1])
    assert result["report_negative_share"] == 0 < result["centred_negative_share"]
    print(f"inputs to the first convolution: 0..1 has mean {result['report_mean_input']:.2f} and "
          f"{result['report_negative_share']:.0%} below 0; -1..1 has mean {result['centred_mean_input']:.2f} and "
          f"{result['centred_negative_share']:.0%} below 0. Validation race accuracy after {TOKEN_EPOCHS} epoch(s) at "
          f"{TOKEN_IMAGE_SIZE} px: centred {result['centred_val_race_accuracy']:.3f}, "
          f"0..1 {result['report_val_race_accuracy']:.3f}")
    return result
