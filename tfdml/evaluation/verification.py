"""Face-verification accuracy on pair lists, LFW protocol (10-fold threshold selection).

A pair ``(a_i, b_i)`` is predicted "same" when its distance is ``<= θ``. The pairs
are split into ``num_folds`` contiguous folds (LFW's ``pairs.txt`` lists them fold
by fold); for each fold, ``θ`` is the threshold with the best accuracy on the
other folds and the fold's accuracy is measured with it. The result is the mean
and standard deviation of the fold accuracies (Huang et al. 2007, "unrestricted"
protocol as reported by FaceNet and its successors).

Candidate thresholds are the midpoints between consecutive distinct training
distances, plus one below the smallest and one above the largest, so the chosen
``θ`` never sits on a training distance; among equally accurate thresholds the
smallest is taken.

Example:

>>> distances = paired_distances(embeddings_a, embeddings_b)
>>> result = verification_accuracy(distances, is_same)
>>> result.accuracy, result.std
(0.987, 0.004)
"""

import dataclasses

import numpy as np
import sklearn.metrics.pairwise
from sklearn.model_selection import KFold

from tfdml.checks import as_embeddings


def paired_distances(a, b, metric="euclidean"):
    """float64 ``(n,)`` distance between row ``i`` of ``a`` and row ``i`` of ``b``.

    ``metric``: ``"euclidean"``, ``"squared_euclidean"`` or ``"cosine"`` (``1 − cos``).
    """
    a = as_embeddings(a, "a").astype(np.float64)
    b = as_embeddings(b, "b").astype(np.float64)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape; got {a.shape} and {b.shape}.")
    if metric == "squared_euclidean":
        return np.square(sklearn.metrics.pairwise.paired_distances(a, b, metric="euclidean"))
    if metric not in ("euclidean", "cosine"):
        raise ValueError(f"Unknown distance metric {metric!r}; expected euclidean, squared_euclidean or cosine.")
    return sklearn.metrics.pairwise.paired_distances(a, b, metric=metric)


@dataclasses.dataclass
class VerificationResult:
    """Attributes: ``accuracy`` (mean over folds), ``std``, per-fold ``fold_accuracies`` and ``thresholds``."""

    accuracy: float
    std: float
    fold_accuracies: np.ndarray
    thresholds: np.ndarray


def best_threshold(distances, is_same):
    """The threshold ``θ`` maximising the accuracy of ``distance <= θ`` as the "same" prediction."""
    order = np.argsort(distances, kind="stable")
    sorted_distances = distances[order]
    same = is_same[order]
    # Predicting the first c sorted pairs "same": correct = same among them + different after them.
    correct = np.concatenate([[0], np.cumsum(same)]) + np.concatenate([[np.sum(~same)], np.sum(~same) - np.cumsum(~same)])
    cuts = np.arange(len(distances) + 1)
    # A cut inside a run of equal distances cannot be realised by any threshold.
    realisable = (cuts == 0) | (cuts == len(distances))
    realisable[1:-1] = sorted_distances[1:] > sorted_distances[:-1]
    best = cuts[realisable][np.argmax(correct[realisable])]
    if best == 0:
        return float(sorted_distances[0] - 1.0)
    if best == len(distances):
        return float(sorted_distances[-1] + 1.0)
    return float((sorted_distances[best - 1] + sorted_distances[best]) / 2.0)


def verification_accuracy(distances, is_same, *, num_folds=10):
    """LFW-protocol verification accuracy: ``num_folds``-fold threshold selection.

    Args:
        distances: ``(n,)`` distance of each pair (e.g. from :func:`paired_distances`).
        is_same: ``(n,)`` bool, whether the pair shows the same identity.
        num_folds: contiguous folds (default 10, as LFW).

    Returns:
        :class:`VerificationResult`.
    """
    distances = np.asarray(distances, dtype=np.float64)
    is_same = np.asarray(is_same)
    if distances.ndim != 1 or is_same.shape != distances.shape:
        raise ValueError(f"distances and is_same must both have shape (n,); got {distances.shape} and {is_same.shape}.")
    if not np.all(np.isfinite(distances)):
        raise ValueError("distances contains NaN or inf values.")
    if not np.isin(is_same, (0, 1)).all():
        raise ValueError("is_same must be boolean (or 0/1).")
    is_same = is_same.astype(bool)
    if not 2 <= num_folds <= len(distances):
        raise ValueError(f"num_folds must be in [2, {len(distances)}] for {len(distances)} pairs; got {num_folds}.")
    accuracies, thresholds = [], []
    for train, test in KFold(n_splits=num_folds).split(distances):
        threshold = best_threshold(distances[train], is_same[train])
        accuracies.append(np.mean((distances[test] <= threshold) == is_same[test]))
        thresholds.append(threshold)
    accuracies = np.asarray(accuracies)
    return VerificationResult(
        accuracy=float(accuracies.mean()),
        std=float(accuracies.std()),
        fold_accuracies=accuracies,
        thresholds=np.asarray(thresholds),
    )
