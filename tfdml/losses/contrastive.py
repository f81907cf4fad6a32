"""Contrastive loss (Hadsell, Chopra & LeCun 2006) on mined pairs or on every pair of the batch."""

import keras
import tensorflow as tf

from tfdml.losses.base import DMLLoss
from tfdml.distances import euclidean
from tfdml.losses.pairs import (
    AVERAGES,
    check_pairs,
    count_active,
    nan_unless_finite,
    symmetric_batch_distances,
    without_diagonal,
)
from tfdml.losses.math import masked_mean
from tfdml.losses.tuples import anchor_distances, mine_triplets, resolve_miner
from tfdml.mining.base import check_argument
from tfdml.masks import same_label_mask
from tfdml.mining.distance_weighted import DistanceWeightedMiner


def contrastive_loss(triplets, embeddings, margin=1.0, positive_margin=0.0):
    """Contrastive loss (see :class:`ContrastiveLoss`) of the ``(anchor, positive)`` and
    ``(anchor, negative)`` pairs of the mined ``triplets`` (:class:`~tfdml.mining.base.MaskedTriplets`)."""
    anchor_positive, anchor_negative = anchor_distances(euclidean(embeddings), triplets)
    positive_terms = tf.nn.relu(anchor_positive - positive_margin)
    negative_terms = tf.nn.relu(margin - anchor_negative)
    # Each valid tuple holds one positive and one negative pair.
    return masked_mean(positive_terms + negative_terms, triplets.valid) / 2.0


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


@keras.saving.register_keras_serializable(package="tfdml")
class ContrastiveLoss(DMLLoss):
    """Pulls positive pairs together and pushes negative pairs beyond a margin:

        L = 1/|P| Σ_{(i,j) ∈ P} 1[y_i = y_j] (D_ij − m⁺)_+ + 1[y_i ≠ y_j] (γ − D_ij)_+

    with Euclidean ``D`` (Roth et al. 2020, eq. 1). The pairs ``P`` come from the
    miner's tuples: ``(anchor, positive)`` is a positive pair and
    ``(anchor, negative)`` a negative pair (by role, so ρ-regularised tuples work).
    The mean is over all mined pairs; no pair gives 0.

    Args:
        margin: ``γ > 0``, the distance beyond which negatives cost nothing (default 1.0; with
            ``γ = 0`` no negative pair would ever cost anything).
        positive_margin: ``m⁺ >= 0``, the distance below which positives cost nothing
            (default 0.0, as in Roth et al.).
        miner: a :class:`~tfdml.mining.base.Miner` (default: ``DistanceWeightedMiner()``,
            Roth et al.'s choice; Wu et al. also use random and semi-hard pairs, e.g.
            ``SemiHardMiner(lower_bound=0.5)``).
        pairs: ``"mined"`` (default: the miner's tuples) or ``"all"``: every ordered pair of
            the batch, no miner (Roth et al.'s and PML's all-pairs definition), on the
            ``b × b`` distance matrix (:func:`contrastive_all_pairs`).

    Example:

    >>> loss = ContrastiveLoss(miner=tfdml.mining.RandomMiner(seed=0))
    >>> model.compile(optimizer="adam", loss=loss)   # y_true: int labels, y_pred: embeddings
    """

    data_arguments = ("miner",)

    def __init__(self, margin=1.0, positive_margin=0.0, miner=None, pairs="mined", name="contrastive_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.margin = check_argument("ContrastiveLoss", "margin", margin, low=0.0, low_open=True)
        self.positive_margin = check_argument("ContrastiveLoss", "positive_margin", positive_margin, low=0.0)
        self.pairs = check_pairs(pairs, miner)
        self.miner = None if self.pairs == "all" else resolve_miner(miner, DistanceWeightedMiner)

    def compute(self, labels, embeddings):
        if self.pairs == "all":
            return contrastive_all_pairs(labels, embeddings, self.margin, self.positive_margin)
        triplets = mine_triplets(self.miner, embeddings, labels)
        return contrastive_loss(triplets, embeddings, self.margin, self.positive_margin)
