"""Embedding-space structure (Roth et al. 2020, §5): spectral decay ρ and class distances π.

- Spectral decay ``ρ(Φ) = KL(U_D ‖ S̃)``: ``S`` are the singular values of the
  (uncentred) ``(n, D)`` embedding matrix in decreasing order, the largest left
  out ("which can obfuscate remaining directions of variance", footnote 3), and
  ``S̃ = S / ΣS`` over the ``D − 1`` kept values; ``U_D`` is uniform over them.
  ``ρ`` is 0 for a perfectly flat spectrum and grows as the embedding compresses
  onto fewer directions; it is ``inf`` when a kept singular value is 0 (the
  embedding spans fewer than ``D`` dimensions; ``nonzero_only=True`` measures the spectrum
  within the spanned subspace instead). (The authors' code computes the
  same KL but with the largest value kept by default; ``exclude_largest=0`` gives that.)
- ``π_intra = mean d(φ_i, φ_j)`` over ordered pairs ``i ≠ j`` of the same class
  (classes of size 1 have no pair and add nothing); ``π_inter = mean d(μ_l, μ_k)``
  over ordered pairs of distinct class means ``μ``; ``π_ratio = π_intra / π_inter``.
  The normalisers ``Z`` are the numbers of pairs.

Example:

>>> spectral_decay(embeddings)
0.31
>>> class_distance_statistics(embeddings, labels)
{'pi_intra': 0.62, 'pi_inter': 1.21, 'pi_ratio': 0.51}
"""

import numpy as np
import scipy.linalg
import scipy.stats

from tfdml import distances
from tfdml.checks import as_embeddings, label_array
from tfdml.evaluation.verification import paired_distances

#: Pairs per step when averaging intra-class distances (bounds memory for very large classes).
PAIR_CHUNK = 1 << 20


def singular_values(embeddings):
    """float64 singular values of the ``(n, D)`` embedding matrix, largest first.

    Values below the float32 rank tolerance ``max(S)·max(n, D)·eps`` (the rule of
    ``numpy.linalg.matrix_rank``) are rounding noise of a rank-deficient matrix and are returned as 0.
    """
    embeddings = as_embeddings(embeddings)
    values = scipy.linalg.svdvals(embeddings.astype(np.float64))
    tolerance = values.max(initial=0.0) * max(embeddings.shape) * np.finfo(np.float32).eps
    return np.where(values > tolerance, values, 0.0)


def spectral_decay(embeddings, *, exclude_largest=1, nonzero_only=False):
    """``ρ = KL(U ‖ S̃)`` of the normalised singular value spectrum without its ``exclude_largest`` largest values.

    ``nonzero_only=True`` keeps only the non-zero singular values: ρ of the spectrum within the
    subspace the embedding spans. A network with dead ReLU channels has a rank-deficient embedding,
    whose full ρ is ``inf`` whatever else it learned; report its rank
    (``np.count_nonzero(singular_values(x))``) beside this value.
    """
    values = singular_values(embeddings)[int(exclude_largest) :]
    if nonzero_only:
        values = values[values > 0]
    if values.size == 0:
        raise ValueError(f"No (non-zero) singular value is left after excluding the {exclude_largest} largest.")
    if np.any(values == 0):
        return float("inf")
    uniform = np.full(values.size, 1.0 / values.size)
    return float(scipy.stats.entropy(uniform, values / values.sum()))


def _intra_class_pairs(labels):
    """Index arrays ``(i, j)`` of every unordered same-class pair ``i < j`` (in label-sorted order)."""
    order = np.argsort(labels, kind="stable")
    _, starts, sizes = np.unique(labels[order], return_index=True, return_counts=True)
    group_size = np.repeat(sizes, sizes)
    offset = np.arange(len(labels)) - np.repeat(starts, sizes)
    partners = group_size - offset - 1
    first = np.repeat(np.arange(len(labels)), partners)
    # The step from each first element to its partner: 1, 2, ..., partners.
    step = np.arange(len(first)) - np.repeat(np.cumsum(partners) - partners, partners) + 1
    return order[first], order[first + step]


def class_distance_statistics(embeddings, labels, *, metric="euclidean"):
    """``{"pi_intra", "pi_inter", "pi_ratio"}`` (``nan`` where a mean has no pair)."""
    embeddings = as_embeddings(embeddings).astype(np.float64)
    labels = label_array(labels, count=embeddings.shape[0])
    first, second = _intra_class_pairs(labels)
    intra_sum = sum(
        paired_distances(embeddings[first[s : s + PAIR_CHUNK]], embeddings[second[s : s + PAIR_CHUNK]], metric).sum()
        for s in range(0, len(first), PAIR_CHUNK)
    )
    pi_intra = intra_sum / len(first) if len(first) else float("nan")

    classes, class_of = np.unique(labels, return_inverse=True)
    means = np.zeros((len(classes), embeddings.shape[1]))
    np.add.at(means, class_of, embeddings)
    means /= np.bincount(class_of)[:, np.newaxis]
    inter_sum = 0.0
    for start in range(0, len(classes), 1024):
        block = distances.pairwise_distance(means[start : start + 1024], means, metric=metric).numpy()
        rows = np.arange(block.shape[0])
        block[rows, start + rows] = 0.0
        inter_sum += block.sum()
    pairs = len(classes) * (len(classes) - 1)
    pi_inter = inter_sum / pairs if pairs else float("nan")
    return {"pi_intra": float(pi_intra), "pi_inter": float(pi_inter), "pi_ratio": float(pi_intra / pi_inter)}
