"""Face detection on real photos: recall, false alarms and seconds per photo, one-scale against two-pass.

Usage: python benchmarks/detect.py [--out benchmarks/results] [--no-grid]   (make bench-detect)

The cases are faceattr.photocases (real faces from matplotlib and scikit-image, no download; faceless photos of
text, signs and patterns count false alarms). "one-scale" is the kit's detection before issue 12: the photo shrunk
to at most 1,600 px, MTCNN's stage thresholds, a 0.9 floor.
The grid measures stage thresholds and the confidence floor, and picks the setting that finds every face it can of
40 px or more with the fewest false alarms (see `choose`); faceattr.detect's constants must equal it (tests check).
The same cases choose the setting and report its recall: there is no held-out set of real photos.
The minimum face size is measured too: for each --min-face-size, the placed faces at least that tall found, and the
boxes reported under it (none, if the minimum holds in the photo's own pixels).
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GRID_PNET = (0.6, 0.5, 0.4)
GRID_RNET = (0.7, 0.6, 0.5)
GRID_FLOOR = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95)
TIMING_SIDES = (600, 2500, 6000)
MIN_FACE_SIZES = (20, 30, 40, 60)


def one_scale(photo, min_face_size: int = 20, min_confidence: float = 0.9) -> list[dict]:
    """The kit's detection before issue 12: one MTCNN pass at most 1,600 px, bilinear, default stage thresholds."""
    import numpy as np
    from PIL import Image

    from faceattr.detect import detector

    scale = min(1.0, 1600 / max(photo.size))
    small = photo if scale == 1.0 else photo.resize((round(photo.width * scale), round(photo.height * scale)),
                                                    Image.BILINEAR)
    found = detector().detect_faces(np.asarray(small), min_face_size=max(12, round(min_face_size * scale)))
    return [{"box": [round(v / scale) for v in face["box"]], "confidence": float(face["confidence"])}
            for face in found if face["confidence"] >= min_confidence]


def run_cases(cases, photos, detect) -> list[dict]:
    """Score `detect` on every case (a warm-up call first, so no case pays for the detector's start)."""
    from faceattr.photocases import score

    detect(photos[0])
    rows = []
    for case, photo in zip(cases, photos):
        start = time.perf_counter()
        found = detect(photo)
        rows.append(score(case, [face["box"] for face in found], time.perf_counter() - start))
    return rows


def minimum_sizes(cases, photos, detect, sizes: tuple[int, ...] = MIN_FACE_SIZES) -> list[dict]:
    """For each minimum face size, over the cases with faces: the placed faces at least that tall, how many of them
    were found, and how many boxes were reported under the minimum."""
    from faceattr.photocases import match

    rows = []
    for size in sizes:
        placed = found = under = 0
        for case, photo in zip(cases, photos):
            if not case.faces:
                continue
            boxes = [face["box"] for face in detect(photo, min_face_size=size)]
            hit, _ = match(boxes, case.faces)
            placed += sum(face[3] >= size for face in case.faces)
            found += sum(h for h, face in zip(hit, case.faces) if face[3] >= size)
            under += sum(box[3] < size for box in boxes)
        rows.append({"min_face_size": size, "placed": placed, "found": found, "boxes_under_minimum": under})
    return rows


def grid(cases, photos) -> list[dict]:
    """Faces found and false alarms for each stage-threshold setting and confidence floor."""
    from faceattr.detect import detect_faces
    from faceattr.photocases import score

    rows = []
    for pnet, rnet in itertools.product(GRID_PNET, GRID_RNET):
        thresholds = {"threshold_pnet": pnet, "threshold_rnet": rnet, "threshold_onet": min(GRID_FLOOR)}
        found = [detect_faces(photo, min_confidence=min(GRID_FLOOR), thresholds=thresholds) for photo in photos]
        for floor in GRID_FLOOR:
            scored = [score(case, [f["box"] for f in faces if f["confidence"] >= floor], 0)
                      for case, faces in zip(cases, found)]
            rows.append({"threshold_pnet": pnet, "threshold_rnet": rnet, "min_confidence": floor,
                         "found": sum(r["found"] for r in scored), "found_40px": sum(r["found_40px"] for r in scored),
                         "false_alarms": sum(r["false_alarms"] for r in scored)})
        print(f"grid: pnet {pnet}, rnet {rnet} done", flush=True)
    return rows


def choose(rows: list[dict]) -> dict:
    """The setting that finds the most faces of 40 px or more, then has the fewest false alarms, then finds the
    most faces; ties go to the higher thresholds and floor."""
    return max(rows, key=lambda r: (r["found_40px"], -r["false_alarms"], r["found"], r["threshold_pnet"],
                                    r["threshold_rnet"], r["min_confidence"]))


def timing(photo, detect, repeats: int = 3) -> float:
    """Median seconds of `repeats` warm calls."""
    detect(photo)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        detect(photo)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    """Run the comparison and the grid, print the tables, write the JSON."""
    import pandas as pd

    from faceattr import photocases
    from faceattr.detect import detect_faces, load_photo

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--no-grid", action="store_true", help="skip the threshold grid (about 5 minutes)")
    args = parser.parse_args()

    cases = photocases.build_cases()
    with tempfile.TemporaryDirectory() as folder:  # through files, so EXIF rotation is part of the test
        photos = [load_photo(path) for path in photocases.write_cases(cases, folder)]
    results = {"machine": platform.processor() or platform.machine(), "cases": {}}
    for name, detect in (("one-scale", one_scale), ("two-pass", detect_faces)):
        rows = run_cases(cases, photos, detect)
        results["cases"][name] = rows
        print(f"\n{name}\n{photocases.recall_table(rows).to_string(index=False)}")
    results["minimum_face_size"] = minimum_sizes(cases, photos, detect_faces)
    print("\nminimum face size (two-pass; cases with faces)\n"
          + pd.DataFrame(results["minimum_face_size"]).to_string(index=False))
    hopper = photos[0]
    results["seconds_per_photo"] = []
    for side in TIMING_SIDES:
        photo = photocases.scaled(hopper, photocases.SOURCE_FACES["hopper"], side)[0]
        before, after = timing(photo, one_scale), timing(photo, detect_faces)
        results["seconds_per_photo"].append({"long_side": side, "one-scale": round(before, 3),
                                             "two-pass": round(after, 3), "ratio": round(after / before, 2)})
    print("\nseconds per photo (Grace Hopper resized, median of 3 warm calls)\n"
          + pd.DataFrame(results["seconds_per_photo"]).to_string(index=False))
    medians = {name: statistics.median(r["seconds"] for r in rows) for name, rows in results["cases"].items()}
    results["median_seconds_per_case"] = medians
    print(f"median seconds per case photo: {medians}")
    if not args.no_grid:
        results["grid"] = grid(cases, photos)
        results["choice"] = choose(results["grid"])
        print("\ngrid\n" + pd.DataFrame(results["grid"]).to_string(index=False) + f"\nchoice: {results['choice']}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    target = out / "detect.json"
    target.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
