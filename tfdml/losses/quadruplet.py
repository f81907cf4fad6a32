"""Quadruplet loss (Chen et al. 2017, "Beyond Triplet Loss") on mined triplets plus a fourth sample."""

import keras
import tensorflow as tf

from tfdml.losses.base import DMLLoss
from tfdml.losses.tuples import mean_or_zero, paired_distances, resolve_miner
from tfdml.mining.base import serialize_miner
from tfdml.mining.distance_weighted import DistanceWeightedMiner


def sample_other_class(generator, labels, excluded_a, excluded_b):
    """Per tuple, an index ``l`` drawn uniformly from ``{l : y_l ∉ {excluded_a, excluded_b}}``.

    The batch is sorted by label once, so the two excluded classes are two
    contiguous ranges and a uniform rank among the rest maps to a position in
    ``O(1)`` per tuple (no ``tuples × batch`` mask). Returns ``(indices, valid)``;
    ``valid`` is false where every sample is of an excluded class.
    """
    order = tf.argsort(labels, stable=True)
    sorted_labels = tf.gather(labels, order)
    batch_size = tf.shape(labels)[0]
    start_a = tf.searchsorted(sorted_labels, excluded_a, side="left", out_type=tf.int32)
    size_a = tf.searchsorted(sorted_labels, excluded_a, side="right", out_type=tf.int32) - start_a
    start_b = tf.searchsorted(sorted_labels, excluded_b, side="left", out_type=tf.int32)
    size_b = tf.searchsorted(sorted_labels, excluded_b, side="right", out_type=tf.int32) - start_b
    size_b = tf.where(tf.equal(excluded_a, excluded_b), 0, size_b)
    a_first = start_a <= start_b
    first_start, first_size = tf.where(a_first, start_a, start_b), tf.where(a_first, size_a, size_b)
    second_start, second_size = tf.where(a_first, start_b, start_a), tf.where(a_first, size_b, size_a)
    available = batch_size - size_a - size_b
    rank = tf.cast(tf.floor(generator.uniform(tf.shape(excluded_a)) * tf.cast(available, tf.float32)), tf.int32)
    rank = tf.minimum(rank, tf.maximum(available - 1, 0))
    position = rank + tf.where(rank >= first_start, first_size, 0)
    position = position + tf.where(position >= second_start, second_size, 0)
    valid = available > 0
    return tf.gather(order, tf.where(valid, position, 0)), valid


@keras.saving.register_keras_serializable(package="tfdml")
class QuadrupletLoss(DMLLoss):
    """Triplet ranking plus a second ranking against a negative pair that excludes the anchor:

        L = 1/|T| Σ (D_ap − D_an + γ₁)_+  +  1/|Q| Σ (D_ap − D_nl + γ₂)_+

    over mined triplets ``(a, p, n)`` and a fourth sample ``l`` drawn uniformly with
    ``y_l ≠ y_a`` and ``y_l ≠ y_n`` (Chen et al. 2017, eq. 4, with Euclidean
    instead of squared distances as in Roth et al. 2020). Roth et al.'s eq. 14
    prints ``D_an`` in place of ``D_ap`` in the second term; we follow Chen et al.
    Tuples whose batch has no third class have no second term; no tuple gives 0.
    The first negative ``n`` is distance-weighted by default (Roth et al.).

    Args:
        margin_1: ``γ₁`` (default 1.0).
        margin_2: ``γ₂`` (default 0.5).
        miner: a :class:`~tfdml.mining.base.Miner` (default ``DistanceWeightedMiner()``);
            its generator also draws ``l``.

    Example:

    >>> loss = QuadrupletLoss(miner=tfdml.mining.DistanceWeightedMiner(seed=0))
    >>> model.compile(optimizer="adam", loss=loss)
    """

    def __init__(self, margin_1=1.0, margin_2=0.5, miner=None, name="quadruplet_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.margin_1 = float(margin_1)
        self.margin_2 = float(margin_2)
        self.miner = resolve_miner(miner, DistanceWeightedMiner)

    def compute(self, labels, embeddings):
        triplets = self.miner(embeddings, labels)
        fourth, has_fourth = sample_other_class(
            self.miner.generator, labels, tf.gather(labels, triplets.anchors), tf.gather(labels, triplets.negatives)
        )
        anchor_positive = paired_distances(embeddings, triplets.anchors, triplets.positives)
        anchor_negative = paired_distances(embeddings, triplets.anchors, triplets.negatives)
        negative_fourth = paired_distances(
            embeddings, tf.boolean_mask(triplets.negatives, has_fourth), tf.boolean_mask(fourth, has_fourth)
        )
        triplet_terms = tf.nn.relu(anchor_positive - anchor_negative + self.margin_1)
        quadruplet_terms = tf.nn.relu(tf.boolean_mask(anchor_positive, has_fourth) - negative_fourth + self.margin_2)
        return mean_or_zero(triplet_terms) + mean_or_zero(quadruplet_terms)

    def get_config(self):
        return {
            **super().get_config(),
            "margin_1": self.margin_1,
            "margin_2": self.margin_2,
            "miner": serialize_miner(self.miner),
        }
