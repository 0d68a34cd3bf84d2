"""Mitigation across race x gender groups: balanced batches, inverse-frequency weights, and the CLI switch."""

import collections

import numpy as np
import pytest

from faceattr.cli import main
from faceattr.data import scan, split_frame
from faceattr.pipeline import group_weights, split_datasets


@pytest.fixture(scope="module")
def split(sample_dir):
    return split_frame(scan(sample_dir).frame, seed=0)


def group_counts(dataset) -> collections.Counter:
    counts = collections.Counter()
    for batch in dataset:
        counts.update(zip(batch[1]["race"].numpy().tolist(), batch[1]["gender"].numpy().tolist()))
    return counts


def test_balanced_sampling_draws_every_group_evenly(split):
    train = split[split["split"] == "train"]
    groups = train.groupby(["race", "gender"]).ngroups
    plain, balanced = (group_counts(split_datasets(split, 32, 16, balance=balance)["train"])
                       for balance in ("none", "sample"))
    assert sum(balanced.values()) == sum(plain.values()) == len(train)  # an epoch is still one pass's worth
    assert len(balanced) == groups
    even = len(train) / groups
    assert max(plain.values()) > 1.5 * even  # the sample is skewed, as UTKFace is
    assert all(0.5 * even <= count <= 1.5 * even for count in balanced.values())


def test_inverse_frequency_weights_give_every_group_the_same_total(split):
    train = split[split["split"] == "train"]
    weights = group_weights(train)
    assert weights.mean() == pytest.approx(1.0)
    totals = train.assign(weight=weights).groupby(["race", "gender"])["weight"].sum()
    np.testing.assert_allclose(totals, totals.iloc[0], rtol=1e-5)
    batch = next(iter(split_datasets(split, 32, 16, balance="weight")["train"]))
    assert len(batch) == 3 and batch[2].shape == (16,)


def test_an_unknown_balance_is_one_line_naming_the_choices(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "run"), "--balance", "fair"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown balance 'fair'; choose one of: none, sample, weight" in err
    assert not (tmp_path / "run").exists()


def test_train_records_the_balance(sample_dir, tmp_path, train_config):
    config = train_config(["--data", str(sample_dir), "--out", str(tmp_path / "run"), "--epochs", "1",
                           "--image-size", "32", "--balance", "weight"])
    assert config["balance"] == "weight"
