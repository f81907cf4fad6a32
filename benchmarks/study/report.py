"""``docs/results.md`` and its plots in ``docs/results/``, from the recorded runs of both protocols.

The 10-epoch study comes first. Once the converged protocol has tuned values
or runs, its part follows: setup and budget rule, tuned values, validation curves, the tables and
verdicts, then both protocols' verdicts side by side and what changed. The text after
``NOTES_MARKER`` of an existing report is kept.
"""

import math
import os

import numpy as np

from benchmarks.study.claims import claims, progress, rows_of, summarize
from benchmarks.study.experiments import EXPERIMENTS, METRIC_NAMES, METRICS, PROTOCOLS, REPO, configurations, row_runs
from benchmarks.study.store import read_records
from benchmarks.study.tuning import read_tuned
from tfdml.io import write_file_atomically

REPORT = os.path.join(REPO, "docs", "results.md")
NOTES_MARKER = "<!-- hand-written notes below: kept when the study rewrites this file -->"
NOT_RUN = "not yet run"


def fmt(value, scale=100.0):
    mean, std = value
    return f"{scale * mean:.1f} ± {scale * std:.1f}" if not math.isnan(std) else f"{scale * mean:.1f}"


def table(rows, columns=METRICS):
    header = "| configuration | " + " | ".join(METRIC_NAMES[c] for c in columns) + " | seeds |"
    lines = [header, "|" + "---|" * (len(columns) + 2)]
    best = {c: max(entry[c][0] for _, entry in rows) for c in columns if c in METRICS}
    for label, entry in rows:
        cells = []
        for column in columns:
            mean, std = entry[column]
            if column in METRICS:
                text = fmt(entry[column])
            else:
                text = f"{mean:.1f} ± {std:.1f}" if column.startswith("rank") else f"{mean:.3f} ± {std:.3f}"
            cells.append(f"**{text}**" if best.get(column) == mean else text)
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {entry['n']} |")
    return "\n".join(lines)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finish(plt, figure, axis, path, xlabel, ylabel, title, legend_size):
    """Label, save and close a one-axis figure."""
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.set_title(title, fontsize=9)
    axis.legend(fontsize=legend_size)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def plot(title, rows, path):
    plt = _pyplot()
    labels = [label for label, _ in rows]
    figure, axes = plt.subplots(1, len(METRICS), figsize=(4.2 * len(METRICS), 0.42 * len(rows) + 1.4), sharey=True)
    for axis, metric in zip(axes, METRICS):
        means = [100 * entry[metric][0] for _, entry in rows]
        stds = [100 * np.nan_to_num(entry[metric][1]) for _, entry in rows]
        axis.barh(range(len(rows)), means, xerr=stds, color="tab:blue", alpha=0.8, capsize=3)
        axis.set_title(METRIC_NAMES[metric])
        axis.set_xlim(max(0, min(means) - max(stds) - 5), max(means) + max(stds) + 2)
        axis.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(rows)), labels)
    axes[0].invert_yaxis()
    figure.suptitle(title + " — mean ± std over seeds", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def plot_rho(summary, rows, path):
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6.5, 4.5))
    entries = list(summary.values())
    axis.scatter([e["rho_train"][0] for e in entries], [100 * e["recall_at_1"][0] for e in entries],
                 color="lightgray", label="all configurations")
    named = dict(rows)
    for label, entry in rows:
        if label.startswith("R-") and label[2:] in named:
            base = named[label[2:]]
            axis.annotate("", xy=(entry["rho_train"][0], 100 * entry["recall_at_1"][0]),
                          xytext=(base["rho_train"][0], 100 * base["recall_at_1"][0]),
                          arrowprops={"arrowstyle": "->", "color": "tab:red"})
            axis.annotate(label[2:], (base["rho_train"][0], 100 * base["recall_at_1"][0]), fontsize=8)
    _finish(plt, figure, axis, path, "spectral decay ρ of the training embedding (lower: less compressed)",
            "test Recall@1 (%)", "Objective → its R- variant (arrows); all study configurations (gray)", legend_size=8)


def plot_curves(curves, path, select_by):
    """``curves``: ``[(label, [per-seed curve])]``; one line per seed of validation ``select_by`` by epoch."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7.5, 4.5))
    for (label, runs), color in zip(curves, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 2):
        for seed, curve in enumerate(runs):
            axis.plot([point["epoch"] for point in curve], [100 * point[select_by] for point in curve],
                      color=color, alpha=0.8, label=label if seed == 0 else None)
    _finish(plt, figure, axis, path, "epoch", f"validation {select_by} (%)",
            "Validation curves (held-out Latin characters), one line per seed", legend_size=7)


def flattening(curve, select_by, tolerance):
    """``(gain, flat)``: how much the best ``select_by`` of the last quarter of the epochs exceeds the best
    before it, and whether that is below ``tolerance`` (the budget rule's "flattened")."""
    scores = [point[select_by] for point in curve]
    tail = max(1, len(scores) // 4)
    if len(scores) <= tail:
        return float("nan"), False
    gain = max(scores[-tail:]) - max(scores[:-tail])
    return gain, gain < tolerance


def protocol_state(protocol, data_root):
    """``(records, summary, tuned)`` of the current configurations of ``protocol``."""
    tuned = read_tuned(protocol)
    current = configurations(list(EXPERIMENTS), protocol, data_root, tuned)
    records = [record for record in read_records(protocol.results) if record["key"] in current]
    return records, summarize(records), tuned


def experiment_sections(protocol, summary, data_root, tuned, image_prefix=""):
    """``(markdown lines, {experiment: findings}, {experiment: "k/n rows done"})`` of every experiment
    with results; one not done yet (:func:`benchmarks.study.claims.progress`) shows its table alone."""
    results_dir = os.path.join(os.path.dirname(REPORT), "results")
    parts, findings, partial = [], {}, {}
    for experiment, spec in EXPERIMENTS.items():
        rows = rows_of(experiment, summary, protocol, data_root, tuned)
        if not rows:
            continue
        columns = (*METRICS, "rho_train", "rho_test", "rank_train") if experiment == "roth_rho" else METRICS
        image = f"results/{image_prefix}{experiment}.png"
        plot(spec["title"], rows, os.path.join(results_dir, f"{image_prefix}{experiment}.png"))
        parts += [f"## {spec['title']}", "", table(rows, columns), ""]
        done, total = progress(experiment, rows, protocol)
        if done < total:
            partial[experiment] = f"{done}/{total} rows done"
            parts += [f"Claims are judged once all {total} rows have run seeds {list(protocol.seeds)}: "
                      f"{done} have so far.", ""]
        else:
            findings[experiment] = claims(experiment, rows, summary)
            parts += [*(f.line for f in findings[experiment]), ""]
        compositions = [(label, entry["batch_composition"]) for label, entry in rows if "batch_composition" in entry]
        if experiment == "fastap" and compositions:
            parts += ["Batch composition (the sampler's first 3 epochs, no training): "
                      + "; ".join(f"{label}: {c['categories_per_batch']:.1f} categories and {c['classes_per_batch']:.1f} "
                                  f"classes per batch, {100 * c['same_category_negatives']:.0f}% of different-class "
                                  "pairs share a category" for label, c in compositions) + ".", ""]
        parts += [f"![{experiment}]({image})", ""]
        if experiment == "roth_rho":
            plot_rho(summary, rows, os.path.join(results_dir, f"{image_prefix}rho_vs_recall.png"))
            parts += [f"![ρ vs Recall@1](results/{image_prefix}rho_vs_recall.png)", ""]
    return parts, findings, partial


def ten_epoch_part(data_root, protocol):
    records, summary, tuned = protocol_state(protocol, data_root)
    seeds = sorted({record["seed"] for record in records})
    hours = sum(record["seconds"] for record in records) / 3600
    parts = [
        "# Results: the papers' claims on Omniglot",
        "",
        "Generated by `python -m benchmarks.omniglot_study` from "
        f"`{os.path.relpath(protocol.results, os.path.dirname(REPORT))}` ({len(records)} runs, seeds {seeds}, "
        f"{hours:.1f} process-hours on {os.cpu_count()} CPU cores).",
        "",
        "Setup: the recipe `pipelines/omniglot_margin.yaml` (Conv-4 at 28 px, 64-d embedding, Adam 1e-3, 10 epochs, "
        "batches of 64 with 4 images per class) with only the compared component changed. Split (class- and "
        "alphabet-disjoint): train on the 2,720 drawings of the 136 characters of the 5 `images_background_small1` "
        "alphabets (Balinese, Early_Aramaic, Greek, Korean, Latin); test on the 2,120 drawings of the 106 characters "
        "of the 3 alphabets only in `images_background_small2` (Japanese_(katakana), Sanskrit, Tagalog). Metrics are "
        "taken once, after the last epoch. ρ is the spectral decay of the embedded training split within the "
        "subspace it spans (rank: number of non-zero singular values; see the notes). Numbers are mean ± sample standard "
        "deviation over seeds, in percent; the test split's 106 characters (3 alphabets) were never trained on. "
        "A claim \"held\" when the mean difference is positive; \"SE\" is the difference divided by its standard "
        "error (√(s₁²/n₁ + s₂²/n₂)): below 2 the ordering is within seed noise. Bold: best in the column.",
        "",
    ]
    sections, findings, _ = experiment_sections(protocol, summary, data_root, tuned)
    return parts + sections, findings


def tuned_table(protocol, data_root, tuned):
    """One row per tuned configuration: its label, tuned values and validation score."""
    tuned_records = {record["key"]: record for record in read_records(protocol.tuned)}
    lines = ["| configuration | tuned values | best validation R@1 |", "|---|---|---|"]
    for key, (experiment, label, _) in configurations(list(EXPERIMENTS), protocol, data_root).items():
        record = tuned_records.get(key)
        if record is None:
            lines.append(f"| {experiment}: {label} | {NOT_RUN} | |")
            continue
        values = ", ".join(f"{path.split('.')[-1]} = {value:.3g}" if isinstance(value, float) else
                           f"{path.split('.')[-1]} = {value}" for path, value in record["values"].items())
        lines.append(f"| {experiment}: {label} | {values} | {100 * record['score']:.1f} |")
    return "\n".join(lines)


def curves_part(protocol, summary, data_root, tuned):
    """The representative validation curves (plot) and whether each flattened under the budget rule."""
    select_by = "val_recall_at_1"
    shown, lines = [], ["| configuration | epochs | best epoch (mean) | last-quarter gain | flattened |", "|---|---|---|---|---|"]
    for experiment, label in protocol.curves:
        key, _ = row_runs(experiment, protocol, data_root, tuned).get(label, (None, None))
        entry = summary.get(key)
        if entry is None or "curves" not in entry:
            lines.append(f"| {label} | {NOT_RUN} | | | |")
            continue
        shown.append((label, entry["curves"]))
        gains = [flattening(curve, select_by, protocol.flat_tolerance) for curve in entry["curves"]]
        lines.append(f"| {label} | {len(entry['curves'][0])} | {entry['best_epoch']:.1f} | "
                     + ", ".join(f"{100 * gain:+.1f}" for gain, _ in gains) + " pts | "
                     + f"{sum(flat for _, flat in gains)}/{len(gains)} seeds |")
    parts = ["### Validation curves", "", "\n".join(lines), ""]
    if shown:
        plot_curves(shown, os.path.join(os.path.dirname(REPORT), "results", "converged_curves.png"), select_by)
        parts += ["![validation curves](results/converged_curves.png)", ""]
    return parts


def side_by_side(before, after, partial):
    """Both protocols' verdicts per claim, and the claims whose verdict changed; ``partial``: the
    experiments with some rows run, as ``{experiment: "k/n rows done"}``."""
    lines = ["## 10 epochs vs converged: every claim side by side", "",
             "| experiment | claim | 10 epochs | converged |", "|---|---|---|---|"]
    changed = []
    for experiment in EXPERIMENTS:
        later = {finding.claim: finding for finding in after.get(experiment, [])}
        for finding in before.get(experiment, []):
            now = later.get(finding.claim)
            waiting = f"not yet judged ({partial[experiment]})" if experiment in partial else NOT_RUN
            lines.append(f"| {experiment} | {finding.claim} | {finding.outcome} | {now.outcome if now else waiting} |")
            if now and finding.verdict and now.verdict and finding.verdict != now.verdict:
                changed.append(f"- {experiment}: {finding.claim}: {finding.verdict} → {now.verdict}")
    waiting = [f"{experiment} ({partial[experiment]})" if experiment in partial else experiment
               for experiment in EXPERIMENTS if experiment not in after]
    parts = [*lines, "", "## What changed from the 10-epoch study", ""]
    parts += changed or ["- No verdict changed among the claims with converged results."]
    if waiting:
        parts += [f"- Not yet judged under the converged protocol (not all rows done): {', '.join(waiting)}."]
    return parts + [""]


def converged_part(data_root, protocol, before):
    records, summary, tuned = protocol_state(protocol, data_root)
    if not records and not tuned:
        return []
    seeds = sorted({record["seed"] for record in records})
    hours = sum(record["seconds"] for record in records) / 3600
    tuning = protocol.tuning
    parts = [
        "# Converged, fairly tuned models",
        "",
        f"From `{os.path.relpath(protocol.results, os.path.dirname(REPORT))}` ({len(records)} runs, seeds {seeds}, "
        f"{hours:.1f} process-hours) and `{os.path.relpath(protocol.tuned, os.path.dirname(REPORT))}` "
        f"({len(tuned)} tuned configurations). Protocol `converged` of `pipelines/studies/omniglot_claims.yaml`: "
        "Latin (26 characters) is held out of the training alphabets as validation classes; validation Recall@1 is "
        "logged every epoch, and the best validation epoch is the model evaluated once on the test alphabets.",
        "",
        f"**Budget rule.** {protocol.budget_rule}",
        "",
        f"**Seeds.** Every configuration runs seeds {list(protocol.seeds)}; where one of an experiment's decisive "
        "comparisons (the claim's row against its closest rival, SPC-2 vs SPC-4, the best vs the worst sampler, an "
        f"R- variant vs its base, category-hard vs random) is within 2 SE after them, both rows get seeds "
        f"{list(protocol.extra_seeds)} as well (the tables' seeds column).",
        "",
        f"**Tuning.** Every configuration gets the same search: {tuning['max_trials']} {tuning['algorithm']} trials "
        f"of {tuning['epochs']} epochs (seed {tuning['seed']}) with keras-tuner, scored by validation Recall@1; the "
        "final runs use the best trial's values.",
        "",
        tuned_table(protocol, data_root, tuned),
        "",
        *curves_part(protocol, summary, data_root, tuned),
    ]
    sections, after, partial = experiment_sections(protocol, summary, data_root, tuned, image_prefix="converged_")
    return parts + sections + side_by_side(before, after, partial)


def write_report(data_root, protocols=PROTOCOLS):
    notes = ""
    if os.path.exists(REPORT):
        with open(REPORT) as f:
            text = f.read()
        if NOTES_MARKER in text:
            notes = text.split(NOTES_MARKER, 1)[1]
    os.makedirs(os.path.join(os.path.dirname(REPORT), "results"), exist_ok=True)
    parts, before = ten_epoch_part(data_root, protocols["ten_epoch"])
    parts += converged_part(data_root, protocols["converged"], before)
    parts += [NOTES_MARKER]
    write_file_atomically(REPORT, "\n".join(parts) + (notes if notes else "\n"))
    print(f"Wrote {os.path.relpath(REPORT, REPO)} and its plots in docs/results/.")
