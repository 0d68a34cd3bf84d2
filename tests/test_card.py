"""Model cards: the gap tests the evaluation ran, said plainly, and one-line errors."""

import json

import pytest

from faceattr.card import MIN_RANKED_GROUP, model_card
from faceattr.cli import main
from faceattr.runs import RunFolder


def group(race, gender, n, gender_accuracy, race_accuracy, width=0.1, age_mae=5.0):
    return {"race": race, "gender": gender, "n": n, "gender_accuracy": gender_accuracy,
            "gender_ci_low": gender_accuracy - width, "gender_ci_high": gender_accuracy + width,
            "race_accuracy": race_accuracy, "race_ci_low": race_accuracy - width,
            "race_ci_high": race_accuracy + width, "age_mae": age_mae}


BY_GROUP = [group("white", "male", 60, 0.90, 0.95, age_mae=4.0), group("asian", "female", 30, 0.85, 0.40, age_mae=7.5),
            group("others", "male", MIN_RANKED_GROUP - 1, 0.10, 0.05, age_mae=20.0)]
TEST = {"n": 109, "gender_accuracy": 0.87, "gender_accuracy_ci95": [0.8, 0.92], "race_accuracy": 0.7,
        "race_accuracy_ci95": [0.6, 0.78], "age_mae": 5.5, "age_mae_ci95": [5.0, 6.0],
        "gender_balanced_accuracy": 0.86, "race_balanced_accuracy": 0.6}


GAPS = {"gender": None,
        "race": {"best": "white male", "best_score": 0.95, "worst": "asian female", "worst_score": 0.40, "gap": 0.55,
                 "reading": "shuffling the race x gender labels gives a gap this large in only 0.1% of 1000 shuffles: "
                            "the race head's errors depend on race x gender"},
        "age": {"best": "white male", "best_score": 4.0, "worst": "asian female", "worst_score": 7.5, "gap": 3.5,
                "reading": "shuffled race x gender labels give a gap this large in 30% of 1000 shuffles: this split "
                           "cannot show that the age head's errors depend on race x gender"}}


def test_the_card_says_whether_the_data_is_synthetic_and_reads_its_gaps():
    config = {"arch": "default", "image_size": 64, "seed": 1, "balance": "sample"}
    real = model_card(config, {"data": "/d/UTKFace", "synthetic": False, "test": TEST, "by_group": BY_GROUP,
                               "group_gaps": GAPS}, "r")
    fake = model_card(config, {"data": "/d/sample", "synthetic": True, "test": TEST, "by_group": BY_GROUP,
                               "group_gaps": GAPS}, "r")
    assert "synthetic sample" not in real and "trained on the synthetic sample" in fake
    assert "race accuracy: white male 0.95 against asian female 0.40, a gap of 0.55; shuffling the race x gender " \
           "labels gives a gap this large in only 0.1% of 1000 shuffles: the race head's errors depend on race x " \
           "gender." in real
    assert f"gender accuracy: fewer than two groups have {MIN_RANKED_GROUP} test images" in real
    assert "age error: white male 4.0 years against asian female 7.5 years, a gap of 3.5 years; shuffled race x " \
           "gender labels give a gap this large in 30% of 1000 shuffles: this split cannot show" in real
    assert "overlap" not in real
    assert "- 2 heads are tested, each at 5%: with no real gap anywhere, about 0.10 of them would" in real
    assert "| others male | 19 |" in real  # listed, though not ranked
    assert "| race accuracy | 0.700 | 0.600 to 0.780 |" in real
    assert "balance sample" in real and "(2 genders, 5 races)" in real


def test_card_without_metrics_is_one_line_naming_the_command(tmp_path, capsys):
    run = RunFolder(tmp_path)
    with run.writing():  # config.json is written under the run folder's lock
        run.write_run_config(tmp_path, synthetic=True, seed=1, image_size=32, arch="default")
    assert main(["card", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "metrics.json does not exist" in err and "faceattr evaluate" in err
    run.metrics.write_text("{not json")
    assert main(["card", str(tmp_path)]) == 2
    assert "metrics.json is not valid JSON" in capsys.readouterr().err
    run.metrics.unlink()  # a hand-made file: the kit never writes over it
    run.write_metrics({"data": str(tmp_path), "synthetic": True, "test": TEST, "by_group": BY_GROUP})
    assert main(["card", str(tmp_path)]) == 0
    assert json.loads(run.metrics.read_text())["test"]["n"] == 109 and run.model_card.is_file()
