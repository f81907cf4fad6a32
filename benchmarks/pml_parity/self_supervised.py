"""PML parity cases of VICReg, in float64.

PML's ``VICRegLoss`` takes the two views as ``(embeddings, ref_emb)``; tfdml's takes one batch whose labels
pair the views (:func:`tfdml.losses.vicreg.view_pairs`: the samples of each label in batch order, 1st with
2nd, 3rd with 4th, …). Each case is a tfdml batch; PML gets the views that rule forms (:func:`views`, the
same rule in NumPy) and its gradient is scattered back onto the batch. The random batches hold ``n`` pairs
of ``d`` dimensions (8 × 8, 16 × 64, 32 × 16), shuffled so that a pair's two samples lie apart; the
degenerate ones: one class of 8 (4 pairs), identical embeddings (4 pairs, no spread), a supervised batch
with a class seen three times (its third sample has no partner), and one pair, where PML's unbiased
variance is ``0/0`` (NaN; ``pml_differs``: tfdml takes 0).
"""

import numpy as np

from benchmarks.pml_parity import degenerate_batches


def views(labels):
    """``(first, second)`` index vectors of the pairs: a stable sort of the labels, then consecutive samples of
    a label paired from its first."""
    order = np.argsort(labels, kind="stable")
    first, second = [], []
    for label in np.unique(labels):
        members = order[labels[order] == label]
        first += list(members[0 : len(members) - 1 : 2])
        second += list(members[1::2])
    return np.array(first, np.int64), np.array(second, np.int64)


def shuffled_pairs(rng, pairs, dim):
    labels = rng.permutation(np.tile(np.arange(pairs), 2)).astype(np.int64)
    return rng.standard_normal((2 * pairs, dim)), labels


def vicreg(rng):
    import torch
    from pytorch_metric_learning.losses import VICRegLoss

    batches = {f"b{2 * n}_d{dim}": shuffled_pairs(rng, n, dim) for n, dim in ((8, 8), (16, 64), (32, 16))}
    degenerate = degenerate_batches(rng, 8)
    batches["one_class"] = degenerate["one_class"]
    batches["identical"] = degenerate["identical"]
    batches["odd_class"] = (rng.standard_normal((7, 8)), np.array([1, 0, 1, 2, 0, 1, 2], np.int64))
    batches["one_pair"] = (degenerate["two_samples"][0], np.zeros(2, np.int64))
    nondefault = {"invariance_lambda": 10.0, "variance_mu": 5.0, "covariance_v": 2.0, "eps": 1e-3}
    settings = {"": {}, "_nondefault": nondefault}
    made = []
    for batch_id, (embeddings, labels) in batches.items():
        for suffix, params in settings.items() if batch_id == "b16_d8" else [("", {})]:
            first, second = views(labels)
            x = torch.tensor(embeddings, requires_grad=True)
            loss = VICRegLoss(**params)(x[first], ref_emb=x[second])
            (grad,) = torch.autograd.grad(loss, x)
            case = {
                "id": f"{batch_id}{suffix}",
                "inputs": {"embeddings": embeddings, "labels": labels},
                "params": params,
                "pml": params,
                "loss": loss,
                "grad": grad,
            }
            if batch_id == "one_pair":
                case["pml_differs"] = "PML's unbiased variance of one pair is 0/0 (NaN); tfdml's is 0"
            made.append(case)
    return made


CASES = {"VICRegLoss": vicreg}
