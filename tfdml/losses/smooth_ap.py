"""Smooth-AP (Brown et al., 2020): average precision with each rank's indicator replaced by a sigmoid."""

import keras
import tensorflow as tf

from tfdml.losses.base import DMLLoss
from tfdml.losses.pairs import nan_unless_finite, without_diagonal
from tfdml.masks import same_label_mask
from tfdml.mining.base import check_argument


def _row_average_precision_and_gradient(similarity_row, positive_row, others, temperature):
    """One query's smoothed AP and its gradient ``∂AP_q/∂s_q`` in ``(b, b)`` memory.

    ``G_ij = σ((s_j − s_i)/τ)`` (0 on the diagonal); ``N_i = 1 + Σ_{j ∈ P, j ≠ i} G_ij`` and
    ``D_i = 1 + Σ_{j ≠ i} G_ij`` are item ``i``'s smoothed ranks among the positives and among all
    items;
    ``∂AP/∂G_ij = p_i (p_j/D_i − N_i/D_i²)/|P|`` and ``∂G_ij/∂s_j = −∂G_ij/∂s_i = G_ij (1 − G_ij)/τ``.
    """
    logits = (similarity_row[tf.newaxis, :] - similarity_row[:, tf.newaxis]) / temperature
    above = tf.where(others, tf.sigmoid(logits), tf.zeros_like(logits))
    positive_ranks = 1.0 + tf.reduce_sum(above * positive_row[tf.newaxis, :], axis=1)
    all_ranks = 1.0 + tf.reduce_sum(above, axis=1)
    num_positives = tf.reduce_sum(positive_row)
    average_precision = tf.reduce_sum(positive_row * positive_ranks / all_ranks) / num_positives
    scale = positive_row / (num_positives * all_ranks)
    d_above = scale[:, tf.newaxis] * (positive_row[tf.newaxis, :] - (positive_ranks / all_ranks)[:, tf.newaxis])
    # σ(x)σ(−x) rather than G(1 − G): exact where G rounds to 1.
    weights = tf.where(others, d_above * above * tf.sigmoid(-logits) / temperature, tf.zeros_like(above))
    return average_precision, tf.reduce_sum(weights, axis=0) - tf.reduce_sum(weights, axis=1)


def smooth_ap_loss(labels, embeddings, temperature=0.01):
    """Smooth-AP loss (see :class:`SmoothAPLoss`) of int ``labels`` ``(b,)`` and ``embeddings`` ``(b, d)``,
    L2-normalised here: ``1 − mean_q AP_q``. One query at a time in a ``tf.map_fn`` (a while loop) that
    forms each AP with its hand-written gradient, so no iteration keeps its ``b × b`` intermediates for
    autodiff: ``O(b²)`` memory, ``O(b³)`` time."""
    embeddings = tf.convert_to_tensor(embeddings)
    normalized = tf.math.l2_normalize(embeddings, axis=1)
    similarity = tf.matmul(normalized, normalized, transpose_b=True)
    # The query is its own positive (the authors' code and PML): every AP is defined.
    positives = tf.cast(same_label_mask(labels), similarity.dtype)
    others = without_diagonal(tf.ones_like(similarity, tf.bool))

    @tf.custom_gradient
    def loss_of_similarity(similarity):
        # The gradient is formed with the loss: one pass over the sigmoids, O(b²) kept for the backward.
        average_precisions, gradients = tf.map_fn(
            lambda rows: _row_average_precision_and_gradient(rows[0], rows[1], others, temperature),
            (similarity, positives),
            fn_output_signature=(similarity.dtype, similarity.dtype),
        )
        batch_size = tf.cast(tf.shape(similarity)[0], similarity.dtype)

        def gradient(upstream):
            return -upstream / batch_size * gradients

        return 1.0 - tf.reduce_mean(average_precisions), gradient

    return nan_unless_finite(loss_of_similarity(similarity), embeddings)


@keras.saving.register_keras_serializable(package="tfdml")
class SmoothAPLoss(DMLLoss):
    """Smooth-AP: each query's average precision, with the rank indicator smoothed by a sigmoid.

    When to use: optimising average precision directly for large-scale retrieval (SOP, iNaturalist) with large batches
    of several samples per class.

    With cosine similarities ``s_qi`` of the L2-normalised embeddings, every sample ``q`` queries the
    whole batch ``Ω`` (itself included, see below), ``P_q`` its class (``q`` included) and
    ``G(x) = σ(x/τ)``:

    ```
    AP_q = (1/|P_q|) Σ_{i ∈ P_q} (1 + Σ_{j ∈ P_q, j ≠ i} G(s_qj − s_qi))
                              / (1 + Σ_{j ∈ Ω, j ≠ i} G(s_qj − s_qi))
    L = (1/b) Σ_q (1 − AP_q)
    ```

    Brown, Xie, Kalogeiton, Zisserman, "Smooth-AP: Smoothing the Path Towards Large-Scale Image
    Retrieval", ECCV 2020 (the smoothed AP of its Section 3; equation number not verified). The
    paper's text ranks "the rest of the mini-batch"; its code, and pytorch-metric-learning's (PML)
    ``SmoothAPLoss``, keep the query in its own retrieval and positive sets (it masks only ``j = i``),
    and so does this loss: the query ranks itself first, every ``AP_q`` is defined (a class of one
    has ``AP_q ≈ 1``) and values match the published code's. Time ``O(b³)``, memory ``O(b²)``: one
    query's ``b × b`` matrix at a time (:func:`smooth_ap_loss`); nothing of size ``b × b × b``.

    Default ``τ = 0.01``: the paper's and PML's. The paper samples a fixed number of images per class.

    PML's ``SmoothAPLoss(temperature=τ)`` computes the same loss but ignores the labels beyond their
    counts: it needs every class equally often, in contiguous blocks (``[A, A, B, B]``), and splits the
    batch into blocks of (number of classes) samples, so it equals this loss only when each class has
    as many samples as there are classes (``m`` classes × ``m`` samples, sorted); tfdml reads the labels
    and takes any batch.

    Args:
        temperature: the sigmoid's temperature ``τ > 0`` (default 0.01).
        name: name of the loss instance.

    Example:

    >>> loss = tfdml.losses.SmoothAPLoss()
    >>> loss(tf.constant([0, 0, 1, 1]), tf.random.normal((4, 16)))
    """

    def __init__(self, temperature=0.01, name="smooth_ap_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.temperature = check_argument("SmoothAPLoss", "temperature", temperature, low=0.0, low_open=True)

    def compute(self, labels, embeddings):
        return smooth_ap_loss(labels, embeddings, self.temperature)
