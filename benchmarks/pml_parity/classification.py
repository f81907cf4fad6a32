"""PML parity cases of sub-center ArcFace (learned sub-centres per class), of L-Softmax and SphereFace (learned
class weights) and of NCA (within the batch), in float64.

Sub-center ArcFace: PML's loss draws its sub-centres from torch's seeded generator; ``inputs`` stores them
in tfdml's layout ``(num_classes, K, d)`` (PML's ``W`` is ``(d, num_classes·K)``, column ``c·K + k``), and
each case also records PML's ``get_outliers`` on the batch at ``outlier_threshold`` degrees: the outlier
indices (sorted) and the dominant centres ``(num_classes, d)`` (rows of classes absent from the batch are
unset in PML, so NaN here). ``params`` are tfdml's arguments (margin in radians), ``pml`` PML's (degrees).

L-Softmax and SphereFace: PML's class weights ``W`` ``(d, num_classes)`` are stored as ``centers = W.T``; the
margin (an integer multiplier) and scale are the same arguments in both libraries.

NCA: on :func:`benchmarks.pml_parity.pairs.batches`; ``pml`` holds ``softmax_scale`` and whether PML's
``LpDistance(power=2)`` normalises the embeddings (its default; tfdml's loss is then applied to the
L2-normalised embeddings). PML's mean over no terms is NaN: a batch without positive pairs holds
``pml_differs`` (tfdml returns 0).
"""

import math

import numpy as np

from benchmarks.pml_parity import batch, degenerate_batches
from benchmarks.pml_parity.pairs import batches, pml_value_and_gradient

NUM_CLASSES = 10
OUTLIER_THRESHOLD = 75.0
WITHOUT_POSITIVES = ("no_positives", "two_samples")


def _subcenter_batches(rng):
    """``{id: (embeddings, labels)}``: random batches of 32 at d = 8 and 64, then the degenerate ones at d = 8."""
    made = {f"b32_d{dim}": batch(rng, 32, dim, NUM_CLASSES) for dim in (8, 64)}
    made.update(degenerate_batches(rng, 8))
    return made


def subcenter_arcface(rng):
    import torch
    from pytorch_metric_learning.losses import SubCenterArcFaceLoss

    variants = {"": (0.5, 64.0, 3), "_m03_s16_k2": (0.3, 16.0, 2)}
    cases = []
    for batch_id, (embeddings, labels) in _subcenter_batches(rng).items():
        dim = embeddings.shape[1]
        for suffix, (margin, scale, sub_centers) in variants.items():
            pml = {"margin": math.degrees(margin), "scale": scale, "sub_centers": sub_centers}
            loss_fn = SubCenterArcFaceLoss(num_classes=NUM_CLASSES, embedding_size=dim, **pml)
            loss, grad = pml_value_and_gradient(loss_fn, embeddings, labels)
            outliers, dominant = loss_fn.get_outliers(
                torch.tensor(embeddings), torch.tensor(labels), threshold=OUTLIER_THRESHOLD
            )
            dominant = dominant.T.detach().numpy().copy()
            dominant[~np.isin(np.arange(NUM_CLASSES), labels)] = np.nan
            cases.append(
                {
                    "id": f"{batch_id}{suffix}",
                    "inputs": {
                        "embeddings": embeddings,
                        "labels": labels,
                        "centers": loss_fn.W.T.reshape(NUM_CLASSES, sub_centers, dim),
                    },
                    "params": {"margin": margin, "scale": scale},
                    "pml": pml,
                    "loss": loss,
                    "grad": grad,
                    "outlier_threshold": OUTLIER_THRESHOLD,
                    "outliers": np.sort(outliers.numpy()).astype(np.int64),
                    "dominant_centers": dominant,
                }
            )
    return cases


def _large_margin(rng, pml_class):
    variants = {"": (4, 1.0), "_m2_s2": (2, 2.0), "_m3": (3, 1.0)}
    cases = []
    for batch_id, (embeddings, labels) in _subcenter_batches(rng).items():
        for suffix, (margin, scale) in variants.items():
            loss_fn = pml_class(num_classes=NUM_CLASSES, embedding_size=embeddings.shape[1], margin=margin, scale=scale)
            loss, grad = pml_value_and_gradient(loss_fn, embeddings, labels)
            cases.append(
                {
                    "id": f"{batch_id}{suffix}",
                    "inputs": {"embeddings": embeddings, "labels": labels, "centers": loss_fn.W.T},
                    "params": {"margin": margin, "scale": scale},
                    "loss": loss,
                    "grad": grad,
                }
            )
    return cases


def large_margin_softmax(rng):
    from pytorch_metric_learning.losses import LargeMarginSoftmaxLoss

    return _large_margin(rng, LargeMarginSoftmaxLoss)


def sphereface(rng):
    from pytorch_metric_learning.losses import SphereFaceLoss

    return _large_margin(rng, SphereFaceLoss)


def nca(rng):
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.losses import NCALoss

    variants = {"": (1.0, False), "_s01": (0.1, False), "_pml_default": (1.0, True)}
    cases = []
    for batch_id, (embeddings, labels) in batches(rng).items():
        for suffix, (scale, normalize) in variants.items():
            loss_fn = NCALoss(softmax_scale=scale, distance=LpDistance(power=2, normalize_embeddings=normalize))
            loss, grad = pml_value_and_gradient(loss_fn, embeddings, labels)
            case = {
                "id": f"{batch_id}{suffix}",
                "inputs": {"embeddings": embeddings, "labels": labels},
                "params": {"scale": scale},
                "pml": {"softmax_scale": scale, "normalize_embeddings": normalize},
                "loss": loss,
                "grad": grad,
            }
            if batch_id in WITHOUT_POSITIVES:
                case["pml_differs"] = "PML returns NaN (its mean over no anchors) without positive pairs; tfdml 0"
            cases.append(case)
    return cases


CASES = {
    "SubCenterArcFaceLoss": subcenter_arcface,
    "LargeMarginSoftmaxLoss": large_margin_softmax,
    "SphereFaceLoss": sphereface,
    "NCALoss": nca,
}
