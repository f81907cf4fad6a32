"""Retrieval metrics computed from :class:`tfdml.evaluation.knn.PositiveRanks`.

For a query ``q`` with ``R_q`` positives in the gallery (self excluded) and the
1-based pessimistic ranks ``r_1 <= ... <= r_R`` of those positives:

- Recall@k (Jégou et al. 2011; Wu et al. 2017 Table 1; Roth et al. 2020 eq. 26):
  ``[r_1 <= k]``: at least one positive among the k nearest.
- R-precision (Musgrave et al. 2020): ``|{m : r_m <= R}| / R``.
- MAP@R (Musgrave et al. 2020): ``(1/R) Σ_{m : r_m <= R} m / r_m``, i.e. average
  precision cut at rank ``R``.
- Precision@k: ``|{m : r_m <= k}| / k``, the fraction of the k nearest that are positives.
- mAP@k_c (Roth et al. 2020, eq. 29, "class-averaged mAP measured on recall"):
  average precision of each query over its top ``k_c`` results, ``k_c`` the size of
  its class in the gallery, averaged within each class and then over classes.

Multi-label data (:func:`~tfdml.evaluation.knn.rank_positives` of multi-hot label sets): a gallery item is a
positive of a query when it shares at least one label with it, and every metric but mAP@k_c (class-averaged,
undefined for label sets) reads the ranks as they are; :func:`per_label` breaks them down by label.

Queries with no positive in the gallery (singleton classes) are left out of every
retrieval metric: they cannot be retrieved correctly by any embedding. A set with
no such query at all gives ``nan``.

Example:

>>> ranks = tfdml.evaluation.knn.rank_positives(embeddings, labels)
>>> recall_at_k(ranks, 1), map_at_r(ranks)
(0.93, 0.61)
"""

import numpy as np

from tfdml.evaluation.knn import UNRANKED, PositiveRanks


def _answerable(ranks: PositiveRanks):
    return ranks.num_positives > 0


def _hits_within_r(ranks: PositiveRanks):
    """Boolean ``(n, p)``: positive ``m`` exists and ranks within the query's ``R``."""
    if ranks.depth < ranks.num_positives.max(initial=0):
        raise ValueError(
            f"These ranks were computed to depth {ranks.depth}, but R-based metrics need depth >= "
            f"{ranks.num_positives.max()} (the largest number of positives); call rank_positives with depth=None."
        )
    order = np.arange(ranks.positives.shape[1])[np.newaxis, :]
    exists = order < ranks.num_positives[:, np.newaxis]
    return exists & (ranks.positives <= ranks.num_positives[:, np.newaxis])


def _average_precision_at_r(ranks: PositiveRanks):
    """Per-query AP cut at rank ``R`` (undefined, 0/0, for queries without positives)."""
    hits = _hits_within_r(ranks)
    order = np.arange(1, ranks.positives.shape[1] + 1)[np.newaxis, :]
    precision = np.where(hits, order / np.where(hits, ranks.positives, 1), 0.0)
    return precision.sum(axis=1) / np.maximum(ranks.num_positives, 1)


def _recalled(ranks: PositiveRanks, k):
    """Per-query ``[r_1 <= k]``."""
    if int(k) < 1:
        raise ValueError(f"k must be >= 1; got {k}.")
    return ranks.first <= int(k)


def _precision(ranks: PositiveRanks, k):
    """Per-query fraction of the ``k`` nearest that are positives."""
    if int(k) < 1:
        raise ValueError(f"k must be >= 1; got {k}.")
    exists = np.arange(ranks.positives.shape[1])[np.newaxis, :] < ranks.num_positives[:, np.newaxis]
    if ranks.depth < int(k) and np.any(exists & (ranks.positives == UNRANKED)):
        raise ValueError(
            f"These ranks were computed to depth {ranks.depth}, but precision@{k} needs depth >= {k}; "
            "call rank_positives with a larger depth."
        )
    return np.sum(ranks.positives <= int(k), axis=1) / int(k)


def recall_at_k(ranks: PositiveRanks, k):
    """Fraction of queries (with a positive) whose nearest positive ranks within ``k``."""
    recalled = _recalled(ranks, k)
    answerable = _answerable(ranks)
    if not answerable.any():
        return float("nan")
    return float(np.mean(recalled[answerable]))


def precision_at_k(ranks: PositiveRanks, k):
    """Mean over queries (with a positive) of the fraction of the ``k`` nearest that are positives.

    Needs the ranks to depth ``k`` at least (``rank_positives(depth=...)``) unless every positive was ranked.
    """
    precision = _precision(ranks, k)
    answerable = _answerable(ranks)
    if not answerable.any():
        return float("nan")
    return float(np.mean(precision[answerable]))


def r_precision(ranks: PositiveRanks):
    """Mean over queries of the fraction of the ``R`` nearest items that are positives."""
    answerable = _answerable(ranks)
    if not answerable.any():
        return float("nan")
    hits = _hits_within_r(ranks).sum(axis=1)
    return float(np.mean(hits[answerable] / ranks.num_positives[answerable]))


def map_at_r(ranks: PositiveRanks):
    """Mean over queries of the average precision within the first ``R`` results."""
    answerable = _answerable(ranks)
    if not answerable.any():
        return float("nan")
    return float(np.mean(_average_precision_at_r(ranks)[answerable]))


def map_c(ranks: PositiveRanks):
    """Class-averaged mAP over the top ``k_c`` results (Roth et al. 2020, eq. 29).

    ``k_c`` is the number of gallery items of the query's class other than the
    query, so a perfect embedding scores 1 (the authors' code divides by the class
    size including the query, which caps a perfect score at ``(k_c − 1)/k_c``).
    Per query this is MAP@R's average precision; the mean is taken per class first,
    so every class weighs the same however many images it has.
    """
    if ranks.labels.ndim == 2:
        raise ValueError("map_c averages per class: it is undefined for multi-label sets; use map_at_r.")
    answerable = _answerable(ranks)
    if not answerable.any():
        return float("nan")
    precision = _average_precision_at_r(ranks)[answerable]
    _, class_of_query = np.unique(ranks.labels[answerable], return_inverse=True)
    per_class = np.bincount(class_of_query, weights=precision) / np.bincount(class_of_query)
    return float(np.mean(per_class))


def per_label(ranks: PositiveRanks, k=(1,), precision_k=()):
    """Retrieval scores of multi-label ranks broken down by label: for each label ``c``, the mean over the
    queries that carry ``c`` (and have a positive) of their Recall@k, Precision@k and MAP@R, relevance
    staying "shares any label with the query".

    Args:
        ranks: :class:`PositiveRanks` of multi-hot label sets ``(n, C)``.
        k: Recall@k cut-offs. precision_k: Precision@k cut-offs (ranks to depth ``max(precision_k)``).

    Returns:
        ``{label c: {"queries": count, "recall_at_{k}": …, "precision_at_{k}": …, "map_at_r": …}}`` for
        every label ``0 <= c < C`` (scores ``nan`` for a label without an answerable query).

    Example:

    >>> ranks = rank_positives(embeddings, label_sets)  # label_sets (n, C) multi-hot
    >>> per_label(ranks, k=(1, 4))[3]["recall_at_1"]
    """
    if ranks.labels.ndim != 2:
        raise ValueError("per_label needs the ranks of multi-hot label sets (n, C); these are class ids.")
    per_query = {f"recall_at_{int(cutoff)}": _recalled(ranks, cutoff) for cutoff in np.atleast_1d(k)}
    per_query.update({f"precision_at_{int(cutoff)}": _precision(ranks, cutoff) for cutoff in np.atleast_1d(precision_k)})
    per_query["map_at_r"] = _average_precision_at_r(ranks)
    carriers = (ranks.labels > 0) & _answerable(ranks)[:, np.newaxis]  # (n, C)
    counts = carriers.sum(axis=0)
    means = {name: (values.astype(np.float64) @ carriers) / np.where(counts > 0, counts, np.nan)
             for name, values in per_query.items()}
    return {
        label: {"queries": int(counts[label]), **{name: float(mean[label]) for name, mean in means.items()}}
        for label in range(ranks.labels.shape[1])
    }
