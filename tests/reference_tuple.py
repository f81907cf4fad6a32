"""Slow NumPy references for the tuple miners and tuple losses, written from the papers' formulas."""

import collections
import math

import numpy as np


def distance_matrix(x):
    x = np.asarray(x, np.float64)
    n = len(x)
    d = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            d[i, j] = math.sqrt(sum((x[i, k] - x[j, k]) ** 2 for k in range(x.shape[1])))
    return d


def distance(x, i, j, squared=False):
    d2 = float(np.sum((np.asarray(x[i], np.float64) - np.asarray(x[j], np.float64)) ** 2))
    return d2 if squared else math.sqrt(d2)


def distance_weighted_probabilities(x, labels, cutoff=0.5, nonzero_loss_cutoff=1.4):
    """Pr(n | a) ∝ 1/q(max(D_an, cutoff)) over negatives with D_an < nonzero_loss_cutoff (Wu et al. §4),
    q(d) = d^(D−2) (1 − d²/4)^((D−3)/2); uniform over all negatives where none is eligible."""
    dim = x.shape[1]
    d = distance_matrix(x)
    n = len(x)
    probabilities = np.zeros((n, n))
    for a in range(n):
        negatives = [j for j in range(n) if labels[j] != labels[a]]
        eligible = [j for j in negatives if nonzero_loss_cutoff is None or d[a, j] < nonzero_loss_cutoff]
        if not negatives:
            continue
        if not eligible:
            for j in negatives:
                probabilities[a, j] = 1.0 / len(negatives)
            continue
        log_w = {}
        for j in eligible:
            dist = max(d[a, j], cutoff)
            log_q = (dim - 2) * math.log(dist) + 0.5 * (dim - 3) * math.log(max(1.0 - dist * dist / 4.0, 1e-6))
            log_w[j] = -log_q
        top = max(log_w.values())
        total = sum(math.exp(v - top) for v in log_w.values())
        for j, v in log_w.items():
            probabilities[a, j] = math.exp(v - top) / total
    return probabilities


def semi_hard_candidates(d, labels, a, p, margin=0.2, lower_bound=None):
    """Negatives of ``a`` in the band (lower, lower + margin), and FaceNet's fallback when it is empty."""
    lower = d[a, p] if lower_bound is None else lower_bound
    upper = math.inf if margin is None else lower + margin
    negatives = [j for j in range(len(labels)) if labels[j] != labels[a]]
    band = [j for j in negatives if lower < d[a, j] < upper]
    if band:
        return band
    beyond = [j for j in negatives if d[a, j] > lower]
    if beyond:
        return [min(beyond, key=lambda j: d[a, j])]
    return [max(negatives, key=lambda j: d[a, j])]


def soft_hard_candidates(d, labels, a):
    n = len(labels)
    positives = [j for j in range(n) if labels[j] == labels[a] and j != a]
    negatives = [j for j in range(n) if labels[j] != labels[a]]
    hard_negatives = [j for j in negatives if d[a, j] < max(d[a, p] for p in positives)]
    hard_positives = [j for j in positives if d[a, j] > min(d[a, k] for k in negatives)]
    return hard_positives or positives, hard_negatives or negatives


def valid_triplets(labels):
    n = len(labels)
    return [
        (a, p, k)
        for a in range(n)
        for p in range(n)
        for k in range(n)
        if a != p and labels[a] == labels[p] and labels[k] != labels[a]
    ]


def contrastive_loss(x, triplets, margin=1.0, positive_margin=0.0):
    terms = []
    for a, p, _ in triplets:
        terms.append(max(distance(x, a, p) - positive_margin, 0.0))
    for a, _, k in triplets:
        terms.append(max(margin - distance(x, a, k), 0.0))
    return sum(terms) / len(terms) if terms else 0.0


def triplet_loss(x, triplets, margin=0.2, squared=False):
    terms = [max(distance(x, a, p, squared) - distance(x, a, k, squared) + margin, 0.0) for a, p, k in triplets]
    return sum(terms) / len(terms) if terms else 0.0


def margin_loss(x, labels, triplets, margin=0.2, beta=1.2, beta_class=None, beta_image=None, image_ids=None, nu=0.0):
    """Wu et al.: Σ (α + y_ij (D_ij − β(i)))_+ + ν β(i) over the pairs, divided by the number of active terms."""
    total, active = 0.0, 0
    for a, p, k in triplets:
        b = beta
        if beta_class is not None:
            b += beta_class[labels[a]]
        if beta_image is not None:
            b += beta_image[image_ids[a]]
        for y, j in ((1.0, p), (-1.0, k)):
            term = max(margin + y * (distance(x, a, j) - b), 0.0)
            total += term + nu * b
            active += term > 0.0
    return total / active if active else 0.0


def quadruplet_loss(x, quadruplets, margin_1=1.0, margin_2=0.5):
    """Chen et al.: mean (D_ap − D_an + γ1)_+ + mean (D_ap − D_nl + γ2)_+ over (a, p, n, l)."""
    if not quadruplets:
        return 0.0
    first = [max(distance(x, a, p) - distance(x, a, k) + margin_1, 0.0) for a, p, k, _ in quadruplets]
    second = [max(distance(x, a, p) - distance(x, k, l) + margin_2, 0.0) for a, p, k, l in quadruplets]
    return sum(first) / len(first) + sum(second) / len(second)


def assert_triplets_match(mined, expected, near):
    """One negative per mined ``(a, p)``, every mined triplet one of ``expected``, and the mined pairs exactly
    those of ``expected`` (``near`` excused either way)."""
    tuples = list(zip(*(np.asarray(t).tolist() for t in mined)))
    pairs = collections.Counter((a, p) for a, p, _ in tuples)
    assert set(pairs.values()) <= {1}
    assert set(tuples) - near <= expected
    assert {(a, p) for a, p, _ in expected - near} <= set(pairs) <= {(a, p) for a, p, _ in expected | near}
