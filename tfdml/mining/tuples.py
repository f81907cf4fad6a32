"""How tuple miners build their tuples: the two batch constructions and per-row sampling.

Constructions (``construction=`` on the miners that support both):

- ``"pairs"`` (Wu et al. 2017 / FaceNet): every ordered positive pair ``(a, p)``
  of the batch is a tuple and gets its own negative, so every example of every
  positive pair is paired with one negative and positive and negative pairs
  are balanced.
- ``"anchors"`` (Roth et al. 2020): one tuple per anchor that has a positive,
  the positive drawn uniformly among the anchor's positives.

Tuples of one construction are grouped by anchor: tuple ``t`` is draw ``slot[t]``
of anchor row ``anchors[t]``. Per-tuple quantities live on a ``(batch, width)``
grid of slots, ``width`` the largest number of tuples of one anchor, so drawing
one column per tuple never needs a ``tuples × batch`` (up to ``batch³``) tensor.
"""

from typing import NamedTuple

import tensorflow as tf

from tfdml.mining.base import Triplets

CONSTRUCTIONS = ("pairs", "anchors")


class AnchorTuples(NamedTuple):
    """Anchor–positive index pairs grouped by anchor.

    ``slots[t]`` numbers tuple ``t`` among the tuples of anchor ``anchors[t]``;
    ``width`` is the largest number of tuples of one anchor (a scalar tensor).
    """

    anchors: tf.Tensor
    positives: tf.Tensor
    slots: tf.Tensor
    width: tf.Tensor


def check_construction(construction):
    if construction not in CONSTRUCTIONS:
        raise ValueError(f"construction must be one of {CONSTRUCTIONS}; got {construction!r}.")
    return construction


def sample_columns(generator, log_weights, mask, num_samples):
    """Per row ``i``, ``num_samples`` draws (with replacement) of a column ``j`` with
    ``Pr(j) ∝ exp(log_weights[i, j])`` over the columns where ``mask[i]`` is true.

    The categorical sampler normalises each row by its own maximum after masking,
    so a row with any candidate always has a valid distribution: its most likely
    column has weight 1 and no row underflows to all zeros. The seed comes from
    ``generator``, so draws are reproducible.

    Returns:
        ``(columns, has_candidates)``: int32 ``(rows, num_samples)`` and bool
        ``(rows,)``. Draws of rows without candidates are meaningless; callers drop them.
    """
    mask = tf.convert_to_tensor(mask)
    log_weights = tf.broadcast_to(tf.cast(log_weights, tf.float32), tf.shape(mask))
    logits = tf.where(mask, log_weights, tf.constant(-float("inf")))
    columns = tf.random.stateless_categorical(logits, num_samples, generator.next_seed(), dtype=tf.int32)
    # Rows without candidates draw out of range; keep them indexable until they are dropped.
    columns = tf.clip_by_value(columns, 0, tf.maximum(tf.shape(mask)[1] - 1, 0))
    return columns, tf.reduce_any(mask, axis=1)


def sample_column(generator, log_weights, mask):
    """One draw per row of :func:`sample_columns`: int32 ``(rows,)`` and bool ``(rows,)``."""
    columns, has_candidates = sample_columns(generator, log_weights, mask, 1)
    return columns[:, 0], has_candidates


def all_positive_pairs(positive_mask):
    """Wu's construction: every ordered pair ``(a, p)`` with ``positive_mask[a, p]``."""
    pairs = tf.cast(tf.where(positive_mask), tf.int32)
    anchors, positives = pairs[:, 0], pairs[:, 1]
    counts = tf.reduce_sum(tf.cast(positive_mask, tf.int32), axis=1)
    first_of_anchor = tf.cumsum(counts, exclusive=True)
    slots = tf.range(tf.shape(anchors)[0]) - tf.gather(first_of_anchor, anchors)
    return AnchorTuples(anchors, positives, slots, tf.reduce_max(tf.concat([counts, [0]], axis=0)))


def one_positive_per_anchor(generator, positive_mask):
    """Roth's construction: each anchor with a positive, with one uniformly drawn positive."""
    positives, has_positive = sample_column(generator, 0.0, positive_mask)
    anchors = tf.cast(tf.where(has_positive)[:, 0], tf.int32)
    return AnchorTuples(anchors, tf.gather(positives, anchors), tf.zeros_like(anchors), tf.constant(1))


def construct(construction, generator, positive_mask):
    """The anchor–positive pairs of ``construction`` (``"pairs"`` or ``"anchors"``)."""
    if construction == "pairs":
        return all_positive_pairs(positive_mask)
    return one_positive_per_anchor(generator, positive_mask)


def tuple_grid_index(tuples):
    """``(T, 2)`` indices of the tuples' cells on the ``(batch, width)`` slot grid."""
    return tf.stack([tuples.anchors, tuples.slots], axis=1)


def scatter_to_grid(tuples, values, num_rows, fill):
    """Per-tuple ``values`` laid out on the ``(num_rows, width)`` grid; empty cells hold ``fill``."""
    shape = tf.stack([num_rows, tuples.width])
    grid = tf.fill(shape, tf.cast(fill, values.dtype))
    return tf.tensor_scatter_nd_update(grid, tuple_grid_index(tuples), values)


def gather_from_grid(tuples, grid):
    """Per-tuple values read back from a ``(batch, width)`` grid."""
    return tf.gather_nd(grid, tuple_grid_index(tuples))


def keep_tuples(tuples, negatives, keep):
    """The :class:`~tfdml.mining.base.Triplets` ``(anchors, positives, negatives)`` where ``keep``."""
    return Triplets(
        tf.boolean_mask(tuples.anchors, keep),
        tf.boolean_mask(tuples.positives, keep),
        tf.boolean_mask(negatives, keep),
    )
