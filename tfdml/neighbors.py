"""Exact nearest-neighbour search: the one chunked matmul + top-k engine of tfdml.

:func:`exact_search` answers :class:`tfdml.index.GalleryIndex` searches, runs inside the
retrieval SavedModel (``tfdml.export.export_retrieval_model``) and, through
:func:`search`, gives :func:`tfdml.evaluation.nearest_neighbors` its neighbours;
:func:`tfdml.evaluation.rank_positives` runs its rank step on the same chunk loop
(:func:`map_chunks`) and score blocks (:func:`ranking_operands`, :func:`chunk_scores`).
Few-shot evaluation classifies each episode's queries by one batched :func:`search` (one
small gallery per episode), and :func:`tfdml.evaluation.lloyd` assigns samples to centroids
with :func:`nearest_two` on the same operands.

Scores. Within one query row, ``‖q‖² − 2q·g + ‖g‖²`` orders the gallery exactly like the
(squared) Euclidean distance, so each block of queries is one matmul of ``[−2q, 1]`` with
``[g, ‖g‖²]`` (no broadcast add), and ``‖q‖²`` is added back for the distance of the
``k`` kept. Cosine distance is half the squared Euclidean distance of L2-normalised rows
(:func:`unit_rows`): ``1 − cos``; all-zero rows have no direction, stay zero, and lie at
distance 0.5 from everything.

Chunks. Queries go through the gallery ``chunk_rows`` at a time, so at most
``chunk_rows × gallery_size`` scores exist at once; every chunk has one static shape
(the last is padded), so a compiled step compiles once.

Self-matches. A query that is also in the gallery is excluded from its own results by
index (``self_index``, ``-1`` where absent), never by dropping the first neighbour, which
is wrong when duplicates tie with the query.

Ties. Exactly equal scores come back in gallery order (lower position first):
``tf.math.top_k`` is stable, and equal rows get bit-identical operands (see :func:`unit_rows`).
Their scores are usually bit-identical too, but not always: a matmul kernel may compute one
block of gallery columns with a different accumulation order (seen: columns 992-998 of a
999-row gallery, on an AVX2 CPU, with both oneDNN and Eigen), so duplicates, like any
candidates within float32 rounding of each other, may come back in either order.

Example:

>>> distances, positions = exact_search(queries, gallery, k=5, metric="cosine")
>>> distances.shape, positions.shape
(TensorShape([32, 5]), TensorShape([32, 5]))
"""

import numpy as np
import tensorflow as tf

from tfdml.distances import METRICS

#: Scores held at once by :func:`exact_search`: ``chunk_rows * gallery_size <= this`` (128 MiB of float32).
MAX_SCORES_PER_CHUNK = 1 << 25
#: Gallery columns per block when :func:`ranking_operands` pads the gallery for block-wise reductions.
BLOCK = 64
#: Score of the gallery's padding columns: above any real score, finite so comparisons stay exact.
PADDING_SCORE = 1e30


def check_metric(metric):
    if metric not in METRICS:
        raise ValueError(f"Unknown distance metric {metric!r}; expected one of {METRICS}.")


def unit_rows(vectors):
    """Rows scaled to unit L2 norm; all-zero rows stay zero.

    Not ``tf.math.l2_normalize`` nor a plain ``x / sqrt(...)`` (which Grappler rewrites to
    ``x * rsqrt(...)``): the approximate ``rsqrt`` rounds differently in its vectorised and
    scalar code paths, so equal rows could differ in the last bit depending on where they sit,
    and duplicate gallery items would no longer tie. ``sqrt`` and division round exactly.
    """
    return tf.math.divide_no_nan(vectors, tf.norm(vectors, axis=-1, keepdims=True))


def as_query_operand(queries):
    """``[−2q, 1]`` rows of float32 ``queries`` ``(..., d)``: the left operand of the ranking-score matmul."""
    queries = tf.convert_to_tensor(queries, tf.float32)
    return tf.concat([-2.0 * queries, tf.ones_like(queries[..., :1])], axis=-1)


def as_gallery_operand(gallery, block=1):
    """``[g, ‖g‖²]`` rows of float32 ``gallery`` ``(..., g, d)``: the right operand of the ranking-score
    matmul. With ``block > 1`` (a ``(g, d)`` gallery) it is padded with rows scoring :data:`PADDING_SCORE`
    up to a multiple of ``block`` rows, for block-wise reductions over each score row."""
    gallery = tf.convert_to_tensor(gallery, tf.float32)
    operand = tf.concat([gallery, tf.reduce_sum(tf.square(gallery), axis=-1, keepdims=True)], axis=-1)
    if block == 1:
        return operand
    missing = -tf.shape(gallery)[0] % block
    padding = tf.concat([tf.zeros([missing, tf.shape(gallery)[1]]), tf.fill([missing, 1], PADDING_SCORE)], axis=1)
    return tf.concat([operand, padding], axis=0)


def ranking_operands(queries, gallery, metric, block=1):
    """``(query_operand, gallery_operand, query_sq)`` of a search.

    ``chunk_scores(query_operand, gallery_operand)`` orders each query's gallery like ``metric``
    (smallest first) and :func:`scores_to_distances` with ``query_sq`` turns scores into
    distances. ``queries`` ``(q, d)`` and ``gallery`` ``(g, d)``, or batches ``(e, q, d)`` and
    ``(e, g, d)``; ``block``: see :func:`as_gallery_operand`.
    """
    check_metric(metric)
    queries = tf.convert_to_tensor(queries, tf.float32)
    gallery = tf.convert_to_tensor(gallery, tf.float32)
    if metric == "cosine":
        queries, gallery = unit_rows(queries), unit_rows(gallery)
    return as_query_operand(queries), as_gallery_operand(gallery, block), tf.reduce_sum(tf.square(queries), axis=-1)


def chunk_scores(query_operand, gallery_operand):
    """The ``(chunk, gallery)`` ranking-score block (``(chunk, q, gallery)`` for batches); outside XLA on
    purpose: TF's oneDNN matmul is faster on CPU than XLA's dot."""
    return tf.matmul(query_operand, gallery_operand, transpose_b=True)


def scores_to_distances(scores, query_sq, metric):
    """Distances from ranking scores: adds back each query's ``‖q‖²`` (``query_sq``)."""
    squared = tf.maximum(scores + query_sq[..., tf.newaxis], 0.0)
    if metric == "cosine":
        return 0.5 * squared
    return squared if metric == "squared_euclidean" else tf.sqrt(squared)


def mask_self(scores, self_index):
    """``scores`` with each query's own gallery column (``self_index``, ``-1``: none) set to +inf."""
    columns = tf.range(tf.shape(scores)[-1], dtype=self_index.dtype)
    return tf.where(columns == self_index[..., tf.newaxis], float("inf"), scores)


def map_chunks(step, per_query, chunk_rows, dtypes, progress=None):
    """``step`` over chunks of the queries, its outputs concatenated: the one chunk loop of every search.

    Args:
        step: ``step(*chunk)`` returns a tuple of tensors with one row per chunk row.
        per_query: tuple of ``(tensor, padding_value)``, each tensor with one row per query.
        chunk_rows: rows per chunk at most (clipped to ``[1, queries]``). The queries are cut into
            equal chunks, the last one padded with ``padding_value`` rows (fewer than one per
            chunk) so every chunk has one shape; the padding rows are cut from the result. The
            other chunks are slices of the inputs, not copies.
        dtypes: the dtypes of ``step``'s outputs.
        progress: optional ``progress(rows_done)`` called after each chunk (eager mode only).

    Inside ``tf.function`` this is a ``tf.while_loop`` running one chunk at a time (the retrieval
    SavedModel), so one chunk's scores exist at once; in eager mode a Python loop over the chunks.
    """
    per_query = [(tf.convert_to_tensor(tensor), value) for tensor, value in per_query]
    count = tf.shape(per_query[0][0])[0]
    limit = tf.clip_by_value(tf.cast(chunk_rows, tf.int32), 1, tf.maximum(count, 1))
    num_chunks = tf.maximum((count + limit - 1) // limit, 1)
    size = tf.maximum((count + num_chunks - 1) // num_chunks, 1)
    outputs = [tf.TensorArray(dtype, size=num_chunks) for dtype in dtypes]
    for i in tf.range(num_chunks):
        tf.autograph.experimental.set_loop_options(parallel_iterations=1)
        chunk = [_padded(tensor[i * size : (i + 1) * size], size, value) for tensor, value in per_query]
        outputs = [array.write(i, part) for array, part in zip(outputs, step(*chunk))]
        if progress is not None:
            progress(int(tf.minimum((i + 1) * size, count)))
    return tuple(array.concat()[:count] for array in outputs)


def _padded(part, rows, value):
    """``part`` with rows of ``value`` appended up to ``rows`` rows (a no-op but for the last chunk)."""
    paddings = [[0, rows - tf.shape(part)[0]]] + [[0, 0]] * (part.shape.rank - 1)
    return tf.pad(part, paddings, constant_values=tf.cast(value, part.dtype))


def search(
    queries, gallery, k, metric="euclidean", self_index=None, chunk_rows=None, max_scores=MAX_SCORES_PER_CHUNK,
    progress=None,
):
    """The ``k`` nearest gallery rows of each query: ``(distances (q, k), positions (q, k))``.

    ``queries`` ``(q, d)`` and ``gallery`` ``(g, d)`` float arrays or tensors; ``k`` a Python
    int, at most ``g`` (``g − 1`` with self-exclusion). ``self_index``: optional int ``(q,)``
    gallery row of each query, excluded from its results (``-1``: none). ``chunk_rows``: queries
    per chunk (default ``max(1, max_scores // g)``: at most ``max_scores`` scores at once). ``progress``: see
    :func:`map_chunks`. Runs eagerly or in a graph; :func:`exact_search` is its ``tf.function``.

    A batch of independent searches of one size (few-shot episodes) is one call: ``queries``
    ``(e, q, d)``, each row of searches in its own ``gallery`` ``(e, g, d)``; results and
    ``self_index`` are ``(e, q, ...)``, and chunks, ``chunk_rows`` and ``progress`` count searches.
    """
    query_operand, gallery_operand, query_sq = ranking_operands(queries, gallery, metric)
    if self_index is None:
        self_index = tf.fill(tf.shape(query_sq), -1)
    if chunk_rows is None:
        row_scores = tf.reduce_prod(tf.shape(query_sq)[1:]) * tf.shape(gallery_operand)[-2]
        chunk_rows = tf.maximum(1, max_scores // tf.maximum(row_scores, 1))

    # Eagerly (evaluation) each chunk's masking, top-k and distances run as one XLA computation, fused
    # passes over the score block, about twice as fast on CPU; in a graph (the retrieval SavedModel) they
    # stay plain TF ops, so serving needs no XLA. Batches of small searches (few-shot episodes) gain
    # nothing from fusion and would pay a compilation (~1 s) per episode shape: plain ops too.
    batched = query_operand.shape.rank == 3
    top_k = _top_k_xla if tf.executing_eagerly() and not batched else _top_k

    def step(chunk, chunk_sq, own, galleries=gallery_operand):
        return top_k(chunk_scores(chunk, galleries), own, chunk_sq, k, metric)

    per_query = ((query_operand, 0.0), (query_sq, 0.0), (tf.cast(self_index, tf.int32), -1))
    if batched:  # each search's gallery goes through the chunks with its queries
        per_query += ((gallery_operand, 0.0),)
    return map_chunks(step, per_query, chunk_rows, (tf.float32, tf.int32), progress)


def _top_k(scores, self_index, query_sq, k, metric):
    """Distances and positions of the ``k`` smallest scores of each row, its own column excluded."""
    negated, positions = tf.math.top_k(-mask_self(scores, self_index), k=k)
    return scores_to_distances(-negated, query_sq, metric), positions


_top_k_xla = tf.function(_top_k, jit_compile=True)


@tf.function(reduce_retracing=True)
def exact_search(queries, gallery, k, metric="euclidean", max_scores=MAX_SCORES_PER_CHUNK, self_index=None):
    """:func:`search` in-graph, ``max(1, max_scores // g)`` queries per chunk."""
    return search(queries, gallery, k, metric, self_index=self_index, max_scores=max_scores)


@tf.function(
    input_signature=[tf.TensorSpec([None, None], tf.float32)] * 2
    + [tf.TensorSpec([None], tf.float32), tf.TensorSpec([], tf.int32)]
)
def nearest_two(query_operand, gallery, extra, max_scores=MAX_SCORES_PER_CHUNK):
    """The nearest gallery row of each query and its two smallest ranking scores, with one extra candidate
    per query: ``(position (q,) int32, best (q,), second (q,))``, position ``-1`` where ``extra`` wins.

    The assignment step of Lloyd's K-means (:mod:`tfdml.evaluation.lloyd`), which keeps the query
    operand (:func:`as_query_operand`) across iterations and searches a new ``gallery`` ``(g, d)`` (the
    centroids) each time; ``extra`` is a float32 ``(q,)`` score (``inf``: none). Scores are squared
    distances less ``‖q‖²``; ties go to the lower position, and to a gallery row over ``extra``. One
    graph (the chunk loop included) in chunks of ``max(1, max_scores // g)`` queries.
    """
    gallery_operand = as_gallery_operand(gallery, BLOCK)
    chunk_rows = tf.maximum(1, max_scores // tf.shape(gallery_operand)[0])

    def step(chunk, chunk_extra):
        return _best_two(chunk, gallery_operand, chunk_extra)

    return map_chunks(step, ((query_operand, 0.0), (extra, np.inf)), chunk_rows, (tf.int32, tf.float32, tf.float32))


@tf.function(
    input_signature=[tf.TensorSpec([None, None], tf.float32)] * 2 + [tf.TensorSpec([None], tf.float32)],
    autograph=False,
)
def _best_two(query_operand, gallery_operand, extra):
    """:func:`nearest_two` of one chunk.

    One pass over the score block takes the minimum of every :data:`BLOCK` columns; the best
    lies in the block with the smallest minimum, and the second best is the smaller of that
    block's second smallest and the other blocks' smallest minimum. (An argmin pass and a
    masked-minimum pass over the whole block cost ~3× more.)
    """
    scores = chunk_scores(query_operand, gallery_operand)
    blocks = tf.reshape(scores, [tf.shape(scores)[0], -1, BLOCK])
    minima = tf.reduce_min(blocks, axis=2)
    best_block = tf.argmin(minima, axis=1, output_type=tf.int32)
    within = tf.gather(blocks, best_block, batch_dims=1)
    offset = tf.argmin(within, axis=1, output_type=tf.int32)
    best = tf.gather(within, offset, batch_dims=1)
    second = tf.minimum(
        tf.reduce_min(tf.where(tf.range(BLOCK) == offset[:, tf.newaxis], np.inf, within), axis=1),
        tf.reduce_min(tf.where(tf.range(tf.shape(minima)[1]) == best_block[:, tf.newaxis], np.inf, minima), axis=1),
    )
    # Merging the extra column here costs O(rows); concatenating it would copy the block.
    extra_wins = extra < best
    second = tf.where(extra_wins, best, tf.minimum(second, extra))
    position = tf.where(extra_wins, -1, best_block * BLOCK + offset)
    return position, tf.minimum(best, extra), second
