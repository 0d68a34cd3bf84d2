"""Model cards (Mitchell et al., 2019): what a run's model is for, what it learnt from, and where it fails.

`model_card` writes Markdown from a run's config.json and metrics.json only, so every number in it is one the
run measured. `faceattr train`, `faceattr evaluate` and notebook 05 write it as model_card.md; `faceattr card
RUN_DIR` prints it.
"""

from __future__ import annotations

from faceattr import __version__
from faceattr.labels import GENDER_NAMES, RACE_NAMES

MIN_RANKED_GROUP = 20   # smaller groups are listed, but too few images to rank them for gaps
GAP_ALPHA = 0.05        # a gap counts when shuffled group labels give one as large in under 5% of shuffles
GAP_HEADS = (("gender", "gender accuracy", "{:.2f}"), ("race", "race accuracy", "{:.2f}"),
             ("age", "age error", "{:.1f} years"))


def group_name(group: dict) -> str:
    """'white female' for a row of the per-group table."""
    return f"{group['race']} {group['gender']}"


def metrics_table(test: dict) -> list[str]:
    """The overall test metrics as Markdown table rows, with 95% intervals."""
    rows = ["| metric | value | 95% interval |", "| --- | ---: | --- |"]
    for key, label, interval in (("gender_accuracy", "gender accuracy", "gender_accuracy_ci95"),
                                 ("race_accuracy", "race accuracy", "race_accuracy_ci95"),
                                 ("age_mae", "age mean absolute error (years)", "age_mae_ci95")):
        low, high = test[interval]
        rows.append(f"| {label} | {test[key]:.3f} | {low:.3f} to {high:.3f} |")
    rows.append(f"| gender balanced accuracy | {test['gender_balanced_accuracy']:.3f} | |")
    rows.append(f"| race balanced accuracy | {test['race_balanced_accuracy']:.3f} | |")
    return rows


def group_rows(by_group: list[dict]) -> list[str]:
    """The per race x gender table as Markdown rows."""
    rows = ["| group | n | gender accuracy (95% interval) | race accuracy (95% interval) | age MAE |",
            "| --- | ---: | --- | --- | ---: |"]
    for group in by_group:
        rows.append(f"| {group_name(group)} | {group['n']} | {group['gender_accuracy']:.2f} "
                    f"({group['gender_ci_low']:.2f} to {group['gender_ci_high']:.2f}) | {group['race_accuracy']:.2f} "
                    f"({group['race_ci_low']:.2f} to {group['race_ci_high']:.2f}) | {group['age_mae']:.1f} |")
    return rows


def gap_lines(metrics: dict) -> list[str]:
    """One sentence per head: the best and worst group, the gap, and the verdict of the permutation test that
    `faceattr.evaluate.group_gap_test` ran when the run was evaluated (the rule notebooks 05 and 09 read)."""
    if "group_gaps" not in metrics:
        return ["- This metrics.json has no gap tests (it predates them): rerun `faceattr evaluate` on the run."]
    lines = []
    for head, label, form in GAP_HEADS:
        gap = metrics["group_gaps"].get(head)
        if gap is None:
            lines.append(f"- {label}: fewer than two groups have {MIN_RANKED_GROUP} test images; no gap is tested.")
            continue
        lines.append(f"- {label}: {gap['best']} {form.format(gap['best_score'])} against {gap['worst']} "
                     f"{form.format(gap['worst_score'])}, a gap of {form.format(gap['gap'])}; {gap['reading']}.")
    tested = sum(gap is not None for gap in metrics["group_gaps"].values())
    if tested > 1:
        lines.append(f"- {tested} heads are tested, each at {GAP_ALPHA:.0%}: with no real gap anywhere, about "
                     f"{tested * GAP_ALPHA:.2f} of them would still read as evidence by chance, so a p-value just under "
                     f"{GAP_ALPHA:.0%} is weak evidence.")
    return lines


def parameters_text(counts: dict[str, int]) -> str:
    """'1,275,747 parameters', and ' + 3 learned loss weights' when the model learns its loss weights
    (counts from faceattr.balance.parameter_counts)."""
    learned = counts.get("learned_loss_weights", 0)
    return f"{counts['network']:,} parameters" + (f" + {learned} learned loss weights" if learned else "")


def weights_text(weights: dict[str, float]) -> str:
    """'age 91.1, gender 1.44, race 0.721'."""
    return ", ".join(f"{head} {weight:.3g}" for head, weight in weights.items())


def model_lines(config: dict) -> list[str]:
    """The card's model section: the model's name and size, its settings, and its loss weights at the start and,
    when learned, at the kept epoch."""
    name = config.get("model_name", config["arch"])
    size = f"; {parameters_text(config['parameters'])}" if "parameters" in config else ""
    settings = ", ".join(f"{key} {config[key]}" for key in ("arch", "image_size", "num_epochs", "batch_size",
                                                             "loss_balance", "balance", "seed") if key in config)
    lines = [f"**{name}**: a Keras CNN with a shared trunk and three heads (age in years, gender, race){size}.", "",
             f"- Settings: {settings}."]
    if isinstance(config.get("loss_weights"), dict):
        learned = config.get("loss_weights_learned")
        lines.append(f"- Loss weights ({config.get('loss_balance', 'fixed')}): {weights_text(config['loss_weights'])}"
                     " at the start" + (f"; learned, at the kept epoch: {weights_text(learned)}." if learned else "."))
    return lines


def model_card(config: dict, metrics: dict, run_name: str) -> str:
    """The model card of one run, in Markdown."""
    synthetic = bool(metrics.get("synthetic", config.get("synthetic")))
    test = metrics["test"]
    data_line = (f"**The synthetic sample** (`{metrics['data']}`): cartoon faces that faceattr draws from "
                 "labels it chose, named in UTKFace's format. It exists so the lessons run anywhere. **Nothing in this card "
                 "says anything about real faces.**" if synthetic else
                 f"A UTKFace-format folder, `{metrics['data']}`: face crops whose age, gender and race were "
                 "annotated by other people from the photo (apparent, not self-reported).")
    lines = [
        f"# Model card: {config.get('model_name', config['arch'])} ({run_name})",
        "",
        f"Generated by faceattr {__version__} from this run's `config.json` and `metrics.json`"
        + (" — **trained on the synthetic sample**." if synthetic else "."),
        "",
        "## Model",
        *model_lines(config),
        "",
        "## Intended use",
        "Teaching: how one network learns several tasks at once, and how to measure it honestly, in the faceattr",
        "notebooks.",
        "",
        "## Out of scope",
        "Identifying anyone; surveillance; any decision about a person (access, hiring, policing, services);",
        "inferring how a person identifies. The labels are coarse categories "
        f"({len(GENDER_NAMES)} genders, {len(RACE_NAMES)} races) that do not describe everyone.",
        "",
        "## Training data",
        data_line,
        "",
        f"## Test metrics (the whole test split, n = {test['n']})",
        *metrics_table(test),
        "",
        "## By race x gender group",
        *group_rows(metrics["by_group"]),
        "",
        f"## Largest gaps (groups of {MIN_RANKED_GROUP} test images or more, each head tested by shuffling the "
        "group labels)",
        *gap_lines(metrics),
        "",
        "## Limitations",
        "- The labels are annotated, apparent and coarse; the model learns the annotators' judgements.",
        "- The test split comes from the same collection as the training data. Photos from elsewhere (other",
        "  cameras, light, ages, people) differ, and these numbers do not carry over to them (notebook 06).",
        "- Small groups have wide intervals: read the intervals before the point estimates.",
    ]
    return "\n".join(lines) + "\n"
