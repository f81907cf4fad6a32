"""Batch-hard mining (Hermans et al. 2017, "In Defense of the Triplet Loss")."""

import keras
import tensorflow as tf

from tfdml.mining.base import MaskedTriplets, TupleMiner, triplet_candidates


@keras.saving.register_keras_serializable(package="tfdml")
class BatchHardMiner(TupleMiner):
    """One triplet per anchor: its hardest positive and hardest negative,

        p = argmax_{p: y_p = y_a, p ≠ a} D_ap,   n = argmin_{n: y_n ≠ y_a} D_an.

    When to use: clean labels and a converged warm-up; noisy labels hurt it.

    Anchors without a positive or without a negative yield no tuple. The choice is
    deterministic; ``seed`` only drives ``p_switch``.

    With ``keys`` (:class:`~tfdml.masks.Keys`, a cross-batch memory) the anchors are the batch and the
    positives and negatives are valid keys (never the anchor's own copy), on the ``b × m`` rectangle.

    Args:
        p_switch: ρ-regularisation probability (default 0).
        seed: seed of the miner's random generator.

    Example:

    >>> triplets = BatchHardMiner()(tf.random.normal((32, 16)), tf.range(32) // 4)
    """

    def mine(self, embeddings, labels, keys=None):
        distances, positives, negatives = triplet_candidates(tf.stop_gradient(embeddings), labels, keys)
        hardest_positive = tf.argmax(tf.where(positives, distances, -1.0), axis=1, output_type=tf.int32)
        hardest_negative = tf.argmin(tf.where(negatives, distances, float("inf")), axis=1, output_type=tf.int32)
        valid = tf.logical_and(tf.reduce_any(positives, axis=1), tf.reduce_any(negatives, axis=1))
        return MaskedTriplets(tf.range(tf.shape(labels)[0]), hardest_positive, hardest_negative, valid)

