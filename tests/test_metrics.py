"""Evaluation maths against values computed by hand."""

import numpy as np
import pandas as pd
import pytest

from faceattr.evaluate import (age_metrics, classification_metrics, confusion_matrices, group_table,
                               mae_by_band, predictions_frame, summary_metrics, wilson_interval)


def test_wilson_interval_by_hand():
    # 8 of 10 by hand: centre (0.8 + 0.19207) / 1.38415, half-width 0.22655 -> [0.4902, 0.9433]
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4)
    assert high == pytest.approx(0.9433, abs=1e-4)
    low, high = wilson_interval(0, 20)
    assert low == 0.0 and high == pytest.approx(0.1611, abs=1e-4)
    assert np.isnan(wilson_interval(0, 0)[0])


def test_classification_metrics_by_hand():
    truth = np.array([0, 0, 0, 0, 1, 1])
    predicted = np.array([0, 0, 0, 1, 1, 0])
    metrics = classification_metrics(truth, predicted, classes=2)
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["balanced_accuracy"] == pytest.approx((3 / 4 + 1 / 2) / 2)
    # F1 class 0: p=3/4, r=3/4 -> 0.75; class 1: p=1/2, r=1/2 -> 0.5
    assert metrics["macro_f1"] == pytest.approx(0.625)


def test_age_metrics_by_hand():
    metrics = age_metrics(np.array([25, 40, 8]), np.array([27, 31, 8.5]))
    assert metrics["mae"] == pytest.approx((2 + 9 + 0.5) / 3)
    # bands: 20-29 vs 20-29 yes, 40-49 vs 30-39 no, 3-9 vs 3-9 yes
    assert metrics["band_accuracy"] == pytest.approx(2 / 3)


def hand_predictions() -> pd.DataFrame:
    """Six test rows with known outputs."""
    frame = pd.DataFrame({"file": list("abcdef"), "age": [20, 22, 70, 5, 33, 35],
                          "gender": [0, 0, 1, 1, 1, 0], "race": [0, 0, 1, 1, 2, 4]})
    outputs = {"age": np.array([[21.0], [30.0], [60.0], [5.0], [33.0], [45.0]]),
               "gender": np.eye(2)[[0, 1, 1, 1, 0, 0]],
               "race": np.eye(5)[[0, 0, 1, 2, 2, 4]]}
    return predictions_frame(frame, outputs)


def test_group_table_by_hand():
    table = group_table(hand_predictions()).set_index(["race", "gender"])
    white_male = table.loc[("white", "male")]
    assert white_male["n"] == 2
    assert white_male["gender_accuracy"] == 0.5 and white_male["race_accuracy"] == 1.0
    assert white_male["age_mae"] == pytest.approx((1 + 8) / 2)
    # Wilson by hand: 1 of 2 -> centre 0.5, half-width 1.96 * sqrt(0.125 + 0.2401) / 2.9207 = 0.4055
    assert (white_male["gender_ci_low"], white_male["gender_ci_high"]) == pytest.approx((0.0945, 0.9055), abs=1e-4)
    # 2 of 2 -> centre (1 + 0.9604) / 2.9207 = 0.6712, half-width 1.96 * 0.4900 / 2.9207 = 0.3288
    assert (white_male["race_ci_low"], white_male["race_ci_high"]) == pytest.approx((0.3424, 1.0), abs=1e-4)
    black_female = table.loc[("black", "female")]
    assert black_female["race_accuracy"] == 0.5 and black_female["age_mae"] == pytest.approx(5.0)
    assert black_female["gender_accuracy"] == 1.0
    assert list(table.index.get_level_values("race")) == ["white", "black", "asian", "others"]
    assert list(group_table(hand_predictions()).index) == list(range(len(table)))


def test_summary_and_bands_by_hand():
    predictions = hand_predictions()
    summary = summary_metrics(predictions)
    assert summary["n"] == 6
    assert summary["gender_accuracy"] == pytest.approx(4 / 6)
    assert summary["race_accuracy"] == pytest.approx(5 / 6)
    assert summary["age_mae"] == pytest.approx((1 + 8 + 10 + 0 + 0 + 10) / 6)
    bands = mae_by_band(predictions)
    assert bands.loc["20-29", "n"] == 2 and bands.loc["20-29", "age_mae"] == pytest.approx(4.5)
    assert list(bands.index) == ["3-9", "20-29", "30-39", "70+"]
    matrix = confusion_matrices(predictions)["race"]
    assert matrix.loc["black", "asian"] == 1 and matrix.to_numpy().sum() == 6
    assert (matrix.index.name, matrix.columns.name) == ("truth", "predicted")  # how notebook 05 reads it


def test_age_interval_by_hand_and_undefined_for_one_image():
    # errors 1, 3: mean 2, sd (ddof=1) 1.4142, half-width 1.96 * 1.4142 / sqrt(2) = 1.96
    age = age_metrics(np.array([10, 20]), np.array([11, 17]))
    assert age["mae"] == 2.0 and age["mae_ci95"] == pytest.approx([0.04, 3.96], abs=1e-3)
    assert np.isnan(age_metrics(np.array([10]), np.array([12]))["mae_ci95"]).all()
    assert age_metrics(np.array([10, 20]), np.array([10, 20.5]))["mae"] == 0.25  # no rounding to integers


def test_macro_f1_counts_every_class_even_one_never_seen():
    # two of three classes, all right: per-class F1 is 1, 1 and 0 for the unseen class -> macro 2/3
    metrics = classification_metrics(np.array([0, 1, 1]), np.array([0, 1, 1]), classes=3)
    assert metrics["macro_f1"] == pytest.approx(2 / 3)
    empty = classification_metrics(np.array([], int), np.array([], int), classes=2)
    assert np.isnan([empty["accuracy"], empty["balanced_accuracy"], empty["macro_f1"], *empty["accuracy_ci95"]]).all()


def test_predictions_frame_ignores_the_input_index_and_keeps_every_probability():
    predictions = hand_predictions()
    frame = pd.DataFrame({"file": list("ab"), "age": [1, 2], "gender": [0, 1], "race": [3, 4]}, index=[7, 9])
    result = predictions_frame(frame, {"age": np.array([[1.5], [2.5]]), "gender": np.eye(2)[[1, 0]],
                                       "race": np.eye(5)[[3, 4]]})
    assert list(result.index) == [0, 1] and "index" not in result
    assert result["prob_gender_male"].tolist() == [0.0, 1.0] and result["prob_race_others"].tolist() == [0.0, 1.0]
    assert result["pred_age"].tolist() == [1.5, 2.5]
    assert predictions.filter(like="prob_").shape[1] == 7


def test_summary_metrics_name_every_interval_the_cli_prints():
    summary = summary_metrics(hand_predictions())
    for head in ("gender", "race"):
        low, high = summary[f"{head}_accuracy_ci95"]
        assert low < summary[f"{head}_accuracy"] < high
    low, high = summary["age_mae_ci95"]
    assert low < summary["age_mae"] < high
