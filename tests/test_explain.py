"""Grad-CAM and occlusion: checked on hand-built models whose answers are known, and `faceattr explain`."""

import keras
import numpy as np
import pytest
from keras import layers
from matplotlib import cbook
from PIL import Image

from faceattr.cli import main
from faceattr.errors import SettingsError
from faceattr.explain import grad_cam, last_conv_layer, occlusion
from faceattr.model import build_model

HOPPER = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)


def red_reader(size: int = 8) -> keras.Model:
    """Age = the mean of a 'red' feature map; gender and race read nothing of it."""
    inputs = keras.Input((size, size, 3))
    features = layers.Conv2D(2, 1, use_bias=False, name="features",
                             kernel_initializer=keras.initializers.Constant(
                                 np.array([[[[1, 0], [0, 1], [0, 0]]]], dtype="float32")))(inputs)
    red = layers.Lambda(lambda tensor: tensor[..., :1], name="red")(features)
    age = layers.Dense(1, name="age")(layers.GlobalAveragePooling2D()(red))
    pooled = layers.GlobalAveragePooling2D()(features)
    outputs = {"age": age, "gender": layers.Dense(2, activation="softmax", name="gender")(pooled),
               "race": layers.Dense(5, activation="softmax", name="race")(pooled)}
    return keras.Model(inputs, outputs)


def test_grad_cam_of_a_head_that_reads_one_feature_map_is_that_map():
    model = red_reader()
    model.get_layer("age").set_weights([np.ones((1, 1), "float32"), np.zeros(1, "float32")])
    images = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    maps = grad_cam(model, images, "age", layer_name="features")
    expected = images[..., 0] / images[..., 0].reshape(2, -1).max(axis=1).reshape(2, 1, 1)
    np.testing.assert_allclose(maps, expected, rtol=1e-5)
    negative = grad_cam(model, -images, "age", layer_name="features")  # all features below zero: ReLU leaves 0
    assert np.all(negative == 0)


def test_occlusion_finds_the_only_region_a_head_reads():
    inputs = keras.Input((16, 16, 3))
    left = layers.Cropping2D(((0, 0), (0, 8)))(inputs)  # columns 0..7 only
    pooled = layers.Flatten()(left)
    outputs = {"age": layers.Dense(1, name="age")(pooled),
               "gender": layers.Dense(2, activation="softmax", name="gender")(pooled),
               "race": layers.Dense(5, activation="softmax", name="race")(pooled)}
    model = keras.Model(inputs, outputs)
    image = np.random.default_rng(1).uniform(0, 255, (16, 16, 3)).astype("float32")
    change = occlusion(model, image, "age", patch=4, stride=4)
    assert change.shape == (4, 4)
    assert np.all(change[:, 2:] < 1e-4) and np.all(change[:, :2] > 1e-3)


def test_occlusion_follows_the_class_predicted_for_the_whole_face():
    """A patch that flips the answer must count as a large drop, not as 'still sure of something'."""
    inputs = keras.Input((8, 8, 3))
    red = layers.GlobalAveragePooling2D()(layers.Lambda(lambda tensor: tensor[..., :1])(inputs))
    logits = layers.Dense(2, name="gender_logits", kernel_initializer=keras.initializers.Constant([[1.0, -1.0]]),
                          bias_initializer=keras.initializers.Constant([-32.0, 32.0]))(red)
    outputs = {"age": layers.Dense(1, name="age")(red), "gender": layers.Softmax(name="gender")(logits),
               "race": layers.Dense(5, activation="softmax", name="race")(red)}
    model = keras.Model(inputs, outputs)
    image = np.zeros((8, 8, 3), "float32")
    image[:4, :4, 0] = 255  # mean red 64 > 32: class 0, sure; covering that corner flips it, just as sure, to 1
    change = occlusion(model, image, "gender", patch=4, stride=4, fill=0.0)
    assert change[0, 0] > 0.99 and np.abs(change.ravel()[1:]).max() < 1e-6


def test_grad_cam_looks_at_the_last_convolution_not_a_pooling_layer():
    assert last_conv_layer(build_model(image_size=32, trunk_filters=(8, 16))) == "relu2"
    dense_only = keras.Model(inputs := keras.Input((4,)), layers.Dense(1)(inputs))
    with pytest.raises(SettingsError, match="Grad-CAM"):
        last_conv_layer(dense_only)


def test_an_unknown_layer_is_one_line_naming_the_convolutions(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    build_model(image_size=32, trunk_filters=(8, 16)).save(run / "model.keras")
    code = main(["explain", "--model", str(run), HOPPER, "--out", str(tmp_path / "maps"), "--layer", "conv9"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "'conv9' is not a convolutional layer" in err and "conv1, relu1, conv2, relu2" in err
    assert main(["explain", "--model", str(run), HOPPER, "--out", str(tmp_path / "maps"), "--layer", "conv1"]) == 0


def test_explain_writes_one_figure_per_face_and_goes_on_after_a_bad_photo(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    build_model(image_size=32, trunk_filters=(8, 16)).save(run / "model.keras")
    hopper = Image.open(HOPPER)
    pair = Image.new("RGB", (hopper.width * 2, hopper.height))
    pair.paste(hopper, (0, 0))
    pair.paste(hopper.transpose(Image.Transpose.FLIP_LEFT_RIGHT), (hopper.width, 0))
    pair.save(tmp_path / "pair.jpg")
    (tmp_path / "bad.jpg").write_text("no")
    code = main(["explain", "--model", str(run), str(tmp_path / "bad.jpg"), str(tmp_path / "pair.jpg"),
                 "--out", str(tmp_path / "maps")])
    captured = capsys.readouterr()
    assert code == 0 and "bad.jpg is not a readable image" in captured.err
    written = sorted(path for path in (tmp_path / "maps").iterdir() if not path.name.startswith("."))  # no manifest
    assert [path.name for path in written] == ["pair_face1_gradcam.png", "pair_face2_gradcam.png"]
    assert captured.out.split() == [str(path) for path in written]
    assert Image.open(written[0]).size[0] > Image.open(written[0]).size[1]  # face + three heads, side by side


@pytest.mark.trains
def test_a_planted_corner_shortcut_shows_in_the_race_heat_map(sample_dir):
    """Notebook 08's experiment, small: a red corner on every image of one race; the heat map must find it."""
    from faceattr.data import scan, split_frame
    from faceattr.explain import upsample
    from faceattr.pipeline import as_arrays
    from faceattr.recipe import Recipe, age_scale_of
    from faceattr.train import build_compiled

    size, cue, square = 32, 2, 4
    frame = split_frame(scan(sample_dir).frame, seed=0)
    images, labels = as_arrays(frame, size)
    images[labels["race"] == cue, :square, :square] = (255, 0, 0)
    keras.utils.set_random_seed(0)
    model = build_compiled(Recipe.named("default", image_size=size), frame, age_scale_of(frame))
    model.fit(images, labels, epochs=8, batch_size=16, shuffle=True, verbose=0)
    marked, others = images[labels["race"] == cue][:16], images[labels["race"] != cue][:16]
    assert (model.predict(marked, verbose=0)["race"].argmax(axis=1) == cue).mean() > 0.9

    def corner_share(faces: np.ndarray) -> float:
        """The share of the race heat maps' weight that lies in the corner (twice the square's side)."""
        maps = np.stack([upsample(m, size) for m in grad_cam(model, faces, "race")])
        return float(maps[:, :2 * square, :2 * square].sum() / maps.sum())

    # the corner draws over twice the weight on the marked faces that it draws on the others, and more than its area
    on_marked, on_others = corner_share(marked), corner_share(others)
    assert on_marked > max(2 * on_others, (2 * square / size) ** 2), (on_marked, on_others)
