"""Retrieval metrics computed from :class:`tfdml.evaluation.knn.PositiveRanks`.

For a query ``q`` with ``R_q`` positives in the gallery (self excluded) and the
1-based pessimistic ranks ``r_1 <= ... <= r_R`` of those positives:

- Recall@k (Jégou et al. 2011; Wu et al. 2017 Table 1; Roth et al. 2020 eq. 26):
  ``[r_1 <= k]``: at least one positive among the k nearest.
- R-precision (Musgrave et al. 2020): ``|{m : r_m <= R}| / R``.
- MAP@R (Musgrave et al. 2020): ``(1/R) Σ_{m : r_m <= R} m / r_m``, i.e. average
  precision cut at rank ``R``.
- mAP@k_c (Roth et al. 2020, eq. 29, "class-averaged mAP measured on recall"):
  average precision of each query over its top ``k_c`` results, ``k_c`` the size of
  its class in the gallery, averaged within each class and then over classes.

Queries with no positive in the gallery (singleton classes) are left out of every
retrieval metric: they cannot be retrieved correctly by any embedding. A set with
no such query at all gives ``nan``.

Example:

>>> ranks = tfdml.evaluation.knn.rank_positives(embeddings, labels)
>>> recall_at_k(ranks, 1), map_at_r(ranks)
(0.93, 0.61)
"""

import numpy as np

from tfdml.evaluation.knn import PositiveRanks


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


def recall_at_k(ranks: PositiveRanks, k):
    """Fraction of queries (with a positive) whose nearest positive ranks within ``k``."""
    if int(k) < 1:
        raise ValueError(f"k must be >= 1; got {k}.")
    answerable = _answerable(ranks)
    if not answerable.any():
        return float("nan")
    return float(np.mean(ranks.first[answerable] <= int(k)))


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
    answerable = _answerable(ranks)
    if not answerable.any():
        return float("nan")
    precision = _average_precision_at_r(ranks)[answerable]
    _, class_of_query = np.unique(ranks.labels[answerable], return_inverse=True)
    per_class = np.bincount(class_of_query, weights=precision) / np.bincount(class_of_query)
    return float(np.mean(per_class))
