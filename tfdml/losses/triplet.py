"""Triplet loss, ℓ2 (Wu et al. 2017) and ℓ2² (Schroff et al. 2015, FaceNet), on mined triplets."""

import keras
import tensorflow as tf

from tfdml.losses.base import DMLLoss
from tfdml.distances import euclidean, squared_euclidean
from tfdml.losses.math import masked_mean
from tfdml.losses.tuples import anchor_distances, mine_triplets, resolve_miner
from tfdml.mining.base import check_argument
from tfdml.mining.distance_weighted import DistanceWeightedMiner


def triplet_loss(triplets, embeddings, margin=0.2, squared=False):
    """Triplet loss (see :class:`TripletLoss`) of the mined ``triplets``
    (:class:`~tfdml.mining.base.MaskedTriplets`) of ``embeddings`` ``(b, d)``."""
    distances = squared_euclidean(embeddings) if squared else euclidean(embeddings)
    anchor_positive, anchor_negative = anchor_distances(distances, triplets)
    return masked_mean(tf.nn.relu(anchor_positive - anchor_negative + margin), triplets.valid)


@keras.saving.register_keras_serializable(package="tfdml")
class TripletLoss(DMLLoss):
    """Ranks each mined triplet's positive closer than its negative by a margin:

        ℓ2:  L = 1/|T| Σ_{(a,p,n) ∈ T} (D_ap − D_an + α)_+          (Wu et al. 2017; Roth et al. 2020, eq. 2)
        ℓ2²: L = 1/|T| Σ_{(a,p,n) ∈ T} (D_ap² − D_an² + α)_+        (Schroff et al. 2015)

    The mean runs over the valid mined triplets; no triplet gives 0.

    Args:
        margin: ``α >= 0`` (default 0.2).
        squared: use squared Euclidean distances, FaceNet's ``ℓ2²`` form (default
            ``False``: ``ℓ2``, whose gradients have unit length at every distance).
        miner: a :class:`~tfdml.mining.base.Miner` (default ``DistanceWeightedMiner()``,
            Roth et al.'s choice; FaceNet uses ``SemiHardMiner(squared=True)``).

    Example:

    >>> loss = TripletLoss(miner=tfdml.mining.SemiHardMiner(seed=0))
    >>> model.compile(optimizer="adam", loss=loss)
    """

    data_arguments = ("miner",)

    def __init__(self, margin=0.2, squared=False, miner=None, name="triplet_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.margin = check_argument("TripletLoss", "margin", margin, low=0.0)
        self.squared = check_argument("TripletLoss", "squared", squared, bool)
        self.miner = resolve_miner(miner, DistanceWeightedMiner)

    def compute(self, labels, embeddings):
        return triplet_loss(mine_triplets(self.miner, embeddings, labels), embeddings, self.margin, self.squared)
