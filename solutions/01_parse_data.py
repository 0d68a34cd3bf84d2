"""Solutions to the exercises of notebook 01, parse the data."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from _shared import SEED, split_of


def exercise_1(data_dir: str, work_dir: Path) -> dict:
    """Rejecting ages above 100 loses every row whose age is over 100: count them in the scan table. On the
    sample that is a handful of images; real UTKFace has a few dozen centenarians (its labels go up to 116).
    It is not a good idea: those labels are rare but valid, and a rule that drops them would make the model
    blind to the oldest faces. Reject what is broken, not what is rare; to limit the ages you train on,
    filter the table afterwards, where the choice is visible."""
    from faceattr.data import scan

    frame = scan(data_dir).frame
    lost = int((frame["age"] > 100).sum())
    print(f"{lost} of {len(frame)} images are older than 100")
    return {"images": len(frame), "older_than_100": lost}


def exercise_2(data_dir: str, work_dir: Path) -> dict:
    """With `seed=seed + 1` most files change part (merge the two splits on `file` and count the rows whose
    part differs), but the counts per part stay exactly the same: the fractions fix the sizes, the seed only
    chooses which files go where. That is why a run records its seed and saves split.csv."""
    from faceattr.data import scan, split_frame

    frame = scan(data_dir).frame
    first, second = split_frame(frame, seed=SEED), split_frame(frame, seed=SEED + 1)
    both = first[["file", "split"]].merge(second[["file", "split"]], on="file", suffixes=("_first", "_second"))
    moved = int((both["split_first"] != both["split_second"]).sum())
    same_counts = first["split"].value_counts().sort_index().equals(second["split"].value_counts().sort_index())
    assert same_counts, "the part sizes should not depend on the seed"
    print(f"{moved} of {len(both)} files change part; the counts per part are the same: {same_counts}")
    return {"files": len(both), "moved": moved, "same_counts": same_counts}


def exercise_3(data_dir: str, work_dir: Path) -> dict:
    """Stratifying by race only keeps the race shares equal but lets the gender shares drift: the largest gap
    in a race x gender group's share between parts grows (on the sample from well under 1% to about 1 to 3%,
    depending on the seed). With a few hundred test images, a group whose share drifts by 2% is a different
    mix of faces in each part, which is what stratifying by race x gender x age group prevents."""
    split = split_of(data_dir)
    ordered = split.sort_values("file", ignore_index=True)
    train, holdout = train_test_split(ordered.index, test_size=0.3, random_state=SEED, stratify=ordered["race"])
    validation, test = train_test_split(holdout, test_size=0.5, random_state=SEED,
                                        stratify=ordered.loc[holdout, "race"])
    by_race = ordered.assign(split="train")
    by_race.loc[validation, "split"], by_race.loc[test, "split"] = "validation", "test"

    def largest_gap(frame: pd.DataFrame) -> float:
        """Largest difference in a race x gender group's share between the train part and another part."""
        shares = pd.crosstab([frame["race_name"], frame["gender_name"]], frame["split"], normalize="columns")
        return float(shares.sub(shares["train"], axis=0).abs().to_numpy().max())

    gaps = {"kit_split": largest_gap(split), "race_only": largest_gap(by_race)}
    print(f"largest gap: {gaps['kit_split']:.3f} stratified by race x gender x age, "
          f"{gaps['race_only']:.3f} by race only")
    return gaps


def exercise_4(data_dir: str, work_dir: Path) -> dict:
    """`faceattr scan DATA --json` prints the same counts as the notebook's table, because both come from
    `faceattr.data.scan` (the command line is a thin layer over the package). The JSON also lists every
    skipped file with its reason, so a script can check a new copy of the data set."""
    from faceattr.cli import main
    from faceattr.data import scan

    output = io.StringIO()
    with redirect_stdout(output):
        assert main(["scan", data_dir, "--json"]) == 0
    report = json.loads(output.getvalue())
    frame = scan(data_dir).frame
    print(f"valid {report['valid']}, skipped {report['skipped']}: {report['skipped_by_reason']}")
    assert report["valid"] == len(frame), "the command line and the notebook count the same images"
    return {"valid": report["valid"], "skipped": report["skipped"]}
