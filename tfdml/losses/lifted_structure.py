"""Lifted structure losses on unnormalised embeddings: the original (Oh Song et al., 2016), over positive pairs,
and the generalised one (Hermans et al., 2017), over anchors."""

import keras
import tensorflow as tf

from tfdml.distances import euclidean
from tfdml.losses.base import DMLLoss
from tfdml.losses.math import masked_logsumexp, masked_mean, squared_norm_regularizer
from tfdml.losses.pairs import batch_distances, nan_unless_finite, pair_masks
from tfdml.masks import negative_mask, positive_mask
from tfdml.mining.base import check_argument


def generalized_lifted_structure_loss(labels, embeddings, margin=1.0, nu=0.005):
    """Generalized lifted structure loss of a batch (see :class:`GeneralizedLiftedStructureLoss`):
    int ``labels`` ``(b,)``, unnormalised ``embeddings`` ``(b, d)``, margin ``γ``, regulariser weight ``ν``."""
    distances = euclidean(embeddings)
    positive_lse, has_positive = masked_logsumexp(distances, positive_mask(labels))
    negative_lse, has_negative = masked_logsumexp(margin - distances, negative_mask(labels))
    ranking = masked_mean(tf.nn.relu(positive_lse + negative_lse), tf.logical_and(has_positive, has_negative))
    return ranking + nu * squared_norm_regularizer(embeddings)


@keras.saving.register_keras_serializable(package="tfdml")
class GeneralizedLiftedStructureLoss(DMLLoss):
    """Lifted structure loss over all positive and negative pairs of each anchor.

    When to use: every positive and negative pair of the batch with no miner; a mid-table pair baseline under Roth et
    al.'s protocol.

    With Euclidean distances ``d`` between unnormalised embeddings ``φ*``:

    ```
    L = mean_a [ log Σ_{p: y_p = y_a, p ≠ a} exp(d(φ*_a, φ*_p))
               + log Σ_{n: y_n ≠ y_a} exp(γ − d(φ*_a, φ*_n)) ]_+
        + ν · (1/b) Σ_i ‖φ*_i‖²
    ```

    Hermans et al., "In Defense of the Triplet Loss for Person Re-Identification", 2017
    (generalising Oh Song et al., CVPR 2016); Roth et al. 2020, supplementary A.1, Eq. 3.
    ``y_pred`` are the unnormalised embeddings (model built with ``normalize=False``); the
    ``ν`` term bounds their norm. The mean runs over anchors that have at least one positive
    and one negative (the term is undefined otherwise); Roth et al.'s code also averages,
    while Eq. 3 writes a plain sum, which would tie the loss scale to the batch size.

    Args:
        margin: margin ``γ >= 0`` on negative distances (Roth et al.: 1).
        nu: weight ``ν`` of the squared-norm regulariser (Roth et al.: 0.005).
        name: name of the loss instance.

    Example:

    >>> loss = tfdml.losses.GeneralizedLiftedStructureLoss()
    >>> loss(tf.constant([0, 0, 1, 1]), tf.random.normal((4, 16)))
    """

    def __init__(self, margin=1.0, nu=0.005, name="generalized_lifted_structure_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.margin = check_argument("GeneralizedLiftedStructureLoss", "margin", margin, low=0.0)
        self.nu = check_argument("GeneralizedLiftedStructureLoss", "nu", nu, low=0.0)

    def compute(self, labels, embeddings):
        return generalized_lifted_structure_loss(labels, embeddings, self.margin, self.nu)


def lifted_structure_loss(labels, embeddings, margin=1.0):
    """Lifted structure loss of Oh Song et al. (see :class:`LiftedStructureLoss`): int ``labels`` ``(b,)``,
    unnormalised ``embeddings`` ``(b, d)``, margin ``α``. ``log(Σ_{N_i} + Σ_{N_j})`` is the log-sum-exp of
    the two anchors' own log-sum-exps, so memory stays ``O(b²)``."""
    embeddings = tf.convert_to_tensor(embeddings)
    distances = batch_distances(embeddings)
    positives, negatives = pair_masks(labels)
    anchor_lse, has_negative = masked_logsumexp(margin - distances, negatives)
    size = tf.shape(distances)

    def of_both(per_anchor):  # (b, b, 2): the pair's first and second sample's values
        return tf.stack(
            [tf.broadcast_to(per_anchor[:, tf.newaxis], size), tf.broadcast_to(per_anchor[tf.newaxis, :], size)], -1
        )

    pair_lse, pair_has_negative = masked_logsumexp(of_both(anchor_lse), of_both(has_negative))
    # A pair without any negative has log 0 = −∞ inside the hinge: a 0 term.
    valid = tf.logical_and(positives, pair_has_negative)
    terms = tf.where(valid, tf.square(tf.nn.relu(pair_lse + distances)), tf.zeros_like(distances))
    # Each unordered pair is counted twice over the ordered ones: 1/(2|P|) Σ_P = Σ_ordered / (2 · #ordered).
    loss = tf.math.divide_no_nan(tf.reduce_sum(terms), 2.0 * tf.reduce_sum(tf.cast(positives, terms.dtype)))
    return nan_unless_finite(loss, embeddings)


@keras.saving.register_keras_serializable(package="tfdml")
class LiftedStructureLoss(DMLLoss):
    """The original lifted structure loss: each positive pair against every negative of both its samples.

    When to use: reproducing Song et al. 2016; prefer GeneralizedLiftedStructureLoss or MultiSimilarityLoss for new
    work.

    With Euclidean distances ``D`` between unnormalised embeddings, the set ``P`` of (unordered)
    positive pairs and ``N_i`` the samples of other classes than ``i``:

    ```
    J̃_ij = log( Σ_{k ∈ N_i} exp(α − D_ik) + Σ_{l ∈ N_j} exp(α − D_jl) ) + D_ij
    J̃ = 1/(2|P|) Σ_{(i,j) ∈ P} [J̃_ij]_+²
    ```

    Oh Song, Xiang, Jegelka, Savarese, "Deep Metric Learning via Lifted Structured Feature Embedding",
    CVPR 2016, Eq. 4 (the smooth bound of Eq. 3's hinge of max). A pair whose samples have no negative
    adds 0 (the log of an empty sum is −∞) and still counts in ``|P|``; a batch without a positive pair
    gives 0. ``y_pred`` are used as given (model built with ``normalize=False``); see
    :class:`GeneralizedLiftedStructureLoss` for the per-anchor variant of Hermans et al.

    Default ``α = 1``: pytorch-metric-learning's (PML) ``neg_margin`` (the paper's value not verified).

    PML's ``LiftedStructureLoss(neg_margin, pos_margin)`` is this loss with ``D_ij − pos_margin`` in place
    of ``D_ij``, but on L2-normalised embeddings by default:
    ``LiftedStructureLoss(neg_margin=margin, pos_margin=0, distance=LpDistance(normalize_embeddings=False))``
    reproduces it.

    Args:
        margin: margin ``α >= 0`` on negative distances (default 1).
        name: name of the loss instance.

    Example:

    >>> loss = tfdml.losses.LiftedStructureLoss(margin=1.0)
    >>> loss(tf.constant([0, 0, 1, 1]), tf.random.normal((4, 16)))
    """

    def __init__(self, margin=1.0, name="lifted_structure_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.margin = check_argument("LiftedStructureLoss", "margin", margin, low=0.0)

    def compute(self, labels, embeddings):
        return lifted_structure_loss(labels, embeddings, self.margin)
