"""Triplet margin mining: triplets by where ``D_an − D_ap`` lies relative to a margin (pytorch-metric-learning's
``TripletMarginMiner``; the easy / semi-hard / hard categories of Schroff et al. 2015, FaceNet)."""

import keras
import tensorflow as tf

from tfdml.distances import euclidean
from tfdml.masks import negative_mask, positive_mask
from tfdml.mining.base import MaskedTriplets, TupleMiner, check_argument

TYPES_OF_TRIPLETS = ("all", "hard", "semihard", "easy")


def count_at_most(ascending, bounds):
    """Per row, how many entries of ``ascending`` (rows sorted ascending) are ``<=`` each entry of ``bounds``:
    ``tf.searchsorted(ascending, bounds, side="right")`` as one stable sort of both rows together, in
    O(n log n) per row. (XLA lowers ``searchsorted`` to a ``rows × n × m`` comparison: b³ here.)"""
    size = tf.shape(ascending)[1]
    # A stable sort keeps an entry of ``ascending`` before an equal bound, so it counts as ``<=`` it.
    order = tf.argsort(tf.concat([ascending, bounds], axis=1), axis=1, stable=True)
    counted = tf.cumsum(tf.cast(order < size, tf.int32), axis=1)
    sorted_position = tf.argsort(order, axis=1, stable=True)
    return tf.gather(counted, sorted_position[:, size:], batch_dims=1)


@keras.saving.register_keras_serializable(package="tfdml")
class TripletMarginMiner(TupleMiner):
    """For each anchor–positive pair ``(a, p)``, a negative drawn uniformly among those whose triplet
    margin ``m = D_an − D_ap`` is of ``type_of_triplets``.

    When to use: reproducing PML recipes; its type_of_triplets picks how hard the triplets the loss sees are.

    The types, as pytorch-metric-learning defines them (Musgrave et al. 2020, "PyTorch Metric
    Learning"; its ``TripletMarginMiner``), with ``α`` the margin:

    ```
    "all"        m ≤ α        the triplets that violate the margin (a triplet loss with margin α is non-zero)
    "hard"       m ≤ 0        the negative no farther than the positive
    "semihard"   0 < m ≤ α    the negative farther than the positive, yet within the margin
                              (Schroff et al. 2015, FaceNet: D_ap < D_an < D_ap + α)
    "easy"       m > α        the triplets that satisfy the margin ("all"'s complement)
    ```

    ``D`` is the Euclidean distance of the L2-normalised embeddings, as PML's default
    ``LpDistance(normalize_embeddings=True)``; tfdml's models L2-normalise their output, so a
    :class:`~tfdml.losses.TripletLoss` on them measures the same distances.

    PML returns every triplet ``(a, p, n)`` satisfying the condition, up to ``b³`` of them. Here
    the tuples sit on a fixed ``b × b`` grid (static shapes: it compiles under XLA): one cell per
    ordered positive pair ``(a, p)``, valid where ``(a, p)`` has a negative of the type, holding
    one such negative drawn uniformly. So the mined ``(a, p)`` are exactly the pairs of PML's
    triplets, every mined triplet is one of PML's, and the two sets are equal where no pair has
    two negatives of the type; a loss averaging over the grid weighs each pair equally (one
    negative, an unbiased draw of its qualifying negatives) where PML's average weighs each pair
    by its number of qualifying negatives. Negatives are drawn by rank among the anchor's
    negatives sorted by distance (the band of each pair is a range of ranks, found by binary
    search): ``O(b² log b)`` time, ``O(b²)`` memory, nothing ``b × b × b``.

    Args:
        margin: ``α >= 0`` (default 0.2, PML's).
        type_of_triplets: ``"all"`` (default, PML's), ``"hard"``, ``"semihard"`` or ``"easy"``.
        p_switch: ρ-regularisation probability (default 0).
        seed: seed of the miner's random generator.

    Example:

    >>> miner = TripletMarginMiner(margin=0.2, type_of_triplets="semihard", seed=0)
    >>> loss = tfdml.losses.TripletLoss(margin=0.2, miner=miner)
    >>> triplets = miner(tf.random.normal((32, 16)), tf.range(32) // 4)
    """

    def __init__(self, margin=0.2, type_of_triplets="all", p_switch=0.0, seed=None):
        super().__init__(p_switch=p_switch, seed=seed)
        self.margin = check_argument(type(self).__name__, "margin", margin, low=0.0)
        if type_of_triplets not in TYPES_OF_TRIPLETS:
            raise ValueError(
                f"TripletMarginMiner: type_of_triplets must be one of {TYPES_OF_TRIPLETS}; got {type_of_triplets!r}."
            )
        self.type_of_triplets = type_of_triplets

    def mine(self, embeddings, labels):
        distances = euclidean(tf.math.l2_normalize(tf.stop_gradient(embeddings), axis=1))
        negatives = negative_mask(labels)
        # Row a: its negatives by ascending distance, then the other samples (+inf).
        negative_distances = tf.where(negatives, distances, float("inf"))
        order = tf.argsort(negative_distances, axis=1, stable=True)
        ascending = tf.gather(negative_distances, order, batch_dims=1)
        num_negatives = tf.reduce_sum(tf.cast(negatives, tf.int32), axis=1, keepdims=True)

        def at_most(bound):
            """Per cell (a, p): how many negatives of a lie within ``bound[a, p]`` (D_an ≤ bound)."""
            return tf.minimum(count_at_most(ascending, bound), num_negatives)

        # Cell (a, p)'s qualifying negatives are the ranks [start, stop) of row a.
        if self.type_of_triplets == "all":
            start, stop = 0, at_most(distances + self.margin)
        elif self.type_of_triplets == "hard":
            start, stop = 0, at_most(distances)
        elif self.type_of_triplets == "semihard":
            start, stop = at_most(distances), at_most(distances + self.margin)
        else:
            start, stop = at_most(distances + self.margin), num_negatives
        size = stop - start
        uniforms = self.generator.uniform(tf.shape(distances))
        offset = tf.minimum(tf.cast(uniforms * tf.cast(size, tf.float32), tf.int32), tf.maximum(size - 1, 0))
        rank = tf.clip_by_value(start + offset, 0, tf.shape(distances)[1] - 1)
        chosen = tf.gather(order, rank, batch_dims=1)
        # The chosen sample is checked to be a negative: NaN distances would unsort the rows.
        valid = positive_mask(labels) & (size > 0) & tf.gather(negatives, chosen, batch_dims=1)
        shape = tf.shape(distances)
        anchors = tf.broadcast_to(tf.range(shape[0])[:, tf.newaxis], shape)
        positives = tf.broadcast_to(tf.range(shape[1])[tf.newaxis, :], shape)
        return MaskedTriplets(*(tf.reshape(t, [-1]) for t in (anchors, positives, chosen, valid)))
