"""Hard-aware pair mining: the hardest fraction of the positive and of the negative pairs (Yuan et al. 2017,
"Hard-Aware Deeply Cascaded Embedding"; pytorch-metric-learning's ``HDCMiner``)."""

import keras
import tensorflow as tf

from tfdml.distances import euclidean
from tfdml.masks import negative_mask, positive_mask
from tfdml.mining.base import Miner, check_argument
from tfdml.mining.multi_similarity import PairMasks


def hardest(scores, mask, fraction):
    """Boolean mask of the ``⌈fraction · |mask|⌉`` entries of ``mask`` with the largest ``scores`` (ties to
    the lowest flat index), by one sort of the ``b²`` scores: static shapes for any count."""
    count = tf.reduce_sum(tf.cast(mask, tf.float64))
    # float64, as PML's ``math.ceil(filter_percentage * num_pairs)``: in float32 ⌈0.3 · 50⌉ is 16, not 15.
    keep = tf.cast(tf.math.ceil(tf.constant(fraction, tf.float64) * count), tf.int32)
    flat = tf.reshape(tf.where(mask, scores, -float("inf")), [-1])
    order = tf.argsort(flat, direction="DESCENDING", stable=True)
    rank = tf.scatter_nd(order[:, tf.newaxis], tf.range(tf.size(flat)), tf.shape(flat))
    return mask & tf.reshape(rank < keep, tf.shape(mask))


@keras.saving.register_keras_serializable(package="tfdml")
class HDCMiner(Miner):
    """Keeps the hardest ``filter_percentage`` of the positive pairs and of the negative pairs of the batch:

    ```
    positive (a, p) kept  ⇔  D_ap is among the ⌈f · |P|⌉ largest of the positive pairs P (y_p = y_a, p ≠ a)
    negative (a, n) kept  ⇔  D_an is among the ⌈f · |N|⌉ smallest of the negative pairs N (y_n ≠ y_a)
    ```

    When to use: pair losses that should see only the hardest fraction of the pairs, once training has warmed up.

    Yuan et al., "Hard-Aware Deeply Cascaded Embedding", ICCV 2017: each model of the cascade
    trains on the samples harder than its predecessor finds; pytorch-metric-learning's ``HDCMiner``
    keeps this one selection step, the hardest fraction of the pairs (one cascade stage), and so does
    this class. ``D`` is the Euclidean distance of the L2-normalised embeddings (PML's default
    ``LpDistance(normalize_embeddings=True)``). Every ordered pair counts (``(a, p)`` and ``(p, a)``
    both, as in PML); ties at the cut go to the lowest flat index ``a · b + p`` (PML's ``topk`` picks
    any). Deterministic: ``seed`` is unused and kept only for the miner interface.

    Returns :class:`~tfdml.mining.multi_similarity.PairMasks` (boolean ``(b, b)``: static shapes, it
    compiles under XLA), which :class:`tfdml.losses.MultiSimilarityLoss` consumes; the kept positive
    and negative pairs are independent sets, so ρ-regularisation (``p_switch``) does not apply.

    Args:
        filter_percentage: fraction ``f ∈ [0, 1]`` of each side's pairs kept (default 0.5, PML's).
        seed: unused (the miner interface).

    Example:

    >>> miner = HDCMiner(filter_percentage=0.5)
    >>> masks = miner(tf.random.normal((8, 16)), tf.constant([0, 0, 1, 1, 2, 2, 3, 3]))
    >>> loss = tfdml.losses.MultiSimilarityLoss(miner=miner)
    """

    def __init__(self, filter_percentage=0.5, seed=None):
        super().__init__(seed=seed)
        self.filter_percentage = check_argument(
            type(self).__name__, "filter_percentage", filter_percentage, low=0.0, high=1.0
        )

    def mine(self, embeddings, labels):
        distances = euclidean(tf.math.l2_normalize(tf.stop_gradient(embeddings), axis=1))
        return PairMasks(
            positives=hardest(distances, positive_mask(labels), self.filter_percentage),
            negatives=hardest(-distances, negative_mask(labels), self.filter_percentage),
        )
