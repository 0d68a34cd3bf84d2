"""Plotting helpers for the notebooks ("extra code": students can skip reading these)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from PIL import Image

from faceattr.evaluate import LARGE_AGE_ERROR_YEARS, mae_by_band, mistakes
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


def training_curves(history: pd.DataFrame) -> plt.Figure:
    """Per head: its unweighted training and validation loss (top row) and its metric (bottom row)."""
    figure, axes = plt.subplots(2, 3, figsize=(12, 6.5), sharex=True)
    epochs = np.arange(1, len(history) + 1)
    for column, (head, metric, label) in enumerate(CURVE_METRICS):
        for row, (key, title) in enumerate(((f"{head}_loss", f"{head} loss (unweighted, lower is better)"),
                                            (metric, label))):
            axis = axes[row, column]
            axis.plot(epochs, history[key], marker="o", label="training")
            axis.plot(epochs, history[f"val_{key}"], marker="o", label="validation")
            axis.set(title=title, xlabel="epoch" if row else None)
    axes[0, 0].legend(title="split")
    figure.suptitle("Each head's loss is on its own scale: compare shapes, not heights", fontsize=11)
    return figure


def loss_weight_curves(history: pd.DataFrame) -> plt.Figure:
    """The learned weight exp(-s) of each head's loss per epoch (uncertainty weighting), on a log scale."""
    figure, axis = plt.subplots(figsize=(6, 3.5))
    epochs = np.arange(1, len(history) + 1)
    for head, _metric, _label in CURVE_METRICS:
        axis.plot(epochs, history[f"{head}_weight"], marker="o", label=head)
    axis.set(yscale="log", xlabel="epoch", ylabel="weight of the head's loss (log scale)",
             title="Learned loss weights (uncertainty weighting)")
    axis.legend(title="head")
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
    bars = bar_axis.bar(range(len(band_table)), band_table["age_mae"], color="tab:blue", label="the model")
    bar_axis.bar_label(bars, labels=[f"n={count}" for count in band_table["n"]], fontsize=8)
    bar_axis.set_xticks(range(len(band_table)), band_table.index)
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


def multitask_plot(table: pd.DataFrame) -> plt.Figure:
    """One bar per setting (rows of `table`) for each head's validation metric."""
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for axis, (metric, label) in zip(axes, EXPERIMENT_METRICS):
        axis.bar(range(len(table)), table[metric], color=sns.color_palette(n_colors=len(table)))
        axis.set_xticks(range(len(table)), table.index, rotation=15, ha="right", fontsize=8)
        axis.bar_label(axis.containers[0], fmt="%.3g", fontsize=8)
        axis.set(title=label)
    figure.suptitle("One multi-task model against three single-head models (validation split)", fontsize=11)
    return figure


def heatmap_row(image: np.ndarray, maps: dict[str, np.ndarray], titles: dict[str, str],
                suptitle: str = "") -> plt.Figure:
    """The face, then each head's heat map (already at the image's size) laid over it, side by side."""
    figure, axes = plt.subplots(1, 1 + len(maps), figsize=(2.4 * (1 + len(maps)), 2.8))
    axes[0].imshow(image.astype("uint8"))
    axes[0].set_title("face", fontsize=9)
    for axis, (head, heatmap) in zip(axes[1:], maps.items()):
        axis.imshow(image.astype("uint8"))
        axis.imshow(heatmap, cmap="jet", alpha=0.45, vmin=0, vmax=max(float(heatmap.max()), 1e-9))
        axis.set_title(titles[head], fontsize=9)
    for axis in axes:
        axis.set_axis_off()
    if suptitle:
        figure.suptitle(suptitle, fontsize=9)
    figure.tight_layout()
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
