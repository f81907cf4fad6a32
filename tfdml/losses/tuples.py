"""Plumbing shared by the tuple losses (contrastive, triplet, margin, quadruplet).

A tuple loss asks its miner for :class:`~tfdml.mining.base.MaskedTriplets` (a
fixed number of tuples and a validity mask, so the loss compiles under XLA) and
reads each tuple's distances from the batch's ``b × b`` distance matrix (one
matmul, then ``O(T)`` gathers for ``T`` tuples, never ``T × d``). Invalid tuples
contribute nothing, and means count valid tuples only. Gradients flow through
the distance matrix, never through the indices.
"""

import tensorflow as tf

from tfdml.losses.pairs import pair_masks
from tfdml.mining.base import MaskedTriplets, Miner, deserialize_miner
from tfdml.mining.multi_similarity import PairMasks


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


def pair_masks_from_triplets(triplets, batch_size):
    """Boolean ``(b, b)`` masks holding each valid triplet's ``(anchor, positive)`` and ``(anchor, negative)`` pair."""
    shape = tf.stack([batch_size, batch_size])
    valid = tf.cast(triplets.valid, tf.int32)

    def scatter(rows, cols):
        indices = tf.stack([rows, cols], axis=1)
        return tf.scatter_nd(indices, valid, shape) > 0

    return PairMasks(scatter(triplets.anchors, triplets.positives), scatter(triplets.anchors, triplets.negatives))


def mine_pairs(owner, miner, embeddings, labels):
    """The pairs ``miner`` (``None``: every pair of the batch) picks on the L2-normalised ``embeddings``, as
    :class:`PairMasks`; a triplet miner's tuples give their ``(anchor, positive)`` and ``(anchor, negative)`` pairs.
    ``owner`` (the loss's name) is named when the miner returns neither."""
    if miner is None:
        return PairMasks(*pair_masks(labels))
    mined = miner.mine_masked(tf.math.l2_normalize(embeddings, axis=1), labels)
    if isinstance(mined, MaskedTriplets):
        return pair_masks_from_triplets(mined, tf.shape(labels)[0])
    if isinstance(mined, PairMasks):
        return mined
    raise TypeError(
        f"{owner}: miner {type(miner).__name__} returned {type(mined).__name__}; expected PairMasks or Triplets."
    )


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
