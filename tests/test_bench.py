"""benchmarks/bench.py: its FLOP count, its machine description and its summary ratios (not its timings)."""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
bench = pytest.importorskip("bench")


def test_forward_flops_counts_each_convolution_and_dense_layer_by_hand():
    from faceattr.model import build_model

    model = build_model(image_size=32, trunk_filters=(8,))   # one conv block, the three heads
    conv = 2 * 32 * 32 * 3 * 3 * 3 * 8                         # output pixels x kernel x channels in x out
    age = 2 * 8 * 128 + 2 * 128 * 30 + 2 * 30 * 1              # dense, 30 bins, their expected value
    gender, race = 2 * 8 * 128 + 2 * 128 * 2, 2 * 8 * 128 + 2 * 128 * 5
    assert bench.forward_flops(model) == conv + age + gender + race


def test_machine_names_the_cpu_from_proc_cpuinfo_and_the_package_versions(monkeypatch):
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists() or "model name" not in cpuinfo.read_text():
        pytest.skip("no /proc/cpuinfo with a model name on this machine")
    monkeypatch.setattr(platform, "processor", lambda: "")  # what Linux often says: the name must come from cpuinfo
    info = bench.machine()
    assert info["cpu"] != "unknown" and f": {info['cpu']}\n" in cpuinfo.read_text()
    assert info["cores"] >= 1 and {"tensorflow", "keras"} <= set(info["versions"])


def test_results_files_are_named_for_the_cpu_and_its_cores():
    assert bench.machine_slug({"cpu": "AMD EPYC", "cores": 2}) == "amd-epyc-2cores"
    assert bench.machine_slug({"cpu": "Intel(R) Xeon(R) Processor", "cores": 16}) == \
        "intel-r--xeon-r--processor-16cores"


def test_precision_ratios_compare_bfloat16_with_float32_means():
    rows = [{"precision": "float32", "seed": seed, "seconds_per_epoch": 4.0, "gender_accuracy": 0.8,
             "race_accuracy": 0.7, "age_mae": 6.0} for seed in range(2)]
    rows += [{"precision": "mixed_bfloat16", "seed": seed, "seconds_per_epoch": 2.0 + seed, "gender_accuracy": 0.9,
              "race_accuracy": 0.7, "age_mae": 5.0} for seed in range(2)]
    ratios = bench.precision_ratios({"rows": rows})
    assert ratios["bfloat16_epoch_speedup_x"] == pytest.approx(4.0 / 2.5)
    assert ratios["bfloat16_gender_accuracy_delta"] == pytest.approx(0.1)
    assert ratios["bfloat16_age_mae_delta"] == pytest.approx(-1.0)
    assert bench.precision_ratios({"rows": rows[:2]}) == {}   # a CPU without bfloat16: nothing to compare



def test_race_ceiling_orders_majority_skin_and_skin_with_hair():
    ceiling = pytest.importorskip("ceiling")
    colours, race = ceiling.colour_table(5, seed=0)
    from faceattr.sample import sample_labels

    assert colours.shape == (5, 6) and (race == sample_labels(5, 0)[:, 2]).all()
    result = ceiling.ceiling(count=3000, max_iter=40)
    assert result["majority_class"] < result["skin"] < result["skin_and_hair"] < 0.95   # noisy labels: never perfect


def test_the_balance_study_chooses_fewest_cells_behind_the_report_then_lowest_score():
    balance = pytest.importorskip("balance")

    def cell(gender: float, race: float, age: float, score: float, spread: float = 0.01) -> dict:
        return {"gender_accuracy": {"mean": gender, "sd": spread}, "race_accuracy": {"mean": race, "sd": spread},
                "age_mae": {"mean": age, "sd": 0.1}, "val_score": {"mean": score, "sd": 0.01}}

    summary = {f"sample | {balance.REPORT}": cell(0.80, 0.75, 8.0, 0.50),
               "sample | fast but behind on race": cell(0.90, 0.70, 5.0, 0.30),
               "sample | level on race": cell(0.85, 0.745, 6.0, 0.40),
               "sample | higher everywhere": cell(0.85, 0.76, 7.0, 0.45)}
    assert balance.verdict(summary, "sample", "fast but behind on race", "race_accuracy") == "behind"
    assert balance.verdict(summary, "sample", "level on race", "race_accuracy") == "level"
    assert balance.verdict(summary, "sample", "fast but behind on race", "age_mae") == "better"   # lower is better
    names = ["fast but behind on race", "level on race", "higher everywhere"]
    assert balance.choose([summary], ["sample"], names) == "level on race"   # ties on cells: the lower score
    assert balance.choose([summary], ["sample"], names[:1]) == names[0]
    assert "default at batch 16" not in balance.choosable(list(balance.CANDIDATES))   # more steps per epoch
    assert balance.REPORT not in balance.choosable(list(balance.CANDIDATES))
    assert "kit default" in balance.choosable(list(balance.CANDIDATES))
