"""The papers' claims, checked on a protocol's recorded runs: seed statistics and one verdict per claim.

A claim "held" when the mean difference is positive; its strength is the difference over its
standard error (√(s₁²/n₁ + s₂²/n₂)): below 2 the ordering is within seed noise. Each claim comes
back as a :class:`Finding`, so the report can print it and set two protocols' verdicts side by side.
"""

import dataclasses
import math

import numpy as np

from benchmarks.study.experiments import EXPERIMENTS, METRIC_NAMES, METRICS, row_runs

VERDICTS = ("**held**", "**held, within noise**", "**did not hold**")


def summarize(records):
    """``{key: {"n": seeds, metric: (mean, std), "beta": ..., "batch_composition": ...}}`` over the recorded seeds."""
    by_key = {}
    for record in records:
        by_key.setdefault(record["key"], []).append(record)
    summary = {}
    for key, runs in by_key.items():
        entry = {"n": len(runs), "seconds": float(np.mean([r["seconds"] for r in runs]))}
        for metric in (*METRICS, "rho_train", "rho_test", "rank_train"):
            values = np.array([r[metric] for r in runs], dtype=np.float64)
            entry[metric] = (float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else float("nan"))
        betas = [r["learned_beta"] for r in runs if r.get("learned_beta")]
        if betas:
            entry["beta"] = (min(b["min"] for b in betas), float(np.mean([b["mean"] for b in betas])), max(b["max"] for b in betas))
        compositions = [r["batch_composition"] for r in runs if r.get("batch_composition")]
        if compositions:
            entry["batch_composition"] = {name: float(np.mean([c[name] for c in compositions])) for name in compositions[0]}
        curves = [r["curve"] for r in runs if r.get("curve")]
        if curves:
            entry["curves"] = curves
            entry["best_epoch"] = float(np.mean([r["best_epoch"] for r in runs]))
        summary[key] = entry
    return summary


@dataclasses.dataclass(frozen=True)
class Finding:
    """One claim and what happened to it: ``claim`` names it across protocols, ``outcome`` is the result."""

    claim: str
    outcome: str
    pair: bool = False  # one comparison under the claim above it
    separator: str = ": "

    @property
    def line(self):
        return f"{'  ' if self.pair else ''}- {self.claim}{self.separator}{self.outcome}"

    @property
    def verdict(self):
        """The verdict word (held / within noise / did not hold), a count such as ``5/6``, or None for a measurement."""
        for word in VERDICTS:
            if self.outcome.startswith(word):
                return word.strip("*")
        head = self.outcome.split(" ")[0]
        return head if "/" in head and head.replace("/", "").isdigit() else None


def compare(a, b, metric="recall_at_1"):
    """``(difference in points, difference / its standard error)`` of mean ``a`` − mean ``b``."""
    (mean_a, std_a), (mean_b, std_b) = a[metric], b[metric]
    error = math.sqrt(std_a**2 / a["n"] + std_b**2 / b["n"])  # nan with a single seed
    difference = 100.0 * (mean_a - mean_b)
    return difference, (mean_a - mean_b) / error if error > 0 else float("inf")


def verdict(difference, ratio):
    if math.isnan(ratio):
        return f"**{'held' if difference > 0 else 'did not hold'}** ({difference:+.1f} pts, one seed: no SE)"
    if difference <= 0:
        return f"**did not hold** ({difference:+.1f} pts, {ratio:.1f} SE)"
    if ratio < 2:
        return f"**held, within noise** ({difference:+.1f} pts, {ratio:.1f} SE)"
    return f"**held** ({difference:+.1f} pts, {ratio:.1f} SE)"


def closest_rival(entries, label, highest=True, metric="recall_at_1"):
    """The row other than ``label`` with the highest (or lowest) mean ``metric``."""
    pick = max if highest else min
    return pick((other for other in entries if other != label), key=lambda other: entries[other][metric][0])


def extreme_claim(rows, label, highest=True, metric="recall_at_1"):
    """Verdict on "``label`` scores highest" (or lowest): its gap to the closest other row."""
    entries = dict(rows)
    if label not in entries or len(entries) < 2:
        return "not enough results"
    closest = closest_rival(entries, label, highest, metric)
    if highest:
        return verdict(*compare(entries[label], entries[closest], metric)) + f" vs {closest}"
    return verdict(*compare(entries[closest], entries[label], metric)) + f" ({closest} is next)"


def pair_claims(rows, pairs, metric="recall_at_1"):
    """``(held, findings)``: one finding per ``(better, worse)`` pair of labels with results."""
    entries = dict(rows)
    findings, held = [], 0
    for better, worse in pairs:
        if better in entries and worse in entries:
            difference, ratio = compare(entries[better], entries[worse], metric)
            held += difference > 0
            findings.append(Finding(f"{better} > {worse}", verdict(difference, ratio), pair=True))
    return held, findings


def pair_group(claim, rows, pairs):
    """A claim over several pairs: ``held/pairs`` first, then each pair."""
    held, findings = pair_claims(rows, pairs)
    return [Finding(claim, f"{held}/{len(findings)}"), *findings]


def _wu_table1(rows, summary):
    out = [Finding(f"Distance-weighted + margin is the best combination ({METRIC_NAMES[metric]})",
                   extreme_claim(rows, "distance-weighted / margin", metric=metric)) for metric in METRICS]
    out.append(Finding("Contrastive with random sampling is the worst", extreme_claim(rows, "random / contrastive", highest=False)))
    losses = ("triplet ℓ2²", "triplet ℓ2", "margin")
    out += pair_group("For the same loss, distance-weighted beats semi-hard and random (Wu exempt contrastive)", rows,
                      [(f"distance-weighted / {l}", f"{s} / {l}") for l in losses for s in ("semi-hard", "random")])
    out += pair_group("Margin loss beats the other losses under every sampling", rows,
                      [(f"{s} / margin", f"{s} / {l}") for s in ("random", "semi-hard", "distance-weighted")
                       for l in ("contrastive", "triplet ℓ2²", "triplet ℓ2")])
    return out


def _wu_beta(rows, summary):
    out = [Finding(f"Learned class-specific β beats every fixed β ({METRIC_NAMES[metric]})",
                   extreme_claim(rows, "learned β⁽⁰⁾ + β_class", metric=metric)) for metric in METRICS]
    entry = dict(rows).get("learned β⁽⁰⁾ + β_class")
    if entry and "beta" in entry:
        low, mean, high = entry["beta"]
        out.append(Finding("Learned β_c after training", f"{low:.2f} to {high:.2f} (mean {mean:.2f}); Wu report 0.94 to 1.45 on SOP."))
    return out


SAMPLING_LOSSES = ("margin (D)", "multi-similarity")


def _roth_sampling(rows, summary):
    out = []
    for loss_name in SAMPLING_LOSSES:
        group = [(label.split(" / ")[1], entry) for label, entry in rows if label.startswith(loss_name)]
        if not group:
            continue
        _, pairs = pair_claims(group, [("SPC-2", "SPC-4")])
        out += [Finding(f"{loss_name}: SPC-2 outperforms SPC-4", pair.outcome) for pair in pairs]
        ranking = sorted(group, key=lambda item: -item[1]["recall_at_1"][0])
        places = {name: i + 1 for i, (name, _) in enumerate(ranking)}
        out.append(Finding(f"{loss_name}: SPC-2 and FRD perform very well", f"ranks {places['SPC-2']} and "
                           f"{places['FRD']} of {len(group)} by R@1 (order: {', '.join(n for n, _ in ranking)})."))
        spread = 100.0 * (ranking[0][1]["recall_at_1"][0] - ranking[-1][1]["recall_at_1"][0])
        out.append(Finding(f"{loss_name}: sampling changes mean R@1 by up to", f"{spread:.1f} pts (Roth: up to 1.5%).", separator=" "))
    return out


RHO_BASES = ("contrastive (D)", "triplet (D)", "margin (D)", "SNR (D)")


def _roth_rho(rows, summary):
    import scipy.stats

    out = pair_group("ρ-regularisation improves R@1 of every ranking objective", rows,
                     [(f"R-{base}", base) for base in RHO_BASES])
    entries = dict(rows)
    pairs = [(base, entries[base], entries[f"R-{base}"]) for base in RHO_BASES if base in entries and f"R-{base}" in entries]
    for measure, change, better in (("rho_train", "lowers ρ of the training embedding (less compression)", -1),
                                    ("rank_train", "raises the rank of the training embedding (more directions)", 1)):
        moved = sum(better * (r[measure][0] - b[measure][0]) > 0 for _, b, r in pairs)
        digits = 1 if measure.startswith("rank") else 3
        details = "; ".join(f"{name} {b[measure][0]:.{digits}f} → {r[measure][0]:.{digits}f}" for name, b, r in pairs)
        out.append(Finding(f"ρ-regularisation {change}", f"{moved}/{len(pairs)} ({details})"))
    points = [entry for entry in summary.values() if entry["n"] >= 2]
    if len(points) >= 4:
        recall = [e["recall_at_1"][0] for e in points]
        for measure, expected in (("rho_train", "Roth report ≤ −0.63 across objectives"),
                                  ("rank_train", "more directions should go with better R@1: positive")):
            correlation = scipy.stats.spearmanr([e[measure][0] for e in points], recall)
            out.append(Finding(f"Spearman correlation of {METRIC_NAMES[measure]} with test R@1",
                               f"over all {len(points)} configurations of the study: {correlation.statistic:+.2f} "
                               f"(p = {correlation.pvalue:.2g}); {expected}.", separator=" "))
    return out


def _fastap(rows, summary):
    return [Finding(f"Category-hard batches beat random batches ({METRIC_NAMES[metric]})",
                    extreme_claim(rows, "FastAP / category-hard", metric=metric)) for metric in METRICS]


CLAIMS = {"wu_table1": _wu_table1, "wu_beta": _wu_beta, "roth_sampling": _roth_sampling, "roth_rho": _roth_rho,
          "fastap": _fastap}


def claims(experiment, rows, summary):
    """The :class:`Finding` of each claim of ``experiment`` on its ``[(label, entry)]`` rows (R@1 unless said),
    every row run (see :func:`progress`); ``summary``: every configuration of the protocol (ρ's correlation
    spans them all)."""
    return CLAIMS[experiment](rows, summary)


def _sampling_pairs(entries):
    pairs = []
    for loss_name in SAMPLING_LOSSES:
        group = sorted((label for label in entries if label.startswith(loss_name)), key=lambda l: -entries[l]["recall_at_1"][0])
        pairs += [(f"{loss_name} / SPC-2", f"{loss_name} / SPC-4"), (group[0], group[-1])]
    return pairs


# The converged study's decisive comparisons, as (row, row) pairs of a fully run experiment: Wu's best combination and
# learned β against their closest rival, SPC-2 vs SPC-4 and the best vs worst sampler (the spread), each
# R- variant against its base, category-hard against random batches.
DECISIVE = {
    "wu_table1": lambda entries: [("distance-weighted / margin", closest_rival(entries, "distance-weighted / margin"))],
    "wu_beta": lambda entries: [("learned β⁽⁰⁾ + β_class", closest_rival(entries, "learned β⁽⁰⁾ + β_class"))],
    "roth_sampling": _sampling_pairs,
    "roth_rho": lambda entries: [(f"R-{base}", base) for base in RHO_BASES],
    "fastap": lambda entries: [("FastAP / category-hard", "FastAP / random classes")],
}


def rows_of(experiment, summary, protocol, data_root, tuned=None):
    """``[(label, entry)]`` of an experiment's configurations that have results."""
    runs = row_runs(experiment, protocol, data_root, tuned)
    return [(label, summary[key]) for label, (key, _) in runs.items() if key in summary]


def progress(experiment, rows, protocol):
    """``(done, total)``: how many of ``experiment``'s rows have all of ``protocol``'s seeds, of how many.
    Its claims are judged only when all are done: a "best of all" or a ranking over the rows run so far
    would be a different claim, and a verdict on fewer seeds an interim one."""
    return sum(entry["n"] >= len(protocol.seeds) for _, entry in rows), len(EXPERIMENTS[experiment]["rows"])


def unsettled(experiment, rows, seeds):
    """Labels of the rows of ``experiment``'s decisive comparisons whose R@1 difference is within 2 SE
    and that have fewer than ``seeds`` seeds."""
    entries = dict(rows)
    labels = set()
    for a, b in DECISIVE[experiment](entries):
        _, ratio = compare(entries[a], entries[b])
        if not abs(ratio) >= 2:  # a single seed (no SE) is unsettled too
            labels |= {label for label in (a, b) if entries[label]["n"] < seeds}
    return labels


def extra_runs(experiments, protocol, data_root, records, tuned=None):
    """``(key, overrides, seed)`` runs of ``protocol.extra_seeds`` that a decisive comparison within 2 SE
    after the protocol's seeds still needs (5 seeds where 3 do not settle it).

    An experiment is looked at once all its rows have the protocol's seeds; after the extra seeds a
    different rival can become closest, so the caller asks again until nothing is left.
    """
    summary = summarize(records)
    done = {(record["key"], record["seed"]) for record in records}
    all_seeds = len(protocol.seeds) + len(protocol.extra_seeds)
    runs = {}
    for experiment in experiments:
        rows = rows_of(experiment, summary, protocol, data_root, tuned)
        rows_done, total = progress(experiment, rows, protocol)
        if rows_done < total:
            continue
        row_keys = row_runs(experiment, protocol, data_root, tuned)
        for label in sorted(unsettled(experiment, rows, all_seeds)):
            key, overrides = row_keys[label]
            for seed in protocol.extra_seeds:
                if (key, seed) not in done:
                    runs[(key, seed)] = (key, overrides, seed)
    return list(runs.values())
