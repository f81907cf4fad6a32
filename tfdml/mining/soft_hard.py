"""Soft-hard triplet mining (Roth & Brattoli 2019; Roth et al. 2020, eqs. 21–22)."""

import keras
import tensorflow as tf

from tfdml.distances import euclidean
from tfdml.masks import negative_mask, positive_mask
from tfdml.mining.base import MaskedTriplets, TupleMiner
from tfdml.mining.tuples import sample_column


@keras.saving.register_keras_serializable(package="tfdml")
class SoftHardMiner(TupleMiner):
    """One triplet per anchor with a positive and a negative, both drawn uniformly among hard candidates:

        n ~ U{n : y_n ≠ y_a, D_an < max_p D_ap},   p ~ U{p : y_p = y_a, D_ap > min_n D_an}.

    When to use: hard mining with randomness, gentler than batch-hard when labels or early embeddings are noisy.

    Fallback: an anchor without hard negatives (hard positives) draws uniformly
    among all its negatives (positives), as in Roth et al.'s code.

    Args:
        p_switch: ρ-regularisation probability (default 0).
        seed: seed of the miner's random generator.

    Example:

    >>> triplets = SoftHardMiner(seed=0)(tf.random.normal((32, 16)), tf.range(32) // 4)
    """

    def mine(self, embeddings, labels):
        distances = euclidean(tf.stop_gradient(embeddings))
        positives = positive_mask(labels)
        negatives = negative_mask(labels)
        farthest_positive = tf.reduce_max(tf.where(positives, distances, -float("inf")), axis=1, keepdims=True)
        closest_negative = tf.reduce_min(tf.where(negatives, distances, float("inf")), axis=1, keepdims=True)
        hard_negatives = tf.logical_and(negatives, distances < farthest_positive)
        hard_positives = tf.logical_and(positives, distances > closest_negative)
        negative_candidates = tf.where(tf.reduce_any(hard_negatives, axis=1, keepdims=True), hard_negatives, negatives)
        positive_candidates = tf.where(tf.reduce_any(hard_positives, axis=1, keepdims=True), hard_positives, positives)
        sampled_positives, has_positive = sample_column(self.generator, 0.0, positive_candidates)
        sampled_negatives, has_negative = sample_column(self.generator, 0.0, negative_candidates)
        valid = tf.logical_and(has_positive, has_negative)
        return MaskedTriplets(tf.range(tf.shape(labels)[0]), sampled_positives, sampled_negatives, valid)

