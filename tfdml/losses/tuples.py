"""Plumbing shared by the tuple losses (contrastive, triplet, margin, quadruplet).

A tuple loss asks its miner for :class:`~tfdml.mining.base.MaskedTriplets` (a
fixed number of tuples and a validity mask, so the loss compiles under XLA) and
reads each tuple's distances from the batch's ``b × b`` distance matrix (one
matmul, then ``O(T)`` gathers for ``T`` tuples, never ``T × d``). Invalid tuples
contribute nothing, and means count valid tuples only. Gradients flow through
the distance matrix, never through the indices.
"""

import tensorflow as tf

from tfdml.mining.base import MaskedTriplets, Miner, deserialize_miner


def resolve_miner(miner, default):
    """``miner`` (a :class:`Miner` or its serialized config), or ``default()`` when ``None``."""
    miner = default() if miner is None else deserialize_miner(miner)
    if not isinstance(miner, Miner):
        raise TypeError(
            f"miner must be a tfdml.mining Miner (e.g. tfdml.mining.DistanceWeightedMiner()); got {miner!r}."
        )
    return miner


def mine_triplets(miner, embeddings, labels):
    """The miner's :class:`~tfdml.mining.base.MaskedTriplets` for the batch."""
    triplets = miner.mine_masked(embeddings, labels)
    if not isinstance(triplets, MaskedTriplets):
        raise TypeError(f"{type(miner).__name__} returned {type(triplets).__name__}; this loss needs a triplet miner.")
    return triplets


def tuple_distances(distances, first, second):
    """``distances[first[k], second[k]]`` for each k, from a ``(b, b)`` matrix."""
    flat_index = first * tf.shape(distances, out_type=first.dtype)[1] + second
    return tf.gather(tf.reshape(distances, [-1]), flat_index)


def anchor_distances(distances, triplets):
    """``(D_ap, D_an)`` of each tuple of ``triplets`` from the batch's ``(b, b)`` distance matrix."""
    return (
        tuple_distances(distances, triplets.anchors, triplets.positives),
        tuple_distances(distances, triplets.anchors, triplets.negatives),
    )
