"""Quadruplet loss (Chen et al. 2017, "Beyond Triplet Loss") on mined triplets plus a fourth sample."""

import keras
import tensorflow as tf

from tfdml.losses.base import DMLLoss
from tfdml.distances import euclidean
from tfdml.losses.math import masked_mean
from tfdml.losses.tuples import anchor_distances, mine_triplets, resolve_miner, tuple_distances
from tfdml.mining.base import check_argument
from tfdml.mining.distance_weighted import DistanceWeightedMiner


def class_ranges(labels, classes):
    """``(start, size)`` of each class's range in the label-sorted batch (size 0: absent).

    One comparison per (class, sample): no sorted search, which XLA lowers to the same
    comparisons anyway.
    """
    starts = tf.reduce_sum(tf.cast(labels[tf.newaxis, :] < classes[:, tf.newaxis], tf.int32), axis=1)
    sizes = tf.reduce_sum(tf.cast(tf.equal(labels[tf.newaxis, :], classes[:, tf.newaxis]), tf.int32), axis=1)
    return starts, sizes


def _draw_outside_ranges(generator, labels, range_a, range_b, same_class):
    """Uniform index among the samples outside two class ranges of the label-sorted batch."""
    order = tf.argsort(labels, stable=True)
    batch_size = tf.shape(labels)[0]
    (start_a, size_a), (start_b, size_b) = range_a, range_b
    size_b = tf.where(same_class, 0, size_b)
    a_first = start_a <= start_b
    first_start, first_size = tf.where(a_first, start_a, start_b), tf.where(a_first, size_a, size_b)
    second_start, second_size = tf.where(a_first, start_b, start_a), tf.where(a_first, size_b, size_a)
    available = batch_size - size_a - size_b
    rank = tf.cast(tf.floor(generator.uniform(tf.shape(start_a)) * tf.cast(available, tf.float32)), tf.int32)
    rank = tf.minimum(rank, tf.maximum(available - 1, 0))
    position = rank + tf.where(rank >= first_start, first_size, 0)
    position = position + tf.where(position >= second_start, second_size, 0)
    valid = available > 0
    return tf.gather(order, tf.where(valid, position, 0)), valid


def sample_other_class(generator, labels, excluded_a, excluded_b):
    """Per tuple, an index ``l`` drawn uniformly from ``{l : y_l ∉ {excluded_a, excluded_b}}``.

    The batch is sorted by label once, so the two excluded classes are two
    contiguous ranges and a uniform rank among the rest maps to a position in
    ``O(1)`` per tuple (no ``tuples × batch`` mask beyond locating the classes).
    Returns ``(indices, valid)``; ``valid`` is false where every sample is of an
    excluded class.
    """
    return _draw_outside_ranges(
        generator,
        labels,
        class_ranges(labels, excluded_a),
        class_ranges(labels, excluded_b),
        tf.equal(excluded_a, excluded_b),
    )


def sample_other_class_of_samples(generator, labels, first, second):
    """:func:`sample_other_class` excluding the classes of samples ``first`` and ``second``:
    the class ranges are located once per sample (``b × b``), then gathered per tuple."""
    starts, sizes = class_ranges(labels, labels)

    def range_of(samples):
        return tf.gather(starts, samples), tf.gather(sizes, samples)

    same_class = tf.equal(tf.gather(labels, first), tf.gather(labels, second))
    return _draw_outside_ranges(generator, labels, range_of(first), range_of(second), same_class)


def quadruplet_loss(triplets, embeddings, fourth, has_fourth, margin_1=1.0, margin_2=0.5):
    """Quadruplet loss (see :class:`QuadrupletLoss`) of the mined ``triplets``
    (:class:`~tfdml.mining.base.MaskedTriplets`) and, per tuple, a fourth sample ``fourth`` of a third
    class (``has_fourth`` false where the batch has none, e.g. from :func:`sample_other_class_of_samples`)."""
    distances = euclidean(embeddings)
    anchor_positive, anchor_negative = anchor_distances(distances, triplets)
    negative_fourth = tuple_distances(distances, triplets.negatives, fourth)
    triplet_terms = tf.nn.relu(anchor_positive - anchor_negative + margin_1)
    quadruplet_terms = tf.nn.relu(anchor_positive - negative_fourth + margin_2)
    return masked_mean(triplet_terms, triplets.valid) + masked_mean(
        quadruplet_terms, tf.logical_and(triplets.valid, has_fourth)
    )


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

    When to use: re-identification-style training where distances must be comparable across anchors (one global
    threshold), beyond what triplets enforce.

    Args:
        margin_1: ``γ₁ >= 0`` (default 1.0).
        margin_2: ``γ₂ >= 0`` (default 0.5).
        miner: a :class:`~tfdml.mining.base.Miner` (default ``DistanceWeightedMiner()``);
            its generator also draws ``l``.

    Example:

    >>> loss = QuadrupletLoss(miner=tfdml.mining.DistanceWeightedMiner(seed=0))
    >>> model.compile(optimizer="adam", loss=loss)
    """

    data_arguments = ("miner",)

    def __init__(self, margin_1=1.0, margin_2=0.5, miner=None, name="quadruplet_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.margin_1 = check_argument("QuadrupletLoss", "margin_1", margin_1, low=0.0)
        self.margin_2 = check_argument("QuadrupletLoss", "margin_2", margin_2, low=0.0)
        self.miner = resolve_miner(miner, DistanceWeightedMiner)

    def compute(self, labels, embeddings):
        triplets = mine_triplets(self.miner, embeddings, labels)
        fourth, has_fourth = sample_other_class_of_samples(
            self.miner.generator, labels, triplets.anchors, triplets.negatives
        )
        return quadruplet_loss(triplets, embeddings, fourth, has_fourth, self.margin_1, self.margin_2)
