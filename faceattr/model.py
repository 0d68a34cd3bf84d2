"""Multi-task CNN builders (Keras functional API): shared trunk, age/gender/race heads."""

from __future__ import annotations

import itertools
from typing import Callable

import numpy as np

from faceattr import import_tensorflow

import_tensorflow()
import keras  # noqa: E402  (after the quiet TensorFlow import)
from keras import layers, ops  # noqa: E402

from faceattr.defaults import (AGE_HEADS, AGE_LOSSES, DEFAULT_IMAGE_SIZE, DEFAULT_TRUNK, MAX_IMAGE_SIZE,
                               MIN_IMAGE_SIZE, RECIPES, check_choice, check_image_size, check_trunk)
from faceattr.errors import ModelContractError, SettingsError
from faceattr.labels import AGE_MAX, GENDER_NAMES, HEAD_NAMES, RACE_NAMES

ORIGINAL_TRUNK = (32, 64, 128, 160, 192)
BATCH_NORM_MOMENTUM = 0.9   # Keras's default 0.99 keeps stale statistics for hundreds of steps; small data: converge fast


def head(features: keras.KerasTensor, units: int, name: str, activation: str | None = None,
         dropout: float = 0.0) -> keras.KerasTensor:
    """One task head: a 128-unit dense layer, optional dropout, then the named output layer."""
    x = layers.Dense(128, activation="relu", name=f"{name}_dense")(features)
    if dropout:
        x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return layers.Dense(units, activation=activation, name=name, dtype="float32")(x)


@keras.saving.register_keras_serializable(package="faceattr")
class NonNegativeAtInference(layers.Layer):
    """Identity while training (so the gradient never vanishes); clips negative values to 0 at inference."""

    def call(self, inputs, training=None):
        """Pass through in training; max(x, 0) otherwise."""
        return inputs if training else ops.maximum(inputs, 0.0)


AGE_BINS = 30  # the "expectation" head's bins, spread evenly over 0..age_scale


def age_output(features: keras.KerasTensor, age_head: str, age_scale: float,
               dropout: float = 0.0) -> keras.KerasTensor:
    """The age head in years.

    "linear": one linear unit; never negative at inference.
    "sigmoid": the report's, sigmoid x max age.
    "expectation" (the default recipe's): softmax over age bins, predicting the expected bin centre, trained
    with the recipe's age loss (Huber) on that expected age; DEX (Rothe et al. 2015) reads its age the same way
    but trains the bins with cross-entropy.
    """
    check_choice("age head", age_head, AGE_HEADS)
    if age_head == "expectation":
        bins = head(features, AGE_BINS, "age_bins", activation="softmax", dropout=dropout)
        centres = [(index + 0.5) * age_scale / AGE_BINS for index in range(AGE_BINS)]
        expected = layers.Dense(1, use_bias=False, trainable=False, name="age_years", dtype="float32",
                                kernel_initializer=keras.initializers.Constant([[c] for c in centres]))
        return NonNegativeAtInference(name="age", dtype="float32")(expected(bins))
    raw = head(features, 1, "age_unit", activation="sigmoid" if age_head == "sigmoid" else None, dropout=dropout)
    years = layers.Rescaling(age_scale, name="age_years", dtype="float32")(raw)
    return NonNegativeAtInference(name="age", dtype="float32")(years)


def build_model(image_size: int = DEFAULT_IMAGE_SIZE, trunk_filters: tuple[int, ...] = DEFAULT_TRUNK,
                batch_norm: bool = False, dropout: float = 0.0, pooling: str = "max",
                age_head: str = RECIPES["default"]["age_head"], age_scale: float = AGE_MAX,
                centre_pixels: bool = True, name: str = "default",
                batch_norm_momentum: float = BATCH_NORM_MOMENTUM) -> keras.Model:
    """Shared conv trunk (3x3 conv, relu, 2x2 max pool per block) with three heads; pixels enter scaled to
    -1..1 (centred on 0), or to the report's 0..1 with `centre_pixels=False`. With `batch_norm`, batch norm (at
    `batch_norm_momentum`) follows each convolution, which then has no bias."""
    check_trunk(trunk_filters, image_size)
    if pooling not in ("max", "average"):
        raise SettingsError(f"pooling={pooling!r} is unknown; use 'max' or 'average'.")
    inputs = keras.Input(shape=(image_size, image_size, 3), name="face")
    x = (layers.Rescaling(1 / 127.5, offset=-1, name="scale_pixels") if centre_pixels
         else layers.Rescaling(1 / 255, name="scale_pixels"))(inputs)
    for block, filters in enumerate(trunk_filters, start=1):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=not batch_norm, name=f"conv{block}")(x)
        if batch_norm:
            x = layers.BatchNormalization(momentum=batch_norm_momentum, name=f"bn{block}")(x)
        x = layers.Activation("relu", name=f"relu{block}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{block}")(x)
    pool = layers.GlobalMaxPooling2D if pooling == "max" else layers.GlobalAveragePooling2D
    shared = pool(name="shared")(x)
    if dropout:
        shared = layers.Dropout(dropout, name="shared_dropout")(shared)
    outputs = {
        "age": age_output(shared, age_head, age_scale, dropout),
        "gender": head(shared, len(GENDER_NAMES), "gender", "softmax", dropout),
        "race": head(shared, len(RACE_NAMES), "race", "softmax", dropout),
    }
    return keras.Model(inputs, outputs, name=name)


def single_head_model(head: str, image_size: int = DEFAULT_IMAGE_SIZE, age_scale: float = AGE_MAX) -> keras.Model:
    """The default architecture with one head only, `head`: the whole trunk serves that task (notebook 07, section 3,
    writes it out)."""
    full = build_model(image_size, age_scale=age_scale, name=f"only_{head}")
    return keras.Model(full.input, {head: full.output[head]}, name=f"only_{head}")


def original_model(image_size: int = RECIPES["original"]["image_size"], age_scale: float = AGE_MAX,
                   age_head: str = RECIPES["original"]["age_head"],
                   centre_pixels: bool = RECIPES["original"]["centre_pixels"]) -> keras.Model:
    """The student report's network (198x198 by default): five conv blocks 32/64/128/160/192, no batch norm,
    global max pooling, sigmoid age head, pixels scaled to 0..1. The report's 4th and 5th conv layers both read
    the 3rd pool, leaving the 4th dead; here each block feeds the next, as the report intended."""
    return build_model(image_size, ORIGINAL_TRUNK, batch_norm=False, pooling="max",
                       age_head=age_head, age_scale=age_scale, centre_pixels=centre_pixels, name="original")


def transfer_model(image_size: int = RECIPES["mobilenet"]["image_size"], backbone: str = "mobilenet_v3_small",
                   weights: str | None = None, age_scale: float = AGE_MAX, age_head: str = "linear",
                   centre_pixels: bool = True) -> keras.Model:
    """A Keras Applications backbone with the same three heads; `weights="imagenet"` needs a download. The
    backbone scales its own pixels, so `centre_pixels` must be True (faceattr.recipe.Recipe checks it)."""
    if not centre_pixels:
        raise SettingsError(f"centre_pixels=False is not for {backbone}: the backbone scales its own pixels.")
    builders = {"mobilenet_v3_small": keras.applications.MobileNetV3Small,
                "efficientnet_b0": keras.applications.EfficientNetB0}
    if backbone not in builders:
        raise SettingsError(f"backbone={backbone!r} is unknown; use one of {sorted(builders)}.")
    inputs = keras.Input(shape=(image_size, image_size, 3), name="face")
    try:
        base = builders[backbone](input_shape=(image_size, image_size, 3), include_top=False,
                                  weights=weights, pooling="avg")
    except Exception:  # offline: no way to fetch ImageNet weights, so start from scratch
        if weights is None:
            raise
        base = builders[backbone](input_shape=(image_size, image_size, 3), include_top=False,
                                  weights=None, pooling="avg")
    shared = base(inputs)  # both backbones rescale 0..255 pixels themselves
    outputs = {
        "age": age_output(shared, age_head, age_scale),
        "gender": head(shared, len(GENDER_NAMES), "gender", "softmax"),
        "race": head(shared, len(RACE_NAMES), "race", "softmax"),
    }
    return keras.Model(inputs, outputs, name=backbone)


HUBER_DELTA = 0.1  # the age Huber loss's delta, in units of age / age_scale: quadratic below it, linear above


@keras.saving.register_keras_serializable(package="faceattr")
class AgeLoss(keras.losses.Loss):
    """A regression loss on age / age_scale, so its size is comparable to the class losses."""

    def __init__(self, kind: str = "huber", age_scale: float = AGE_MAX, name: str = "age_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.kind, self.age_scale = check_choice("age loss", kind, AGE_LOSSES), float(age_scale)

    def call(self, y_true, y_pred):
        """Per-sample loss on the scaled ages (Keras's own huber / MAE / MSE)."""
        true = ops.reshape(y_true, (-1, 1)) / self.age_scale
        predicted = ops.reshape(y_pred, (-1, 1)) / self.age_scale
        if self.kind == "huber":
            return keras.losses.huber(true, predicted, delta=HUBER_DELTA)
        loss = keras.losses.mean_squared_error if self.kind == "mse" else keras.losses.mean_absolute_error
        return loss(true, predicted)

    def get_config(self) -> dict:
        """Config for saving."""
        return {**super().get_config(), "kind": self.kind, "age_scale": self.age_scale}


BUILDERS: dict[str, Callable[..., keras.Model]] = {  # one per faceattr.defaults.RECIPES entry
    "default": build_model,
    "batchnorm": lambda **settings: build_model(batch_norm=True, name="batchnorm", **settings),
    "original": original_model,
    "mobilenet": transfer_model,
}


def make_model(arch: str, image_size: int | None = None, age_scale: float = AGE_MAX,
               age_head: str | None = None, centre_pixels: bool | None = None) -> keras.Model:
    """Build a named architecture at `image_size`, with `age_head` and `centre_pixels` (its recipe's own when None)."""
    recipe = RECIPES[check_choice("arch", arch, tuple(BUILDERS))]
    size = check_image_size(image_size or recipe["image_size"])
    centre = recipe["centre_pixels"] if centre_pixels is None else centre_pixels
    return BUILDERS[arch](image_size=size, age_scale=age_scale, age_head=age_head or recipe["age_head"],
                         centre_pixels=centre)


# The kit's contract for a model (notebook 03's, a student's edit, or a builder's): what training, evaluation and
# the later notebooks rely on. `check_model` tests it before any training.
HEAD_UNITS = {"age": 1, "gender": len(GENDER_NAMES), "race": len(RACE_NAMES)}
CLASS_NAMES = {"gender": ("genders", GENDER_NAMES), "race": ("races", RACE_NAMES)}
AGE_REACH = 0.95  # the age head must reach 95% of the oldest training age (the expectation head's top bin: 98%)
TRUNK_CELL = "notebook 03, section 2 (the shared trunk)"
HEADS_CELL = "notebook 03, section 3 (three heads)"
PASS_THROUGH = (keras.layers.InputLayer,)


def producer(tensor: keras.KerasTensor) -> keras.layers.Layer:
    """The layer that made a symbolic tensor."""
    return tensor._keras_history.operation


def activation_name(layer: keras.layers.Layer) -> str:
    """A layer's activation ("softmax", "sigmoid", "linear", ...), or its type when it has none."""
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", type(layer).__name__) if activation is not None else type(layer).__name__


def age_head_of(model: keras.Model) -> str | None:
    """The age head (faceattr.defaults.AGE_HEADS) of a model whose age output `age_output` builds, told by its
    layers; None for an age head of one's own."""
    layer_names = {layer.name: layer for layer in model.layers}
    if "age_bins" in layer_names:
        return "expectation"
    if "age_unit" in layer_names:
        return "sigmoid" if activation_name(layer_names["age_unit"]) == "sigmoid" else "linear"
    return None


def input_problems(model: keras.Model, image_size: int | None) -> list[str]:
    """The contract's input: one square RGB image input, of `image_size` px when given."""
    fix = f"use `keras.Input(shape=(image_size, image_size, 3), name=\"face\")` in {TRUNK_CELL}"
    if len(model.inputs) != 1:
        return [f"the model has {len(model.inputs)} inputs; the kit feeds one, a batch of face images: {fix}"]
    shape = tuple(model.inputs[0].shape[1:])
    if len(shape) != 3 or shape[2] != 3 or shape[0] != shape[1] or shape[0] is None:
        has = " x ".join(str(side) for side in shape)
        return [f"the input is {has}; the kit feeds square RGB images, image_size x image_size x 3: {fix}"]
    if image_size is not None and shape[0] != image_size:
        return [f"the input takes {shape[0]} px images, but image_size is {image_size}: {fix}"]
    if not MIN_IMAGE_SIZE <= shape[0] <= MAX_IMAGE_SIZE:
        return [f"the input takes {shape[0]} px images; the kit's images are {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE} px: "
                f"{fix}"]
    return []


def model_outputs(model: keras.Model) -> tuple[dict[str, keras.KerasTensor], list[str]]:
    """The model's outputs by name, and the problems with how they are named (a list, a missing or extra head, an
    output layer named unlike its head)."""
    keras_model = "`keras.Model(inputs, {\"age\": age, \"gender\": gender, \"race\": race})`"
    if isinstance(model.output, dict):
        outputs, problems = dict(model.output), []
    else:
        tensors = model.output if isinstance(model.output, (list, tuple)) else [model.output]
        outputs = dict(zip(model.output_names, tensors))
        problems = [f"the outputs are a {type(model.output).__name__}; the kit needs a dict keyed by head: "
                    f"{keras_model} in {HEADS_CELL}"]
    names = ", ".join(outputs) or "none"
    for head in HEAD_NAMES:
        if head not in outputs:
            problems.append(f"no {head} head: the outputs are {names}; the kit needs three, named age, gender and "
                            f"race: {keras_model} in {HEADS_CELL}")
    for name, tensor in outputs.items():
        if name not in HEAD_NAMES:
            problems.append(f"output \"{name}\" is not one of the kit's heads (age, gender, race): rename it or leave "
                            f"it out of {keras_model} in {HEADS_CELL}")
        elif producer(tensor).name != name:
            problems.append(f"the {name} head's last layer is named \"{producer(tensor).name}\"; the kit finds it by "
                            f"the name \"{name}\" (get_layer, val_{name}_... metrics): name it \"{name}\" in "
                            f"{HEADS_CELL}")
    return {name: tensor for name, tensor in outputs.items() if name in HEAD_NAMES}, problems


def age_reach(age: keras.KerasTensor) -> tuple[float | None, keras.layers.Layer]:
    """The largest age the age head can output, and the trained layer that bounds it: a sigmoid or softmax layer
    followed by untrained layers (a rescaling, the bin centres) has a largest output; None when unbounded (linear)."""
    tail, tensor = [], age
    while not producer(tensor).trainable_weights and not isinstance(producer(tensor), PASS_THROUGH):
        layer, node = producer(tensor), tensor._keras_history.node_index
        inputs = layer._inbound_nodes[node].input_tensors
        if len(inputs) != 1:
            return None, layer
        tail.insert(0, layer)
        tensor = inputs[0]
    last = producer(tensor)
    units, activation = tensor.shape[-1], activation_name(last)
    if activation == "softmax":
        corners = np.eye(units, dtype="float32")            # a softmax's extremes: all probability on one unit
    elif activation == "sigmoid" and units <= 10:
        corners = np.array(list(itertools.product((0.0, 1.0), repeat=units)), "float32")
    else:
        return None, last
    values = corners
    for layer in tail:
        values = layer(values)
    return float(np.max(ops.convert_to_numpy(values))), last


def head_problems(name: str, tensor: keras.KerasTensor, age_scale: float) -> list[str]:
    """One head's contract: its units, its activation (probabilities for gender and race), float32 outputs, and
    for age, a range that reaches the oldest training age."""
    layer, units, problems = producer(tensor), HEAD_UNITS[name], []
    shape = tuple(tensor.shape[1:])
    if shape != (units,):
        has = f"{shape[-1]} outputs" if len(shape) == 1 else f"outputs of shape {shape}"
        if name == "age":
            problems.append(f"the age head has {has}; the kit needs 1, the age in years: end it in one unit "
                            f"(as `age_years` does) in {HEADS_CELL}")
        else:
            plural, labels = CLASS_NAMES[name]
            written = shape[-1] if len(shape) == 1 else "..."
            problems.append(f"the {name} head has {has}; the data has {units} {plural} ({', '.join(labels)}): "
                            f"change `head(shared, {written}, \"{name}\")` to `head(shared, {units}, \"{name}\")` in "
                            f"{HEADS_CELL}")
    if name != "age" and activation_name(layer) != "softmax":
        problems.append(f"the {name} head's activation is {activation_name(layer)}; its loss (cross-entropy) needs "
                        f"probabilities that sum to 1: use `head(shared, {units}, \"{name}\", activation=\"softmax\")` "
                        f"in {HEADS_CELL}")
    if tensor.dtype != "float32":
        problems.append(f"the {name} head outputs {tensor.dtype}; the kit needs float32 outputs (the losses and "
                        f"metrics under mixed precision): add `dtype=\"float32\"` to its last layer, \"{layer.name}\", "
                        f"in {HEADS_CELL}")
    if name == "age" and shape == (1,):
        reach, bounded_by = age_reach(tensor)
        if reach is not None and reach < AGE_REACH * age_scale:
            problems.append(f"the age head's largest possible output is {reach:.3g} (its layer \"{bounded_by.name}\" "
                            f"ends in a {activation_name(bounded_by)}); training ages go up to {age_scale:g} years: "
                            "scale it to years, e.g. `layers.Rescaling(age_scale, name=\"age_years\")`, in "
                            f"{HEADS_CELL}")
    return problems


def model_problems(model: keras.Model, age_scale: float, image_size: int | None = None) -> list[str]:
    """Every way `model` breaks the kit's contract, one line each (what it has, what the kit needs, the cell
    to fix); empty when it fits."""
    outputs, problems = model_outputs(model)
    problems = input_problems(model, image_size) + problems
    for name in (name for name in HEAD_NAMES if name in outputs):
        problems += head_problems(name, outputs[name], age_scale)
    return problems


def check_model(model: keras.Model, age_scale: float, image_size: int | None = None) -> str:
    """Raise ModelContractError listing every problem (see `model_problems`); else return a one-line summary."""
    problems = model_problems(model, age_scale, image_size)
    if problems:
        count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
        raise ModelContractError(f"model '{model.name}' does not fit the kit ({count}); fix them and rerun "
                                 "notebook 03 from there:", problems)
    reach, _ = age_reach(model.output["age"])
    side = model.inputs[0].shape[1]
    return (f"'{model.name}' fits the kit: {side} x {side} x 3 faces in; age in years "
            + (f"(up to {reach:.0f})" if reach is not None else "(no upper bound)")
            + f", {HEAD_UNITS['gender']} gender and {HEAD_UNITS['race']} race probabilities; float32 outputs")


def layer_settings(model: keras.Model) -> list[tuple[str, dict]]:
    """Each layer's type and settings, without its number format (the builders pin their outputs to float32)."""
    return [(type(layer).__name__, {key: value for key, value in layer.get_config().items() if key != "dtype"})
            for layer in model.layers]


def matching_arch(model: keras.Model, age_scale: float) -> str | None:
    """The kit architecture whose builder makes exactly `model`'s layers at its image size, or None for a
    model of one's own (a student's edit of notebook 03)."""
    size = model.inputs[0].shape[1] if len(model.inputs) == 1 else None
    if not MIN_IMAGE_SIZE <= (size or 0) <= MAX_IMAGE_SIZE:
        return None
    settings = layer_settings(model)
    return next((arch for arch in ("default", "batchnorm", "original")
                 if layer_settings(make_model(arch, size, age_scale)) == settings), None)


def comparison_problem(model: keras.Model, age_scale: float, image_size: int,
                       parameter: str = "image_size") -> str | None:
    """Why a later notebook cannot train notebook 03's `model` beside its own models at `image_size` (set by its
    `parameter`), and how to include it; None when it can."""
    size = model.inputs[0].shape[1] if len(model.inputs) == 1 else None
    if size != image_size and not input_problems(model, None):
        return (f"'{model.name}' (notebook 03) takes {size} px images but this notebook trains at {image_size} px, "
                f"so it is left out: set {parameter} = {size} in the parameters cell to include it.")
    problems = model_problems(model, age_scale, image_size)
    if problems:
        return (f"'{model.name}' (notebook 03) is left out: it does not fit the kit ({problems[0]}"
                + (f"; and {len(problems) - 1} more" if len(problems) > 1 else "")
                + "). Fix it in notebook 03 and rerun it.")
    return None
