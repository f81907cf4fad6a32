"""Uniform histogram pair mining: pairs drawn evenly across the range of their distances (pytorch-metric-learning's
``UniformHistogramMiner``)."""

import keras
import tensorflow as tf

from tfdml.distances import euclidean
from tfdml.masks import negative_mask, positive_mask
from tfdml.mining.base import Miner, check_argument
from tfdml.mining.multi_similarity import PairMasks


@keras.saving.register_keras_serializable(package="tfdml")
class UniformHistogramMiner(Miner):
    """Per side (positive pairs, negative pairs), ``per_bin`` pairs drawn uniformly with replacement from each
    non-empty bin of a histogram of the side's distances:

    ```
    bins  B_k = [D_min + k w, D_min + (k + 1) w),  w = (D_max − D_min) / num_bins,  k < num_bins (the last closed)
    kept  per_bin draws, uniform over the pairs of each non-empty B_k
    ```

    pytorch-metric-learning's ``UniformHistogramMiner`` (Musgrave et al. 2020, "PyTorch Metric Learning"):
    the pairs the loss sees are spread evenly over the distances, whatever the batch's distance
    distribution (dense near the mean on a sphere), as distance-weighted sampling does for negatives
    (Wu et al. 2017, "Sampling Matters in Deep Embedding Learning"). ``D`` is the Euclidean distance of
    the L2-normalised embeddings (PML's default ``LpDistance(normalize_embeddings=True)``); every ordered
    pair counts, ``(a, p)`` and ``(p, a)`` alike.

    When to use: pair losses that should see pairs spread over all distances, not crowded near the mean.

    Returns :class:`~tfdml.mining.multi_similarity.PairMasks` (boolean ``(b, b)``: static shapes, it
    compiles under XLA), so a pair drawn more than once is kept once: where PML's list repeats a pair and a
    loss averaging over it weighs it more, here each drawn pair counts once (no PML setting does this; the
    draws are PML's). The draws come from the miner's replica-consistent generator; positive and negative
    pairs are independent sets, so ρ-regularisation (``p_switch``) does not apply.

    Args:
        num_bins: bins per side, ``>= 1`` (default 100, PML's).
        pos_per_bin: draws per non-empty bin of the positive pairs, ``>= 0`` (default 10, PML's).
        neg_per_bin: draws per non-empty bin of the negative pairs, ``>= 0`` (default 10, PML's).
        seed: seed of the miner's random generator.

    Example:

    >>> miner = UniformHistogramMiner(num_bins=10, pos_per_bin=2, neg_per_bin=4, seed=0)
    >>> masks = miner(tf.random.normal((32, 16)), tf.range(32) // 4)
    >>> loss = tfdml.losses.MultiSimilarityLoss(miner=miner)
    """

    def __init__(self, num_bins=100, pos_per_bin=10, neg_per_bin=10, seed=None):
        super().__init__(seed=seed)
        owner = type(self).__name__
        self.num_bins = check_argument(owner, "num_bins", num_bins, int, low=1)
        self.pos_per_bin = check_argument(owner, "pos_per_bin", pos_per_bin, int, low=0)
        self.neg_per_bin = check_argument(owner, "neg_per_bin", neg_per_bin, int, low=0)

    def mine(self, embeddings, labels):
        distances = euclidean(tf.math.l2_normalize(tf.stop_gradient(embeddings), axis=1))
        return PairMasks(
            positives=self.draw(distances, positive_mask(labels), self.pos_per_bin),
            negatives=self.draw(distances, negative_mask(labels), self.neg_per_bin),
        )

    def draw(self, distances, mask, per_bin):
        """Boolean mask of the pairs drawn from ``mask``'s histogram: one sort of the ``b²`` pairs by bin, so
        bin ``k``'s members are a range of positions and a draw is a uniform position in it."""
        flat, members = tf.reshape(distances, [-1]), tf.reshape(mask, [-1])
        low = tf.reduce_min(tf.where(members, flat, float("inf")))
        high = tf.reduce_max(tf.where(members, flat, -float("inf")))
        # All members in one bin where they are equal (PML: the last, closed bin; the bin's index is immaterial).
        scaled = tf.math.divide_no_nan((flat - low) * self.num_bins, tf.where(members, high - low, 0.0))
        bins = tf.cast(tf.clip_by_value(tf.floor(scaled), 0.0, self.num_bins - 1.0), tf.int32)
        keys = tf.where(members, bins, self.num_bins)  # non-members sort last
        order = tf.argsort(keys, stable=True)
        counts = tf.math.unsorted_segment_sum(tf.ones_like(keys), keys, self.num_bins + 1)[: self.num_bins]
        starts = tf.cumsum(counts, exclusive=True)
        sizes = tf.cast(counts, tf.float32)[:, tf.newaxis]
        uniforms = self.generator.uniform([self.num_bins, per_bin])
        offsets = tf.cast(tf.minimum(tf.floor(uniforms * sizes), tf.maximum(sizes - 1.0, 0.0)), tf.int32)
        positions = tf.minimum(starts[:, tf.newaxis] + offsets, tf.size(keys) - 1)
        drawn = tf.reshape(tf.gather(order, positions), [-1, 1])
        hits = tf.reshape(tf.cast(tf.broadcast_to(counts[:, tf.newaxis] > 0, tf.shape(positions)), tf.int32), [-1])
        kept = tf.scatter_nd(drawn, hits, tf.shape(keys)) > 0
        return mask & tf.reshape(kept, tf.shape(mask))
