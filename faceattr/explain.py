"""What each head looks at: Grad-CAM (Selvaraju et al., 2017) and occlusion sensitivity, for every head at once.

Notebook 08 writes the Grad-CAM gradient tape and the occlusion loop out in its cells (they are the lesson) and
checks them against `grad_cam` and `occlusion` here; `faceattr explain` uses these helpers.
"""

from __future__ import annotations

import numpy as np

from faceattr import import_tensorflow

tf = import_tensorflow()
import keras  # noqa: E402

from faceattr.errors import SettingsError  # noqa: E402

HEADS = ("age", "gender", "race")
OCCLUSION_FILL = 128.0   # the grey that covers a patch: mid-range of 0..255 pixels


SKIPPED_LAYERS = (keras.layers.InputLayer, keras.layers.MaxPooling2D, keras.layers.AveragePooling2D,
                  keras.layers.Rescaling, keras.layers.Dropout)


def last_conv_layer(model: keras.Model) -> str:
    """The name of the last top-level layer that computes image-shaped features (a convolution, its activation,
    or a nested backbone; not a pooling or rescaling layer): where Grad-CAM looks."""
    choices = conv_layers(model)  # a layer with several outputs is never the feature map
    if choices:
        return choices[-1]
    raise SettingsError(f"model {model.name!r} pools its features inside a nested backbone, so Grad-CAM cannot "
                        "reach them; explain a run of the default, batchnorm or original architecture.")


def conv_layers(model: keras.Model) -> list[str]:
    """The top-level layers with image-shaped features, first to last: the layers Grad-CAM can look at."""
    return [layer.name for layer in model.layers
            if len(getattr(layer.output, "shape", ())) == 4 and not isinstance(layer, SKIPPED_LAYERS)]


def check_layer(model: keras.Model, layer_name: str) -> str:
    """`layer_name` if Grad-CAM can use it; otherwise a one-line error naming the layers it can."""
    choices = conv_layers(model)
    if layer_name not in choices:
        raise SettingsError(f"layer {layer_name!r} is not a convolutional layer of model {model.name!r}; "
                            f"choose one of: {', '.join(choices)}.")
    return layer_name


def head_score(outputs: dict, head: str) -> tf.Tensor:
    """One number per image that the head is 'about': predicted age in years, or the predicted class's
    probability."""
    if head == "age":
        return tf.reshape(outputs["age"], [-1])
    probabilities = outputs[head]
    return tf.reduce_max(probabilities, axis=-1)


def grad_cam(model: keras.Model, images: np.ndarray, head: str, layer_name: str | None = None) -> np.ndarray:
    """Grad-CAM maps, one per image, in 0..1 at the conv layer's resolution: ReLU of the feature maps weighted
    by the head score's mean gradient over each map."""
    layer = model.get_layer(check_layer(model, layer_name) if layer_name else last_conv_layer(model))
    probe = keras.Model(model.inputs[0], [layer.output, model.output])
    with tf.GradientTape() as tape:
        features, outputs = probe(tf.convert_to_tensor(images, tf.float32), training=False)
        score = head_score(outputs, head)
    gradients = tf.cast(tape.gradient(score, features), tf.float32)  # mixed precision computes features in
    features = tf.cast(features, tf.float32)                         # 16 bits; the map is read in 32
    weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
    maps = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1)).numpy()
    peak = maps.reshape(len(maps), -1).max(axis=1).reshape(-1, 1, 1)
    return np.divide(maps, peak, out=np.zeros_like(maps), where=peak > 0)


def occlusion(model: keras.Model, image: np.ndarray, head: str, patch: int = 8, stride: int = 4,
              fill: float = OCCLUSION_FILL) -> np.ndarray:
    """Occlusion sensitivity: slide a grey patch over the image and record how much the probability of the class
    the head predicts for the whole image falls (for age: how far the predicted age moves, in years). One map at
    the stride's resolution."""
    size, stride = image.shape[0], max(1, stride)
    corners = list(range(0, size - patch + 1, stride))
    batch = np.repeat(image[None].astype("float32"), 1 + len(corners) ** 2, axis=0)  # first: the image as it is
    for index, (top, left) in enumerate(((top, left) for top in corners for left in corners), start=1):
        batch[index, top:top + patch, left:left + patch] = fill
    outputs = model.predict(batch, verbose=0, batch_size=len(batch))
    if head == "age":
        ages = np.asarray(outputs["age"]).reshape(-1)
        change = np.abs(ages[1:] - ages[0])
    else:
        probabilities = np.asarray(outputs[head])
        predicted = probabilities[0].argmax()  # the class predicted for the whole face, followed in every copy
        change = probabilities[0, predicted] - probabilities[1:, predicted]
    return change.reshape(len(corners), len(corners))


def upsample(heatmap: np.ndarray, size: int) -> np.ndarray:
    """A heat map resized (bilinear) to the image's size, for drawing over it."""
    return tf.image.resize(heatmap[..., None], (size, size)).numpy()[..., 0]
