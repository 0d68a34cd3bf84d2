"""The one rule for "is this gap real": a permutation test over group labels, read alike by 05, 09 and the card;
and the one rule for "do these two models differ": a paired test on the same faces (07) or seeds (09)."""

import re

import numpy as np
import pandas as pd
import pytest

from faceattr.card import MIN_RANKED_GROUP, model_card
from faceattr.evaluate import (GAP_ALPHA, gap_reading, gap_tests, group_gap_test, group_table, output_scores,
                               paired_reading, paired_test, shuffled_gaps, summary_metrics, wilson_interval)
from faceattr.labels import GENDER_NAMES, RACE_NAMES


def predictions(error_rate_by_race: dict[str, float], per_group: int = 60, seed: int = 0) -> pd.DataFrame:
    """Predictions for every race x gender group whose race head errs at the given rate per race (independently
    of everything else), and whose age and gender heads err alike in every group."""
    rng = np.random.default_rng(seed)
    rows = []
    for race_code, race in enumerate(RACE_NAMES):
        for gender_code, gender in enumerate(GENDER_NAMES):
            for _ in range(per_group):
                race_wrong = rng.random() < error_rate_by_race.get(race, 0.2)
                rows.append({"file": "x", "age": 30.0, "gender": gender_code, "race": race_code,
                             "pred_age": 30.0 + rng.normal(0, 5),
                             "pred_gender": gender_code if rng.random() < 0.85 else 1 - gender_code,
                             "pred_race": (race_code + 1) % len(RACE_NAMES) if race_wrong else race_code,
                             "race_name": race, "gender_name": gender})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_errors_independent_of_group_read_cannot_show(seed):
    frame = predictions({}, seed=seed)
    for head in ("race", "gender", "age"):
        test = group_gap_test(frame, head, "race_name")
        assert test.gap > 0, "the largest minus the smallest of noisy group scores is never 0"
        assert not test.depends and "cannot show" in gap_reading(test), (head, test)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_planted_group_dependent_error_rate_reads_depends(seed):
    frame = predictions({"asian": 0.5}, seed=seed)
    test = group_gap_test(frame, "race", "race_name")
    assert test.worst == "asian" and test.depends and test.p_value < GAP_ALPHA
    assert "the race head's errors depend on race" in gap_reading(test)
    assert not group_gap_test(frame, "gender", "race_name").depends   # only the race head was planted


def test_the_gap_and_its_groups_are_computed_by_hand():
    frame = predictions({"asian": 0.5}, per_group=30)
    test = group_gap_test(frame, "race", ["race_name", "gender_name"])
    accuracy = frame.assign(hit=frame["race"] == frame["pred_race"]).groupby(["race_name", "gender_name"])["hit"].mean()
    assert test.gap == pytest.approx(accuracy.max() - accuracy.min())
    assert test.best == " ".join(accuracy.idxmax()) and test.worst == " ".join(accuracy.idxmin())
    assert test.groups == "race x gender" and test.ranked == 10
    ages = group_gap_test(frame, "age", "race_name")
    mae = (frame["pred_age"] - frame["age"]).abs().groupby(frame["race_name"]).mean()
    assert ages.best == mae.idxmin() and ages.worst_score == pytest.approx(mae.max())


def test_groups_too_small_are_left_out_and_equal_scores_give_p_one():
    frame = predictions({}, per_group=MIN_RANKED_GROUP)
    small = frame[~((frame["race_name"] == "others") & (frame.index % 2 == 0))]   # others: half their rows
    assert group_gap_test(small, "race", "race_name").ranked == len(RACE_NAMES)   # others has 20 (2 x 10) left
    tiny = small[small["race_name"].isin(["white", "others"]) & (small["gender_name"] == "male")]
    assert group_gap_test(tiny, "race", ["race_name", "gender_name"]) is None       # only white male has 20
    same = frame.assign(pred_race=frame["race"])   # every face right: every shuffle gives the same gap, 0
    assert group_gap_test(same, "race", "race_name").p_value == 1.0


def test_shuffles_are_seeded_and_keep_the_group_sizes():
    scores, codes = np.r_[np.ones(30), np.zeros(30)], np.repeat([0, 1, 2], 20)
    assert np.array_equal(shuffled_gaps(scores, codes, 50, seed=3), shuffled_gaps(scores, codes, 50, seed=3))
    assert not np.array_equal(shuffled_gaps(scores, codes, 50, seed=3), shuffled_gaps(scores, codes, 50, seed=4))
    assert shuffled_gaps(scores, codes, 200).max() <= 1.0


def test_the_card_reads_the_same_test_as_the_notebooks():
    frame = predictions({"asian": 0.5}, per_group=30)
    metrics = {"data": "/d/UTKFace", "synthetic": False, "test": summary_metrics(frame),
               "by_group": group_table(frame).to_dict("records"), "group_gaps": gap_tests(frame)}
    card = model_card({"arch": "default"}, metrics, "r")
    race = group_gap_test(frame, "race", ["race_name", "gender_name"])
    assert f"a gap of {race.gap:.2f}; {gap_reading(race)}." in card
    assert "overlap" not in card
    older = model_card({"arch": "default"}, {k: v for k, v in metrics.items() if k != "group_gaps"}, "r")
    assert "rerun `faceattr evaluate`" in older


def test_notebooks_05_and_09_read_the_shared_test_and_never_an_interval_overlap():
    import nbformat

    from faceattr.notebook import notebook_dir

    for name in ("05_evaluate", "09_fairness"):
        notebook = nbformat.read(notebook_dir() / f"{name}.ipynb", as_version=4)
        code = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
        assert "group_gap_test" in code and "gap_reading" in code, name
        assert "overlap" not in code, f"{name} reads something from whether two intervals overlap"


def test_notebooks_07_and_09_compare_models_with_the_paired_rule_and_no_text_reads_an_overlap():
    import nbformat

    from faceattr.notebook import notebook_dir

    for name in ("07_experiments", "09_fairness"):
        notebook = nbformat.read(notebook_dir() / f"{name}.ipynb", as_version=4)
        code = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
        assert "paired_test" in code and "paired_reading" in code, name
        for cell in notebook.cells:   # markdown too: intervals or spreads that "do not overlap" are no verdict
            for sentence in re.split(r"(?<=[.:;])\s", cell.source):
                assert not ("overlap" in sentence and re.search(r"interval|range|spread|± sd", sentence)), \
                    f"{name} reads two intervals' overlap: {sentence!r}"


def right_or_wrong(rate: float, faces: int, rng: np.random.Generator) -> np.ndarray:
    """1 for a right answer, 0 for a wrong one, on each face, right at `rate`."""
    return (rng.random(faces) < rate).astype(float)


@pytest.mark.parametrize("seed", [1, 2, 3])   # at a 5% level one seed in twenty reads "differs" by chance: 0 does
def test_two_models_with_the_same_accuracy_read_cannot_show(seed):
    rng = np.random.default_rng(seed)
    first, second = right_or_wrong(0.8, 300, rng), right_or_wrong(0.8, 300, rng)
    test = paired_test(first, second)
    assert not test.differs and "cannot show" in paired_reading(test, "A", "B", "race accuracy"), test


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_planted_difference_reads_differs(seed):
    rng = np.random.default_rng(seed)
    first, second = right_or_wrong(0.85, 300, rng), right_or_wrong(0.7, 300, rng)
    test = paired_test(first, second)
    assert test.differs and test.difference > 0, test
    assert paired_reading(test, "A", "B", "race accuracy").endswith("A and B differ on race accuracy")


def test_pairing_shows_a_difference_too_small_for_two_intervals_to_separate():
    """B is A with 15 of 300 right answers turned wrong: McNemar's 15 against 0. The two Wilson intervals overlap
    widely, yet only the faces where the models disagree carry the comparison, and they all favour A."""
    first = right_or_wrong(0.8, 300, np.random.default_rng(0))
    second = first.copy()
    second[np.flatnonzero(first)[:15]] = 0.0
    (_, first_high), (second_low, _) = (wilson_interval(int(scores.sum()), len(scores)) for scores in (second, first))
    assert second_low < first_high   # the intervals overlap
    test = paired_test(first, second)
    assert test.differs and test.difference == pytest.approx(15 / 300)
    assert test.p_value == pytest.approx(1 / (1 + test.swaps))   # every swap of 15 one-sided faces is smaller


def test_identical_scores_give_p_one_and_three_seeds_can_never_differ():
    scores = np.array([1.0, 0.0, 1.0, 1.0])
    assert paired_test(scores, scores).p_value == 1.0
    three = paired_test([0.70, 0.72, 0.75], [0.60, 0.62, 0.61])   # higher in every seed, by far
    assert not three.differs and three.p_value >= 0.2   # only 8 ways to swap 3 pairs: 2 of them as extreme
    with pytest.raises(ValueError):
        paired_test([1.0, 0.0], [1.0])


def test_output_scores_read_raw_outputs_as_the_predictions_frame_does():
    truth = np.array([0, 1, 2])
    outputs = np.array([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.1, 0.2, 0.7]])
    assert output_scores(truth, outputs, "race").tolist() == [1.0, 0.0, 1.0]
    assert output_scores(np.array([30.0, 50.0]), np.array([[33.0], [41.0]]), "age").tolist() == [3.0, 9.0]


def test_the_p_value_on_raw_scores_is_the_gap_tests_own():
    from faceattr.evaluate import head_scores, permutation_p_value

    frame = predictions({"asian": 0.6})
    codes, _ = pd.factorize(frame["race_name"], sort=True)
    p_value = permutation_p_value(head_scores(frame, "race"), codes)
    assert p_value == group_gap_test(frame, "race", "race_name").p_value and p_value < GAP_ALPHA
