"""PML parity cases of the tuplet margin and intra-pair variance losses (Yu & Tao 2019), on random batches
(32 samples of 6 classes, 8 and 64 dimensions; 16 samples of 12 classes, with singletons) and the degenerate
ones, in float64: every pair of the batch (PML without a miner, tfdml without a miner) and, on the random
batches, the pairs of PML's ``MultiSimilarityMiner`` (``miner`` holds its arguments, tfdml's miner of the same
name takes them).

``params`` are tfdml's arguments and ``pml`` PML's: the PML setting that reproduces tfdml's loss (the tuplet
margin in degrees there, radians here). No case departs: PML agrees on every batch, the degenerate ones included.
"""

import math

from benchmarks.pml_parity import batch, degenerate_batches
from benchmarks.pml_parity.pairs import pml_value_and_gradient

MINER = {"epsilon": 0.1}


def batches(rng):
    """``{id: (embeddings, labels)}``: the random batches, then the degenerate ones."""
    made = {f"b32_d{dim}": batch(rng, 32, dim, 6) for dim in (8, 64)}
    made["b16_singletons"] = batch(rng, 16, 8, 12)
    made.update(degenerate_batches(rng, 8))
    return made


def mined(loss_fn):
    """``loss_fn`` on the pairs of PML's ``MultiSimilarityMiner(**MINER)``."""
    from pytorch_metric_learning.miners import MultiSimilarityMiner

    miner = MultiSimilarityMiner(**MINER)
    return lambda x, labels: loss_fn(x, labels, miner(x, labels))


def cases_of(rng, make_loss, variants):
    """A case per batch and variant (all pairs), and per random batch the default variant on mined pairs;
    ``variants`` maps an id suffix to ``(tfdml params, PML params)``, the first being the defaults."""
    made = []
    for batch_id, (embeddings, labels) in batches(rng).items():
        runs = [(suffix, params, pml, None) for suffix, (params, pml) in variants.items()]
        if batch_id.startswith("b"):
            params, pml = next(iter(variants.values()))
            runs.append(("_mined", params, pml, MINER))
        for suffix, params, pml, miner in runs:
            loss_fn = make_loss(**pml)
            loss, grad = pml_value_and_gradient(loss_fn if miner is None else mined(loss_fn), embeddings, labels)
            case = {
                "id": f"{batch_id}{suffix}",
                "inputs": {"embeddings": embeddings, "labels": labels},
                "params": params,
                "pml": pml,
                "loss": loss,
                "grad": grad,
            }
            if miner is not None:
                case["miner"] = miner
            made.append(case)
    return made


def tuplet_margin(rng):
    from pytorch_metric_learning.losses import TupletMarginLoss

    return cases_of(
        rng,
        TupletMarginLoss,
        {
            "": ({"margin": 0.1, "scale": 64.0}, {"margin": math.degrees(0.1), "scale": 64.0}),
            "_m0_s16": ({"margin": 0.0, "scale": 16.0}, {"margin": 0.0, "scale": 16.0}),
            "_m03_s32": ({"margin": 0.3, "scale": 32.0}, {"margin": math.degrees(0.3), "scale": 32.0}),
        },
    )


def intra_pair_variance(rng):
    from pytorch_metric_learning.losses import IntraPairVarianceLoss

    return cases_of(
        rng,
        IntraPairVarianceLoss,
        {
            "": ({"pos_eps": 0.01, "neg_eps": 0.01}, {"pos_eps": 0.01, "neg_eps": 0.01}),
            "_eps": ({"pos_eps": 0.2, "neg_eps": 0.05}, {"pos_eps": 0.2, "neg_eps": 0.05}),
        },
    )


CASES = {"TupletMarginLoss": tuplet_margin, "IntraPairVarianceLoss": intra_pair_variance}
