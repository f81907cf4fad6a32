"""FastAP (Cakir et al., 2019): a histogram approximation of average precision, with its closed-form gradient.

Every sample of the batch queries the rest of the batch. Squared distances of unit
vectors, ``D_ij = 2 − 2x̂_iᵀx̂_j`` (supplementary Eq. 2), lie in ``[0, 4]``, which
``num_bins = L`` intervals of width ``Δ = 4/L`` split at the ``L + 1`` bin centres
``c_l = lΔ`` (the authors' code's binning, so loss values match theirs). Items are
soft-assigned to bins with the triangular kernel ``δ(z, c) = max(0, 1 − |z − c|/Δ)``.
As ``Δ`` is the bin width, an item at ``z ∈ [c_k, c_{k+1}]`` gives ``1 − w`` to bin
``k`` and ``w = z/Δ − k`` to bin ``k + 1`` and nothing elsewhere, so a query's
histograms are one weighted bincount of its row of ``D`` rather than ``L + 1``
passes over it (nor an ``L × M × M`` tensor).

Two entry points share that forward pass: :func:`fastap_loss` back-propagates with
the closed form of the supplementary material's Appendix C, and
:func:`fastap_loss_autodiff` lets TensorFlow differentiate the same forward (a
reference for tests and benchmarks). :class:`FastAPLoss` is the Keras loss.
"""

from typing import NamedTuple

import keras
import tensorflow as tf

from tfdml.losses.base import DMLLoss
from tfdml.masks import flatten_labels, same_label_mask
from tfdml.mining.base import check_argument

# Squared Euclidean distances between unit vectors lie in [0, MAX_SQUARED_DISTANCE].
MAX_SQUARED_DISTANCE = 4.0

# Pair kinds; each kind has its own L + 1 histogram slots per query.
_POSITIVE, _NEGATIVE, _SELF = 0, 1, 2
_NUM_PAIR_KINDS = 3


class _FastAPForward(NamedTuple):
    """The loss and what its closed-form gradient needs from the forward pass."""

    loss: tf.Tensor
    positive_histograms: tf.Tensor  # h⁺, (M, L + 1)
    negative_histograms: tf.Tensor  # h⁻, (M, L + 1)
    num_positives: tf.Tensor  # N⁺_i, (M,)
    pair_bins: tf.Tensor  # (M, M) int32: kind·(L + 1) + lower bin index k of each pair


def _check_num_bins(num_bins, owner):
    return check_argument(owner, "num_bins", num_bins, int, low=1)


def _unit_embeddings(embeddings):
    embeddings = tf.convert_to_tensor(embeddings)
    # Half-precision inputs (mixed precision) get float32 loss math.
    if embeddings.dtype not in (tf.float32, tf.float64):
        embeddings = tf.cast(embeddings, tf.float32)
    if embeddings.shape.rank != 2:
        raise ValueError(f"FastAP: embeddings must have shape (batch, dim); got {embeddings.shape}.")
    return tf.math.l2_normalize(embeddings, axis=1)


def _pair_kinds(labels):
    """``(M, M)`` int32: ``_POSITIVE`` (same label, not self), ``_NEGATIVE`` or ``_SELF``."""
    kinds = tf.where(same_label_mask(labels), _POSITIVE, _NEGATIVE)
    return tf.linalg.set_diag(kinds, tf.fill(tf.shape(labels), _SELF))


@tf.function(jit_compile=True, reduce_retracing=True)
def _gather_rows(table, indices):
    """``out_ij = table[i, indices_ij]``; XLA's gather is ~10× faster than TensorFlow's on CPU here."""
    return tf.gather(table, indices, batch_dims=1)


def _soft_histograms(pair_bins, upper_weight, num_slots):
    """``h_is = Σ_j (1 − w_ij)[b_ij = s] + w_ij [b_ij + 1 = s]``, shape ``(M, num_slots)``.

    A per-row weighted bincount (TensorFlow's fastest histogram on CPU), made
    differentiable in ``w`` with its exact gradient ``∂/∂w_ij = g_i,b_ij+1 − g_i,b_ij``.
    """

    @tf.custom_gradient
    def histograms(upper_weight):
        counts = tf.raw_ops.DenseBincount(input=pair_bins, size=num_slots, weights=1.0 - upper_weight)
        counts += tf.raw_ops.DenseBincount(input=pair_bins + 1, size=num_slots, weights=upper_weight)

        def gradient(upstream):
            return _gather_rows(upstream, pair_bins + 1) - _gather_rows(upstream, pair_bins)

        return counts, gradient

    return histograms(upper_weight)


def _fastap_forward(labels, unit_embeddings, num_bins):
    """FastAP loss of L2-normalised embeddings, plus the tensors the closed-form gradient reuses."""
    dtype = unit_embeddings.dtype
    batch_size = tf.shape(unit_embeddings)[0]
    num_centres = num_bins + 1
    bin_width = MAX_SQUARED_DISTANCE / num_bins

    # The clip only absorbs rounding.
    distances = tf.clip_by_value(
        2.0 - 2.0 * tf.matmul(unit_embeddings, unit_embeddings, transpose_b=True), 0.0, MAX_SQUARED_DISTANCE
    )
    # NaN/Inf embeddings would become out-of-range bin indices; they are binned at 0 and the loss is NaN.
    finite = tf.math.is_finite(distances)
    distances = tf.where(finite, distances, tf.zeros_like(distances))
    scaled = distances / bin_width
    # Distance 4 belongs to the last interval, so the upper bin index stays <= L.
    lower_bin = tf.minimum(tf.floor(scaled), num_bins - 1)
    upper_weight = scaled - lower_bin

    pair_bins = _pair_kinds(labels) * num_centres + tf.cast(lower_bin, tf.int32)
    # Self pairs fill their own slots, which are dropped.
    histograms = _soft_histograms(pair_bins, upper_weight, _NUM_PAIR_KINDS * num_centres)
    histograms = tf.reshape(histograms, [batch_size, _NUM_PAIR_KINDS, num_centres])
    positive_histograms = histograms[:, _POSITIVE]
    negative_histograms = histograms[:, _NEGATIVE]

    cumulative_positives = tf.cumsum(positive_histograms, axis=1)
    cumulative_all = tf.cumsum(positive_histograms + negative_histograms, axis=1)
    # Each positive adds exactly one unit of mass over its two bins, so this rounds to N⁺_i.
    num_positives = tf.round(tf.reduce_sum(positive_histograms, axis=1))
    # FastAP_i = (1/N⁺_i) Σ_l H⁺_il h⁺_il / H_il; empty bins (H = 0) contribute 0.
    precision_terms = tf.math.divide_no_nan(cumulative_positives * positive_histograms, cumulative_all)
    average_precisions = tf.math.divide_no_nan(tf.reduce_sum(precision_terms, axis=1), num_positives)

    # Queries without positives are excluded; a batch without any positive pair gives 0.
    num_queries = tf.reduce_sum(tf.cast(num_positives > 0, dtype))
    mean_average_precision = tf.math.divide_no_nan(tf.reduce_sum(average_precisions), num_queries)
    loss = tf.where(num_queries > 0, 1.0 - mean_average_precision, tf.zeros([], dtype))
    loss = tf.where(tf.reduce_all(finite), loss, tf.constant(float("nan"), dtype))
    return _FastAPForward(loss, positive_histograms, negative_histograms, num_positives, pair_bins)


def _fastap_gradient(forward, unit_embeddings, upstream, num_bins):
    """``∂loss/∂x̂`` by Appendix C (Eq. 17, 30), in O(M² + L·M) memory and O(M²·d) time.

    Per query, the derivatives of FastAP_i with respect to its histograms are

    ```
    F⁺ = ĝ⁺ + U f̂⁺,   ĝ⁺ = H⁺/H + h⁺H⁻/H²,   f̂⁺ = h⁺H⁻/H²
    F⁻ = ĝ⁻ + U f̂⁻,   ĝ⁻ = f̂⁻ = −h⁺H⁺/H²
    ```

    (all over ``N⁺_i``; ``U`` the strictly upper-triangular ones, i.e. a reverse
    exclusive cumulative sum). The paper's ``Σ_l F_l B_l`` has one non-zero bin pair per
    distance: ``D_ij ∈ [c_k, c_{k+1})`` has ``∂δ/∂z = −1/Δ`` at ``c_k`` and ``+1/Δ`` at
    ``c_{k+1}``, so ``W_ij = Σ_l F_il B_l,ij = (F_i,k+1 − F_i,k)/Δ``: one gather instead of
    ``L`` masked ``M × M`` products. ``B_l`` is symmetric, so ``Σ_l (F_l B_l + B_l F_l) = W + Wᵀ`` and, from
    ``D_ij = 2 − 2x̂_iᵀx̂_j``, ``∂loss/∂x̂ = −2 (W + Wᵀ) x̂``. At a bin centre this takes the
    right derivative of ``δ``, as autodiff of the forward does; the clip of ``D`` to
    ``[0, 4]`` only absorbs rounding and is treated as the identity.
    """
    dtype = unit_embeddings.dtype
    batch_size = tf.shape(unit_embeddings)[0]
    bin_width = MAX_SQUARED_DISTANCE / num_bins
    h_pos, h_neg = forward.positive_histograms, forward.negative_histograms
    cumulative_positives = tf.cumsum(h_pos, axis=1)
    cumulative_all = tf.cumsum(h_pos + h_neg, axis=1)
    cumulative_negatives = cumulative_all - cumulative_positives
    squared_cumulative_all = tf.square(cumulative_all)

    positive_tail = tf.math.divide_no_nan(h_pos * cumulative_negatives, squared_cumulative_all)  # f̂⁺
    negative_tail = -tf.math.divide_no_nan(h_pos * cumulative_positives, squared_cumulative_all)  # f̂⁻
    d_positive = (
        tf.math.divide_no_nan(cumulative_positives, cumulative_all)
        + positive_tail
        + tf.cumsum(positive_tail, axis=1, exclusive=True, reverse=True)
    )
    d_negative = tf.cumsum(negative_tail, axis=1, reverse=True)

    # loss = 1 − (1/n) Σ_i FastAP_i over the n queries with positives, times the upstream gradient.
    num_queries = tf.reduce_sum(tf.cast(forward.num_positives > 0, dtype))
    query_scale = -tf.cast(upstream, dtype) * tf.math.divide_no_nan(
        tf.ones_like(forward.num_positives), forward.num_positives * num_queries
    )
    query_scale = query_scale[:, tf.newaxis]

    def slopes(d_histogram):
        # (F_{k+1} − F_k)/Δ per lower bin k, padded to L + 1 columns to match the pair_bins layout.
        per_interval = (d_histogram[:, 1:] - d_histogram[:, :-1]) * (query_scale / bin_width)
        return tf.pad(per_interval, [[0, 0], [0, 1]])

    self_slopes = tf.zeros([batch_size, num_bins + 1], dtype)
    slope_table = tf.concat([slopes(d_positive), slopes(d_negative), self_slopes], axis=1)  # _POSITIVE.._SELF
    pair_weights = _gather_rows(slope_table, forward.pair_bins)  # W, (M, M)
    return -2.0 * tf.matmul(pair_weights + tf.transpose(pair_weights), unit_embeddings)


def fastap_loss(labels, embeddings, num_bins=10):
    """Mean FastAP loss with the closed-form gradient of Cakir et al. (2019), Appendix C.

    ```
    FastAP_i = (1/N⁺_i) Σ_{l=0..L} H⁺_il h⁺_il / H_il,    loss = 1 − mean_{i: N⁺_i > 0} FastAP_i
    ```

    ``h⁺``/``h⁻`` are query ``i``'s soft histograms of squared distances to its
    positives/negatives (triangular kernel, ``L + 1`` centres ``0, Δ, …, 4``, ``Δ = 4/L``),
    ``H⁺``/``H`` the cumulative sums of ``h⁺``/``h⁺ + h⁻``. The embeddings are
    L2-normalised here (gradients flow through the normalisation). Queries without
    positives are excluded; a batch without any positive pair gives loss 0 and zero
    gradients. The gradient is that of the returned mean times the upstream gradient,
    so loss weights and loss scaling apply.

    Args:
        labels: integer class labels, ``(M,)`` or ``(M, 1)``.
        embeddings: ``(M, d)`` embeddings; the loss is computed in float64 for float64
            inputs and in float32 otherwise.
        num_bins: number of intervals ``L`` splitting ``[0, 4]`` (default 10).

    Returns:
        Scalar loss, float64 or float32.

    Example:

    >>> x = tf.random.normal((8, 4))
    >>> fastap_loss(tf.constant([0, 0, 1, 1, 2, 2, 3, 3]), x, num_bins=10)
    """
    num_bins = _check_num_bins(num_bins, "fastap_loss")
    labels = flatten_labels(labels)
    unit_embeddings = _unit_embeddings(embeddings)

    @tf.custom_gradient
    def loss_of_unit_embeddings(unit_embeddings):
        forward = _fastap_forward(labels, unit_embeddings, num_bins)

        def gradient(upstream):
            return _fastap_gradient(forward, unit_embeddings, upstream, num_bins)

        return forward.loss, gradient

    return loss_of_unit_embeddings(unit_embeddings)


def fastap_loss_autodiff(labels, embeddings, num_bins=10):
    """:func:`fastap_loss`'s forward differentiated by TensorFlow's autodiff (a reference).

    Same value as :func:`fastap_loss`; the gradient keeps the forward's intermediates
    alive and goes through the histogram's gradient, so it costs more memory and time.
    Used by tests and benchmarks.
    """
    num_bins = _check_num_bins(num_bins, "fastap_loss_autodiff")
    return _fastap_forward(flatten_labels(labels), _unit_embeddings(embeddings), num_bins).loss


@keras.saving.register_keras_serializable(package="tfdml")
class FastAPLoss(DMLLoss):
    """FastAP: a listwise loss that directly optimises an approximation of average precision.

    When to use: retrieval metrics (AP) with large batches; pairs with category-hard batches on data with a category
    hierarchy (SOP).

    Each sample queries the rest of the batch; with squared distances of L2-normalised
    embeddings soft-binned into ``L + 1`` centres ``0, Δ, …, 4`` (``Δ = 4/L``):

    ```
    FastAP_i = (1/N⁺_i) Σ_l H⁺_il h⁺_il / H_il,    loss = 1 − mean_{i: N⁺_i > 0} FastAP_i
    ```

    Cakir, He, Xia, Kulis, Sclaroff, "Deep Metric Learning to Rank", CVPR 2019; the
    gradient is the closed form of its supplementary Appendix C (see :func:`fastap_loss`),
    in ``O(M² + L·M)`` memory for a batch of ``M``. Embeddings are L2-normalised inside
    the loss, a no-op for tfdml's embedding models, which already output unit vectors.
    The paper trains with large batches drawn from few classes (category-hard sampling).

    Args:
        num_bins: number of histogram intervals ``L`` (default 10, as in the paper's code).
        name: name of the loss instance.

    Example:

    >>> loss = tfdml.losses.FastAPLoss(num_bins=10)
    >>> model.compile(optimizer="adam", loss=loss)
    >>> loss(tf.constant([0, 0, 1, 1]), tf.random.normal((4, 16)))
    """

    def __init__(self, num_bins=10, name="fastap_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_bins = _check_num_bins(num_bins, "FastAPLoss")

    def compute(self, labels, embeddings):
        return fastap_loss(labels, embeddings, num_bins=self.num_bins)
