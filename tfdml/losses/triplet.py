"""Triplet loss, ℓ2 (Wu et al. 2017) and ℓ2² (Schroff et al. 2015, FaceNet), on mined triplets."""

import keras
import tensorflow as tf

from tfdml.losses.base import DMLLoss
from tfdml.distances import check_distance
from tfdml.losses.math import masked_mean
from tfdml.losses.tuples import anchor_distances, mine_triplets, resolve_miner, tuple_comparison
from tfdml.mining.base import check_argument
from tfdml.mining.distance_weighted import DistanceWeightedMiner


def triplet_loss(triplets, embeddings, margin=0.2, distance="euclidean", keys=None):
    """Triplet loss (see :class:`TripletLoss`) of the mined ``triplets``
    (:class:`~tfdml.mining.base.MaskedTriplets`) of ``embeddings`` ``(b, d)``. With :class:`~tfdml.masks.Keys`
    (a cross-batch memory) anchors index the batch and positives and negatives the keys (``(b, m)`` comparisons)."""
    matrix, sign = tuple_comparison(embeddings, keys, distance)
    anchor_positive, anchor_negative = anchor_distances(matrix, triplets)
    return masked_mean(tf.nn.relu(sign * (anchor_positive - anchor_negative) + margin), triplets.valid)


@keras.saving.register_keras_serializable(package="tfdml")
class TripletLoss(DMLLoss):
    """Ranks each mined triplet's positive closer than its negative by a margin:

        ℓ2:  L = 1/|T| Σ_{(a,p,n) ∈ T} (D_ap − D_an + α)_+          (Wu et al. 2017; Roth et al. 2020, eq. 2)
        ℓ2²: L = 1/|T| Σ_{(a,p,n) ∈ T} (D_ap² − D_an² + α)_+        (Schroff et al. 2015)

    and under a similarity ``S`` (``distance="cosine"`` or ``"dot"``) ``(S_an − S_ap + α)_+``: ``α`` is
    then how much more similar than the negative the positive must be (pytorch-metric-learning's
    ``distance.margin``). The mean runs over the valid mined triplets; no triplet gives 0.

    When to use: the classic baseline; match the miner to the data (semi-hard or distance-weighted; batch-hard only for
    clean labels).

    pytorch-metric-learning's (PML) ``TripletMarginLoss(margin=α, reducer=MeanReducer())`` with
    ``LpDistance(normalize_embeddings=False)`` (``power=2`` for ``"squared_euclidean"``,
    ``CosineSimilarity()``, ``DotProductSimilarity(normalize_embeddings=False)``) is this loss on the
    same triplets; PML's defaults are ``α = 0.05``, L2-normalised embeddings and ``AvgNonZeroReducer``.

    In a :class:`~tfdml.losses.CrossBatchMemory` (``compute(..., keys=)``) the anchors are the batch and the
    positives and negatives come from the batch and the memory, mined by a miner that takes keys
    (``DistanceWeightedMiner``, ``SemiHardMiner``, ``BatchHardMiner``, ``RandomMiner``).

    Args:
        margin: ``α >= 0`` (default 0.2).
        distance: ``"euclidean"`` (default: ``ℓ2``, whose gradients have unit length at every
            distance), ``"squared_euclidean"`` (FaceNet's ``ℓ2²``), ``"cosine"`` or ``"dot"``
            (:data:`tfdml.distances.DISTANCES`). A saved config's ``squared=True`` (the flag this
            argument replaced) still loads as ``"squared_euclidean"``.
        miner: a :class:`~tfdml.mining.base.Miner` (default ``DistanceWeightedMiner()``,
            Roth et al.'s choice; FaceNet uses ``SemiHardMiner(squared=True)``).

    Example:

    >>> loss = TripletLoss(miner=tfdml.mining.SemiHardMiner(seed=0))
    >>> model.compile(optimizer="adam", loss=loss)
    >>> TripletLoss(distance="squared_euclidean", miner=tfdml.mining.SemiHardMiner(squared=True))
    """

    data_arguments = ("miner",)

    def __init__(self, margin=0.2, distance="euclidean", miner=None, name="triplet_loss", **kwargs):
        if "squared" in kwargs:
            squared = check_argument("TripletLoss", "squared", kwargs.pop("squared"), bool)
            if distance != "euclidean":
                raise ValueError(
                    f"TripletLoss: give distance only, not squared={squared} with distance={distance!r}."
                )
            distance = "squared_euclidean" if squared else "euclidean"
        super().__init__(name=name, **kwargs)
        self.margin = check_argument("TripletLoss", "margin", margin, low=0.0)
        self.distance = check_distance("TripletLoss", distance)
        self.miner = resolve_miner(miner, DistanceWeightedMiner)

    def compute(self, labels, embeddings, keys=None):
        triplets = mine_triplets(self.miner, embeddings, labels, keys)
        return triplet_loss(triplets, embeddings, self.margin, self.distance, keys)
