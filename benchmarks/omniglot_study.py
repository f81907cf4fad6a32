"""The three papers' claims, checked on real data that trains on this CPU: Omniglot (issue 8).

Every configuration is the Omniglot recipe ``pipelines/omniglot_margin.yaml`` (Conv-4 at
28 px, 64-d embedding, Adam 1e-3, 10 epochs, batches of 64 with 4 images per class)
with only the compared component changed, trained on the 2,720 drawings of the 136
characters of the 5 ``images_background_small1`` alphabets (Balinese, Early_Aramaic,
Greek, Korean, Latin) and evaluated on the 2,120 drawings of the 106 characters of the
3 alphabets only in ``images_background_small2`` (Japanese_(katakana), Sanskrit,
Tagalog): class- and alphabet-disjoint, as ``tfdml.data.omniglot`` documents. Metrics
are taken once, after the last epoch (no model selection on the test classes):
Recall@1, MAP@R and NMI on the test split, and Roth et al.'s spectral decay ρ of the
embedded *training* split (and of the test split).

Experiments (``EXPERIMENTS``):

1. ``wu_table1``: random / semi-hard / distance-weighted sampling × contrastive,
   triplet ℓ2², triplet ℓ2 and margin loss (Wu et al. 2017, Table 1);
2. ``wu_beta``: learned class-specific β vs fixed β ∈ {0.8, 1.0, 1.2} (Wu Table 2);
3. ``roth_sampling``: SPC-2/4/8, SPC-R, FRD, DDM and greedy coreset batches for
   margin (D) and multi-similarity (Roth et al. 2020, §4.3);
4. ``roth_rho``: contrastive, triplet, margin and SNR (all with distance-weighted
   tuples) vs their ρ-regularised R- variants (Roth Table 2, §5);
5. ``fastap``: FastAP with category-hard vs random-class batches, alphabets as
   categories (Cakir et al. 2019, supp. A).

Identical configurations in several experiments are trained once. Results are
appended to ``docs/results/omniglot_study.jsonl`` as runs finish, so an interrupted
study resumes where it stopped (a run is keyed by its resolved config and seed; a
changed recipe is a new key). At the end ``docs/results.md`` and its plots in
``docs/results/`` are written from all recorded runs; the text after the
``NOTES_MARKER`` line of an existing ``docs/results.md`` is kept.

Run (all experiments, 3 seeds, about an hour on 2 cores):

    python benchmarks/omniglot_study.py

``--experiments wu_beta fastap`` runs a subset, ``--seeds 0 1 2 3`` more seeds,
``--report-only`` rewrites the report from the recorded runs.
"""

import argparse
import hashlib
import json
import math
import multiprocessing
import os
import signal
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

BASE_RECIPE = os.path.join(REPO, "pipelines", "omniglot_margin.yaml")
DEFAULT_DATA_ROOT = os.path.join(REPO, "..", "shared", "data", "omniglot")
RESULTS = os.path.join(REPO, "docs", "results", "omniglot_study.jsonl")
REPORT = os.path.join(REPO, "docs", "results.md")
NOTES_MARKER = "<!-- hand-written notes below: kept when the study rewrites this file -->"
METRICS = ("recall_at_1", "map_at_r", "nmi")
METRIC_NAMES = {
    "recall_at_1": "R@1", "map_at_r": "MAP@R", "nmi": "NMI", "rho_train": "ρ train", "rho_test": "ρ test",
    "rank_train": "rank train",
}

# Every run evaluates once at the end; nothing is selected on the test classes. The study's protocol
# (10 epochs on all 5 small1 alphabets, no validation classes) is pinned here, independent of the
# recipe's own budget and model selection.
COMMON = (
    "epochs=10", "data.validation=null", "evaluation.recall_k=[1]", "evaluation.metrics=[recall_at_k, map_at_r, nmi]",
)


def loss(name, **params):
    return (f"loss.class={name}", f"loss.params={json.dumps(params)}")


def miner(name, **params):
    return (f"miner.class={name}", f"miner.params={json.dumps(params)}")


def sampler(name, samples_per_class=None, **params):
    spc = "null" if samples_per_class is None else samples_per_class
    return (f"sampler.class={name}", f"sampler.samples_per_class={spc}", f"sampler.params={json.dumps(params)}")


CONTRASTIVE = loss("ContrastiveLoss", margin=1.0)
TRIPLET_SQUARED = loss("TripletLoss", margin=0.2, squared=True)
TRIPLET = loss("TripletLoss", margin=0.2)
# Wu et al.: β⁽⁰⁾ = 1.2 learned, with class-specific offsets from 0, α = 0.2.
MARGIN = loss("MarginLoss", margin=0.2, beta=1.2, learn_beta=True, beta_class=True)
SNR = loss("SNRLoss", margin=0.2, regularization=0.005)
MULTI_SIMILARITY = loss("MultiSimilarityLoss", alpha=2.0, beta=40.0, threshold=0.5)

# Random tuples: as many as distance-weighted sampling forms (every ordered positive pair of a
# 64-image batch with 4 per class: 64 × 3), so the samplers differ in which tuples, not how many.
RANDOM = miner("RandomMiner", num_tuples=192)
DISTANCE_WEIGHTED = miner("DistanceWeightedMiner", cutoff=0.5, nonzero_loss_cutoff=1.4)
# Semi-hard: triplet losses use D_ap as the band's lower bound (in their own distance); pairwise
# losses have no D_ap, so Wu et al. use a fixed lower bound of 0.5 (§5.1).
SEMI_HARD_PAIRWISE = miner("SemiHardMiner", margin=0.2, lower_bound=0.5)
SEMI_HARD = miner("SemiHardMiner", margin=0.2)
SEMI_HARD_SQUARED = miner("SemiHardMiner", margin=0.2, squared=True)


def rho(p_switch):
    return miner("DistanceWeightedMiner", cutoff=0.5, nonzero_loss_cutoff=1.4, p_switch=p_switch)


SAMPLERS = {
    "SPC-2": sampler("SPCSampler", 2),
    "SPC-4": sampler("SPCSampler", 4),
    "SPC-8": sampler("SPCSampler", 8),
    # SPC-R's own epoch is 44 batches; 42 like the others keeps the training budget equal.
    "SPC-R": (*sampler("SPCRandomSampler"), "steps_per_epoch=42"),
    "FRD": sampler("FRDSampler", 2),
    "DDM": sampler("DDMSampler", 2),
    "GC": sampler("CoresetSampler", 2),
}

# Both FastAP samplers get one pass over the 2,720 training images per epoch (21 batches of 128):
# their own epochs differ (22 random-class batches, 50 category-hard ones for 5 per alphabet pair).
FASTAP_BUDGET = ("sampler.batch_size=128", "steps_per_epoch=21")

# ρ-regularisation probabilities of Roth et al.'s R- recipes (pipelines/roth_cub200_r_*.yaml).
EXPERIMENTS = {
    "wu_table1": {
        "title": "Wu et al. Table 1: sampling × loss",
        "rows": {
            "random / contrastive": CONTRASTIVE + RANDOM,
            "random / triplet ℓ2²": TRIPLET_SQUARED + RANDOM,
            "random / triplet ℓ2": TRIPLET + RANDOM,
            "random / margin": MARGIN + RANDOM,
            "semi-hard / contrastive": CONTRASTIVE + SEMI_HARD_PAIRWISE,
            "semi-hard / triplet ℓ2²": TRIPLET_SQUARED + SEMI_HARD_SQUARED,
            "semi-hard / triplet ℓ2": TRIPLET + SEMI_HARD,
            "semi-hard / margin": MARGIN + SEMI_HARD_PAIRWISE,
            "distance-weighted / contrastive": CONTRASTIVE + DISTANCE_WEIGHTED,
            "distance-weighted / triplet ℓ2²": TRIPLET_SQUARED + DISTANCE_WEIGHTED,
            "distance-weighted / triplet ℓ2": TRIPLET + DISTANCE_WEIGHTED,
            "distance-weighted / margin": MARGIN + DISTANCE_WEIGHTED,
        },
    },
    "wu_beta": {
        "title": "Wu et al. Table 2: learned class-specific β vs fixed β (margin, distance-weighted)",
        "rows": {
            "fixed β = 0.8": loss("MarginLoss", margin=0.2, beta=0.8) + DISTANCE_WEIGHTED,
            "fixed β = 1.0": loss("MarginLoss", margin=0.2, beta=1.0) + DISTANCE_WEIGHTED,
            "fixed β = 1.2": loss("MarginLoss", margin=0.2, beta=1.2) + DISTANCE_WEIGHTED,
            "learned β⁽⁰⁾ + β_class": MARGIN + DISTANCE_WEIGHTED,
        },
    },
    "roth_sampling": {
        "title": "Roth et al. §4.3: batch sampling (batch 64)",
        "rows": {
            **{f"margin (D) / {name}": MARGIN + DISTANCE_WEIGHTED + spec for name, spec in SAMPLERS.items()},
            **{f"multi-similarity / {name}": MULTI_SIMILARITY + miner("null") + spec for name, spec in SAMPLERS.items()},
        },
    },
    "roth_rho": {
        "title": "Roth et al. Table 2 / §5: objectives vs their ρ-regularised R- variants (distance-weighted tuples)",
        "rows": {
            "contrastive (D)": CONTRASTIVE + DISTANCE_WEIGHTED,
            "R-contrastive (D)": CONTRASTIVE + rho(0.4),
            "triplet (D)": TRIPLET + DISTANCE_WEIGHTED,
            "R-triplet (D)": TRIPLET + rho(0.4),
            "margin (D)": MARGIN + DISTANCE_WEIGHTED,
            "R-margin (D)": MARGIN + rho(0.35),
            "SNR (D)": SNR + DISTANCE_WEIGHTED,
            "R-SNR (D)": SNR + rho(0.35),
        },
    },
    "fastap": {
        "title": "Cakir et al.: FastAP with category-hard vs random batches (M = 128, alphabets as categories)",
        "rows": {
            "FastAP / random classes": loss("FastAPLoss", num_bins=10) + miner("null") + FASTAP_BUDGET
            + sampler("RandomClassSampler"),
            "FastAP / category-hard": loss("FastAPLoss", num_bins=10) + miner("null") + FASTAP_BUDGET
            + sampler("CategoryHardSampler", batches_per_pair=5),
        },
    },
}


def resolved_config(overrides, seed, data_root):
    from tfdml.training.config import load_config

    return load_config(BASE_RECIPE, [*COMMON, *overrides, f"seed={seed}", f"data.root={os.path.abspath(data_root)}"])


def config_key(overrides, data_root):
    """Identity of a configuration: its resolved recipe without seed, name, data location and run dir."""
    config = resolved_config(overrides, 0, data_root)
    for key in ("seed", "name", "run_dir", "export", "tune"):
        config.pop(key)
    config["data"].pop("root")
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


# ---------------------------------------------------------------- one run (in a worker process)

# Loaded data per worker process, by the data section of the config (every study configuration shares one).
_SPLITS = {}


def _init_worker(threads):
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def _learned_beta(loss_object):
    """Min / mean / max of the learned per-class boundary β⁽⁰⁾ + β_class, when the loss learns one."""
    if getattr(loss_object, "class_beta", None) is None:
        return None
    beta = float(np.asarray(loss_object.global_beta)) + np.asarray(loss_object.class_beta)
    return {"min": float(beta.min()), "mean": float(beta.mean()), "max": float(beta.max())}


def run_one(overrides, seed, data_root):
    """Train one configuration with one seed and return its metrics."""
    import keras

    from tfdml.evaluation import singular_values, spectral_decay
    from tfdml.sampling import indexed_batches
    from tfdml.training.runner import Setup, load_split

    started = time.perf_counter()
    config = resolved_config(overrides, seed, data_root)
    data_key = json.dumps(config["data"], sort_keys=True)
    if data_key not in _SPLITS:
        _SPLITS[data_key] = tuple(load_split(config, config["data"][f"{split}_split"]) for split in ("train", "test"))
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    setup = Setup(config, splits=_SPLITS[data_key])
    history = setup.model.fit(
        setup.batches,
        epochs=config["epochs"],
        steps_per_epoch=setup.steps_per_epoch,
        callbacks=setup.sampler_callbacks(),
        shuffle=False,
        verbose=0,
    )
    train_images = indexed_batches(setup.train_data, 256).map(lambda images, indices: images)
    test_embeddings = setup.embedder.predict(setup.test_images(), verbose=0)
    train_embeddings = setup.embedder.predict(train_images, verbose=0)
    metrics = setup.evaluate(test_embeddings)
    spectra = {split: singular_values(x) for split, x in (("train", train_embeddings), ("test", test_embeddings))}
    return {
        **{metric: float(metrics[metric]) for metric in METRICS},
        # Dead ReLU channels make the embedding rank-deficient (full ρ = inf): ρ within the spanned subspace, and its rank.
        "rho_train": spectral_decay(train_embeddings, nonzero_only=True),
        "rho_test": spectral_decay(test_embeddings, nonzero_only=True),
        "rank_train": int(np.count_nonzero(spectra["train"])),
        "rank_test": int(np.count_nonzero(spectra["test"])),
        "singular_values": {split: values.tolist() for split, values in spectra.items()},
        "final_loss": float(history.history["loss"][-1]),
        "learned_beta": _learned_beta(setup.model.dml_loss),
        "seconds": time.perf_counter() - started,
    }


# ---------------------------------------------------------------- scheduling


def read_results(path=None):
    path = path or RESULTS
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def append_result(record, path=None):
    path = path or RESULTS
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def planned_runs(experiments, seeds, data_root):
    """Unique ``(key, overrides, seed)`` runs, seed-major so every configuration gets its first seed first."""
    configs = {}
    for experiment in experiments:
        for overrides in EXPERIMENTS[experiment]["rows"].values():
            configs.setdefault(config_key(overrides, data_root), overrides)
    return [(key, overrides, seed) for seed in seeds for key, overrides in configs.items()]


def run_study(experiments, seeds, data_root, workers):
    import keras

    done = {(record["key"], record["seed"]) for record in read_results()}
    pending = [(*run, data_root) for run in planned_runs(experiments, seeds, data_root) if (run[0], run[2]) not in done]
    previous = [record["seconds"] for record in read_results()]
    per_run = float(np.mean(previous)) if previous else 60.0
    print(
        f"{len(pending)} runs to train ({len(done)} already recorded in {os.path.relpath(RESULTS, REPO)}); "
        f"estimated {len(pending) * per_run / workers / 60:.0f} min with {workers} worker(s)."
    )
    if not pending:
        return 0
    progress = keras.utils.Progbar(len(pending), unit_name="run")
    failures = 0
    threads = max(1, (os.cpu_count() or 1) // workers)
    # Leaving the Pool's block terminates its workers, also on Ctrl-C or SIGTERM: none outlive the study.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("omniglot_study: terminated; rerun to resume."))
    with multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker, initargs=(threads,)) as pool:
        for count, ((key, overrides, seed), result) in enumerate(pool.imap_unordered(_run_guarded, pending), 1):
            if isinstance(result, str):
                failures += 1
                print(f"\nFAILED seed {seed}: {' '.join(overrides)}\n  {result}")
            else:
                append_result({"key": key, "seed": seed, "overrides": list(overrides), **result})
            progress.update(count)
    return failures


def _run_guarded(run):
    """``(run, metrics)``, or ``(run, error text)``: one failed configuration must not stop the study."""
    key, overrides, seed, data_root = run
    try:
        return (key, overrides, seed), run_one(overrides, seed, data_root)
    except Exception as error:  # noqa: BLE001
        return (key, overrides, seed), f"{type(error).__name__}: {error}"


# ---------------------------------------------------------------- report


def summarize(records):
    """``{key: {"n": seeds, metric: (mean, std), "beta": ...}}`` over the recorded seeds."""
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
        summary[key] = entry
    return summary


def rows_of(experiment, summary, data_root):
    """``[(label, entry)]`` of an experiment's configurations that have results."""
    rows = []
    for label, overrides in EXPERIMENTS[experiment]["rows"].items():
        entry = summary.get(config_key(overrides, data_root))
        if entry is not None:
            rows.append((label, entry))
    return rows


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


def compare(a, b, metric="recall_at_1"):
    """``(difference in points, difference / its standard error)`` of mean ``a`` − mean ``b``."""
    (mean_a, std_a), (mean_b, std_b) = a[metric], b[metric]
    error = math.sqrt(std_a**2 / a["n"] + std_b**2 / b["n"])  # nan with a single seed
    difference = 100.0 * (mean_a - mean_b)
    return difference, (mean_a - mean_b) / error if error > 0 else float("inf")


def verdict(difference, ratio):
    if difference <= 0:
        return f"**did not hold** ({difference:+.1f} pts)"
    if math.isnan(ratio):
        return f"**held** ({difference:+.1f} pts, one seed: no SE)"
    if ratio < 2:
        return f"**held, within noise** ({difference:+.1f} pts, {ratio:.1f} SE)"
    return f"**held** ({difference:+.1f} pts, {ratio:.1f} SE)"


def extreme_claim(rows, label, highest=True, metric="recall_at_1"):
    """Verdict on "``label`` scores highest" (or lowest): its gap to the closest other row."""
    entries = dict(rows)
    if label not in entries or len(entries) < 2:
        return "not enough results"
    pick = max if highest else min
    closest = pick((other for other in entries if other != label), key=lambda other: entries[other][metric][0])
    if highest:
        return verdict(*compare(entries[label], entries[closest], metric)) + f" vs {closest}"
    return verdict(*compare(entries[closest], entries[label], metric)) + f" ({closest} is next)"


def pair_claims(rows, pairs, metric="recall_at_1"):
    """One line per ``(better, worse)`` pair of labels: does ``better`` beat ``worse``?"""
    entries = dict(rows)
    lines, held = [], 0
    for better, worse in pairs:
        if better in entries and worse in entries:
            difference, ratio = compare(entries[better], entries[worse], metric)
            held += difference > 0
            lines.append(f"  - {better} > {worse}: {verdict(difference, ratio)}")
    return held, lines


def claims(experiment, rows, summary):
    """Markdown bullet lines stating each claim of the experiment and whether it held here (R@1 unless said)."""
    out = []
    if experiment == "wu_table1":
        for metric in METRICS:
            out.append(f"- Distance-weighted + margin is the best combination ({METRIC_NAMES[metric]}): "
                       + extreme_claim(rows, "distance-weighted / margin", metric=metric))
        out.append("- Contrastive with random sampling is the worst: " + extreme_claim(rows, "random / contrastive", highest=False))
        losses = ("triplet ℓ2²", "triplet ℓ2", "margin")
        pairs = [(f"distance-weighted / {l}", f"{s} / {l}") for l in losses for s in ("semi-hard", "random")]
        held, lines = pair_claims(rows, pairs)
        out.append(f"- For the same loss, distance-weighted beats semi-hard and random (Wu exempt contrastive): {held}/{len(lines)}")
        out += lines
        pairs = [(f"{s} / margin", f"{s} / {l}") for s in ("random", "semi-hard", "distance-weighted")
                 for l in ("contrastive", "triplet ℓ2²", "triplet ℓ2")]
        held, lines = pair_claims(rows, pairs)
        out.append(f"- Margin loss beats the other losses under every sampling: {held}/{len(lines)}")
        out += lines
    elif experiment == "wu_beta":
        for metric in METRICS:
            out.append(f"- Learned class-specific β beats every fixed β ({METRIC_NAMES[metric]}): "
                       + extreme_claim(rows, "learned β⁽⁰⁾ + β_class", metric=metric))
        entry = dict(rows).get("learned β⁽⁰⁾ + β_class")
        if entry and "beta" in entry:
            low, mean, high = entry["beta"]
            out.append(f"- Learned β_c after training: {low:.2f} to {high:.2f} (mean {mean:.2f}); Wu report 0.94 to 1.45 on SOP.")
    elif experiment == "roth_sampling":
        for loss_name in ("margin (D)", "multi-similarity"):
            group = [(label.split(" / ")[1], entry) for label, entry in rows if label.startswith(loss_name)]
            if not group:
                continue
            held, lines = pair_claims(group, [("SPC-2", "SPC-4")])
            out.append(f"- {loss_name}: SPC-2 outperforms SPC-4:" + lines[0][len("  - SPC-2 > SPC-4:"):] if lines else "")
            ranking = sorted(group, key=lambda item: -item[1]["recall_at_1"][0])
            places = {name: i + 1 for i, (name, _) in enumerate(ranking)}
            out.append(f"- {loss_name}: SPC-2 and FRD perform very well: ranks {places.get('SPC-2')} and "
                       f"{places.get('FRD')} of {len(group)} by R@1 (order: {', '.join(n for n, _ in ranking)}).")
            spread = 100.0 * (ranking[0][1]["recall_at_1"][0] - ranking[-1][1]["recall_at_1"][0])
            out.append(f"- {loss_name}: sampling changes mean R@1 by up to {spread:.1f} pts (Roth: up to 1.5%).")
    elif experiment == "roth_rho":
        bases = ("contrastive (D)", "triplet (D)", "margin (D)", "SNR (D)")
        held, lines = pair_claims(rows, [(f"R-{base}", base) for base in bases])
        out.append(f"- ρ-regularisation improves R@1 of every ranking objective: {held}/{len(lines)}")
        out += lines
        entries = dict(rows)
        pairs = [(base, entries[base], entries[f"R-{base}"]) for base in bases if base in entries and f"R-{base}" in entries]
        for measure, change, better in (("rho_train", "lowers ρ of the training embedding (less compression)", -1),
                                        ("rank_train", "raises the rank of the training embedding (more directions)", 1)):
            moved = sum(better * (r[measure][0] - b[measure][0]) > 0 for _, b, r in pairs)
            digits = 1 if measure.startswith("rank") else 3
            details = "; ".join(f"{name} {b[measure][0]:.{digits}f} → {r[measure][0]:.{digits}f}" for name, b, r in pairs)
            out.append(f"- ρ-regularisation {change}: {moved}/{len(pairs)} ({details})")
        import scipy.stats

        points = [entry for entry in summary.values() if entry["n"] >= 2]
        if len(points) >= 4:
            recall = [e["recall_at_1"][0] for e in points]
            for measure, expected in (("rho_train", "Roth report ≤ −0.63 across objectives"),
                                      ("rank_train", "more directions should go with better R@1: positive")):
                correlation = scipy.stats.spearmanr([e[measure][0] for e in points], recall)
                out.append(f"- Spearman correlation of {METRIC_NAMES[measure]} with test R@1 over all {len(points)} "
                           f"configurations of the study: {correlation.statistic:+.2f} (p = {correlation.pvalue:.2g}); "
                           f"{expected}.")
    elif experiment == "fastap":
        for metric in METRICS:
            out.append(f"- Category-hard batches beat random batches ({METRIC_NAMES[metric]}): "
                       + extreme_claim(rows, "FastAP / category-hard", metric=metric))
    return out


def plot(experiment, rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    figure.suptitle(EXPERIMENTS[experiment]["title"] + " — mean ± std over seeds", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def plot_rho(summary, rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    axis.set_xlabel("spectral decay ρ of the training embedding (lower: less compressed)")
    axis.set_ylabel("test Recall@1 (%)")
    axis.set_title("Objective → its R- variant (arrows); all study configurations (gray)", fontsize=9)
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def write_report(data_root):
    current = {key for key, _, _ in planned_runs(list(EXPERIMENTS), [0], data_root)}
    records = [record for record in read_results() if record["key"] in current]
    summary = summarize(records)
    notes = ""
    if os.path.exists(REPORT):
        with open(REPORT) as f:
            text = f.read()
        if NOTES_MARKER in text:
            notes = text.split(NOTES_MARKER, 1)[1]
    os.makedirs(os.path.join(os.path.dirname(REPORT), "results"), exist_ok=True)
    seeds = sorted({record["seed"] for record in records})
    hours = sum(record["seconds"] for record in records) / 3600
    parts = [
        "# Results: the papers' claims on Omniglot",
        "",
        "Generated by `python benchmarks/omniglot_study.py` from "
        f"`{os.path.relpath(RESULTS, os.path.dirname(REPORT))}` ({len(records)} runs, seeds {seeds}, "
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
    for experiment, spec in EXPERIMENTS.items():
        rows = rows_of(experiment, summary, data_root)
        if not rows:
            continue
        columns = (*METRICS, "rho_train", "rho_test", "rank_train") if experiment == "roth_rho" else METRICS
        image = f"results/{experiment}.png"
        plot(experiment, rows, os.path.join(os.path.dirname(REPORT), image))
        parts += [f"## {spec['title']}", "", table(rows, columns), "", *claims(experiment, rows, summary), "",
                  f"![{experiment}]({image})", ""]
        if experiment == "roth_rho":
            plot_rho(summary, rows, os.path.join(os.path.dirname(REPORT), "results", "rho_vs_recall.png"))
            parts += ["![ρ vs Recall@1](results/rho_vs_recall.png)", ""]
    parts += [NOTES_MARKER]
    with open(REPORT, "w") as f:
        f.write("\n".join(parts) + (notes if notes else "\n"))
    print(f"Wrote {os.path.relpath(REPORT, REPO)} and its plots in docs/results/.")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiments", nargs="+", default=list(EXPERIMENTS), choices=list(EXPERIMENTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--data-root", default=DEFAULT_DATA_ROOT, help="folder with the two Omniglot zips")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                        help="runs trained in parallel, each with cpu_count / workers threads")
    parser.add_argument("--report-only", action="store_true", help="only rewrite docs/results.md from recorded runs")
    args = parser.parse_args()
    if len(args.seeds) < 1 or args.workers < 1:
        parser.error("--seeds needs at least one seed and --workers must be >= 1")
    if not os.path.isdir(args.data_root):
        parser.error(f"--data-root {args.data_root} does not exist: it must hold Omniglot's "
                     "images_background_small1.zip and images_background_small2.zip")
    failures = 0 if args.report_only else run_study(args.experiments, args.seeds, args.data_root, args.workers)
    write_report(args.data_root)
    if failures:
        sys.exit(f"{failures} run(s) failed; rerun the same command to retry them.")


if __name__ == "__main__":
    main()
