"""Exact nearest-neighbour search and positive ranks, in query chunks (never n×m).

Both run on :mod:`tfdml.neighbors`, the package's one search engine: its chunk loop streams
the queries through the gallery ``chunk_size`` rows at a time, each step computing a
``(chunk_size, m)`` ranking-score block with one matmul (squared Euclidean distance less the
row constant ``‖q‖²``; ``"euclidean"`` and ``"squared_euclidean"`` rank identically) and
reducing it: to the ``k`` nearest (:func:`nearest_neighbors`), or, in one traced step
(fused passes, a two-level smallest-k instead of a full-row top-k; XLA-compiled from
:data:`XLA_MIN_ENTRIES` query × gallery entries on), to the ranks of each query's positives
(:func:`rank_positives`). Peak memory is ``chunk_size × m`` floats (256 MB
for 1024 × 60,502), not ``n × m``. A query that is also in the gallery is excluded from its
own results by index (``self_index``), never by dropping the first neighbour.

Ties. Ranks are *pessimistic*: a gallery item at exactly the same score as a
positive is ranked before it (ties count against the query), so a collapsed
embedding scores recall 0, not 1. :func:`nearest_neighbors` returns tied items
in gallery-index order (``tf.math.top_k`` order).

Example:

>>> x = np.random.default_rng(0).normal(size=(100, 16)).astype("float32")
>>> labels = np.arange(100) % 10
>>> ranks = rank_positives(x, labels)
>>> ranks.first.shape, ranks.positives.shape
((100,), (100, 9))
"""

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from tfdml.checks import as_embeddings, is_multi_hot, label_array, multi_hot_array
from tfdml.neighbors import BLOCK, chunk_scores, check_metric, map_chunks, ranking_operands, search

#: Rank stored for a positive that lies beyond the search depth (it cannot count for any metric).
UNRANKED = np.iinfo(np.int64).max


def _query_and_gallery(query, gallery, self_index, chunk_size):
    """Validated float32 ``(query, gallery)`` and int64 ``self_index`` (``-1``: not in the gallery);
    ``gallery=None`` searches the queries themselves, each excluding its own row."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1; got {chunk_size}.")
    query = as_embeddings(query, "query")
    if gallery is None:
        gallery, self_index = query, np.arange(query.shape[0])
    gallery = as_embeddings(gallery, "gallery")
    if gallery.shape[1] != query.shape[1]:
        raise ValueError(f"query and gallery dimensions differ: {query.shape[1]} vs {gallery.shape[1]}.")
    if self_index is None:
        self_index = np.full(query.shape[0], -1)
    else:
        self_index = label_array(self_index, "self_index", count=query.shape[0], integral_floats=False)
    return query, gallery, self_index


def _progress(count, verbose):
    """A ``keras.utils.Progbar`` update over ``count`` queries when ``verbose``, else ``None``."""
    return keras.utils.Progbar(count, unit_name="query", verbose=verbose).update if verbose else None


def _self_scores(scores, self_index):
    """``(c,)`` score of each query against itself (``+inf`` where ``self_index < 0``)."""
    rows = tf.range(tf.shape(scores)[0], dtype=self_index.dtype)
    own = tf.gather_nd(scores, tf.stack([rows, tf.maximum(self_index, 0)], axis=1))
    return tf.where(self_index >= 0, own, np.inf)


def nearest_neighbors(query, gallery=None, *, k, metric="euclidean", self_index=None, chunk_size=1024, verbose=0):
    """The ``k`` nearest gallery items of every query, by exact chunked search.

    Args:
        query: ``(n, d)`` embeddings (array or tensor).
        gallery: ``(m, d)`` embeddings; ``None`` searches ``query`` itself with each
            query's own row excluded.
        k: number of neighbours, ``1 <= k <= m`` (``m − 1`` when searching ``query`` itself).
        metric: ``"euclidean"`` (default), ``"squared_euclidean"`` or ``"cosine"``.
        self_index: optional int ``(n,)`` gallery row of each query, ``-1`` where absent.
        chunk_size: queries per step (memory ``chunk_size × m`` floats).
        verbose: show a progress bar.

    Returns:
        ``(distances, indices)``: float32 and int64 arrays of shape ``(n, k)``, nearest
        first; ties in gallery-index order.
    """
    check_metric(metric)
    query, gallery, self_index = _query_and_gallery(query, gallery, self_index, chunk_size)
    available = gallery.shape[0] - int(np.any(self_index >= 0))
    if not 1 <= k <= available:
        raise ValueError(f"k must be in [1, {available}] for a gallery of {gallery.shape[0]} items; got {k}.")
    distances, indices = search(
        query, gallery, k, metric, self_index=self_index, chunk_rows=chunk_size, progress=_progress(len(query), verbose)
    )
    return distances.numpy(), indices.numpy().astype(np.int64)


@dataclasses.dataclass
class PositiveRanks:
    """Where each query's positives land in its ranking of the gallery.

    Ranks are 1-based and pessimistic (see the module docstring).

    Attributes:
        first: int64 ``(n,)`` rank of the nearest positive; ``0`` for a query without positives.
        positives: int64 ``(n, p)`` ranks of the query's positives in order, nearest first,
            for the first ``min(num_positives, depth)`` of them; :data:`UNRANKED` past the
            search depth and in padding.
        num_positives: int64 ``(n,)`` number of gallery items sharing the query's label (self excluded).
        labels: int64 ``(n,)`` query labels, or ``(n, C)`` multi-hot label sets.
        depth: how many nearest gallery items were ranked exactly.
    """

    first: np.ndarray
    positives: np.ndarray
    num_positives: np.ndarray
    labels: np.ndarray
    depth: int


def _smallest(scores, self_index, k):
    """The ``k`` smallest values of each row other than the query's own column, ascending.

    Rows are cut into blocks of :data:`BLOCK` columns; the ``k`` smallest values all
    lie in the ``k`` blocks with the smallest minima (any other block's minimum is
    >= theirs, each of which already supplies one value). The own column can only
    make its block look better, so ``k + 1`` blocks are kept; it is masked among
    the ``(k + 1) × BLOCK`` candidates, never in the full row.
    """
    rows = tf.shape(scores)[0]
    blocks = tf.reshape(scores, [rows, -1, BLOCK])
    chosen = min(k + 1, scores.shape[1] // BLOCK)
    _, best_blocks = tf.math.top_k(-tf.reduce_min(blocks, axis=2), k=chosen)
    candidates = tf.reshape(tf.gather(blocks, best_blocks, batch_dims=1), [rows, chosen * BLOCK])
    columns = tf.reshape(best_blocks[:, :, tf.newaxis] * BLOCK + tf.range(BLOCK)[tf.newaxis, tf.newaxis, :], [rows, -1])
    candidates = tf.where(columns == self_index[:, tf.newaxis], np.inf, candidates)
    return -tf.math.top_k(-candidates, k=k).values


@tf.function(
    input_signature=[
        tf.TensorSpec([None, None], tf.float32),
        tf.TensorSpec([None], tf.int32),
        tf.TensorSpec([None], tf.float32),
    ]
)
def _count_rows(scores, rows, thresholds):
    """Items scoring ``<= thresholds`` in the given ``rows`` of ``scores``, own column included."""
    # int32 counting vectorises better than int64; a row has < 2³¹ items.
    return tf.reduce_sum(tf.cast(tf.gather(scores, rows) <= thresholds[:, tf.newaxis], tf.int32), axis=1)


def _rank_step(scores, self_index, positive_index, positive_valid, depth):
    """Ranks of one chunk's positives from its score block by a smallest-``depth`` search.

    Items scoring <= ``t`` all lie in the smallest-``depth`` list while ``t`` is below
    its deepest score. Two rare cases need a count over the full row: a nearest
    positive beyond the depth (its rank still gives recall@k for k > depth), and
    positives tied with the deepest item (ties may continue past the list). An XLA
    conditional would pass over the whole block on every chunk, so they come back
    unfinished, flagged with the row's ``threshold``, for :func:`_count_rows` on those
    rows only. The own column is never masked in the full block: the flagged entries
    start at minus the own column's count and ``_smallest`` masks it among its candidates.

    Returns:
        ``(first, ranks, first_unfinished, ranks_unfinished, threshold)``: an
        unfinished entry lacks the count of items scoring <= its row's ``threshold``.
    """
    own = _self_scores(scores, self_index)
    positive_scores = tf.gather(scores, positive_index, batch_dims=1)
    positive_scores = tf.sort(tf.where(positive_valid, positive_scores, np.inf), axis=1)
    # positives_up_to[i, m]: positives scoring <= the m-th positive (ties among positives included).
    positives_up_to = tf.reduce_sum(
        tf.cast(positive_scores[:, tf.newaxis, :] <= positive_scores[:, :, tf.newaxis], tf.int64), axis=2
    )
    nearest_scores = _smallest(scores, self_index, depth)
    deepest = nearest_scores[:, -1]
    items_up_to = tf.reduce_sum(
        tf.cast(nearest_scores[:, tf.newaxis, :] <= positive_scores[:, :, tf.newaxis], tf.int64), axis=2
    )
    nearest_positive = positive_scores[:, 0]
    beyond = (nearest_positive > deepest) & (nearest_positive < np.inf)
    at_deepest = positive_scores == deepest[:, tf.newaxis]
    threshold = tf.where(beyond, nearest_positive, deepest)
    own_counted = tf.cast(own <= threshold, tf.int64)
    items_up_to = tf.where(at_deepest, -own_counted[:, tf.newaxis], items_up_to)
    order = tf.range(1, tf.shape(positive_scores)[1] + 1, dtype=tf.int64)[tf.newaxis, :]
    ranks = order + items_up_to - positives_up_to
    first = tf.where(beyond, 1 - own_counted - positives_up_to[:, 0], ranks[:, 0])
    ranks = tf.where(positive_scores <= deepest[:, tf.newaxis], ranks, UNRANKED)
    return first, ranks, beyond | at_deepest[:, 0], at_deepest, threshold


#: Query × gallery entries from which :func:`rank_positives` runs its step XLA-compiled. Below, XLA's
#: compilation for each new shape (0.5–1 s on a CPU) costs more than it saves: a pass took 0.139 s with XLA
#: and 0.128 s without at 2,120 items, 0.85 / 0.92 s at 5,924 and 1.56 / 1.67 s at 8,131. The ranks are the
#: same either way (integer counts and comparisons of the same scores).
XLA_MIN_ENTRIES = 5000 * 5000
_RANK_STEPS = {False: tf.function(_rank_step), True: tf.function(_rank_step, jit_compile=True)}


def _ranks_of_chunk(scores, self_index, positive_index, positive_valid, depth, xla):
    """``(first, ranks)`` NumPy arrays of one chunk: :func:`_rank_step` (XLA-compiled when ``xla``), finished by
    :func:`_count_rows`."""
    first, ranks, first_unfinished, ranks_unfinished, threshold = (
        np.array(part) for part in _RANK_STEPS[xla](scores, self_index, positive_index, positive_valid, depth)
    )
    rows = np.flatnonzero(first_unfinished | np.any(ranks_unfinished, axis=1))
    if rows.size:
        counts = _count_rows(scores, rows.astype(np.int32), threshold[rows]).numpy().astype(np.int64)
        first[rows] += np.where(first_unfinished[rows], counts, 0)
        ranks[rows] += np.where(ranks_unfinished[rows], counts[:, np.newaxis], 0)
    return first, ranks


def _shared_label_columns(query_sets, gallery_sets, self_index, chunk_size):
    """Padded gallery columns of each query's positives (items sharing a label with it) and their
    validity, from multi-hot label sets, ``chunk_size`` queries at a time (never ``n × m`` at once)."""
    gallery_sets = gallery_sets.T.astype(np.int32)
    counts, columns = [], []
    for start in range(0, len(query_sets), chunk_size):
        own = self_index[start:start + chunk_size]
        shared = query_sets[start:start + chunk_size].astype(np.int32) @ gallery_sets > 0
        in_gallery = np.flatnonzero(own >= 0)
        shared[in_gallery, own[in_gallery]] = False
        counts.append(shared.sum(axis=1))
        columns.append(np.nonzero(shared)[1])  # row-major: each query's columns in a run, ascending
    counts, columns = np.concatenate(counts), np.concatenate(columns)
    width = max(int(counts.max(initial=0)), 1)
    valid = np.arange(width)[np.newaxis, :] < counts[:, np.newaxis]
    padded = np.zeros(valid.shape, np.int32)
    padded[valid] = columns
    return padded, valid


def _positive_columns(query_labels, gallery_labels, self_index):
    """Padded gallery columns of each query's positives and their validity, by label groups."""
    order = np.argsort(gallery_labels, kind="stable")
    group_labels, group_starts, group_sizes = np.unique(gallery_labels[order], return_index=True, return_counts=True)
    slot = np.searchsorted(group_labels, query_labels)
    slot = np.minimum(slot, len(group_labels) - 1)
    present = group_labels[slot] == query_labels
    sizes = np.where(present, group_sizes[slot], 0)
    width = max(int(sizes.max(initial=0)), 1)
    offsets = np.arange(width)[np.newaxis, :]
    in_group = offsets < sizes[:, np.newaxis]
    columns = order[np.minimum(group_starts[slot][:, np.newaxis] + offsets, len(order) - 1)]
    valid = in_group & (columns != self_index[:, np.newaxis])
    return np.where(valid, columns, 0).astype(np.int32), valid


def rank_positives(
    query,
    query_labels,
    gallery=None,
    gallery_labels=None,
    *,
    self_index=None,
    depth=None,
    metric="euclidean",
    chunk_size=1024,
    verbose=0,
):
    """Pessimistic ranks of every query's positives in its exact gallery ranking.

    One pass over the queries yields everything the retrieval metrics need: the
    rank of the nearest positive (recall@k for *any* k, with no top-k of size k)
    and the ranks of the first ``depth`` positives (R-precision, MAP@R, mAP@k_c).

    Args:
        query, query_labels: ``(n, d)`` embeddings and ``(n,)`` int labels, or multi-hot label sets
            ``(n, C)`` (``C >= 2``): a gallery item is then a positive of every query it shares a label with.
        gallery, gallery_labels: ``(m, d)``/``(m,)`` (or ``(m, C)``); ``None`` uses the queries with
            self-matches excluded by index.
        self_index: optional int ``(n,)`` gallery row of each query (``-1``: not in the gallery).
        depth: how many nearest items to rank exactly; default: the largest number of
            positives of any query (what MAP@R needs). Positives beyond it are :data:`UNRANKED`.
            Memory besides the score block: ``n × (largest class size)`` positive indices.
        metric: ``"euclidean"`` (default), ``"squared_euclidean"`` or ``"cosine"``.
        chunk_size: queries per step. verbose: progress bar.

    Returns:
        :class:`PositiveRanks`.
    """
    check_metric(metric)
    if gallery is None:
        gallery_labels = query_labels
    query, gallery, self_index = _query_and_gallery(query, gallery, self_index, chunk_size)
    if is_multi_hot(query_labels):
        query_labels = multi_hot_array(query_labels, "query_labels", count=query.shape[0])
        gallery_labels = multi_hot_array(gallery_labels, "gallery_labels", count=gallery.shape[0])
        if gallery_labels.shape[1] != query_labels.shape[1]:
            raise ValueError(
                f"query_labels and gallery_labels must have the same labels (columns): {query_labels.shape[1]} vs "
                f"{gallery_labels.shape[1]}."
            )
        positive_index, positive_valid = _shared_label_columns(query_labels, gallery_labels, self_index, chunk_size)
    else:
        query_labels = label_array(query_labels, "query_labels", count=query.shape[0])
        gallery_labels = label_array(gallery_labels, "gallery_labels", count=gallery.shape[0])
        positive_index, positive_valid = _positive_columns(query_labels, gallery_labels, self_index)
    num_positives = positive_valid.sum(axis=1).astype(np.int64)
    ranked = max(int(num_positives.max(initial=0)), 1)
    candidates = gallery.shape[0] - int(np.any(self_index >= 0))
    if candidates < 1:
        raise ValueError("The gallery holds no item other than the query itself.")
    depth = min(ranked if depth is None else int(depth), candidates)
    if depth < 1:
        raise ValueError(f"depth must be >= 1; got {depth}.")
    query_operand, gallery_operand, _ = ranking_operands(query, gallery, metric, block=BLOCK)
    xla = query.shape[0] * gallery.shape[0] >= XLA_MIN_ENTRIES

    def step(chunk, own, chunk_positives, chunk_valid):
        first, ranks = _ranks_of_chunk(
            chunk_scores(chunk, gallery_operand), own, chunk_positives, chunk_valid, depth, xla
        )
        return first, ranks[:, :ranked]

    per_query = ((query_operand, 0.0), (self_index.astype(np.int32), -1), (positive_index, 0), (positive_valid, False))
    first, positives = (
        part.numpy()
        for part in map_chunks(step, per_query, chunk_size, (tf.int64, tf.int64), _progress(len(query), verbose))
    )
    return PositiveRanks(
        first=np.where(num_positives > 0, first, 0),
        positives=positives,
        num_positives=num_positives,
        labels=query_labels,
        depth=depth,
    )
