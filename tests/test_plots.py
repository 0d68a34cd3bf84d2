"""Figures show what the lessons say they show: per-head losses, learned weights, metric baselines."""

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
import pandas as pd  # noqa: E402

from faceattr.plots import age_error_plot, experiments_plot, loss_weight_curves, multitask_plot, training_curves  # noqa: E402

HEADS = ("age", "gender", "race")


def history(epochs: int = 3) -> pd.DataFrame:
    """A history.csv-shaped frame with distinct values per column."""
    rng = np.random.default_rng(0)
    columns = [f"{prefix}{head}_{kind}" for prefix in ("", "val_") for head in HEADS for kind in ("loss",)]
    columns += [f"{prefix}age_mae" for prefix in ("", "val_")]
    columns += [f"{prefix}{head}_accuracy" for prefix in ("", "val_") for head in ("gender", "race")]
    columns += [f"{head}_weight" for head in HEADS]
    frame = pd.DataFrame(rng.uniform(0.01, 2, (epochs, len(columns))), columns=columns)
    frame["score"] = np.linspace(0.9, 0.3, epochs)
    frame["val_score"] = 0.4 + 0.1 * np.abs(np.arange(epochs) - epochs // 2)   # lowest in the middle, not at the end
    return frame


def test_training_curves_plot_each_heads_loss_and_metric():
    frame = history()
    figure = training_curves(frame)
    axes = figure.axes
    assert len(axes) == 7   # three heads x (loss, metric), and the selection score
    titles = [axis.get_title() for axis in axes]
    assert [t.split()[0] for t in titles[:3]] == list(HEADS) and all("loss" in t for t in titles[:3])
    for axis, head in zip(axes[:3], HEADS):
        training, validation = axis.get_lines()[:2]
        assert np.allclose(training.get_ydata(), frame[f"{head}_loss"])
        assert np.allclose(validation.get_ydata(), frame[f"val_{head}_loss"])
    assert np.allclose(axes[3].get_lines()[1].get_ydata(), frame["val_age_mae"])


def test_loss_weight_curves_plot_the_learned_weights():
    frame = history()
    lines = loss_weight_curves(frame).axes[0].get_lines()
    assert [line.get_label() for line in lines][:3] == list(HEADS)
    assert np.allclose(lines[1].get_ydata(), frame["gender_weight"])


def test_multitask_plot_has_one_bar_per_setting_per_head():
    table = pd.DataFrame({"age_mae": [8.0, 9.0], "gender_accuracy": [0.9, 0.8], "race_accuracy": [0.7, 0.75]},
                         index=["multi", "single"])
    figure = multitask_plot(table)
    heights = [[bar.get_height() for bar in axis.patches] for axis in figure.axes]
    assert heights == [[0.9, 0.8], [0.7, 0.75], [8.0, 9.0]]


def test_experiments_plot_draws_each_candidates_interval():
    results = pd.DataFrame({"candidate": ["a", "b"], "seconds_per_epoch": [4.0, 8.0]})
    for metric, values in (("gender_accuracy", [0.7, 0.8]), ("race_accuracy", [0.6, 0.65]), ("age_mae", [9.0, 7.0])):
        results[metric] = values
        results[f"{metric}_low"], results[f"{metric}_high"] = np.subtract(values, 0.05), np.add(values, 0.1)
    figure = experiments_plot(results)
    for axis, metric in zip(figure.axes, ("gender_accuracy", "race_accuracy", "age_mae")):
        lines = [collection for collection in axis.collections if isinstance(collection, LineCollection)]
        ends = sorted((segment[0][1], segment[1][1]) for line in lines for segment in line.get_segments())
        assert np.allclose(ends, sorted(zip(results[f"{metric}_low"], results[f"{metric}_high"])))


def test_prediction_grid_frames_large_age_errors_as_well_as_label_mistakes(tmp_path):
    from matplotlib.colors import to_rgba
    from PIL import Image

    from faceattr.evaluate import LARGE_AGE_ERROR_YEARS
    from faceattr.plots import prediction_grid

    off = {"close": 1, "large": LARGE_AGE_ERROR_YEARS + 1, "at the limit": LARGE_AGE_ERROR_YEARS, "race wrong": 0}
    predictions = pd.DataFrame({"age": 30, "gender": 0, "race": 1, "pred_age": [30.0 + years for years in off.values()],
                                "pred_gender": 0, "pred_race": [1, 1, 1, 2]})
    paths = [tmp_path / f"{index}.jpg" for index in range(len(off))]
    for path in paths:
        Image.new("RGB", (8, 8), (90, 60, 30)).save(path)
    figure = prediction_grid(predictions, pd.Series(paths), rows=1, columns=len(off), seed=0)
    frame_by_title = {axis.get_title(): to_rgba(axis.spines["top"].get_edgecolor()) for axis in figure.axes}
    frames = dict(zip(off, (frame_by_title[f"{30 + years} male {race}"]
                            for years, race in zip(off.values(), ("black", "black", "black", "asian")))))
    assert frames["large"] == to_rgba("darkorange"), "an age more than 10 years off is marked"
    assert frames["close"] == frames["at the limit"] == to_rgba("lightgrey"), "10 years off or less is not marked"
    assert frames["race wrong"] == to_rgba("crimson")


def test_age_error_plot_sets_each_bands_error_beside_that_bands_constant_answer():
    from faceattr.evaluate import mae_by_band
    from faceattr.labels import age_band

    predictions = pd.DataFrame({"age": [1, 2, 30, 34, 80], "pred_age": [5.0, 2.0, 31.0, 30.0, 60.0]})
    bands = mae_by_band(predictions)
    axis = age_error_plot(predictions, bands, constant_age=30).axes[1]
    assert np.allclose([bar.get_height() for bar in axis.patches], bands["age_mae"])
    marks = axis.collections[0].get_offsets()[:, 1]
    errors = (predictions["age"] - 30).abs()
    by_band = errors.groupby(predictions["age"].map(age_band)).mean()
    assert np.allclose(marks, by_band.reindex(bands.index))  # 30 years is a good guess at 30, a bad one at 80


def test_age_error_plot_names_each_bands_count_under_the_band_where_no_mark_covers_it():
    from faceattr.evaluate import mae_by_band

    predictions = pd.DataFrame({"age": [1, 2, 30, 34, 80], "pred_age": [5.0, 2.0, 31.0, 30.0, 60.0]})
    bands = mae_by_band(predictions)
    axis = age_error_plot(predictions, bands, constant_age=30).axes[1]
    assert [label.get_text() for label in axis.get_xticklabels()] == [f"{band}\nn={n}" for band, n in bands["n"].items()]
    assert not axis.texts   # no count drawn at a bar's top, where the baseline's mark could hide it


def test_training_curves_mark_the_kept_epoch_at_the_lowest_val_score():
    frame = history(epochs=6)
    kept = int(frame["val_score"].idxmin()) + 1
    assert kept != len(frame)
    axes = training_curves(frame).axes
    score_axis = next(axis for axis in axes if "val_score" in axis.get_title())
    lines = {line.get_label(): line for line in score_axis.get_lines()}
    assert np.allclose(lines["validation"].get_ydata(), frame["val_score"])
    star = next(line for label, line in lines.items() if label.startswith("kept:"))
    assert list(star.get_xdata()) == [kept] and list(star.get_ydata()) == [frame["val_score"].min()]
    for axis in axes:   # every panel shows where the kept epoch is
        assert [list(line.get_xdata()) for line in axis.get_lines() if line.get_label() == "kept epoch"] == [[kept, kept]]


def test_weight_settling_tells_a_settled_weight_from_a_rising_one():
    from faceattr.balance import weight_settling

    frame = pd.DataFrame({"age_weight": np.geomspace(100, 800, 9),                     # rising all along
                          "gender_weight": [2, 3, 3.8, 4.0, 4.02, 4.03, 4.03, 4.03, 4.03],   # moved, then stopped
                          "race_weight": np.geomspace(1.5, 1.2, 9)})                  # falling all along
    settling = weight_settling(frame)
    assert settling["verdict"].to_dict() == {"age": "still rising", "gender": "settled", "race": "still falling"}
    assert settling.loc["age", "share"] == pytest.approx(2 / 8)   # the last third of 8 equal steps (log scale)
    assert settling.loc["age", "from_epoch"] == 7
    assert settling.loc["age", "recent_factor"] == pytest.approx(800 / frame["age_weight"].iloc[6])
    assert set(weight_settling(frame.iloc[:3])["verdict"]) == {"too few epochs to tell"}


def test_loss_weight_curves_show_the_settling_reading():
    from faceattr.balance import weight_settling

    frame = history(epochs=6)
    frame["age_weight"] = np.geomspace(10, 100, 6)
    settling = weight_settling(frame)
    axis = loss_weight_curves(frame, settling).axes[0]
    labels = axis.get_legend_handles_labels()[1]
    assert "age: still rising" in labels
    shaded = [patch for patch in axis.patches if patch.get_label().startswith("epochs")]
    assert len(shaded) == 1 and shaded[0].get_x() == settling.loc["age", "from_epoch"]


def heat_images(figure):
    """The heat overlays of a figure: every image drawn with a colour map other than the face's."""
    return [image for axis in figure.axes for image in axis.get_images() if image.get_array().ndim == 2]


def test_heat_maps_have_a_colour_bar_and_a_perceptually_uniform_map():
    from faceattr.plots import heatmap_row   # the figure of `faceattr explain`; notebook 08 draws with heat_grid

    face = np.full((16, 16, 3), 120.0)
    maps = {head: np.linspace(0, 1, 256).reshape(16, 16) for head in HEADS}
    figure = heatmap_row(face, maps, {head: head for head in HEADS})
    overlays = heat_images(figure)
    assert len(overlays) == 3
    assert {image.get_cmap().name for image in overlays} <= {"viridis", "magma", "inferno", "plasma", "cividis"}
    assert all(image.get_clim() == (0, 1) for image in overlays)
    bars = [axis for axis in figure.axes if not axis.get_images()]   # the face and three maps, then the bar
    assert len(figure.axes) == 5 and len(bars) == 1, "one colour bar, read by every map"
    assert "heat" in bars[0].get_ylabel()
    assert bars[0].get_ylim() == (0, 1)


def test_heat_grid_draws_the_cue_over_the_heat_with_a_legend():
    from faceattr.plots import HeatPanel, heat_grid

    face = np.zeros((16, 16, 3))
    face[:2, :2] = (255, 0, 0)   # a planted red square
    heat = np.zeros((16, 16))
    heat[:4, :4] = 1.0           # red-hot on the square itself
    figure = heat_grid([[HeatPanel(face, None, "face"), HeatPanel(face, heat, "race")]],
                       {"planted square": (0, 0, 2), "corner measured": (0, 0, 4)})
    plain, hot = figure.axes[:2]
    assert not plain.patches, "the face alone carries no outline"
    overlay = heat_images(figure)[0]
    outlines = [patch for patch in hot.patches if patch.get_label() == "planted square"]
    assert len(outlines) == 1 and outlines[0].zorder > overlay.zorder   # drawn over the heat
    assert (outlines[0].get_x(), outlines[0].get_y(), outlines[0].get_width()) == (-0.5, -0.5, 2)
    edge = outlines[0].get_edgecolor()[:3]
    hottest = overlay.get_cmap()(1.0)[:3]
    assert np.abs(np.subtract(edge, hottest)).sum() > 0.8, "the outline's colour stands out from the hottest heat"
    assert np.abs(np.subtract(edge, (1, 0, 0))).sum() > 0.8, "and from the red square"
    assert [text.get_text() for text in figure.legends[0].get_texts()] == ["planted square", "corner measured"]


def error_bar_ends(axis) -> list[tuple[float, float]]:
    """The (low, high) ends of each vertical error bar on `axis`."""
    lines = [collection for collection in axis.collections if isinstance(collection, LineCollection)]
    return [(float(segment[0][1]), float(segment[1][1])) for line in lines for segment in line.get_segments()]


def test_group_accuracy_plot_gives_19_of_19_its_wilson_interval_not_zero_width():
    from faceattr.plots import group_accuracy_plot

    predictions = pd.DataFrame({"race_name": ["others"] * 19 + ["white"] * 10,
                                "race": [4] * 19 + [0] * 10, "pred_race": [4] * 19 + [0] * 6 + [1] * 4})
    axis = group_accuracy_plot(predictions, heads=("race",)).axes[0]
    assert [bar.get_height() for bar in axis.patches] == [0.6, 1.0]   # white, then others (RACE_NAMES order)
    white, others = error_bar_ends(axis)
    assert others == pytest.approx((0.8318, 1.0), abs=1e-4)   # Wilson's 95% interval for 19 of 19, as in notebook 05
    assert white == pytest.approx((0.3127, 0.8318), abs=1e-4)


def test_multitask_plot_draws_each_bars_interval():
    table = pd.DataFrame({"age_mae": [8.0, 9.0], "gender_accuracy": [0.9, 0.8], "race_accuracy": [0.7, 0.75]},
                         index=["multi", "single"])
    for metric in ("age_mae", "gender_accuracy", "race_accuracy"):
        table[f"{metric}_low"], table[f"{metric}_high"] = table[metric] * 0.9, table[metric] * 1.05
    figure = multitask_plot(table)
    for axis, metric in zip(figure.axes, ("gender_accuracy", "race_accuracy", "age_mae")):
        assert np.allclose(error_bar_ends(axis), list(zip(table[f"{metric}_low"], table[f"{metric}_high"])))


class Scripted:
    """A stand-in model whose one weight is the share of images it gets right (and the age error, in years)."""

    def __init__(self):
        self.weight = [np.array(0.0)]

    def get_weights(self):
        return list(self.weight)

    def set_weights(self, weights):
        self.weight = list(weights)

    def __call__(self, images, training=False):
        right = np.arange(len(images)) < float(self.weight[0]) * len(images)
        race = np.where(right, 4, 0)
        return {"race": np.eye(5)[race], "age": (30 + float(self.weight[0]) * np.arange(len(images)) % 3)[:, None]}


def test_metric_interval_scores_the_given_weights_and_puts_the_models_back():
    from faceattr.evaluate import age_metrics, metric_interval, wilson_interval

    model = Scripted()
    data = [(np.zeros((19, 2)), {"race": np.full(19, 4), "age": np.full(19, 30.0)})]
    assert metric_interval(model, [np.array(1.0)], data, "race") == pytest.approx(wilson_interval(19, 19))
    assert model.get_weights() == [np.array(0.0)], "the model's own weights are back"
    assert metric_interval(model, [np.array(0.5)], data, "race") == pytest.approx(wilson_interval(10, 19))
    ages = model(np.zeros((19, 2)))["age"]   # the weight 0: every age right
    assert metric_interval(model, [np.array(2.0)], data, "age") == pytest.approx(
        age_metrics(np.full(19, 30.0), (30 + 2.0 * np.arange(19) % 3))["mae_ci95"])
    assert np.allclose(ages, 30)


@pytest.mark.trains
def test_each_epochs_kept_weights_score_again_to_the_accuracy_and_mae_that_epoch_logged(sample_dir):
    import keras

    from faceattr.data import scan, split_frame
    from faceattr.evaluate import Z_95, metric_interval, wilson_interval
    from faceattr.model import build_model
    from faceattr.pipeline import split_datasets
    from faceattr.train import compile_model, timed_fit

    keras.utils.set_random_seed(0)
    split = split_frame(scan(sample_dir, cache=False).frame, seed=0)
    datasets = split_datasets(split, image_size=32, batch_size=32)
    model = compile_model(build_model(image_size=32, trunk_filters=(8,)), learning_rate=3e-3)
    kept = []
    snapshot = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: kept.append(model.get_weights()))
    history = timed_fit(model, datasets["train"], datasets["validation"], 2, extra_callbacks=[snapshot])
    assert len(kept) == 2 and history["val_age_mae"].nunique() == 2   # the two epochs score differently
    last = model.get_weights()
    n = int((split["split"] == "validation").sum())
    for epoch, row in history.iterrows():
        correct = round(row["val_race_accuracy"] * n)
        assert metric_interval(model, kept[epoch], datasets["validation"], "race") == pytest.approx(
            wilson_interval(correct, n))
        low, high = metric_interval(model, kept[epoch], datasets["validation"], "age")
        assert (low + high) / 2 == pytest.approx(row["val_age_mae"], rel=1e-4)   # centred on the logged MAE
        assert 0 < high - low < 2 * Z_95 * row["val_age_mae"]
    assert all(np.array_equal(now, before) for now, before in zip(model.get_weights(), last))
