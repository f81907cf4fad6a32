"""PML parity cases of Smooth-AP and the original lifted structure loss, in float64.

Lifted structure: the random batches (32 samples of 6 classes, 8 and 64 dimensions; 16 samples of 12
classes, with singletons) and the degenerate ones, with PML's ``LpDistance(normalize_embeddings=False)``
(tfdml's loss takes the embeddings as given) and ``pos_margin=0``.

Smooth-AP: PML reads the labels only for their counts and splits the batch into contiguous blocks of
(number of classes) samples, so the random batches hold ``m`` classes of ``m`` samples each, sorted
(4 × 4 in 8 and 64 dimensions, 6 × 6); among the degenerate batches, identical embeddings get 2 classes
of 2 and a lone sample is the one-class case PML takes; the other degenerate batches (8 samples of one
class, 8 singletons, 4 classes of 2) break PML's block assumption and hold ``pml_differs``.

PNP: the pair batches of ``pairs.py`` (random and degenerate) with PML's defaults (variant ``O``), and
the 16-sample batch with singletons with each other variant and non-default ``b``, ``alpha`` and ``anneal``.

``params`` are tfdml's arguments and ``pml`` PML's (the setting that reproduces tfdml's loss).
"""

import numpy as np

from benchmarks.pml_parity import degenerate_batches
from benchmarks.pml_parity.pairs import batches as pair_batches
from benchmarks.pml_parity.pairs import pml_value_and_gradient


def case(case_id, embeddings, labels, params, pml, loss_fn, differs=None):
    loss, grad = pml_value_and_gradient(loss_fn, embeddings, labels)
    made = {
        "id": case_id,
        "inputs": {"embeddings": embeddings, "labels": labels},
        "params": params,
        "pml": pml,
        "loss": loss,
        "grad": grad,
    }
    if differs:
        made["pml_differs"] = differs
    return made


def lifted_structure(rng):
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.losses import LiftedStructureLoss

    made = []
    for batch_id, (embeddings, labels) in pair_batches(rng).items():
        for suffix, margin in (("", 1.0), ("_m05", 0.5)):
            loss_fn = LiftedStructureLoss(
                neg_margin=margin, pos_margin=0.0, distance=LpDistance(normalize_embeddings=False)
            )
            pml = {"neg_margin": margin, "pos_margin": 0.0, "distance": "LpDistance(normalize_embeddings=False)"}
            made.append(case(f"{batch_id}{suffix}", embeddings, labels, {"margin": margin}, pml, loss_fn))
    return made


def sorted_blocks(rng, classes, dim):
    """``classes`` classes of ``classes`` samples each, in contiguous blocks: PML's Smooth-AP batches."""
    return rng.standard_normal((classes * classes, dim)), np.repeat(np.arange(classes), classes).astype(np.int64)


def smooth_ap(rng):
    from pytorch_metric_learning.losses import SmoothAPLoss

    blocks = {f"b16_d{dim}": sorted_blocks(rng, 4, dim) for dim in (8, 64)}
    blocks["b36_d8"] = sorted_blocks(rng, 6, 8)
    degenerate = degenerate_batches(rng, 8)
    identical, _ = degenerate["identical"]
    blocks["identical_2x2"] = (identical[:4], np.array([0, 0, 1, 1], np.int64))
    blocks["one_sample"] = (degenerate["two_samples"][0][:1], np.zeros(1, np.int64))
    differs = "PML splits the batch into blocks of (number of classes) samples, not classes"
    made = []
    for batch_id, (embeddings, labels) in {**blocks, **degenerate}.items():
        for suffix, temperature in (("", 0.01), ("_t01", 0.1)):
            made.append(
                case(
                    f"{batch_id}{suffix}",
                    embeddings,
                    labels,
                    {"temperature": temperature},
                    {"temperature": temperature},
                    SmoothAPLoss(temperature=temperature),
                    None if batch_id in blocks else differs,
                )
            )
    return made


def pnp(rng):
    from pytorch_metric_learning.losses import PNPLoss

    settings = {"": {}, "_Ds": {"variant": "Ds"}, "_Dq": {"variant": "Dq"}, "_Iu": {"variant": "Iu"}}
    settings["_Ib_b3"] = {"variant": "Ib", "b": 3.0}
    settings["_Dq_a2_t01"] = {"variant": "Dq", "alpha": 2.0, "anneal": 0.1}
    made = []
    for batch_id, (embeddings, labels) in pair_batches(rng).items():
        for suffix, params in settings.items() if batch_id == "b16_singletons" else [("", {})]:
            made.append(case(f"{batch_id}{suffix}", embeddings, labels, params, params, PNPLoss(**params)))
    return made


CASES = {"LiftedStructureLoss": lifted_structure, "PNPLoss": pnp, "SmoothAPLoss": smooth_ap}
