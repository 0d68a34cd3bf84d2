"""Evaluation on the whole test split: CIs, balanced accuracy, macro-F1, age by band, per group, the one rule
for whether a gap between groups is more than chance (`group_gap_test`), and the one rule for whether two models
scored on the same items differ (`paired_test`)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import balanced_accuracy_score, classification_report, confusion_matrix, f1_score

from faceattr.card import GAP_ALPHA, MIN_RANKED_GROUP
from faceattr.errors import DataError
from faceattr.labels import AGE_BAND_NAMES, GENDER_NAMES, RACE_NAMES, age_band
from faceattr.runs import RunFolder

Z_95 = 1.959964
LARGE_AGE_ERROR_YEARS = 10   # an age prediction further off than this counts as a mistake in the prediction grid
GAP_SHUFFLES = 1000   # shuffles of the group labels behind every gap test
GAP_SEED = 0          # the shuffles are fixed, so notebooks 05 and 09 and the model card read the same p-value
GAP_TOLERANCE = 1e-12  # a shuffled gap within float round-off of the observed one counts as "as large"


def wilson_interval(correct: int, total: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a proportion (95% by default); (nan, nan) when total is 0."""
    if total == 0:
        return (math.nan, math.nan)
    share = correct / total
    centre = (share + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(share * (1 - share) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return (max(0.0, centre - half), min(1.0, centre + half))


def predictions_frame(frame: pd.DataFrame, outputs: dict[str, np.ndarray]) -> pd.DataFrame:
    """Join model outputs (age in years, class probabilities) onto the rows they came from."""
    result = frame[["file", "age", "gender", "race"]].reset_index(drop=True).copy()
    result["pred_age"] = np.asarray(outputs["age"]).reshape(-1)
    result["pred_gender"] = np.asarray(outputs["gender"]).argmax(axis=1)
    result["pred_race"] = np.asarray(outputs["race"]).argmax(axis=1)
    for index, name in enumerate(GENDER_NAMES):
        result[f"prob_gender_{name}"] = np.asarray(outputs["gender"])[:, index]
    for index, name in enumerate(RACE_NAMES):
        result[f"prob_race_{name}"] = np.asarray(outputs["race"])[:, index]
    result["gender_name"] = [GENDER_NAMES[i] for i in result["gender"]]
    result["race_name"] = [RACE_NAMES[i] for i in result["race"]]
    return result


def classification_metrics(truth: np.ndarray, predicted: np.ndarray, classes: int) -> dict[str, float]:
    """Accuracy with its 95% CI, balanced accuracy and macro-F1 (over all `classes`); NaN for no rows."""
    correct = int((truth == predicted).sum())
    low, high = wilson_interval(correct, len(truth))
    if not len(truth):
        return {"accuracy": math.nan, "accuracy_ci95": [low, high], "balanced_accuracy": math.nan, "macro_f1": math.nan}
    return {
        "accuracy": correct / len(truth),
        "accuracy_ci95": [low, high],
        "balanced_accuracy": float(balanced_accuracy_score(truth, predicted)),
        "macro_f1": float(f1_score(truth, predicted, average="macro", labels=list(range(classes)),
                                   zero_division=0)),
    }


def age_metrics(true_age: np.ndarray, predicted_age: np.ndarray) -> dict[str, float]:
    """Mean absolute error in years (with a normal-approximation 95% CI) and age-band accuracy."""
    errors = np.abs(np.asarray(predicted_age, float) - np.asarray(true_age, float))
    spread = Z_95 * errors.std(ddof=1) / math.sqrt(len(errors)) if len(errors) > 1 else math.nan
    same_band = [age_band(t) == age_band(p) for t, p in zip(true_age, predicted_age)]
    return {"mae": float(errors.mean()), "mae_ci95": [float(errors.mean() - spread), float(errors.mean() + spread)],
            "band_accuracy": float(np.mean(same_band))}


def mae_by_band(predictions: pd.DataFrame) -> pd.DataFrame:
    """Age MAE and count for each true age band (0-2, 3-9, ..., 70+)."""
    bands = predictions["age"].map(age_band)
    errors = (predictions["pred_age"] - predictions["age"]).abs()
    table = errors.groupby(bands).agg(["count", "mean"]).rename(columns={"count": "n", "mean": "age_mae"})
    return table.reindex([b for b in AGE_BAND_NAMES if b in table.index])


def summary_metrics(predictions: pd.DataFrame) -> dict[str, float | int | list]:
    """The headline metrics of one set of predictions (all rows, never one batch)."""
    gender = classification_metrics(predictions["gender"].to_numpy(), predictions["pred_gender"].to_numpy(),
                                    len(GENDER_NAMES))
    race = classification_metrics(predictions["race"].to_numpy(), predictions["pred_race"].to_numpy(),
                                  len(RACE_NAMES))
    age = age_metrics(predictions["age"].to_numpy(), predictions["pred_age"].to_numpy())
    return {"n": int(len(predictions)),
            **{f"gender_{k}": v for k, v in gender.items()},
            **{f"race_{k}": v for k, v in race.items()},
            **{f"age_{k}": v for k, v in age.items()}}


def group_table(predictions: pd.DataFrame) -> pd.DataFrame:
    """Per race x gender group: n, gender and race accuracy with 95% CIs, and age MAE."""
    rows = []
    for (race_name, gender_name), group in predictions.groupby(["race_name", "gender_name"]):
        gender_correct = int((group["gender"] == group["pred_gender"]).sum())
        race_correct = int((group["race"] == group["pred_race"]).sum())
        gender_low, gender_high = wilson_interval(gender_correct, len(group))
        race_low, race_high = wilson_interval(race_correct, len(group))
        rows.append({"race": race_name, "gender": gender_name, "n": len(group),
                     "gender_accuracy": gender_correct / len(group), "gender_ci_low": gender_low,
                     "gender_ci_high": gender_high, "race_accuracy": race_correct / len(group),
                     "race_ci_low": race_low, "race_ci_high": race_high,
                     "age_mae": float((group["pred_age"] - group["age"]).abs().mean())})
    table = pd.DataFrame(rows)
    order = {name: i for i, name in enumerate(RACE_NAMES)} | {name: i for i, name in enumerate(GENDER_NAMES)}
    return table.sort_values(["race", "gender"], key=lambda column: column.map(order), ignore_index=True)


def accuracy_by_group(predictions: pd.DataFrame, head: str, by: str = "race_name") -> pd.DataFrame:
    """One head's accuracy in each group of the `by` column (races in RACE_NAMES order), with n, the count right
    and its 95% Wilson interval, which stays honest at 0 or n of n right."""
    rows = {}
    for name, group in predictions.groupby(by):
        correct = int((group[head] == group[f"pred_{head}"]).sum())
        low, high = wilson_interval(correct, len(group))
        rows[name] = {"n": len(group), "correct": correct, "accuracy": correct / len(group), "ci_low": low,
                      "ci_high": high}
    table = pd.DataFrame.from_dict(rows, orient="index")
    order = [name for name in (*RACE_NAMES, *GENDER_NAMES) if name in table.index]
    return table.reindex(order + [name for name in table.index if name not in order]).rename_axis(by.removesuffix("_name"))


def epoch_outputs(model, weights: list[np.ndarray], data, head: str) -> tuple[np.ndarray, np.ndarray]:
    """`head`'s targets and outputs on every image of `data` (batches of images and target dicts), in order, with
    the model's weights set to `weights` (say one epoch's, from `get_weights`). The model's own weights are put back."""
    own = model.get_weights()
    model.set_weights(weights)
    try:
        pairs = [(np.asarray(targets[head]), np.asarray(model(images, training=False)[head], float))
                 for images, targets in data]
    finally:
        model.set_weights(own)
    return np.concatenate([truth for truth, _ in pairs]), np.concatenate([output for _, output in pairs])


def output_scores(truth: np.ndarray, outputs: np.ndarray, head: str) -> np.ndarray:
    """Per image, from a head's targets and raw outputs: 1 where a class head's likeliest class is right, else 0;
    for age, the absolute error in years (as `head_scores` reads a predictions frame)."""
    if head == "age":
        return np.abs(outputs.reshape(-1) - np.asarray(truth, float))
    return (outputs.argmax(axis=1) == np.asarray(truth)).astype(float)


def metric_interval(model, weights: list[np.ndarray], data, head: str) -> tuple[float, float]:
    """The 95% interval of `head`'s metric on every image of `data` (batches of images and target dicts) with the
    model's weights set to `weights` (say one epoch's, from `get_weights`): Wilson for accuracy, normal for age MAE,
    as `summary_metrics` gives them. The model's own weights are put back."""
    truth, outputs = epoch_outputs(model, weights, data, head)
    if head == "age":
        return tuple(age_metrics(truth, outputs.reshape(-1))["mae_ci95"])
    return tuple(classification_metrics(truth, outputs.argmax(axis=1), outputs.shape[1])["accuracy_ci95"])


def mistakes(predictions: pd.DataFrame) -> pd.DataFrame:
    """Per row: gender wrong, race wrong, and age off by more than LARGE_AGE_ERROR_YEARS (boolean columns)."""
    return pd.DataFrame({"gender_wrong": predictions["pred_gender"] != predictions["gender"],
                         "race_wrong": predictions["pred_race"] != predictions["race"],
                         "age_wrong": (predictions["pred_age"] - predictions["age"]).abs() > LARGE_AGE_ERROR_YEARS},
                        index=predictions.index)


def head_scores(predictions: pd.DataFrame, head: str) -> np.ndarray:
    """Per row: 1 where the gender or race head is right, else 0; for age, the absolute error in years."""
    if head == "age":
        return (predictions["pred_age"] - predictions["age"]).abs().to_numpy(float)
    return (predictions[head] == predictions[f"pred_{head}"]).to_numpy(float)


def group_means(scores: np.ndarray, codes: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """The mean score of each group, from integer group codes 0..k-1 and the groups' sizes."""
    return np.bincount(codes, weights=scores, minlength=len(sizes)) / sizes


def shuffled_gaps(scores: np.ndarray, codes: np.ndarray, shuffles: int = GAP_SHUFFLES,
                  seed: int = GAP_SEED) -> np.ndarray:
    """The gap (largest minus smallest group mean) after each of `shuffles` shuffles of the group codes: the
    gaps that chance alone gives when the scores do not depend on the group."""
    sizes = np.bincount(codes)
    rng = np.random.default_rng(seed)
    return np.array([np.ptp(group_means(scores, rng.permutation(codes), sizes)) for _ in range(shuffles)])


def permutation_p_value(scores: np.ndarray, codes: np.ndarray, shuffles: int = GAP_SHUFFLES,
                        seed: int = GAP_SEED) -> float:
    """The share of `shuffles` shuffles of the group codes 0..k-1 that give a gap (largest minus smallest group
    mean of `scores`) at least as large as the observed one; the observed labels count as one shuffle."""
    gap = np.ptp(group_means(scores, codes, np.bincount(codes)))
    chance = shuffled_gaps(scores, codes, shuffles, seed)
    return float((1 + (chance >= gap - GAP_TOLERANCE).sum()) / (1 + shuffles))


@dataclass(frozen=True)
class GapTest:
    """A permutation test of the gap between the best and the worst group on one head."""

    head: str            # "age", "gender" or "race"
    groups: str          # what defines the groups, e.g. "race" or "race x gender"
    best: str            # the group with the highest accuracy (the lowest age error)
    best_score: float
    worst: str
    worst_score: float
    gap: float           # best minus worst accuracy, or worst minus best age error in years
    p_value: float       # the share of shuffles giving a gap at least as large (the observed labels count as one)
    shuffles: int
    ranked: int          # the groups of `min_size` rows or more that the test compares

    @property
    def depends(self) -> bool:
        """True when so large a gap is rare under shuffled labels (p < GAP_ALPHA): the errors depend on the group."""
        return self.p_value < GAP_ALPHA


def group_gap_test(predictions: pd.DataFrame, head: str, by: str | list[str] = "race_name",
                   min_size: int = MIN_RANKED_GROUP, shuffles: int = GAP_SHUFFLES,
                   seed: int = GAP_SEED) -> GapTest | None:
    """Is the gap between the best and worst group (of `min_size` rows or more, grouped by the `by` columns) on
    `head` more than chance? Shuffle the group labels `shuffles` times and count how often the gap is as large.
    None when fewer than two groups are large enough."""
    columns = [by] if isinstance(by, str) else list(by)
    labels = predictions[columns].astype(str).agg(" ".join, axis=1)
    sizes = labels.value_counts()
    kept = labels.isin(sizes[sizes >= min_size].index).to_numpy()
    if (sizes >= min_size).sum() < 2:
        return None
    codes, names = pd.factorize(labels[kept], sort=True)
    scores = head_scores(predictions, head)[kept]
    means = group_means(scores, codes, np.bincount(codes))
    gap = float(np.ptp(means))
    best, worst = (means.argmin(), means.argmax()) if head == "age" else (means.argmax(), means.argmin())
    return GapTest(head=head, groups=" x ".join(column.removesuffix("_name") for column in columns),
                   best=str(names[best]), best_score=float(means[best]), worst=str(names[worst]),
                   worst_score=float(means[worst]), gap=gap,
                   p_value=permutation_p_value(scores, codes, shuffles, seed),
                   shuffles=shuffles, ranked=len(names))


def gap_reading(test: GapTest) -> str:
    """The gap test's verdict as a sentence fragment, the same in notebooks 05 and 09 and the model card."""
    if test.depends:
        return (f"shuffling the {test.groups} labels gives a gap this large in only {test.p_value:.1%} of "
                f"{test.shuffles} shuffles: evidence that the {test.head} head's errors depend on {test.groups}")
    return (f"shuffled {test.groups} labels give a gap this large in {test.p_value:.0%} of {test.shuffles} "
            f"shuffles: this split cannot show that the {test.head} head's errors depend on {test.groups}")


def gap_tests(predictions: pd.DataFrame) -> dict[str, dict | None]:
    """The model card's gap tests: each head over race x gender groups of MIN_RANKED_GROUP test images or more,
    as plain dicts (with the reading) for metrics.json."""
    result = {}
    for head in ("gender", "race", "age"):
        test = group_gap_test(predictions, head, ["race_name", "gender_name"])
        result[head] = None if test is None else {**asdict(test), "depends": test.depends,
                                                  "reading": gap_reading(test)}
    return result


@dataclass(frozen=True)
class PairedTest:
    """A paired permutation test of the difference between two models' mean scores on the same items."""

    difference: float    # A's mean score minus B's (accuracy: positive favours A; age error: negative favours A)
    p_value: float       # the share of random swaps giving a difference at least as large, of either sign
    swaps: int
    pairs: int           # the items both models were scored on: faces, or seeds

    @property
    def differs(self) -> bool:
        """True when so large a difference is rare under random swaps (p < GAP_ALPHA): the two models differ."""
        return self.p_value < GAP_ALPHA


def paired_test(scores_a: np.ndarray, scores_b: np.ndarray, swaps: int = GAP_SHUFFLES,
                seed: int = GAP_SEED) -> PairedTest:
    """Do two models score differently on the same items (the same faces, or runs with the same seeds)? Swap the
    two models' scores on each item at random, `swaps` times, and count how often the mean difference is as large
    as the observed one, of either sign (the observed pairing counts as one swap). For right/wrong scores this is
    McNemar's test by permutation: only the items where the two models disagree can move the difference."""
    scores_a, scores_b = np.asarray(scores_a, float), np.asarray(scores_b, float)
    if scores_a.shape != scores_b.shape or scores_a.ndim != 1 or not len(scores_a):
        raise ValueError(f"paired_test needs two non-empty score arrays of one item each, paired; got shapes "
                         f"{scores_a.shape} and {scores_b.shape}")
    differences = scores_a - scores_b
    observed = abs(differences.mean())
    rng = np.random.default_rng(seed)
    chance = np.array([abs((rng.choice((-1.0, 1.0), len(differences)) * differences).mean()) for _ in range(swaps)])
    return PairedTest(difference=float(differences.mean()),
                      p_value=float((1 + (chance >= observed - GAP_TOLERANCE).sum()) / (1 + swaps)),
                      swaps=swaps, pairs=len(differences))


def paired_reading(test: PairedTest, first: str, second: str, measure: str, items: str = "faces") -> str:
    """The paired test's verdict as a sentence fragment: whether `first` and `second` differ on `measure` over
    the same `items` (notebooks 07 and 09 read it)."""
    if test.differs:
        return (f"swapping the two models' scores at random on each of the {test.pairs} {items} gives a difference "
                f"this large in only {test.p_value:.1%} of {test.swaps} swaps: {first} and {second} differ on {measure}")
    return (f"random swaps on each of the {test.pairs} {items} give a difference this large in {test.p_value:.0%} of "
            f"{test.swaps} swaps: these {items} cannot show that {first} and {second} differ on {measure}")


def reports(predictions: pd.DataFrame) -> dict[str, str]:
    """sklearn classification reports for the gender and race heads."""
    return {
        "gender": classification_report(predictions["gender"], predictions["pred_gender"],
                                        labels=list(range(len(GENDER_NAMES))), target_names=list(GENDER_NAMES),
                                        zero_division=0),
        "race": classification_report(predictions["race"], predictions["pred_race"],
                                      labels=list(range(len(RACE_NAMES))), target_names=list(RACE_NAMES),
                                      zero_division=0),
    }


def confusion_matrices(predictions: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Confusion matrices (rows: truth, columns: prediction) for gender and race."""
    result = {}
    for head, names in (("gender", GENDER_NAMES), ("race", RACE_NAMES)):
        matrix = confusion_matrix(predictions[head], predictions[f"pred_{head}"], labels=list(range(len(names))))
        result[head] = pd.DataFrame(matrix, index=pd.Index(names, name="truth"),
                                    columns=pd.Index(names, name="predicted"))
    return result


def predict(model, frame: pd.DataFrame, image_size: int, batch_size: int = 128) -> pd.DataFrame:
    """Run the model over every row of `frame` in batches; return the predictions frame."""
    from faceattr.pipeline import make_dataset

    images = make_dataset(frame, image_size, batch_size, with_labels=False)
    return predictions_frame(frame, model.predict(images, verbose=0))


def evaluate_run(run_dir: str | Path, data: str | None = None, batch_size: int = 128) -> dict:
    """Evaluate RUN_DIR's model on the full test split; write metrics.json and predictions.csv."""
    from faceattr.data import is_sample, scan, split_frame

    run = RunFolder(run_dir)
    model = run.load_model()
    config = run.read_config()
    result = scan(data or run.data_path(config))
    if run.split.exists() and (data is None or str(result.root) == config["data"]):  # the run's own split
        split = run.load_split(result.root)
    else:
        split = split_frame(result.frame, seed=config["seed"])
    test = split[split["split"] == "test"]
    missing = [path for path in test["path"] if not Path(path).is_file()]
    if missing:
        raise DataError(f"{len(missing)} of the {len(test)} test images are gone (first: {missing[0]}); restore "
                        "them, or pass --data to evaluate on another copy of the data.")
    predictions = predict(model, test, config["image_size"], batch_size)
    run.save_predictions(predictions)
    metrics = {
        "data": str(result.root),
        "synthetic": is_sample(result.root),
        "test": summary_metrics(predictions),
        "by_group": group_table(predictions).to_dict("records"),
        "by_age_band": mae_by_band(predictions).reset_index().to_dict("records"),
        "group_gaps": gap_tests(predictions),
    }
    run.write_metrics(metrics)
    run.write_model_card(config, metrics)
    return metrics
