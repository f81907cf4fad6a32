"""Histogram loss (Ustinova & Lempitsky, 2016): overlap of positive and negative similarity distributions."""

import keras
import tensorflow as tf

from tfdml.losses.base import DMLLoss
from tfdml.masks import same_label_mask
from tfdml.mining.base import check_argument


def soft_histogram(lower_index, upper_share, pairs, num_bins):
    """``h(r)``: the pairs' similarities split between their two neighbouring nodes, summing to 1."""
    weight = tf.reshape(tf.cast(pairs, upper_share.dtype), [-1])
    counts = tf.math.unsorted_segment_sum(weight * (1.0 - upper_share), lower_index, num_bins) + (
        tf.math.unsorted_segment_sum(weight * upper_share, lower_index + 1, num_bins)
    )
    return tf.math.divide_no_nan(counts, tf.reduce_sum(weight))


def histogram_loss(labels, embeddings, num_bins=65):
    """Histogram loss of a batch (see :class:`HistogramLoss`): int ``labels`` ``(b,)``, ``embeddings``
    ``(b, d)`` (normalised here), ``num_bins`` nodes ``R``."""
    normalized = tf.math.l2_normalize(embeddings, axis=1)
    similarity = tf.clip_by_value(tf.matmul(normalized, normalized, transpose_b=True), -1.0, 1.0)
    same = same_label_mask(labels)
    upper = tf.linalg.band_part(tf.ones_like(same, dtype=tf.bool), 0, -1)
    unique_pairs = tf.logical_and(upper, tf.logical_not(tf.eye(tf.shape(same)[0], dtype=tf.bool)))
    positive_pairs = tf.logical_and(unique_pairs, same)
    negative_pairs = tf.logical_and(unique_pairs, tf.logical_not(same))

    step = 2.0 / (num_bins - 1)
    position = tf.reshape((similarity + 1.0) / step, [-1])
    lower_node = tf.minimum(tf.floor(position), num_bins - 2.0)
    upper_share = position - lower_node
    lower_index = tf.cast(lower_node, tf.int32)
    histogram_positive = soft_histogram(lower_index, upper_share, positive_pairs, num_bins)
    histogram_negative = soft_histogram(lower_index, upper_share, negative_pairs, num_bins)
    return tf.reduce_sum(histogram_negative * tf.cumsum(histogram_positive))


@keras.saving.register_keras_serializable(package="tfdml")
class HistogramLoss(DMLLoss):
    """Probability that a random negative pair is more similar than a random positive pair.

    When to use: few hyperparameters (only the bin count), no margin and no miner to tune; usually behind the tuned pair
    losses.

    Cosine similarities ``s = φ̂_iᵀφ̂_j`` of the unordered pairs ``i < j`` are soft-binned
    onto ``R`` nodes ``t_r = −1 + rΔ``, ``Δ = 2 / (R − 1)``, with the triangular kernel

    ```
    δ(s, r) = max(0, 1 − |s − t_r| / Δ)
    h^±(r) = (1 / |S^±|) Σ_{s ∈ S^±} δ(s, r)
    L = Σ_r h⁻(r) Σ_{q ≤ r} h⁺(q)
    ```

    where ``S⁺``/``S⁻`` are the similarities of same-/different-label pairs. Ustinova &
    Lempitsky, "Learning Deep Embeddings with Histogram Loss", NeurIPS 2016; Roth et al.
    2020, supplementary A.1, Eq. 7-9. Each similarity touches only its two neighbouring
    nodes, so the histograms are two segment sums (``O(b²)``, no ``b² × R`` tensor). A batch
    without positive or without negative pairs has an empty histogram and a loss of 0.
    ``y_pred`` may be normalised or not: the loss normalises.

    Args:
        num_bins: number of histogram nodes ``R`` (Roth et al.: 65 for CUB200-2011 and
            CARS196, 11 for Stanford Online Products).
        name: name of the loss instance.

    Example:

    >>> loss = tfdml.losses.HistogramLoss(num_bins=65)
    >>> loss(tf.constant([0, 0, 1, 1]), tf.random.normal((4, 16)))
    """

    def __init__(self, num_bins=65, name="histogram_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_bins = check_argument("HistogramLoss", "num_bins", num_bins, int, low=2)

    def compute(self, labels, embeddings):
        return histogram_loss(labels, embeddings, self.num_bins)
