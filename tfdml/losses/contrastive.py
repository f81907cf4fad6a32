"""Contrastive loss (Hadsell, Chopra & LeCun 2006) on mined pairs."""

import keras
import tensorflow as tf

from tfdml.losses.base import DMLLoss
from tfdml.distances import euclidean
from tfdml.losses.pairs import check_pairs, contrastive_all_pairs
from tfdml.losses.math import masked_mean
from tfdml.losses.tuples import anchor_distances, mine_triplets, resolve_miner
from tfdml.mining.base import check_argument
from tfdml.mining.distance_weighted import DistanceWeightedMiner


def contrastive_loss(embeddings, triplets, margin=1.0, positive_margin=0.0):
    """Contrastive loss (see :class:`ContrastiveLoss`) of the ``(anchor, positive)`` and
    ``(anchor, negative)`` pairs of the mined ``triplets`` (:class:`~tfdml.mining.base.MaskedTriplets`)."""
    anchor_positive, anchor_negative = anchor_distances(euclidean(embeddings), triplets)
    positive_terms = tf.nn.relu(anchor_positive - positive_margin)
    negative_terms = tf.nn.relu(margin - anchor_negative)
    # Each valid tuple holds one positive and one negative pair.
    return masked_mean(positive_terms + negative_terms, triplets.valid) / 2.0


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
            ``b × b`` distance matrix (:func:`tfdml.losses.pairs.contrastive_all_pairs`).

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
        return contrastive_loss(embeddings, triplets, self.margin, self.positive_margin)
