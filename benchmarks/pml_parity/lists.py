"""PML parity cases of the ranked list loss and the instance loss, in float64.

Ranked list: the random batches (32 samples of 6 classes, 8 and 64 dimensions; 16 samples of 12 classes,
with singletons) and the degenerate ones, with PML's ``MeanReducer`` (tfdml averages over all queries).
PML adds ``1e-5`` per batch sample to each weight sum, so its values differ from tfdml's by up to
``b · 1e-5 / |P*|`` relatively; the identical-embeddings batch holds ``pml_differs``: PML leaves negatives
at distance exactly 0 out of ``N*``.

Instance: PML's target of sample ``i`` is the column numbered by the rank of ``y_i`` among the batch's
labels, which is ``i`` itself for distinct sorted labels, its instance-discrimination use: the random
batches hold distinct sorted labels (32 samples in 8 and 64 dimensions; 16 samples labelled 0..15), and
so do the ``no_positives`` and ``two_samples`` degenerate batches; the class-labelled batches (``b32_classes``,
``one_class``; not ``identical``, whose softmax is uniform whatever the target) hold ``pml_differs``.

``params`` are tfdml's arguments and ``pml`` PML's (the setting that reproduces tfdml's loss).
"""

import numpy as np

from benchmarks.pml_parity import batch, degenerate_batches
from benchmarks.pml_parity.pairs import batches as pair_batches
from benchmarks.pml_parity.ranking import case


def ranked_list(rng):
    from pytorch_metric_learning.losses import RankedListLoss
    from pytorch_metric_learning.reducers import MeanReducer

    variants = {
        "": {"margin": 0.4, "alpha": 1.2, "negative_temperature": 10.0, "positive_temperature": 0.0, "balance": 0.5},
        "_tp2": {"margin": 0.2, "alpha": 1.3, "negative_temperature": 4.0, "positive_temperature": 2.0, "balance": 0.3},
    }
    made = []
    for batch_id, (embeddings, labels) in pair_batches(rng).items():
        for suffix, params in variants.items():
            pml = {
                "margin": params["margin"],
                "Tn": params["negative_temperature"],
                "imbalance": params["balance"],
                "alpha": params["alpha"],
                "Tp": params["positive_temperature"],
            }
            loss_fn = RankedListLoss(**pml, reducer=MeanReducer())
            differs = "PML leaves negatives at distance 0 out of N*" if batch_id == "identical" else None
            recorded = {**pml, "reducer": "MeanReducer()"}
            made.append(case(f"{batch_id}{suffix}", embeddings, labels, params, recorded, loss_fn, differs))
    return made


def distinct_sorted(rng, size, dim):
    """Random embeddings with distinct labels in increasing order: one instance per sample."""
    labels = np.sort(rng.choice(4 * size, size, replace=False)).astype(np.int64)
    return rng.standard_normal((size, dim)), labels


def instance(rng):
    from pytorch_metric_learning.losses import InstanceLoss

    instances = {f"b32_d{dim}": distinct_sorted(rng, 32, dim) for dim in (8, 64)}
    instances["b16_arange"] = (rng.standard_normal((16, 8)), np.arange(16, dtype=np.int64))
    classes = {"b32_classes": batch(rng, 32, 8, 6)}
    degenerate = degenerate_batches(rng, 8)
    differs = "PML's target is the column numbered by the label's rank, one sample rather than the class"
    made = []
    for batch_id, (embeddings, labels) in {**instances, **classes, **degenerate}.items():
        for suffix, scale in (("", 64.0), ("_g8", 8.0)):
            made.append(
                case(
                    f"{batch_id}{suffix}",
                    embeddings,
                    labels,
                    {"scale": scale},
                    {"gamma": scale},
                    InstanceLoss(gamma=scale),
                    differs if batch_id in ("b32_classes", "one_class") else None,
                )
            )
    return made


CASES = {"RankedListLoss": ranked_list, "InstanceLoss": instance}
