"""The most race accuracy any model can reach on the synthetic sample.

A face's race shows only through its skin and hair colours (`faceattr.sample.face_colours`), and one face in five
borrows another group's skin tone. A gradient-boosted classifier given those exact colours, free of the drawing's
pixel noise and JPEG compression, approaches the Bayes limit from below: no CNN looking at the images can do better
on average. Usage: python benchmarks/ceiling.py [--faces 200000]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def colour_table(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` faces' skin and hair RGB (6 columns) and race labels, drawn as the sample draws them."""
    from faceattr.sample import face_colours, sample_labels

    labels = sample_labels(count, seed)
    rng = np.random.default_rng([seed, 4])
    colours = np.array([sum(face_colours(int(age), int(race), rng), ()) for age, _gender, race in labels], float)
    return colours, labels[:, 2]


def ceiling(count: int = 200_000, seed: int = 11, max_iter: int = 300) -> dict:
    """Held-out race accuracy from skin colour alone and from skin and hair colour (3/4 train, 1/4 held out)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    colours, race = colour_table(count, seed)
    cut = count * 3 // 4
    scores = {}
    for name, columns in (("skin", slice(0, 3)), ("skin_and_hair", slice(0, 6))):
        model = HistGradientBoostingClassifier(max_iter=max_iter, random_state=0).fit(colours[:cut, columns], race[:cut])
        scores[name] = float(model.score(colours[cut:, columns], race[cut:]))
    return {"faces": count, "held_out": count - cut, "majority_class": float(np.bincount(race).max() / count),
            **scores}


def main() -> int:
    """Measure the ceiling and write benchmarks/results/ceiling.json."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, default=200_000)
    args = parser.parse_args()
    result = ceiling(args.faces)
    out = ROOT / "benchmarks" / "results" / "ceiling.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"race accuracy from the exact colours ({result['held_out']} held-out faces): skin {result['skin']:.3f}, "
          f"skin and hair {result['skin_and_hair']:.3f}; majority class {result['majority_class']:.3f}. Wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
