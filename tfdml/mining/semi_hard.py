"""Semi-hard negative mining (Schroff et al. 2015, FaceNet; Wu et al. 2017's fixed-bound variant)."""

import keras
import tensorflow as tf

from tfdml.distances import euclidean, squared_euclidean
from tfdml.mining.base import TupleMiner, check_argument, stateless_uniform, triplet_candidates
from tfdml.mining.tuples import check_construction, construct, fill_slots, grid_triplets, row_blocks, slot_values


@keras.saving.register_keras_serializable(package="tfdml")
class SemiHardMiner(TupleMiner):
    """For each anchor–positive pair ``(a, p)``, a negative drawn uniformly from the band

        D_ap < D_an < D_ap + margin

    (Schroff et al. 2015; Roth et al. 2020, eq. 20): negatives farther than the
    positive, yet still violating the triplet margin. Pairwise losses have no
    ``D_ap`` to compare with, so Wu et al. (2017, §5.1) use a fixed lower bound of
    0.5 instead: pass ``lower_bound=0.5`` for ``lower_bound < D_an < lower_bound + margin``.

    When to use: triplet losses from scratch (FaceNet's choice): hard enough to learn from, without batch-hard's early
    collapse.

    Fallback when the band is empty (FaceNet's rule): the closest negative with
    ``D_an > D_ap``; if every negative is closer than ``D_ap``, the farthest negative.
    Anchors without a positive or without a negative yield no tuple.

    Mining costs one ``b × b`` pass per tuple slot of an anchor (``k − 1`` passes for
    ``k`` samples per class) and never forms a ``b × b × b`` tensor; shapes are static
    (tuples on a masked grid), so it compiles under XLA.

    With ``keys`` (:class:`~tfdml.masks.Keys`, a cross-batch memory) the anchors are the batch and the
    positives and negatives are valid keys (never the anchor's own copy), on the ``b × m`` rectangle.

    Args:
        margin: width of the band (default 0.2, the triplet margin); ``None``: no
            upper bound (any negative farther than the positive).
        lower_bound: ``None`` (default) to use ``D_ap``, or a fixed distance ``>= 0`` (Wu et al.: 0.5).
        squared: compare squared Euclidean distances (FaceNet's ``ℓ2²`` triplets)
            instead of Euclidean ones (default ``False``).
        construction: ``"pairs"`` (default, FaceNet: every ordered positive pair) or
            ``"anchors"`` (Roth et al.: one random positive per anchor).
        p_switch: ρ-regularisation probability (default 0).
        seed: seed of the miner's random generator.

    Example:

    >>> miner = SemiHardMiner(margin=0.2, seed=0)
    >>> triplets = miner(tf.random.normal((32, 16)), tf.range(32) // 4)
    """

    def __init__(self, margin=0.2, lower_bound=None, squared=False, construction="pairs", p_switch=0.0, seed=None):
        super().__init__(p_switch=p_switch, seed=seed)
        owner = type(self).__name__
        self.margin = check_argument(owner, "margin", margin, low=0.0, low_open=True, optional=True)
        self.lower_bound = check_argument(owner, "lower_bound", lower_bound, low=0.0, optional=True)
        self.squared = check_argument(owner, "squared", squared, bool)
        self.construction = check_construction(construction)

    def mine(self, embeddings, labels, keys=None):
        embeddings = tf.stop_gradient(embeddings)
        distance = squared_euclidean if self.squared else euclidean
        distances, positives, negatives = triplet_candidates(embeddings, labels, keys, distance)
        # −inf on non-negatives: no bound lies below it, so one comparison tests both.
        negative_distances = tf.where(negatives, distances, -float("inf"))
        farthest_negative = tf.argmax(negative_distances, axis=1, output_type=tf.int32)

        tuples = construct(self.construction, self.generator, positives)

        def negative_for_slot(slot, seed):
            # One (batch, batch) pass per slot number: a band per (anchor, positive) costs O(slots · b²) time
            # and O(b²) memory, where a per-tuple mask would be (tuples × batch), up to b³.
            if self.lower_bound is None:
                positives = slot_values(tuples, tuples.positives, slot)
                bound = tf.gather(distances, positives[:, tf.newaxis], batch_dims=1)
            else:
                bound = tf.fill([tf.shape(distances)[0], 1], self.lower_bound)
            beyond = negative_distances > bound
            band = beyond if self.margin is None else tf.logical_and(beyond, distances < bound + self.margin)
            # A uniform rank r among the band's members, then the member whose running count passes r:
            # b uniforms and a two-level running count instead of b² random numbers.
            members = row_blocks(tf.cast(band, tf.int32))
            size = tf.cast(members.totals, tf.float32)
            uniforms = stateless_uniform(tf.shape(size), seed)
            rank = tf.minimum(tf.floor(uniforms * size), size - 1.0)
            in_band = members.draw(tf.cast(rank, tf.int32)[:, tf.newaxis])[:, 0]
            closest_beyond = tf.argmin(tf.where(beyond, distances, float("inf")), axis=1, output_type=tf.int32)
            any_beyond = tf.gather(beyond, closest_beyond[:, tf.newaxis], batch_dims=1)[:, 0]
            fallback = tf.where(any_beyond, closest_beyond, farthest_negative)
            return tf.where(size > 0.0, in_band, fallback)

        columns = fill_slots(tuples, self.generator.next_seed(), negative_for_slot)
        return grid_triplets(tuples, columns, tf.reduce_any(negatives, axis=1))
