"""Random tuple mining: triplets drawn uniformly from all valid triplets of the batch."""

import keras
import tensorflow as tf

from tfdml.masks import key_masks, negative_mask, positive_mask
from tfdml.mining.base import MaskedTriplets, TupleMiner, check_argument
from tfdml.mining.tuples import sample_column, sample_columns


@keras.saving.register_keras_serializable(package="tfdml")
class RandomMiner(TupleMiner):
    """``num_tuples`` triplets drawn uniformly, with replacement, from all valid ``(a, p, n)``:
    ``y_a = y_p ≠ y_n``, ``a ≠ p``.

    When to use: a control for the other miners, or losses that weight their tuples themselves; random tuples are mostly
    easy.

    Exact uniformity without enumerating the ``O(b³)`` triplets: the anchor is drawn
    with probability ``∝ |P(a)|·|N(a)|`` (its number of valid triplets), then the
    positive and the negative uniformly among the anchor's. A batch without any
    valid triplet yields no tuple (``num_tuples`` invalid ones).

    With ``keys`` (:class:`~tfdml.masks.Keys`, a cross-batch memory) the anchors are the batch and the
    positives and negatives are valid keys (never the anchor's own copy), on the ``b × m`` rectangle.

    Args:
        num_tuples: triplets per batch (default ``None``: the batch size, as in Roth et al.).
        p_switch: ρ-regularisation probability (default 0).
        seed: seed of the miner's random generator.

    Example:

    >>> triplets = RandomMiner(seed=0)(tf.random.normal((32, 16)), tf.range(32) // 4)
    """

    def __init__(self, num_tuples=None, p_switch=0.0, seed=None):
        super().__init__(p_switch=p_switch, seed=seed)
        self.num_tuples = check_argument(type(self).__name__, "num_tuples", num_tuples, int, low=1, optional=True)

    def mine(self, embeddings, labels, keys=None):
        if keys is None:
            positives, negatives = positive_mask(labels), negative_mask(labels)
        else:
            positives, negatives = key_masks(labels, keys)
        triplets_per_anchor = tf.reduce_sum(tf.cast(positives, tf.float32), axis=1) * tf.reduce_sum(
            tf.cast(negatives, tf.float32), axis=1
        )
        num_tuples = tf.shape(labels)[0] if self.num_tuples is None else self.num_tuples
        has_triplets = triplets_per_anchor > 0.0
        anchors, any_triplet = sample_columns(
            self.generator,
            tf.math.log(tf.where(has_triplets, triplets_per_anchor, 1.0))[tf.newaxis, :],
            has_triplets[tf.newaxis, :],
            num_tuples,
        )
        anchors = anchors[0]
        sampled_positives, _ = sample_column(self.generator, 0.0, tf.gather(positives, anchors))
        sampled_negatives, _ = sample_column(self.generator, 0.0, tf.gather(negatives, anchors))
        valid = tf.fill(tf.shape(anchors), any_triplet[0])
        return MaskedTriplets(anchors, sampled_positives, sampled_negatives, valid)
