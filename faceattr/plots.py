"""Plotting helpers for the notebooks ("extra code": students can skip reading these)."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.cm import ScalarMappable
from matplotlib.image import AxesImage
from matplotlib.patches import Rectangle
from PIL import Image

from faceattr.evaluate import LARGE_AGE_ERROR_YEARS, accuracy_by_group, mae_by_band, mistakes
from faceattr.labels import AGE_BAND_EDGES, AGE_BAND_NAMES, AGE_MAX, AGE_MIN, GENDER_NAMES, RACE_NAMES
from faceattr.runs import RunFolder
from faceattr.sample import DEFAULT_PROFILE, typical_face


def set_style() -> None:
    """Readable plot defaults for every notebook."""
    sns.set_theme(style="whitegrid", context="notebook")
    plt.rcParams.update({"figure.dpi": 90, "savefig.dpi": 110, "figure.autolayout": True})


def save_figure(figure: plt.Figure, run_dir: str | Path, name: str) -> Path:
    """Save `figure` as RUN_DIR/figures/NAME.png (atomically, recorded in the run folder's manifest) and return
    the path."""
    run = RunFolder(run_dir)
    return run.write(run.figures / f"{name}.png", lambda temporary: figure.savefig(temporary, bbox_inches="tight"))


def race_gender_counts(frame: pd.DataFrame) -> plt.Figure:
    """Bar plot of images per race, split by gender, with the count on each bar."""
    figure, axis = plt.subplots(figsize=(8, 4))
    sns.countplot(data=frame, x="race_name", hue="gender_name", order=list(RACE_NAMES),
                  hue_order=list(GENDER_NAMES), ax=axis)
    for bars in axis.containers:
        axis.bar_label(bars, fontsize=9)
    axis.set(xlabel="race (annotated)", ylabel="images", title="Images per race and gender")
    axis.legend(title="gender (annotated)")
    return figure


def age_histograms(frame: pd.DataFrame) -> plt.Figure:
    """Age histogram per gender, two-year bins."""
    figure, axis = plt.subplots(figsize=(8, 4))
    sns.histplot(data=frame, x="age", hue="gender_name", hue_order=list(GENDER_NAMES), binwidth=2,
                 element="step", ax=axis)
    axis.set(xlabel="age (years, annotated)", ylabel="images", title="Age distribution by gender")
    axis.get_legend().set_title("gender (annotated)")
    return figure


def face_montage(frame: pd.DataFrame, count: int = 16, columns: int = 8, seed: int = 0) -> plt.Figure:
    """A grid of random faces titled with their labels."""
    rows = frame.sample(min(count, len(frame)), random_state=seed)
    figure, axes = plt.subplots(int(np.ceil(len(rows) / columns)), columns, figsize=(columns * 1.5, 1.8 * len(rows) / columns))
    for axis, (_, row) in zip(np.ravel(axes), rows.iterrows()):
        with Image.open(row["path"]) as image:
            axis.imshow(image.convert("RGB"))
        axis.set_title(f"{row['age']} {row['gender_name']}\n{row['race_name']}", fontsize=8)
    for axis in np.ravel(axes):
        axis.axis("off")
    return figure


CURVE_METRICS = (("age", "age_mae", "age MAE (years, lower is better)"),
                 ("gender", "gender_accuracy", "gender accuracy (higher is better)"),
                 ("race", "race_accuracy", "race accuracy (higher is better)"))


def kept_epoch(history: pd.DataFrame) -> int:
    """The kept epoch, counted from 1: the first with the lowest `val_score` (what the checkpoint keeps)."""
    return int(np.argmin(history["val_score"].to_numpy())) + 1


def mark_kept_epoch(axis: plt.Axes, epoch: int) -> None:
    """A dotted vertical line at the kept epoch."""
    axis.axvline(epoch, color="dimgrey", linestyle=":", linewidth=1.5, label="kept epoch", zorder=1)


def epoch_axis(axis: plt.Axes, epochs: int) -> None:
    """Whole epochs 1..`epochs` on the x axis, with half an epoch of room at each end."""
    axis.set_xlim(0.5, epochs + 0.5)
    axis.xaxis.get_major_locator().set_params(integer=True)


def training_curves(history: pd.DataFrame) -> plt.Figure:
    """Per head: its unweighted training and validation loss (top row) and its metric (bottom row); on the right,
    the selection score with the kept epoch (the lowest `val_score`) starred. A dotted line marks that epoch in
    every panel."""
    figure = plt.figure(figsize=(15, 6.5))
    grid = figure.add_gridspec(2, 4, width_ratios=[1, 1, 1, 1.15])
    axes = np.array([[figure.add_subplot(grid[row, column]) for column in range(3)] for row in range(2)])
    epochs = np.arange(1, len(history) + 1)
    kept = kept_epoch(history)
    for column, (head, metric, label) in enumerate(CURVE_METRICS):
        for row, (key, title) in enumerate(((f"{head}_loss", f"{head} loss (unweighted, lower is better)"),
                                            (metric, label))):
            axis = axes[row, column]
            axis.plot(epochs, history[key], marker="o", label="training")
            axis.plot(epochs, history[f"val_{key}"], marker="o", label="validation")
            mark_kept_epoch(axis, kept)
            axis.set(title=title, xlabel="epoch" if row else None)
    score_axis = figure.add_subplot(grid[:, 3])
    score_axis.plot(epochs, history["score"], marker="o", label="training")
    score_axis.plot(epochs, history["val_score"], marker="o", label="validation")
    mark_kept_epoch(score_axis, kept)
    score_axis.plot([kept], [history["val_score"].iloc[kept - 1]], marker="*", markersize=18, color="crimson",
                    linestyle="none", label=f"kept: epoch {kept}, the lowest val_score", zorder=3)
    score_axis.axhline(1, color="grey", linestyle="--", linewidth=1, label="guessing (1)")
    score_axis.set(title="score: error / guessing's error, mean of the heads\n(val_score picks the kept epoch; "
                         "lower is better)", xlabel="epoch", ylim=(0, None))
    score_axis.title.set_fontsize(10)
    score_axis.legend(fontsize=9)
    axes[0, 0].legend(title="split", fontsize=9)
    for axis in figure.axes:
        epoch_axis(axis, len(history))
    figure.suptitle("Each head's loss is on its own scale: compare shapes, not heights. Dotted: the kept epoch",
                    fontsize=11)
    return figure


def loss_weight_curves(history: pd.DataFrame, settling: pd.DataFrame | None = None) -> plt.Figure:
    """The learned weight exp(-s) of each head's loss per epoch (uncertainty weighting), on a log scale; with
    `settling` (`faceattr.balance.weight_settling`), the last epochs it reads are shaded and each head's legend
    entry says whether its weight has settled."""
    figure, axis = plt.subplots(figsize=(9, 4))
    epochs = np.arange(1, len(history) + 1)
    for head, _metric, _label in CURVE_METRICS:
        label = head if settling is None else f"{head}: {settling.loc[head, 'verdict']}"
        axis.plot(epochs, history[f"{head}_weight"], marker="o", label=label)
    if "val_score" in history:
        mark_kept_epoch(axis, kept_epoch(history))
    if settling is not None and settling["from_epoch"].notna().all():
        start = int(settling["from_epoch"].iloc[0])
        axis.axvspan(start, len(history), color="gold", alpha=0.25,
                     label=f"epochs {start} to {len(history)}: the recent move,\nset against the whole move")
    axis.set(yscale="log", xlabel="epoch", ylabel="weight of the head's loss (log scale)",
             title="Learned loss weights (uncertainty weighting)")
    epoch_axis(axis, len(history))
    axis.legend(title="head", fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1))
    return figure


def confusion_heatmaps(matrices: dict[str, pd.DataFrame]) -> plt.Figure:
    """Row-normalised confusion matrices for gender and race, with counts annotated."""
    figure, axes = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [1, 1.8]})
    for axis, (head, matrix) in zip(axes, matrices.items()):
        shares = matrix.div(matrix.sum(axis=1).replace(0, 1), axis=0)
        sns.heatmap(shares, annot=matrix, fmt="d", cmap="Blues", vmin=0, vmax=1, cbar=False, ax=axis)
        axis.set(title=f"{head}: counts, coloured by share of the true class",
                 xlabel=f"predicted {head}", ylabel=f"annotated {head} (truth)")
    return figure


def age_error_plot(predictions: pd.DataFrame, band_table: pd.DataFrame, constant_age: float | None = None) -> plt.Figure:
    """Predicted against annotated age (the diagonal is perfect), and the age MAE per true age band as bars, each
    beside the MAE that always answering `constant_age` (say the median training age) gets in that band."""
    figure, (scatter_axis, bar_axis) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [1, 1.4]})
    scatter_axis.scatter(predictions["age"], predictions["pred_age"], s=10, alpha=0.5)
    top = float(max(predictions["age"].max(), predictions["pred_age"].max()))
    scatter_axis.plot([0, top], [0, top], color="grey", linestyle="--", label="perfect prediction")
    scatter_axis.set(xlabel="annotated age (years)", ylabel="predicted age (years)", title="Every test face")
    scatter_axis.legend(title="reference", fontsize=9, title_fontsize=9)
    bar_axis.bar(range(len(band_table)), band_table["age_mae"], color="tab:blue", label="the model")
    bar_axis.set_xticks(range(len(band_table)),   # each band's count under its name, where no mark can cover it
                        [f"{band}\nn={count}" for band, count in zip(band_table.index, band_table["n"])])
    if constant_age is not None:
        constant = mae_by_band(predictions.assign(pred_age=constant_age)).reindex(band_table.index)["age_mae"]
        bar_axis.scatter(range(len(band_table)), constant, marker="_", s=600, linewidths=3, color="crimson", zorder=3,
                         label=f"always {constant_age:.0f} years")
    bar_axis.set(xlabel="annotated age band (years)", ylabel="age MAE (years, lower is better)",
                 title="Mean absolute age error per band")
    bar_axis.legend(title="age MAE of", fontsize=9, title_fontsize=9)
    return figure


MISTAKE_COLOURS = {"gender or race wrong": "crimson",
                   f"age off by more than {LARGE_AGE_ERROR_YEARS} years": "darkorange",
                   f"all right (age within {LARGE_AGE_ERROR_YEARS} years)": "lightgrey"}


def prediction_grid(predictions: pd.DataFrame, paths: pd.Series, rows: int = 6, columns: int = 5,
                    seed: int = 0) -> plt.Figure:
    """Faces with predicted age/gender/race as title and the truth below; gender or race mistakes framed in red,
    ages more than LARGE_AGE_ERROR_YEARS off in orange."""
    chosen = predictions.assign(path=list(paths)).sample(min(rows * columns, len(predictions)), random_state=seed)
    wrong = mistakes(chosen)
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 2.2, rows * 2.6), squeeze=False)
    for axis in np.ravel(axes):
        axis.axis("off")
    label_wrong, age_wrong, right = MISTAKE_COLOURS
    for axis, (index, row) in zip(np.ravel(axes), chosen.iterrows()):
        with Image.open(row["path"]) as image:
            axis.imshow(image.convert("RGB"))
        kind = (label_wrong if wrong.at[index, "gender_wrong"] or wrong.at[index, "race_wrong"]
                else age_wrong if wrong.at[index, "age_wrong"] else right)
        colour = MISTAKE_COLOURS[kind]
        axis.set_title(f"{row['pred_age']:.0f} {GENDER_NAMES[row['pred_gender']]} {RACE_NAMES[row['pred_race']]}",
                       fontsize=9, color="black" if kind == right else colour)
        axis.axis("on")
        axis.set_xticks([])
        axis.set_yticks([])
        off = f" ({row['pred_age'] - row['age']:+.0f} y)" if wrong.at[index, "age_wrong"] else ""
        axis.set_xlabel(f"truth: {row['age']}{off} {GENDER_NAMES[row['gender']]} {RACE_NAMES[row['race']]}",
                        fontsize=8, color=MISTAKE_COLOURS[age_wrong] if off else "black")
        for spine in axis.spines.values():
            spine.set(color=colour, linewidth=1 if kind == right else 3)
    handles = [plt.Rectangle((0, 0), 1, 1, fill=False, edgecolor=colour, linewidth=3) for colour in MISTAKE_COLOURS.values()]
    figure.legend(handles, list(MISTAKE_COLOURS), title="frame", loc="lower center", ncol=3, fontsize=9,
                  title_fontsize=9, bbox_to_anchor=(0.5, -0.02))
    figure.suptitle("Predicted (title) vs annotated (below, age in years)", fontsize=11)
    return figure


EXPERIMENT_METRICS = (("gender_accuracy", "gender accuracy (higher is better)"),
                      ("race_accuracy", "race accuracy (higher is better)"),
                      ("age_mae", "age MAE in years (lower is better)"))


def experiments_plot(results: pd.DataFrame) -> plt.Figure:
    """Validation accuracy and age MAE against seconds per epoch, one point per candidate, with its 95% interval
    where `results` has `METRIC_low` and `METRIC_high` columns."""
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    colours = dict(zip(results["candidate"], sns.color_palette(n_colors=len(results))))
    for axis, (metric, label) in zip(axes, EXPERIMENT_METRICS):
        if f"{metric}_low" in results:
            for row in results.itertuples():
                value, low, high = (getattr(row, f"{metric}{end}") for end in ("", "_low", "_high"))
                axis.errorbar(row.seconds_per_epoch, value, yerr=[[value - low], [high - value]], capsize=3,
                              color=colours[row.candidate], alpha=0.6)
        sns.scatterplot(data=results, x="seconds_per_epoch", y=metric, hue="candidate", palette=colours, s=90,
                        ax=axis, legend=axis is axes[0])
        axis.set(title=label, xlabel="seconds per epoch", ylabel=None)
    axes[0].legend(title="candidate", fontsize=8)
    return figure


def interval_errors(table: pd.DataFrame, metric: str) -> np.ndarray | None:
    """Error-bar lengths below and above each row's `metric`, from its `METRIC_low` and `METRIC_high` columns
    (None when `table` has none)."""
    if f"{metric}_low" not in table:
        return None
    return np.clip([table[metric] - table[f"{metric}_low"], table[f"{metric}_high"] - table[metric]], 0, None)


def multitask_plot(table: pd.DataFrame) -> plt.Figure:
    """One bar per setting (rows of `table`) for each head's validation metric, with its 95% interval where
    `table` has `METRIC_low` and `METRIC_high` columns."""
    figure, axes = plt.subplots(1, 3, figsize=(13, 4))
    for axis, (metric, label) in zip(axes, EXPERIMENT_METRICS):
        bars = axis.bar(range(len(table)), table[metric], color=sns.color_palette(n_colors=len(table)),
                        yerr=interval_errors(table, metric), capsize=5, ecolor="black")
        axis.set_xticks(range(len(table)), table.index, rotation=15, ha="right", fontsize=8)
        axis.bar_label(bars, fmt="%.3g", fontsize=8, label_type="center", color="white", fontweight="bold")
        axis.set(title=label)
    with_intervals = f"{EXPERIMENT_METRICS[0][0]}_low" in table
    figure.suptitle("One multi-task model against three single-head models (validation split)"
                    + (": 95% intervals over the validation images (Wilson for accuracies, normal for the MAE)"
                       if with_intervals else ""), fontsize=11)
    return figure


def group_accuracy_plot(predictions: pd.DataFrame, heads: tuple[str, ...] = ("race", "gender"),
                        by: str = "race_name") -> plt.Figure:
    """Each head's accuracy per group of `by` (`faceattr.evaluate.accuracy_by_group`), with its 95% Wilson
    interval and n on each bar, beside the accuracy over all rows."""
    figure, axes = plt.subplots(1, len(heads), figsize=(5 * len(heads), 3.6), sharey=True, squeeze=False)
    group = by.removesuffix("_name")
    for axis, head in zip(axes[0], heads):
        table = accuracy_by_group(predictions, head, by)
        bars = axis.bar(table.index, table["accuracy"], color="tab:blue", capsize=5, ecolor="black",
                        yerr=interval_errors(table.rename(columns={"ci_low": "accuracy_low", "ci_high": "accuracy_high"}),
                                             "accuracy"))
        axis.bar_label(bars, labels=[f"{correct}/{n}" for correct, n in zip(table["correct"], table["n"])],
                       label_type="center", fontsize=8, color="white", fontweight="bold")
        overall = float((predictions[head] == predictions[f"pred_{head}"]).mean())
        axis.axhline(overall, color="grey", linestyle="--", label=f"all rows ({overall:.0%})")
        axis.set(title=f"{head} accuracy by {group}, 95% Wilson interval", xlabel=f"{group} (annotated)",
                 ylim=(0, 1.05))
        axis.title.set_fontsize(10)
        axis.legend(loc="lower left", fontsize=8)
    axes[0, 0].set_ylabel("accuracy (higher is better)")
    return figure


HEAT_COLOURS = "magma"       # perceptually uniform: equal steps in heat look equal, and it reads in grey too
HEAT_ALPHA = 0.5             # how strongly a heat map covers the face under it
CUE_COLOURS = ("cyan", "white")   # outlines drawn over the heat: neither colour occurs in magma
HEAT_LABEL = "heat (each map scaled to its own maximum, 1)"


class HeatPanel(NamedTuple):
    """One panel of a heat grid: a face, the heat map over it (None: the face alone) and a title."""

    image: np.ndarray
    heat: np.ndarray | None
    title: str = ""


def draw_heat(axis: plt.Axes, image: np.ndarray, heat: np.ndarray | None) -> AxesImage | None:
    """The face, and its heat map (0..1, at the image's size) over it in HEAT_COLOURS."""
    axis.imshow(image.astype("uint8"))
    axis.set_axis_off()
    if heat is None:
        return None
    return axis.imshow(heat, cmap=HEAT_COLOURS, alpha=HEAT_ALPHA, vmin=0, vmax=1)


def outline_box(axis: plt.Axes, box: tuple[int, int, int], style: int = 0, label: str | None = None) -> None:
    """Outline the square `box` = (top, left, side), in pixels, over whatever the axis shows."""
    top, left, side = box
    axis.add_patch(Rectangle((left - 0.5, top - 0.5), side, side, fill=False, edgecolor=CUE_COLOURS[style % 2],
                             linewidth=1.8, linestyle=("-", "--")[style % 2], label=label, zorder=4))


def heat_grid(panels: list[list[HeatPanel]], boxes: dict[str, tuple[int, int, int]] | None = None,
              title: str = "") -> plt.Figure:
    """Rows of faces with their heat maps over them, one shared colour bar, and each of `boxes` (label: (top,
    left, side) in pixels) outlined over the heat of every panel, with a legend."""
    rows, columns = len(panels), max(len(row) for row in panels)
    figure, axes = plt.subplots(rows, columns, figsize=(2.2 * columns + 1.2, 2.3 * rows + 0.6), squeeze=False,
                                layout="constrained")
    shown = None
    for axis_row, row in zip(axes, panels):
        for axis, panel in zip(axis_row, row):
            shown = draw_heat(axis, panel.image, panel.heat) or shown
            axis.set_title(panel.title, fontsize=8)
            for style, (label, box) in enumerate((boxes or {}).items()):
                if panel.heat is not None:
                    outline_box(axis, box, style, label)
        for axis in axis_row[len(row):]:
            axis.set_axis_off()
    if shown is not None:   # the bar is drawn opaque: the map's own colours, before they are laid over a face
        figure.colorbar(ScalarMappable(shown.norm, HEAT_COLOURS), ax=axes, label=HEAT_LABEL, fraction=0.04, shrink=0.8)
    if boxes:
        handles = [Rectangle((0, 0), 1, 1, fill=False, edgecolor=CUE_COLOURS[style % 2], linewidth=1.8,
                             linestyle=("-", "--")[style % 2]) for style in range(len(boxes))]
        figure.legend(handles, list(boxes), loc="outside lower center", ncol=len(boxes), fontsize=8,
                      facecolor="dimgrey", labelcolor="white", framealpha=1)
    if title:
        figure.suptitle(title, fontsize=10)
    return figure


def heatmap_row(image: np.ndarray, maps: dict[str, np.ndarray], titles: dict[str, str],
                suptitle: str = "") -> plt.Figure:
    """The face, then each head's heat map (0..1, already at the image's size) laid over it, side by side."""
    panels = [HeatPanel(image, None, "face")] + [HeatPanel(image, maps[head], titles[head]) for head in maps]
    figure = heat_grid([panels], title=suptitle)
    return figure


def band_ages() -> list[int]:
    """One age per age band, its middle (the open last band: the middle of 70 to AGE_MAX)."""
    highs = list(AGE_BAND_EDGES[1:]) + [AGE_MAX + 1]
    return [max(AGE_MIN, (low + high - 1) // 2) for low, high in zip(AGE_BAND_EDGES, highs)]


def sample_cues(profile: str = DEFAULT_PROFILE, gender: int = 1) -> plt.Figure:
    """The synthetic sample's cues: the typical face it draws per race (rows) and age band (columns)."""
    ages = band_ages()
    figure, axes = plt.subplots(len(RACE_NAMES), len(ages), figsize=(len(ages) * 0.95, len(RACE_NAMES) * 1.05))
    for row, race_name in enumerate(RACE_NAMES):
        for column, age in enumerate(ages):
            axis = axes[row, column]
            axis.imshow(typical_face(age, gender, row, profile))
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(f"{AGE_BAND_NAMES[column]}\n(age {age})", fontsize=8)
            if column == 0:
                axis.set_ylabel(race_name, fontsize=9)
    figure.suptitle(f"Typical {GENDER_NAMES[gender]} faces of the '{profile}' sample: every draw at its likeliest "
                    "value\n(no noise, no borrowed skin tone)", fontsize=10)
    return figure
