"""Plumbing of the all-pairs losses: every pair of the batch, on the ``b × b`` distance matrix with label masks.

Roth et al. (2020) and pytorch-metric-learning define the contrastive loss without a
miner on *all* pairs of the batch: every ordered pair ``(i, j)``, ``i ≠ j``, is a
positive pair when ``y_i = y_j`` and a negative pair otherwise. Fed to a tuple loss
as mined tuples, that is ``O(b²)`` gathers of ``d`` floats each (~18 GB at
``b = 2048``); here each loss is a few element-wise operations on the ``b × b``
matrix next to one Gram matrix, so memory stays ``O(b²)``, shapes are static and
every function compiles under XLA (``tf.function(jit_compile=True)``).

The all-pairs losses sit with their losses and take int labels ``(b,)`` and float embeddings
``(b, d)``: :func:`tfdml.losses.contrastive_all_pairs`, :func:`tfdml.losses.margin_loss_all_pairs`
and :func:`tfdml.losses.multi_similarity_all_pairs` (the Keras losses with ``pairs="all"``). Here
are their distance matrix with its one-matmul gradient, their pair masks and their NaN policy:
non-finite embeddings, and huge ones whose squared distances overflow, give a NaN loss (the
clamps of the distance matrix, ``relu`` and a masked square root, could otherwise turn a NaN
into 0 and hide it).

Example:

>>> labels = tf.constant([0, 0, 1, 1])
>>> positives, negatives = pair_masks(labels)     # (4, 4) boolean masks, self-pairs excluded
"""

import tensorflow as tf

from tfdml.distances import Comparison, pairwise_comparison, squared_distances_are_finite
from tfdml.losses.math import nan_unless
from tfdml.masks import key_masks, same_label_mask

PAIRS = ("mined", "all")
AVERAGES = ("pairs", "nonzero")


def check_pairs(pairs, miner):
    """Validates a loss's ``pairs=`` argument: ``"mined"`` (the miner's tuples) or ``"all"`` (no miner)."""
    if pairs not in PAIRS:
        raise ValueError(f"pairs must be one of {PAIRS}; got {pairs!r}.")
    if pairs == "all" and miner is not None:
        raise ValueError(f"pairs='all' uses every pair of the batch and takes no miner; got miner={miner!r}.")
    return pairs


def nan_unless_finite(loss, embeddings):
    """``loss``, or NaN when any embedding is NaN or infinite or a squared distance overflows
    (:func:`tfdml.distances.squared_distances_are_finite`)."""
    return nan_unless(squared_distances_are_finite(embeddings), loss)


def distances_and_gradient(embeddings, symmetric):
    """``D_ij = ‖x_i − x_j‖₂`` within one batch, ``D_ii = 0``, and its hand-written gradient.

    Autodiff through :func:`tfdml.distances.euclidean` walks back through a dozen ``b × b``
    element-wise operations and two matmuls; with ``W = G / D`` (0 where ``D = 0``, the
    subgradient there) for the upstream gradient ``G``, the gradient is one matmul:
    ``∂L/∂x_i = Σ_j (W + Wᵀ)_ij (x_i − x_j) = rowsum(W + Wᵀ)_i x_i − ((W + Wᵀ) X)_i``.
    With ``symmetric``, ``G`` is symmetric and ``W + Wᵀ = 2W``: no ``b × b`` transpose, which
    XLA on CPU fuses into a strided copy costing more than the step's matmuls.
    """
    squared_norms = tf.reduce_sum(tf.square(embeddings), axis=1)
    products = tf.matmul(-2.0 * embeddings, embeddings, transpose_b=True)
    squared = tf.nn.relu(squared_norms[:, tf.newaxis] + products + squared_norms[tf.newaxis, :])
    distances = tf.sqrt(tf.linalg.set_diag(squared, tf.zeros_like(squared_norms)))

    def gradient(upstream):
        weights = tf.math.divide_no_nan(upstream, distances)
        weights = 2.0 * weights if symmetric else weights + tf.transpose(weights)
        return tf.reduce_sum(weights, axis=1, keepdims=True) * embeddings - tf.matmul(weights, embeddings)

    return distances, gradient


@tf.custom_gradient
def batch_distances(embeddings):
    """The batch's ``(b, b)`` Euclidean distances with a one-matmul gradient (:func:`distances_and_gradient`)."""
    return distances_and_gradient(embeddings, symmetric=False)


@tf.custom_gradient
def symmetric_batch_distances(embeddings):
    """:func:`batch_distances` for a loss symmetric in the distances, ``L(D) = L(Dᵀ)`` (so ``∂L/∂D`` is
    symmetric): a loss of its terms ``ℓ(D_ij)`` with symmetric masks, for example."""
    return distances_and_gradient(embeddings, symmetric=True)


def batch_comparison(embeddings, distance, symmetric=False):
    """The batch's ``(b, b)`` :class:`~tfdml.distances.Comparison` under ``distance``; the Euclidean one through
    :func:`batch_distances` (:func:`symmetric_batch_distances` with ``symmetric``) and its one-matmul gradient."""
    if distance == "euclidean":
        return Comparison((symmetric_batch_distances if symmetric else batch_distances)(embeddings), 1.0)
    return pairwise_comparison(embeddings, distance=distance)


def query_key_comparison(embeddings, keys, distance, symmetric=False):
    """The ``(b, m)`` :class:`~tfdml.distances.Comparison` of the queries with :class:`~tfdml.masks.Keys`
    (``keys=None``: :func:`batch_comparison`, the batch with itself). The rectangle only, never ``m × m``."""
    if keys is None:
        return batch_comparison(embeddings, distance, symmetric)
    return pairwise_comparison(embeddings, keys.embeddings, distance=distance)


def count_active(terms):
    """Number of positive entries of ``terms``, as a float without gradient."""
    return tf.reduce_sum(tf.stop_gradient(tf.cast(terms > 0.0, terms.dtype)))


def without_diagonal(matrix):
    """``matrix`` with its diagonal (the self-pairs) set to 0 (``False``).

    Cheaper under XLA than a mask built from ``tf.eye``.
    """
    return tf.linalg.set_diag(matrix, tf.zeros_like(matrix[:, 0]))


def pair_masks(labels, keys=None):
    """``(positives, negatives)``: boolean ``(b, b)`` masks of the ordered positive pairs (same label,
    ``i ≠ j``) and negative pairs (different labels); with :class:`~tfdml.masks.Keys`, the ``(b, m)``
    masks of the queries against the keys (:func:`tfdml.masks.key_masks`)."""
    if keys is not None:
        return key_masks(labels, keys)
    same = same_label_mask(labels)
    return without_diagonal(same), tf.logical_not(same)
