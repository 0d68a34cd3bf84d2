"""Model builders: outputs, shapes, parameter counts, the dead-layer fix, and the age loss."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from faceattr.model import AgeLoss, build_model, make_model, original_model, single_head_model


def test_outputs_and_shapes():
    model = build_model(image_size=32, trunk_filters=(8, 16))
    outputs = model(np.zeros((3, 32, 32, 3), "float32"))
    assert set(outputs) == {"age", "gender", "race"}
    assert outputs["age"].shape == (3, 1)
    assert outputs["gender"].shape == (3, 2)
    assert outputs["race"].shape == (3, 5)
    np.testing.assert_allclose(np.sum(outputs["race"], axis=1), 1.0, rtol=1e-5)


def test_parameter_count_matches_hand_count():
    # conv1 3*3*3*8+8, conv2 3*3*8*16+16, three dense(128) on 16 features, outputs 1, 2 and 5 units.
    conv = (3 * 3 * 3 * 8 + 8) + (3 * 3 * 8 * 16 + 16)
    dense = 3 * (16 * 128 + 128)
    outputs = (128 + 1) + (128 * 2 + 2) + (128 * 5 + 5)
    linear = build_model(image_size=32, trunk_filters=(8, 16), age_head="linear")
    assert linear.count_params() == conv + dense + outputs
    # the expectation head: 30 bins instead of one unit, plus 30 fixed bin centres
    expectation = build_model(image_size=32, trunk_filters=(8, 16), age_head="expectation")
    assert expectation.count_params() == conv + dense + outputs - (128 + 1) + (128 * 30 + 30) + 30


def test_batch_norm_and_pooling_options_change_the_graph():
    plain = build_model(image_size=32, trunk_filters=(8, 16))
    normed = build_model(image_size=32, trunk_filters=(8, 16), batch_norm=True)
    assert any(isinstance(layer, keras.layers.BatchNormalization) for layer in normed.layers)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in plain.layers)
    average = build_model(image_size=32, trunk_filters=(8,), pooling="average")
    assert isinstance(average.get_layer("shared"), keras.layers.GlobalAveragePooling2D)


def test_the_kit_centres_pixels_and_the_report_keeps_them_at_0_to_1():
    pixels = np.array([[[[0.0, 127.5, 255.0]]]], "float32")
    centred = build_model(image_size=32, trunk_filters=(8,)).get_layer("scale_pixels")(pixels)
    report = original_model(image_size=32).get_layer("scale_pixels")(pixels)
    np.testing.assert_allclose(np.asarray(centred).ravel(), [-1.0, 0.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(np.asarray(report).ravel(), [0.0, 0.5, 1.0], atol=1e-6)


def test_original_model_has_no_dead_conv_layer():
    model = original_model()
    assert model.input_shape == (None, 198, 198, 3)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [layer.filters for layer in convs] == [32, 64, 128, 160, 192]
    # Every conv block feeds the next: conv4 reads pool3, conv5 reads pool4 (the report's bug skipped conv4).
    assert model.get_layer("conv4").input is model.get_layer("pool3").output
    assert model.get_layer("conv5").input is model.get_layer("pool4").output
    images = tf.random.uniform((2, 198, 198, 3), 0, 255)
    with tf.GradientTape() as tape:
        outputs = model(images)
        total = sum(tf.reduce_sum(value) for value in outputs.values())
    gradients = tape.gradient(total, [layer.kernel for layer in convs])
    assert all(float(tf.reduce_max(tf.abs(g))) > 0 for g in gradients)


def test_sigmoid_age_head_stays_within_age_scale():
    model = original_model(age_scale=80.0)
    ages = model(tf.random.uniform((4, 198, 198, 3), 0, 255))["age"].numpy()
    assert ((ages >= 0) & (ages <= 80)).all()


@pytest.mark.parametrize("arch, message", [("resnet", "unknown arch 'resnet'"), ("default", "outside 32..512")])
def test_make_model_rejects_bad_settings(arch, message):
    with pytest.raises(ValueError, match=message):
        make_model(arch, image_size=16 if arch == "default" else None)


def test_transfer_model_builds_offline():
    model = make_model("mobilenet", image_size=64)
    outputs = model(np.zeros((1, 64, 64, 3), "float32"))
    assert outputs["race"].shape == (1, 5) and outputs["age"].shape == (1, 1)


@pytest.mark.parametrize("kind, expected", [
    # ages 10 and 50 predicted as 20 and 50, scale 100: errors 0.1 and 0.
    ("mse", (0.1 ** 2 + 0) / 2),
    ("mae", (0.1 + 0) / 2),
    ("huber", (0.5 * 0.1 ** 2 + 0) / 2),
])
def test_age_loss_by_hand(kind, expected):
    loss = AgeLoss(kind, age_scale=100.0)
    value = float(loss(np.array([10.0, 50.0]), np.array([[20.0], [50.0]])))
    assert value == pytest.approx(expected, rel=1e-5)


def test_huber_age_loss_is_linear_for_large_errors():
    loss = AgeLoss("huber", age_scale=100.0)
    # error 0.5 > delta 0.1: 0.1 * (0.5 - 0.05)
    assert float(loss(np.array([0.0]), np.array([[50.0]]))) == pytest.approx(0.045, rel=1e-5)


def test_linear_age_head_is_linear_in_training_and_never_negative_at_inference():
    model = build_model(image_size=32, trunk_filters=(8,), age_head="linear")
    unit = model.get_layer("age_unit")
    kernel, bias = unit.get_weights()
    unit.set_weights([kernel, bias - 50.0])  # push the output far below zero
    images = tf.random.uniform((8, 32, 32, 3), 0, 255)
    assert (model(images, training=False)["age"].numpy() == 0).all()
    with tf.GradientTape() as tape:
        ages = model(images, training=True)["age"]
        total = tf.reduce_sum(ages)
    assert (ages.numpy() < -1000).all()  # 116 * -50: the raw linear value, so the loss can pull it back
    kernel_gradient = tape.gradient(total, [unit.kernel])[0]
    assert float(tf.reduce_max(tf.abs(kernel_gradient))) > 0


def test_expectation_age_head_predicts_the_expected_bin_centre():
    model = build_model(image_size=32, trunk_filters=(8,), age_head="expectation", age_scale=90.0)
    bins = model.get_layer("age_bins")
    kernel, bias = bins.get_weights()
    one_hot_bias = np.full_like(bias, -100.0)
    one_hot_bias[4] = 100.0  # all probability on bin 4 of 30: centre (4 + 0.5) * 90 / 30 = 13.5 years
    bins.set_weights([np.zeros_like(kernel), one_hot_bias])
    ages = model(tf.random.uniform((3, 32, 32, 3), 0, 255))["age"].numpy()
    np.testing.assert_allclose(ages, 13.5, rtol=1e-5)
    assert not model.get_layer("age_years").trainable_weights


@pytest.mark.parametrize("head, units", [("age", 1), ("gender", 2), ("race", 5)])
def test_a_single_head_model_keeps_the_whole_trunk_and_one_head(head, units):
    model = single_head_model(head, 32, age_scale=90.0)
    assert list(model.output) == [head] and model.output[head].shape[-1] == units
    full = build_model(32, age_scale=90.0)
    others = [name for name in ("age", "gender", "race") if name != head]
    assert model.count_params() < full.count_params()
    assert not any(layer.name.startswith(tuple(others)) for layer in model.layers)
    assert [layer.name for layer in model.layers if layer.name.startswith(("conv", "relu", "pool"))] == \
        [layer.name for layer in full.layers if layer.name.startswith(("conv", "relu", "pool"))]


def test_batch_norm_momentum_is_a_setting_with_the_kits_default():
    assert build_model(32, batch_norm=True).get_layer("bn1").momentum == 0.9
    assert build_model(32, batch_norm=True, batch_norm_momentum=0.99).get_layer("bn1").momentum == 0.99


def test_age_head_of_reads_the_age_head_a_model_was_built_with():
    from faceattr.defaults import AGE_HEADS
    from faceattr.model import age_head_of

    assert [age_head_of(make_model("default", 32, age_head=age_head)) for age_head in AGE_HEADS] == list(AGE_HEADS)
    inputs = keras.Input((32, 32, 3))
    own = keras.Model(inputs, {"age": keras.layers.Dense(1, name="age")(keras.layers.Flatten()(inputs))})
    assert age_head_of(own) is None   # an age head of one's own: config.json leaves age_head out
