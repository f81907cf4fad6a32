"""PML's mined tuples for tfdml's deterministic-condition miners: ``TripletMarginMiner`` (every
``type_of_triplets``), ``PairMarginMiner``, ``BatchEasyHardMiner`` (every strategy pair PML and tfdml both
accept), ``AngularMiner``, ``HDCMiner`` and ``UniformHistogramMiner`` (its draws over several runs), on random
batches (32 samples of 6 classes, 8 and 64 dimensions) and the degenerate ones.

A case stores ``inputs``, ``params`` (tfdml's constructor arguments, PML's alike) and, instead of a loss
and its gradient, PML's exhaustive lists of mined indices: ``triplets`` (``[anchors, positives,
negatives]``), or ``positive_pairs`` (``[a1, p]``) and ``negative_pairs`` (``[a2, n]``).
"""

from benchmarks.pml_parity import batch, degenerate_batches

TYPES_OF_TRIPLETS = ("all", "hard", "semihard", "easy")
PAIR_MARGINS = ({"pos_margin": 0.2, "neg_margin": 0.8}, {"pos_margin": 1.3, "neg_margin": 1.4})


def batches(rng):
    """``{id: (embeddings, labels)}``: the random batches, then the degenerate ones."""
    made = {f"random-d{dim}": batch(rng, 32, dim, 6) for dim in (8, 64)}
    made.update(degenerate_batches(rng, 8))
    return made


def mined(miner, embeddings, labels):
    import torch

    return list(miner(torch.from_numpy(embeddings), torch.from_numpy(labels)))


def pairs(miner, embeddings, labels):
    """PML's ``(a1, p, a2, n)`` as ``positive_pairs`` ``[a1, p]`` and ``negative_pairs`` ``[a2, n]`` (lists of
    equal lengths each, which the fixture reader turns into arrays)."""
    a1, p, a2, n = mined(miner, embeddings, labels)
    return {"positive_pairs": [a1, p], "negative_pairs": [a2, n]}


def triplet_margin_cases(rng):
    from pytorch_metric_learning.miners import TripletMarginMiner

    cases = []
    for name, (embeddings, labels) in batches(rng).items():
        # A second margin on one batch: enough to show the margin is honoured, and the fixture stays small.
        for margin in (0.2, 0.5) if name == "random-d8" else (0.2,):
            for kind in TYPES_OF_TRIPLETS:
                params = {"margin": margin, "type_of_triplets": kind}
                cases.append(
                    {
                        "id": f"{name}-{kind}-m{margin:g}",
                        "inputs": {"embeddings": embeddings, "labels": labels},
                        "params": params,
                        "triplets": mined(TripletMarginMiner(**params), embeddings, labels),
                    }
                )
    return cases


def pair_margin_cases(rng):
    from pytorch_metric_learning.miners import PairMarginMiner

    cases = []
    for name, (embeddings, labels) in batches(rng).items():
        for params in PAIR_MARGINS:
            cases.append(
                {
                    "id": f"{name}-p{params['pos_margin']:g}-n{params['neg_margin']:g}",
                    "inputs": {"embeddings": embeddings, "labels": labels},
                    "params": params,
                    **pairs(PairMarginMiner(**params), embeddings, labels),
                }
            )
    return cases


# One strategy pair per code path: a semi-hard side after the other, two plain sides, an "all" side.
SOME_STRATEGY_PAIRS = (("easy", "semihard"), ("semihard", "hard"), ("hard", "easy"), ("all", "hard"), ("easy", "all"))


def strategy_pairs():
    """The ``(pos_strategy, neg_strategy)`` pairs PML accepts, less ``("all", "all")``, which tfdml refuses."""
    strategies = ("easy", "semihard", "hard", "all")
    refused = {("semihard", "semihard"), ("semihard", "all"), ("all", "semihard"), ("all", "all")}
    return [(pos, neg) for pos in strategies for neg in strategies if (pos, neg) not in refused]


def batch_easy_hard_cases(rng):
    from pytorch_metric_learning.miners import BatchEasyHardMiner

    cases = []
    for name, (embeddings, labels) in batches(rng).items():
        # Every strategy pair on one batch, on the others fewer (the fixture and the test stay small).
        chosen = {"random-d8": strategy_pairs(), "random-d64": SOME_STRATEGY_PAIRS}.get(name, SOME_STRATEGY_PAIRS[::2])
        settings = [{"pos_strategy": pos, "neg_strategy": neg} for pos, neg in chosen]
        if name == "random-d8":  # the ranges: two strategy pairs that read them on both sides
            ranges = {"allowed_pos_range": [0.6, 1.2], "allowed_neg_range": [0.9, 1.5]}
            settings += [{"pos_strategy": "easy", "neg_strategy": "semihard", **ranges}]
            settings += [{"pos_strategy": "hard", "neg_strategy": "easy", **ranges}]
        for params in settings:
            ranged = "-ranged" if "allowed_pos_range" in params else ""
            cases.append(
                {
                    "id": f"{name}-{params['pos_strategy']}-{params['neg_strategy']}{ranged}",
                    "inputs": {"embeddings": embeddings, "labels": labels},
                    "params": params,
                    **pairs(BatchEasyHardMiner(**params), embeddings, labels),
                }
            )
    return cases


def angular_cases(rng):
    from pytorch_metric_learning.miners import AngularMiner

    cases = []
    for name, (embeddings, labels) in batches(rng).items():
        for angle in (20.0, 40.0) if name == "random-d8" else (20.0,):
            cases.append(
                {
                    "id": f"{name}-a{angle:g}",
                    "inputs": {"embeddings": embeddings, "labels": labels},
                    "params": {"angle": angle},
                    "triplets": mined(AngularMiner(angle=angle), embeddings, labels),
                }
            )
    return cases


def hdc_cases(rng):
    from pytorch_metric_learning.miners import HDCMiner

    cases = []
    for name, (embeddings, labels) in batches(rng).items():
        # 0.3: ⌈0.3 · n⌉ differs in float32 for some n (⌈0.3 · 50⌉: 16, not 15); tfdml counts in float64.
        for fraction in (0.5, 0.3, 1.0) if name == "random-d8" else (0.5,):
            cases.append(
                {
                    "id": f"{name}-f{fraction:g}",
                    "inputs": {"embeddings": embeddings, "labels": labels},
                    "params": {"filter_percentage": fraction},
                    **pairs(HDCMiner(filter_percentage=fraction), embeddings, labels),
                }
            )
    return cases


HISTOGRAM_RUNS = 20


def uniform_histogram_cases(rng):
    """PML's draws, ``HISTOGRAM_RUNS`` runs per batch (``runs``: each ``positive_pairs`` and ``negative_pairs``):
    a random miner is compared by the distribution of its draws over the bins."""
    from pytorch_metric_learning.miners import UniformHistogramMiner

    cases = []
    for name, (embeddings, labels) in batches(rng).items():
        if name in ("no_positives", "two_samples"):
            continue  # one_class already mines one side only
        params = {"num_bins": 10, "pos_per_bin": 3, "neg_per_bin": 3}
        miner = UniformHistogramMiner(**params)
        runs = [pairs(miner, embeddings, labels) for _ in range(HISTOGRAM_RUNS)]
        cases.append(
            {"id": name, "inputs": {"embeddings": embeddings, "labels": labels}, "params": params, "runs": runs}
        )
    return cases


CASES = {
    "TripletMarginMiner": triplet_margin_cases,
    "PairMarginMiner": pair_margin_cases,
    "BatchEasyHardMiner": batch_easy_hard_cases,
    "AngularMiner": angular_cases,
    "HDCMiner": hdc_cases,
    "UniformHistogramMiner": uniform_histogram_cases,
}
