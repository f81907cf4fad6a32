"""Slow NumPy references for the batch/structure losses, written from the papers' formulas.

Loops over anchors, pairs and negatives on purpose: each line mirrors a term of the
formula (Roth et al. 2020, supplementary A.1, and the original papers), so they are
obviously correct and independent of the vectorised TF code they check.
"""

import math

import numpy as np


def normalize(x):
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def positive_pairs(labels):
    return [(a, p) for a in range(len(labels)) for p in range(len(labels)) if a != p and labels[a] == labels[p]]


def negatives_of(labels, a):
    return [n for n in range(len(labels)) if labels[n] != labels[a]]


def npair(labels, x, nu=0.005):
    pairs = positive_pairs(labels)
    total = 0.0
    for a, p in pairs:
        total += math.log(1.0 + sum(math.exp(x[a] @ x[n] - x[a] @ x[p]) for n in negatives_of(labels, a)))
    ranking = total / len(pairs) if pairs else 0.0
    return ranking + nu * np.mean([x_i @ x_i for x_i in x])


def angular(labels, x, alpha=45.0, angular_weight=2.0, nu=0.005):
    tan_sq = math.tan(math.radians(alpha)) ** 2
    xn = normalize(x)
    pairs = positive_pairs(labels)
    total = 0.0
    for a, p in pairs:
        inner = sum(
            math.exp(4.0 * tan_sq * (xn[a] + xn[p]) @ xn[n] - 2.0 * (1.0 + tan_sq) * xn[a] @ xn[p])
            for n in negatives_of(labels, a)
        )
        total += math.log(1.0 + inner)
    angular_term = total / len(pairs) if pairs else 0.0
    return npair(labels, x, nu) + angular_weight * angular_term


def generalized_lifted_structure(labels, x, margin=1.0, nu=0.005):
    anchor_losses = []
    for a in range(len(labels)):
        positives = [p for p in range(len(labels)) if p != a and labels[p] == labels[a]]
        negatives = negatives_of(labels, a)
        if not positives or not negatives:
            continue
        positive_term = math.log(sum(math.exp(np.linalg.norm(x[a] - x[p])) for p in positives))
        negative_term = math.log(sum(math.exp(margin - np.linalg.norm(x[a] - x[n])) for n in negatives))
        anchor_losses.append(max(positive_term + negative_term, 0.0))
    ranking = float(np.mean(anchor_losses)) if anchor_losses else 0.0
    return ranking + nu * np.mean([x_i @ x_i for x_i in x])


def multi_similarity_masks(labels, x, epsilon=0.1):
    """Mined ``(positives, negatives)`` boolean matrices by the MS rule, anchor by anchor."""
    b = len(labels)
    s = normalize(x) @ normalize(x).T
    mined_positives = np.zeros((b, b), bool)
    mined_negatives = np.zeros((b, b), bool)
    for a in range(b):
        positives = [p for p in range(b) if p != a and labels[p] == labels[a]]
        negatives = negatives_of(labels, a)
        for n in negatives:
            mined_negatives[a, n] = bool(positives) and s[a, n] + epsilon > min(s[a, p] for p in positives)
        for p in positives:
            mined_positives[a, p] = bool(negatives) and s[a, p] - epsilon < max(s[a, n] for n in negatives)
    return mined_positives, mined_negatives


def multi_similarity(labels, x, alpha=2.0, beta=40.0, threshold=0.5, epsilon=0.1):
    b = len(labels)
    s = normalize(x) @ normalize(x).T
    mined_positives, mined_negatives = multi_similarity_masks(labels, x, epsilon)
    total = 0.0
    for i in range(b):
        positive_sum = sum(math.exp(-alpha * (s[i, j] - threshold)) for j in range(b) if mined_positives[i, j])
        negative_sum = sum(math.exp(beta * (s[i, k] - threshold)) for k in range(b) if mined_negatives[i, k])
        total += math.log(1.0 + positive_sum) / alpha + math.log(1.0 + negative_sum) / beta
    return total / b


def histogram(labels, x, num_bins=65):
    """Eq. 7-9 with nodes ``t_r = −1 + rΔ``; the kernel's intervals are half-open at ``t_r``."""
    xn = normalize(x)
    step = 2.0 / (num_bins - 1)
    nodes = [-1.0 + r * step for r in range(num_bins)]
    positive_similarities, negative_similarities = [], []
    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            s = min(max(xn[i] @ xn[j], -1.0), 1.0)
            (positive_similarities if labels[i] == labels[j] else negative_similarities).append(s)

    def delta(s, r):
        value = 0.0
        if r > 0 and nodes[r - 1] <= s < nodes[r]:
            value += (s - nodes[r - 1]) / step
        if r < num_bins - 1 and nodes[r] <= s < nodes[r + 1]:
            value += (nodes[r + 1] - s) / step
        if r == num_bins - 1 and s == nodes[r]:
            value += 1.0
        return value

    def hist(similarities):
        if not similarities:
            return [0.0] * num_bins
        return [sum(delta(s, r) for s in similarities) / len(similarities) for r in range(num_bins)]

    h_positive, h_negative = hist(positive_similarities), hist(negative_similarities)
    return sum(h_negative[r] * sum(h_positive[: r + 1]) for r in range(num_bins))


def snr(x, anchors, positives, negatives, margin=0.2, regularization=0.005):
    """Yuan et al.'s SNR distance ``d_S(a, j) = var(φ_j − φ_a) / var(φ_a)`` (variance over dimensions)."""
    xn = normalize(x)

    def d_snr(a, j):
        # The ratio is undefined for a constant anchor vector; tfdml defines it as 0 there.
        return np.var(xn[j] - xn[a]) / np.var(xn[a]) if np.var(xn[a]) > 0 else 0.0

    triplet_losses = [max(d_snr(a, p) - d_snr(a, n) + margin, 0.0) for a, p, n in zip(anchors, positives, negatives)]
    ranking = float(np.mean(triplet_losses)) if triplet_losses else 0.0
    return ranking + regularization * np.mean([abs(np.sum(x_i)) for x_i in xn])
