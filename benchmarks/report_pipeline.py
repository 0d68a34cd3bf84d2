"""The student report's pipeline, reimplemented for the benchmarks: its per-image generator, its model wired for
that generator, and its per-image loading."""

from __future__ import annotations

import numpy as np

REPORT_SIZE = 198
REPORT_BATCH = 64
REPORT_OUTPUTS = ("age", "race", "gender")   # the report's output order


def report_generator(frame, max_age: float, image_size: int = REPORT_SIZE, batch_size: int = REPORT_BATCH):
    """The report's generator: per-row df.iloc, PIL open + resize, /255, to_categorical, every epoch; ages are
    divided by `max_age` (the report's age scale: faceattr.recipe.age_scale_of the training split).

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
    from faceattr.recipe import Recipe

    model = original_model(age_scale=1.0)
    inputs = keras.Input((REPORT_SIZE, REPORT_SIZE, 3))
    outputs = model(inputs * 255.0)  # the kit's model rescales 0..255 itself
    wrapped = keras.Model(inputs, [outputs[head] for head in REPORT_OUTPUTS])
    recipe = Recipe.named("original")   # the report's loss weights and Adam's learning rate
    wrapped.compile(optimizer=keras.optimizers.Adam(recipe.learning_rate),
                    loss=["mse", "categorical_crossentropy", "categorical_crossentropy"],
                    loss_weights=[recipe.loss_weights[head] for head in REPORT_OUTPUTS])
    return wrapped, model


def open_resized(path: str, size: int):
    """PIL open, RGB, resize: the report's per-image loading."""
    from PIL import Image

    return Image.open(path).convert("RGB").resize((size, size))
