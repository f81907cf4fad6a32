"""Pair losses on every pair of the batch, computed on the ``b × b`` distance matrix with label masks.

Roth et al. (2020) and pytorch-metric-learning define the contrastive loss without a
miner on *all* pairs of the batch: every ordered pair ``(i, j)``, ``i ≠ j``, is a
positive pair when ``y_i = y_j`` and a negative pair otherwise. Fed to a tuple loss
as mined tuples, that is ``O(b²)`` gathers of ``d`` floats each (~18 GB at
``b = 2048``); here each loss is a few element-wise operations on the ``b × b``
matrix next to one Gram matrix, so memory stays ``O(b²)``, shapes are static and
every function compiles under XLA (``tf.function(jit_compile=True)``).

The functions take int labels ``(b,)`` and float embeddings ``(b, d)`` and return a
scalar. Non-finite embeddings, and huge ones whose squared distances overflow, give a NaN loss:
the clamps of the distance matrix (``relu``, a masked square root) could otherwise turn a NaN
into 0 and hide it.

The Keras losses use them with ``pairs="all"``:
``ContrastiveLoss(pairs="all")``, ``MarginLoss(pairs="all")`` and
``MultiSimilarityLoss(pairs="all")``.

Example:

>>> labels = tf.constant([0, 0, 1, 1])
>>> embeddings = tf.math.l2_normalize(tf.random.normal((4, 16)), axis=1)
>>> contrastive_all_pairs(labels, embeddings)        # mean over the 12 ordered pairs
"""

import tensorflow as tf

from tfdml.distances import squared_distances_are_finite
from tfdml.losses.math import log1p_sum_exp, nan_unless
from tfdml.masks import same_label_mask

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


def count_active(terms):
    """Number of positive entries of ``terms``, as a float without gradient."""
    return tf.reduce_sum(tf.stop_gradient(tf.cast(terms > 0.0, terms.dtype)))


def without_diagonal(matrix):
    """``matrix`` with its diagonal (the self-pairs) set to 0 (``False``).

    Cheaper under XLA than a mask built from ``tf.eye``.
    """
    return tf.linalg.set_diag(matrix, tf.zeros_like(matrix[:, 0]))


def pair_masks(labels):
    """``(positives, negatives)``: boolean ``(b, b)`` masks of the ordered positive pairs (same label,
    ``i ≠ j``) and negative pairs (different labels)."""
    same = same_label_mask(labels)
    return without_diagonal(same), tf.logical_not(same)


def contrastive_all_pairs(labels, embeddings, margin=1.0, positive_margin=0.0, average="pairs"):
    """Contrastive loss (Hadsell et al. 2006; Roth et al. 2020, eq. 1) on every ordered pair:

        ℓ_ij = 1[y_i = y_j] (D_ij − m⁺)_+ + 1[y_i ≠ y_j] (γ − D_ij)_+,   i ≠ j,

    with Euclidean ``D``. ``average="pairs"`` (default, as :class:`ContrastiveLoss`
    documents) is the mean of ``ℓ`` over all ``b (b − 1)`` ordered pairs;
    ``average="nonzero"`` is pytorch-metric-learning's ``AvgNonZeroReducer``: the mean of
    the non-zero positive terms plus the mean of the non-zero negative terms (a side
    without a non-zero term adds 0). Defaults ``γ = 1``, ``m⁺ = 0`` (Roth et al., PML).

    Example:

    >>> contrastive_all_pairs(tf.constant([0, 0, 1]), tf.eye(3), average="nonzero")
    """
    if average not in AVERAGES:
        raise ValueError(f"contrastive_all_pairs: average must be one of {AVERAGES}; got {average!r}.")
    embeddings = tf.convert_to_tensor(embeddings)
    distances = symmetric_batch_distances(embeddings)
    same = same_label_mask(labels)
    positive_terms = tf.nn.relu(distances - positive_margin)
    negative_terms = tf.nn.relu(margin - distances)
    if average == "pairs":
        terms = without_diagonal(tf.where(same, positive_terms, negative_terms))
        num_pairs = tf.cast(tf.size(distances) - tf.shape(distances)[0], distances.dtype)
        loss = tf.math.divide_no_nan(tf.reduce_sum(terms), num_pairs)
    else:
        zero = tf.zeros_like(distances)
        positive_terms = without_diagonal(tf.where(same, positive_terms, zero))
        negative_terms = tf.where(same, zero, negative_terms)
        loss = tf.math.divide_no_nan(tf.reduce_sum(positive_terms), count_active(positive_terms)) + (
            tf.math.divide_no_nan(tf.reduce_sum(negative_terms), count_active(negative_terms))
        )
    return nan_unless_finite(loss, embeddings)


def margin_loss_all_pairs(labels, embeddings, beta=1.2, margin=0.2, nu=0.0):
    """Margin loss (Wu et al. 2017, §4) on every ordered pair ``(i, j)``, ``i ≠ j``, anchored at ``i``:

        ℓ_ij = (α + y_ij (D_ij − β_i))_+,   y_ij = +1 if y_i = y_j else −1,
        L = [Σ_{i≠j} ℓ_ij + ν β_i] / #{(i, j) : ℓ_ij > 0}    (0 when no term is active),

    the normalisation of Wu et al.'s code and of :class:`MarginLoss`. ``beta`` is a scalar
    or the per-anchor ``β_i`` of shape ``(b,)`` (e.g. ``β⁽⁰⁾ + β_class(y_i)``); gradients
    flow into it, so learnable β train as with mined pairs. Defaults ``α = 0.2``,
    ``β = 1.2``, ``ν = 0``.

    Example:

    >>> margin_loss_all_pairs(tf.constant([0, 0, 1]), tf.eye(3), beta=tf.constant([1.2, 1.2, 1.0]))
    """
    embeddings = tf.convert_to_tensor(embeddings)
    beta = tf.cast(beta, embeddings.dtype)
    # One β makes the loss symmetric in D; per-anchor β keep the transpose in the gradient, which costs
    # less than symmetrising the terms without XLA (the default on CPU).
    distances = (symmetric_batch_distances if beta.shape.rank == 0 else batch_distances)(embeddings)
    beta = tf.broadcast_to(beta, tf.shape(distances)[:1])
    offset = distances - beta[:, tf.newaxis]
    terms = without_diagonal(tf.nn.relu(margin + tf.where(same_label_mask(labels), offset, -offset)))
    pairs_per_anchor = tf.cast(tf.shape(distances)[0] - 1, distances.dtype)
    total = tf.reduce_sum(terms) + nu * pairs_per_anchor * tf.reduce_sum(beta)
    loss = tf.math.divide_no_nan(total, count_active(terms))
    return nan_unless_finite(loss, embeddings)


def multi_similarity_terms(similarity, positives, negatives, alpha=2.0, beta=40.0, threshold=0.5):
    """Per-anchor multi-similarity terms (Wang et al. 2019, eq. 12) on the pairs in the masks:

        (1/α) log(1 + Σ_{j ∈ P_i} exp(−α (S_ij − λ))) + (1/β) log(1 + Σ_{k ∈ N_i} exp(β (S_ik − λ)))

    ``similarity`` is the ``(b, b)`` cosine similarity; ``positives``/``negatives`` boolean
    ``(b, b)`` masks. Empty sums add ``log 1 = 0``; both are log-sum-exps, so large ``β`` cannot overflow.
    """
    positive_terms = log1p_sum_exp(-alpha * (similarity - threshold), positives) / alpha
    negative_terms = log1p_sum_exp(beta * (similarity - threshold), negatives) / beta
    return positive_terms + negative_terms


def multi_similarity_all_pairs(labels, embeddings, alpha=2.0, beta=40.0, threshold=0.5):
    """Multi-similarity loss (Wang et al. 2019) without pair mining: the mean over anchors of
    :func:`multi_similarity_terms` with every positive and every negative pair of the batch,
    on the cosine similarity of the L2-normalised embeddings. Defaults are Roth et al.'s
    (``α = 2``, ``β = 40``, ``λ = 0.5``).

    Example:

    >>> multi_similarity_all_pairs(tf.constant([0, 0, 1, 1]), tf.random.normal((4, 16)))
    """
    embeddings = tf.convert_to_tensor(embeddings)
    normalized = tf.math.l2_normalize(embeddings, axis=1)
    similarity = tf.matmul(normalized, normalized, transpose_b=True)
    positives, negatives = pair_masks(labels)
    loss = tf.reduce_mean(multi_similarity_terms(similarity, positives, negatives, alpha, beta, threshold))
    return nan_unless_finite(loss, embeddings)
