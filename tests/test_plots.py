"""Figures show what the lessons say they show: per-head losses, learned weights, metric baselines."""

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
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
    return pd.DataFrame(rng.uniform(0.01, 2, (epochs, len(columns))), columns=columns)


def test_training_curves_plot_each_heads_loss_and_metric():
    frame = history()
    figure = training_curves(frame)
    axes = figure.axes
    assert len(axes) == 6
    titles = [axis.get_title() for axis in axes]
    assert [t.split()[0] for t in titles[:3]] == list(HEADS) and all("loss" in t for t in titles[:3])
    for axis, head in zip(axes[:3], HEADS):
        training, validation = axis.get_lines()
        assert np.allclose(training.get_ydata(), frame[f"{head}_loss"])
        assert np.allclose(validation.get_ydata(), frame[f"val_{head}_loss"])
    assert np.allclose(axes[3].get_lines()[1].get_ydata(), frame["val_age_mae"])


def test_loss_weight_curves_plot_the_learned_weights():
    frame = history()
    lines = loss_weight_curves(frame).axes[0].get_lines()
    assert [line.get_label() for line in lines] == list(HEADS)
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
