"""Plumbing shared by the tuple losses (contrastive, triplet, margin, quadruplet).

A tuple loss asks its miner for :class:`~tfdml.mining.base.MaskedTriplets` (a
fixed number of tuples and a validity mask, so the loss compiles under XLA) and
reads each tuple's distances from the batch's ``b × b`` distance matrix (one
matmul, then ``O(T)`` gathers for ``T`` tuples, never ``T × d``). Invalid tuples
contribute nothing, and means count valid tuples only. Gradients flow through
the distance matrix, never through the indices.
"""

import tensorflow as tf

from tfdml.distances import Comparison, pairwise_comparison
from tfdml.losses.pairs import pair_masks
from tfdml.masks import self_mask
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


def mine_triplets(miner, embeddings, labels, keys=None):
    """The miner's :class:`~tfdml.mining.base.MaskedTriplets` for the batch; with :class:`~tfdml.masks.Keys`
    anchors index the batch (the queries), positives and negatives the keys (a triplet miner that takes keys)."""
    with_keys = {} if keys is None else {"keys": keys}
    triplets = miner.mine_masked(embeddings, labels, **with_keys)
    if not isinstance(triplets, MaskedTriplets):
        raise TypeError(f"{type(miner).__name__} returned {type(triplets).__name__}; this loss needs a triplet miner.")
    return triplets


def pair_masks_from_triplets(triplets, batch_size, num_keys=None):
    """Boolean ``(b, b)`` masks holding each valid triplet's ``(anchor, positive)`` and ``(anchor, negative)`` pair
    (``(b, num_keys)`` for triplets whose positives and negatives index keys)."""
    shape = tf.stack([batch_size, batch_size if num_keys is None else num_keys])
    valid = tf.cast(triplets.valid, tf.int32)

    def scatter(rows, cols):
        indices = tf.stack([rows, cols], axis=1)
        return tf.scatter_nd(indices, valid, shape) > 0

    return PairMasks(scatter(triplets.anchors, triplets.positives), scatter(triplets.anchors, triplets.negatives))


def mine_pairs(owner, miner, embeddings, labels, keys=None):
    """The pairs ``miner`` (``None``: every pair of the batch) picks on the L2-normalised ``embeddings``, as
    :class:`PairMasks`; a triplet miner's tuples give their ``(anchor, positive)`` and ``(anchor, negative)`` pairs.
    With :class:`~tfdml.masks.Keys` the pairs are the ``(b, m)`` query–key pairs (a pair miner that takes keys).
    ``owner`` (the loss's name) is named when the miner returns neither."""
    if miner is None:
        return PairMasks(*pair_masks(labels, keys))
    normalized = tf.math.l2_normalize(embeddings, axis=1)
    if keys is not None:
        keys = keys._replace(embeddings=tf.math.l2_normalize(keys.embeddings, axis=1))
        return mined_key_pairs(owner, miner, normalized, labels, keys)
    mined = miner.mine_masked(normalized, labels)
    if isinstance(mined, MaskedTriplets):
        return pair_masks_from_triplets(mined, tf.shape(labels)[0])
    if isinstance(mined, PairMasks):
        return mined
    raise TypeError(
        f"{owner}: miner {type(miner).__name__} returned {type(mined).__name__}; expected PairMasks or Triplets."
    )


def mined_key_pairs(owner, miner, embeddings, labels, keys):
    """The ``(b, m)`` :class:`PairMasks` that ``miner`` mines between the queries and :class:`~tfdml.masks.Keys`
    (a triplet miner's ``(anchor, positive)`` and ``(anchor, negative)`` pairs)."""
    mined = miner.mine_masked(embeddings, labels, keys=keys)
    if isinstance(mined, MaskedTriplets):
        return pair_masks_from_triplets(mined, tf.shape(labels)[0], tf.shape(keys.labels)[0])
    if not isinstance(mined, PairMasks):
        raise TypeError(f"{owner}: miner {type(miner).__name__} returned {type(mined).__name__}; expected PairMasks.")
    return mined


def tuple_comparison(embeddings, keys=None, distance="euclidean"):
    """The :class:`~tfdml.distances.Comparison` a tuple loss reads its tuples from: the batch with itself
    ``(b, b)``, or the queries with :class:`~tfdml.masks.Keys` ``(b, m)``, where a query's distance to its own
    copy is exactly 0, as on the batch's diagonal (``D_aa`` of a ρ-switched tuple ``(a, a, p)``)."""
    if keys is None:
        return pairwise_comparison(embeddings, distance=distance)
    matrix, sign = pairwise_comparison(embeddings, keys.embeddings, distance=distance)
    if sign > 0:
        own_copy = self_mask(tf.shape(matrix)[0], tf.shape(matrix)[1], keys.self_index)
        matrix = tf.where(own_copy, tf.zeros_like(matrix), matrix)
    return Comparison(matrix, sign)


def tuple_distances(distances, first, second):
    """``distances[first[k], second[k]]`` for each k, from a ``(b, b)`` (or query–key ``(b, m)``) matrix."""
    flat_index = first * tf.shape(distances, out_type=first.dtype)[1] + second
    return tf.gather(tf.reshape(distances, [-1]), flat_index)


def anchor_distances(distances, triplets):
    """``(D_ap, D_an)`` of each tuple of ``triplets`` from the batch's ``(b, b)`` distance matrix (or the
    ``(b, m)`` query–key matrix, for tuples mined among keys)."""
    return (
        tuple_distances(distances, triplets.anchors, triplets.positives),
        tuple_distances(distances, triplets.anchors, triplets.negatives),
    )
