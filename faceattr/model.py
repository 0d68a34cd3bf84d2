"""Multi-task CNN builders (Keras functional API): shared trunk, age/gender/race heads."""

from __future__ import annotations

from typing import Callable

from faceattr import import_tensorflow

import_tensorflow()
import keras  # noqa: E402  (after the quiet TensorFlow import)
from keras import layers, ops  # noqa: E402

from faceattr.defaults import (AGE_HEADS, AGE_LOSSES, DEFAULT_IMAGE_SIZE, DEFAULT_TRUNK, RECIPES, check_choice,
                               check_image_size, check_trunk)
from faceattr.errors import SettingsError
from faceattr.labels import AGE_MAX, GENDER_NAMES, RACE_NAMES

ORIGINAL_TRUNK = (32, 64, 128, 160, 192)


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
                centre_pixels: bool = True, name: str = "faceattr") -> keras.Model:
    """Shared conv trunk (3x3 conv, relu, 2x2 max pool per block) with three heads; pixels enter scaled to
    -1..1 (centred on 0), or to the report's 0..1 with `centre_pixels=False`."""
    check_trunk(trunk_filters, image_size)
    if pooling not in ("max", "average"):
        raise SettingsError(f"pooling={pooling!r} is unknown; use 'max' or 'average'.")
    inputs = keras.Input(shape=(image_size, image_size, 3), name="face")
    x = (layers.Rescaling(1 / 127.5, offset=-1, name="scale_pixels") if centre_pixels
         else layers.Rescaling(1 / 255, name="scale_pixels"))(inputs)
    for block, filters in enumerate(trunk_filters, start=1):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=not batch_norm, name=f"conv{block}")(x)
        if batch_norm:
            x = layers.BatchNormalization(momentum=0.9, name=f"bn{block}")(x)  # small data: converge fast
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


def original_model(image_size: int = RECIPES["original"]["image_size"], age_scale: float = AGE_MAX,
                   age_head: str = RECIPES["original"]["age_head"]) -> keras.Model:
    """The student report's network (198x198 by default): five conv blocks 32/64/128/160/192, no batch norm,
    global max pooling, sigmoid age head, pixels scaled to 0..1. The report's 4th and 5th conv layers both read
    the 3rd pool, leaving the 4th dead; here each block feeds the next, as the report intended."""
    return build_model(image_size, ORIGINAL_TRUNK, batch_norm=False, pooling="max",
                       age_head=age_head, age_scale=age_scale, centre_pixels=False, name="original")


def transfer_model(image_size: int = RECIPES["mobilenet"]["image_size"], backbone: str = "mobilenet_v3_small",
                   weights: str | None = None, age_scale: float = AGE_MAX, age_head: str = "linear") -> keras.Model:
    """A Keras Applications backbone with the same three heads; `weights="imagenet"` needs a download."""
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
            return keras.losses.huber(true, predicted, delta=0.1)  # about 12 years: quadratic below, linear above
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
               age_head: str | None = None) -> keras.Model:
    """Build a named architecture at `image_size`, with `age_head` (its recipe's own when None)."""
    recipe = RECIPES[check_choice("arch", arch, tuple(BUILDERS))]
    size = check_image_size(image_size or recipe["image_size"])
    return BUILDERS[arch](image_size=size, age_scale=age_scale, age_head=age_head or recipe["age_head"])
