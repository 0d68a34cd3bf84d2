"""`faceattr train` and `faceattr evaluate` end to end on tiny data, and their one-line errors."""

import json
import subprocess
import sys

import pandas as pd
import pytest

from faceattr.cli import main
from faceattr.defaults import RECIPES
from tests.conftest import write_face


def test_train_writes_every_run_file(trained_run):
    for name in ("model.keras", "history.csv", "metrics.json", "config.json", "predictions.csv", "split.csv",
                  "model_card.md"):
        assert (trained_run / name).is_file(), name
    config = json.loads((trained_run / "config.json").read_text())
    assert config["seed"] == 42 and config["image_size"] == 32 and config["synthetic"] is True
    assert config["versions"]["tensorflow"] != "not installed"
    assert config["age_scale"] <= 116


def test_the_model_card_reads_the_runs_own_numbers_and_says_synthetic(trained_run, capsys):
    assert main(["card", str(trained_run)]) == 0
    card = capsys.readouterr().out
    test = json.loads((trained_run / "metrics.json").read_text())["test"]
    assert card == (trained_run / "model_card.md").read_text()
    assert f"| gender accuracy | {test['gender_accuracy']:.3f} |" in card and f"n = {test['n']})" in card
    assert "trained on the synthetic sample" in card and "## Out of scope" in card


def test_metrics_cover_the_whole_test_split(trained_run):
    metrics = json.loads((trained_run / "metrics.json").read_text())
    split = pd.read_csv(trained_run / "split.csv")
    test = metrics["test"]
    assert test["n"] == (split["split"] == "test").sum() == 30
    assert 0 <= test["gender_accuracy"] <= 1 and 0 <= test["race_accuracy"] <= 1
    assert test["age_mae"] > 0
    assert isinstance(test["n"], int)
    assert sum(row["n"] for row in metrics["by_group"]) == test["n"]
    predictions = pd.read_csv(trained_run / "predictions.csv")
    assert len(predictions) == 30
    assert test["gender_accuracy"] == pytest.approx((predictions["gender"] == predictions["pred_gender"]).mean())


def test_evaluate_reproduces_the_metrics(trained_run, capsys):
    before = json.loads((trained_run / "metrics.json").read_text())["test"]
    assert main(["evaluate", str(trained_run)]) == 0
    after = json.loads((trained_run / "metrics.json").read_text())["test"]
    assert after["race_accuracy"] == pytest.approx(before["race_accuracy"])
    assert after["age_mae"] == pytest.approx(before["age_mae"], rel=1e-4)
    assert "race   accuracy" in capsys.readouterr().out


def test_run_dir_with_a_run_is_refused(trained_run, sample_dir, capsys):
    assert main(["train", "--data", str(sample_dir), "--out", str(trained_run), "--epochs", "1"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_train_records_the_balance_and_the_score_it_selected_on(trained_run):
    config = json.loads((trained_run / "config.json").read_text())
    assert config["loss_balance"] == RECIPES["default"]["loss_balance"]
    assert config["learning_rate"] == RECIPES["default"]["learning_rate"]
    assert config["monitor"]["name"] == "val_score" and "trivial" in config["monitor"]["definition"]
    assert set(config["trivial_losses"]) == set(config["trivial_errors"]) == {"age", "gender", "race"}
    history = pd.read_csv(trained_run / "history.csv")
    assert {"val_score", "val_age_loss", "val_gender_loss", "val_race_loss"} <= set(history.columns)


def test_the_learned_loss_weights_start_at_the_normalised_ones(trained_run):
    config = json.loads((trained_run / "config.json").read_text())
    assert (config["loss_balance"], config["age_head"]) == ("uncertainty", "expectation")  # the default recipe
    history = pd.read_csv(trained_run / "history.csv")
    first = history.loc[0, ["age_weight", "gender_weight", "race_weight"]]
    assert first.to_numpy() == pytest.approx([1 / config["trivial_losses"][h] for h in ("age", "gender", "race")],
                                             rel=0.2)


def test_the_loss_balance_and_age_head_from_the_command_line(sample_dir, tmp_path, train_config):
    config = train_config(["--data", str(sample_dir), "--out", str(tmp_path / "run"), "--epochs", "2",
                           "--image-size", "32", "--loss-balance", "normalised", "--age-head", "sigmoid"])
    assert (config["loss_balance"], config["age_head"]) == ("normalised", "sigmoid")


def test_fixed_weights_from_the_command_line(sample_dir, tmp_path, train_config):
    config = train_config(["--data", str(sample_dir), "--out", str(tmp_path / "fixed"), "--epochs", "1",
                           "--image-size", "32", "--loss-balance", "fixed", "--loss-weights", "age=2,gender=1,race=1.5"])
    assert config["loss_weights"] == {"age": 2.0, "gender": 1.0, "race": 1.5}


@pytest.mark.parametrize("args, fragment", [
    (["--loss-balance", "magic"], "choose one of: fixed, normalised, uncertainty"),
    (["--age-head", "cubic"], "choose one of: linear, sigmoid, expectation"),
    (["--loss-weights", "age=2,gender=1"], "no loss weight for head 'race'"),
    (["--loss-weights", "age=-2,gender=1,race=1"], "must be 0 or more"),
    (["--loss-weights", "age=1,gender=1,race=1,beard=1"], "unknown head 'beard'"),
    (["--loss-balance", "normalised", "--loss-weights", "age=1,gender=1,race=1"], "only for --loss-balance fixed"),
    (["--arch", "resnet"], "unknown arch 'resnet'"),
    (["--image-size", "16"], "image size 16 is outside 32..512"),
    (["--image-size", "10000"], "image size 10000 is outside 32..512"),
    (["--epochs", "0"], "epochs=0 must be at least 1"),
    (["--learning-rate", "-0.01"], "learning rate -0.01 must be more than 0"),
])
def test_bad_training_settings_fail_fast_in_one_line(args, fragment, tmp_path):
    result = subprocess.run([sys.executable, "-m", "faceattr.cli", "train", "--data", str(tmp_path),
                             "--out", str(tmp_path / "run"), *args], capture_output=True, text=True)
    assert result.returncode == 2
    assert fragment in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_too_few_images_to_split(tmp_path, capsys):
    for index in range(3):
        write_face(tmp_path / "data" / f"2{index}_0_0_{index}.jpg", seed=index)
    assert main(["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run")]) == 2
    assert "too few to split" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
