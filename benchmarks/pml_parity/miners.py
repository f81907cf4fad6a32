"""PML's mined tuples for tfdml's margin miners: ``TripletMarginMiner`` (every ``type_of_triplets``) and
``PairMarginMiner``, on random batches (32 samples of 6 classes, 8 and 64 dimensions) and the degenerate ones.

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


CASES = {"TripletMarginMiner": triplet_margin_cases, "PairMarginMiner": pair_margin_cases}
