"""`faceattr train` and `faceattr evaluate` end to end on tiny data, and their one-line errors."""

import json
import subprocess
import sys

import pandas as pd
import pytest

from faceattr.cli import main
from tests.conftest import write_face


@pytest.fixture(scope="module")
def trained_run(sample_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run") / "tiny"
    code = main(["train", "--data", str(sample_dir), "--out", str(run_dir), "--epochs", "2",
                 "--image-size", "32", "--batch-size", "32"])
    assert code == 0
    return run_dir


def test_train_writes_every_run_file(trained_run):
    for name in ("model.keras", "history.csv", "metrics.json", "config.json", "predictions.csv", "split.csv"):
        assert (trained_run / name).is_file(), name
    config = json.loads((trained_run / "config.json").read_text())
    assert config["seed"] == 42 and config["image_size"] == 32 and config["synthetic"] is True
    assert config["versions"]["tensorflow"] != "not installed"
    assert config["age_scale"] <= 116


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


@pytest.mark.parametrize("args, fragment", [
    (["--arch", "resnet"], "unknown arch 'resnet'"),
    (["--image-size", "16"], "image size 16 is below 32"),
    (["--epochs", "0"], "epochs=0 must be at least 1"),
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


def test_evaluate_without_a_model_says_what_to_run(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "faceattr train" in capsys.readouterr().err
