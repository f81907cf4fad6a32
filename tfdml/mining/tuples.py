"""How tuple miners build their tuples: the two batch constructions and per-row sampling.

Constructions (``construction=`` on the miners that support both):

- ``"pairs"`` (Wu et al. 2017 / FaceNet): every ordered positive pair ``(a, p)``
  of the batch is a tuple and gets its own negative, so every example of every
  positive pair is paired with one negative and positive and negative pairs
  are balanced.
- ``"anchors"`` (Roth et al. 2020): one tuple per anchor that has a positive,
  the positive drawn uniformly among the anchor's positives.

Tuples live on a ``(batch, slots)`` grid with a validity mask, so every shape
follows from the batch size (XLA needs compile-time shapes): ``"pairs"`` has one
cell per ``(a, p)`` (``slots = batch``), ``"anchors"`` one cell per anchor.
``slot_index[a, c]`` numbers anchor ``a``'s valid cells; a miner draws one negative
per anchor and slot number, in one ``(batch, batch)`` pass per slot number (a
``tf.while_loop`` over at most ``samples per class − 1`` numbers), so no
``tuples × batch`` (up to ``batch³``) tensor is ever formed.

Sampling is by inverse CDF: per row, the cumulative weights are compared with
a stateless uniform draw (XLA has no kernel for ``stateless_categorical``).
"""

from typing import NamedTuple

import tensorflow as tf

from tfdml.mining.base import MaskedTriplets

CONSTRUCTIONS = ("pairs", "anchors")


class AnchorTuples(NamedTuple):
    """Anchor–positive pairs on a ``(batch, slots)`` grid: cell ``(a, c)`` pairs anchor ``a``
    with ``positives[a, c]`` where ``valid[a, c]``.

    ``slot_index[a, c]`` numbers the valid cells of anchor ``a`` (``−1`` on invalid cells);
    ``num_slots`` (a scalar tensor, data-dependent) bounds it over the batch.
    """

    positives: tf.Tensor
    valid: tf.Tensor
    slot_index: tf.Tensor
    num_slots: tf.Tensor


def check_construction(construction):
    if construction not in CONSTRUCTIONS:
        raise ValueError(f"construction must be one of {CONSTRUCTIONS}; got {construction!r}.")
    return construction


# Columns per block of the two-level row scans below: a running sum along a whole row is a slow serial
# scan in TF and XLA alike, while block totals are a reduction and a block's own scan is short.
BLOCK = 64


def column_blocks(values):
    """``(rows, cols)`` → ``(rows, ⌈cols / BLOCK⌉, BLOCK)``, the last block zero-padded."""
    padding = -tf.shape(values)[1] % BLOCK
    padded = tf.pad(values, [[0, 0], [0, padding]])
    return tf.reshape(padded, [tf.shape(values)[0], -1, BLOCK])


def exclusive_row_counts(mask):
    """int32 ``(rows, cols)``: per row, how many entries of ``mask`` are true left of each column,

        counts[i, j] = Σ_{j' < j} mask[i, j'],

    as block offsets (a running sum over ``cols / BLOCK`` block totals) plus a strictly triangular
    ``BLOCK × BLOCK`` matmul inside each block (exact: float32 holds these integers)."""
    blocks = column_blocks(tf.cast(mask, tf.float32))
    strictly_upper = tf.linalg.band_part(tf.ones([BLOCK, BLOCK]), 0, -1) - tf.eye(BLOCK)
    within = tf.reshape(tf.matmul(tf.reshape(blocks, [-1, BLOCK]), strictly_upper), tf.shape(blocks))
    offsets = tf.cumsum(tf.reduce_sum(blocks, axis=2), axis=1, exclusive=True)
    counts = tf.reshape(within + offsets[:, :, tf.newaxis], [tf.shape(mask)[0], -1])
    return tf.cast(counts[:, : tf.shape(mask)[1]], tf.int32)


class RowDistributions(NamedTuple):
    """Per-row categorical distributions over the columns, ``Pr(j) = w_j / Σ w``, kept in blocks of
    ``BLOCK`` columns for a two-level inverse-CDF draw.

    A draw of threshold ``t ∈ [0, Σ w)`` is the first column ``j`` with ``W_j = Σ_{j' ≤ j} w_j' > t``:
    first the block where the running block totals pass ``t``, then the column inside that block,
    ``O(cols / BLOCK + BLOCK)`` per draw instead of a running sum over the whole row. It is the
    full-row draw in exact arithmetic (integer weights: the same column), and never a zero-weight
    column of a row with weight, rounding included.
    """

    blocks: tf.Tensor  # (rows, num_blocks, BLOCK) weights >= 0, zero-padded
    cumulative: tf.Tensor  # (rows, num_blocks) running block totals; the last is the row's total

    @property
    def totals(self):
        return self.cumulative[:, -1]

    def draw(self, thresholds):
        """Columns ``(rows, n)`` for thresholds ``(rows, n)`` in ``[0, total)`` of the weights' dtype."""
        below = tf.cast(self.cumulative[:, tf.newaxis, :] <= thresholds[:, :, tf.newaxis], tf.int32)
        # Capped at the last block with weight, where rounding lets the threshold reach the total.
        last_block = tf.reduce_sum(tf.cast(self.cumulative < self.totals[:, tf.newaxis], tf.int32), axis=1)
        block = tf.minimum(tf.reduce_sum(below, axis=2), last_block[:, tf.newaxis])
        running = tf.cumsum(tf.gather(self.blocks, block, batch_dims=1), axis=2)
        before = tf.gather(self.cumulative, block, batch_dims=1) - running[:, :, -1]
        offset = tf.maximum(thresholds - before, 0)
        # Capped at the block's last column with weight, for the same reason.
        last_column = tf.reduce_sum(tf.cast(running < running[:, :, -1:], tf.int32), axis=2)
        column = tf.reduce_sum(tf.cast(running <= offset[:, :, tf.newaxis], tf.int32), axis=2)
        return block * BLOCK + tf.minimum(column, last_column)


def row_blocks(weights):
    """:class:`RowDistributions` of non-negative ``weights`` ``(rows, cols)``."""
    blocks = column_blocks(weights)
    return RowDistributions(blocks, tf.cumsum(tf.reduce_sum(blocks, axis=2), axis=1))


def row_distributions(log_weights, mask):
    """``Pr(j) ∝ exp(log_weights[i, j])`` over the columns where ``mask[i]`` is true.

    Each row is normalised by its own maximum after masking, so a row with any
    candidate has a valid distribution: its most likely column has weight 1 and
    no row underflows to all zeros.
    """
    mask = tf.convert_to_tensor(mask)
    log_weights = tf.broadcast_to(tf.cast(log_weights, tf.float32), tf.shape(mask))
    masked = tf.where(mask, log_weights, tf.constant(-float("inf")))
    row_max = tf.reduce_max(masked, axis=1, keepdims=True)
    row_max = tf.where(tf.math.is_finite(row_max), row_max, 0.0)
    weights = tf.where(mask, tf.exp(masked - row_max), 0.0)
    return row_blocks(weights)


def sample_columns(generator, log_weights, mask, num_samples):
    """Per row ``i``, ``num_samples`` draws (with replacement) of a column ``j`` with
    ``Pr(j) ∝ exp(log_weights[i, j])`` over the columns where ``mask[i]`` is true
    (see :func:`row_distributions`); the uniforms come from ``generator``, so draws are
    reproducible. Costs ``rows × num_samples × (cols / BLOCK + BLOCK)``.

    Returns:
        ``(columns, has_candidates)``: int32 ``(rows, num_samples)`` and bool
        ``(rows,)``. Draws of rows without candidates are in range but meaningless.
    """
    distributions = row_distributions(log_weights, mask)
    uniforms = generator.uniform(tf.stack([tf.shape(distributions.cumulative)[0], num_samples]))
    return distributions.draw(uniforms * distributions.totals[:, tf.newaxis]), tf.reduce_any(mask, axis=1)


def sample_column(generator, log_weights, mask):
    """One draw per row of :func:`sample_columns`: int32 ``(rows,)`` and bool ``(rows,)``."""
    columns, has_candidates = sample_columns(generator, log_weights, mask, 1)
    return columns[:, 0], has_candidates


def all_positive_pairs(positive_mask):
    """Wu's construction: a cell per ``(a, p)``, valid where ``positive_mask[a, p]`` (``(b, m)`` against keys)."""
    positives = tf.broadcast_to(tf.range(tf.shape(positive_mask)[1])[tf.newaxis, :], tf.shape(positive_mask))
    slot_index = tf.where(positive_mask, exclusive_row_counts(positive_mask), -1)
    num_slots = tf.reduce_max(tf.concat([tf.reduce_sum(tf.cast(positive_mask, tf.int32), axis=1), [0]], axis=0))
    return AnchorTuples(positives, positive_mask, slot_index, num_slots)


def one_positive_per_anchor(generator, positive_mask):
    """Roth's construction: a cell per anchor, valid where it has a positive, with one uniformly drawn positive."""
    positives, has_positive = sample_column(generator, 0.0, positive_mask)
    slot_index = tf.where(has_positive, 0, -1)[:, tf.newaxis]
    return AnchorTuples(positives[:, tf.newaxis], has_positive[:, tf.newaxis], slot_index, tf.constant(1))


def construct(construction, generator, positive_mask):
    """The anchor–positive pairs of ``construction`` (``"pairs"`` or ``"anchors"``)."""
    if construction == "pairs":
        return all_positive_pairs(positive_mask)
    return one_positive_per_anchor(generator, positive_mask)


def fill_slots(tuples, seed, choose):
    """Column grid ``(batch, slots)``: cell ``(a, c)`` gets ``choose(k, seed_k)[a]`` for its slot number ``k``.

    ``choose`` maps a slot number and its own stateless seed to one int32 column per
    anchor. The loop runs ``tuples.num_slots`` times with loop-invariant shapes, which XLA
    compiles (a data-dependent ``tf.range`` would not).
    """

    def body(slot, grid):
        chosen = choose(slot, tf.random.experimental.stateless_fold_in(seed, slot))
        return slot + 1, tf.where(tf.equal(tuples.slot_index, slot), chosen[:, tf.newaxis], grid)

    _, grid = tf.while_loop(
        lambda slot, _: slot < tuples.num_slots, body, (tf.constant(0), tf.zeros_like(tuples.slot_index))
    )
    return grid


def slot_values(tuples, grid, slot):
    """``(batch,)``: per anchor, ``grid``'s value in the valid cell of slot number ``slot`` (0 if none)."""
    return tf.reduce_sum(tf.where(tf.equal(tuples.slot_index, slot), grid, tf.zeros_like(grid)), axis=1)


def grid_triplets(tuples, negatives, keep):
    """Flat :class:`~tfdml.mining.base.MaskedTriplets` of the grid, valid where the cell is and ``keep[anchor]``."""
    shape = tf.shape(tuples.positives)
    anchors = tf.broadcast_to(tf.range(shape[0])[:, tf.newaxis], shape)
    valid = tf.logical_and(tuples.valid, keep[:, tf.newaxis])
    return MaskedTriplets(*(tf.reshape(t, [-1]) for t in (anchors, tuples.positives, negatives, valid)))
