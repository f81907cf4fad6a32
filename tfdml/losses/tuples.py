"""Plumbing shared by the tuple losses (contrastive, triplet, margin, quadruplet).

A tuple loss asks its miner for :class:`~tfdml.mining.base.Triplets` and
evaluates distances only on the mined tuples, ``O(T · d)`` for ``T`` tuples:
gradients flow through the gathered embeddings, never through the indices.
"""

import tensorflow as tf

from tfdml.distances import safe_sqrt
from tfdml.mining.base import Miner, deserialize_miner


def resolve_miner(miner, default):
    """``miner`` (a :class:`Miner` or its serialized config), or ``default()`` when ``None``."""
    miner = default() if miner is None else deserialize_miner(miner)
    if not isinstance(miner, Miner):
        raise TypeError(
            f"miner must be a tfdml.mining Miner (e.g. tfdml.mining.DistanceWeightedMiner()); got {miner!r}."
        )
    return miner


def paired_distances(embeddings, first, second, squared=False):
    """``‖e[first[k]] − e[second[k]]‖₂`` (or its square) for each k, with a finite gradient at 0."""
    difference = tf.gather(embeddings, first) - tf.gather(embeddings, second)
    squared_distances = tf.reduce_sum(tf.square(difference), axis=1)
    return squared_distances if squared else safe_sqrt(squared_distances)


def mean_or_zero(values):
    """Mean of ``values``; 0 (with a zero gradient) when there are none."""
    return tf.math.divide_no_nan(tf.reduce_sum(values), tf.cast(tf.size(values), values.dtype))
