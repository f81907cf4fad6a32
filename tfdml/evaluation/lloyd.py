"""Exact Lloyd K-means that rescores only the centroids that moved.

Lloyd's algorithm alternates two steps: assign every sample to its nearest
centroid, then move every centroid to the mean of its samples. It stops when an
assignment repeats the previous one or after ``max_iterations`` moves, whose
assignment is the result: scikit-learn's ``KMeans(algorithm="lloyd", tol=0)``
sequence. Data and centroids are centred on the data mean first (as scikit-learn
does) so the float32 scores lose less to cancellation.

Scores. A sample ``x`` orders the centroids by ``‖c‖² − 2x·c`` (its squared
distance less ``‖x‖²``), the ranking scores of :mod:`tfdml.neighbors`, whose
:func:`~tfdml.neighbors.nearest_two` finds each sample's best two: one matmul of
``[−2x, 1]`` with ``[c, ‖c‖²]`` per block of rows, at most :data:`BLOCK_SCORES`
scores at a time (never n × K at once).

Rescoring only what moved. A centroid keeps its position while its samples do
not change, and after the first moves few change (at Stanford Online Products
scale, K = 11,316: ~15% of the centroids move in the second update, < 1% after
the tenth). Each sample keeps its centroid ``a``, the score ``u`` of ``a`` and a
lower bound ``l`` on its score of every other centroid. After a move of the
centroids ``M`` the other centroids' scores are unchanged, so ``l`` still bounds
them except ``a``: scoring the sample against ``M`` alone (``n × |M|``) and taking
``a``'s score (``u``, or its new one when ``a ∈ M``) gives the best of ``M ∪ {a}``
exactly, and when it is below ``l`` it is the nearest centroid of all. ``l``
becomes ``min(l, second best of M ∪ {a})``. Samples failing the test (typically
< 1%) are scored against all centroids, which also makes their ``l`` exact (the
second-best score). A move of more than half the centroids (the first one)
rescores every sample against all of them. No bound is derived by arithmetic on
distances, so the assignments are those of plain Lloyd: only scores tied within
float32 rounding may break differently than in a from-scratch computation (ties
otherwise go to the lower centroid index).

Empty clusters. As in scikit-learn, the ``e`` clusters left empty by an
assignment move onto the ``e`` samples farthest from their centroids, which leave
their clusters' means for that move (faiss splits large clusters instead). Unlike
scikit-learn, a cluster left with no sample by this, or an empty one when every
sample sits on its centroid (more clusters than distinct samples), keeps its centroid.

Example:

>>> start = starting_centroids(len(x), num_clusters=10, seed=0)
>>> clusters = lloyd(x, x[start], max_iterations=20)
"""

import keras
import numpy as np
import tensorflow as tf

from tfdml.neighbors import as_query_operand, nearest_two

#: Scores held at once (64 MB of float32); sets the rows of each matmul block.
BLOCK_SCORES = 1 << 24


def starting_centroids(count, num_clusters, seed):
    """Indices of ``num_clusters`` distinct random samples: the rows scikit-learn's
    ``KMeans(init="random", random_state=seed)`` starts from (the same draw, uniform
    float32 sample weights as probabilities), so both backends start alike."""
    weights = np.ones(count, np.float32)
    return np.random.RandomState(seed).choice(count, size=num_clusters, replace=False, p=weights / weights.sum())


def _nearest(samples, centroids, extra):
    """:func:`tfdml.neighbors.nearest_two` of the sample operand over ``centroids`` ``(K, d)``, as NumPy arrays."""
    found = nearest_two(samples, centroids, np.asarray(extra, np.float32), BLOCK_SCORES)
    return tuple(np.array(part) for part in found)


def _move(samples, assigned, clusters, centroids):
    """Lloyd's update of the clusters flagged in ``clusters``, relocating empty clusters.

    Returns the new centroids, the sorted ids of those whose position changed, and the
    clusters a relocation touched (their centroid is not their samples' mean, so the
    next move must update them whether or not their samples change).
    """
    counts = np.bincount(assigned, minlength=centroids.shape[0])
    empty = np.flatnonzero(counts == 0)
    far = np.empty(0, np.int64)
    if empty.size:
        distances = np.sum(np.square(samples - centroids[assigned]), axis=1)
        if distances.max() > 0:  # otherwise every sample sits on its centroid: nothing to take
            # scikit-learn's expression, so both take the same samples in the same order.
            far = np.argpartition(distances, -empty.size)[: -empty.size - 1 : -1]
    empty = empty[: far.size]
    touched = np.zeros_like(clusters)
    touched[assigned[far]] = touched[empty] = True
    rows = np.flatnonzero((clusters | touched)[assigned])
    rows = rows[np.argsort(assigned[rows], kind="stable")]
    owners, starts = np.unique(assigned[rows], return_index=True)
    # Always the same rows in the same order: an unchanged cluster's mean is bitwise unchanged.
    sums = np.add.reduceat(samples[rows], starts, axis=0, dtype=np.float64)
    members = counts[owners]
    losers = np.searchsorted(owners, assigned[far])
    np.subtract.at(sums, losers, samples[far])
    np.subtract.at(members, losers, 1)
    moved = centroids.copy()
    kept = members > 0
    moved[owners[kept]] = sums[kept] / members[kept, np.newaxis]
    moved[empty] = samples[far]
    candidates = np.union1d(owners, empty)
    return moved, candidates[np.any(moved[candidates] != centroids[candidates], axis=1)], touched


def _rescore(samples, centroids, moved, assigned, score, bound):
    """New ``(assigned, score, bound)`` after a move of the centroids ``moved`` (see the module docstring)."""
    moved_mask = np.zeros(centroids.shape[0], bool)
    moved_mask[moved] = True
    # The assigned centroid competes with its stored score unless it moved (then its column is fresh).
    column, best, second = _nearest(samples, centroids[moved], np.where(moved_mask[assigned], np.inf, score))
    winner = np.where(column >= 0, moved[np.maximum(column, 0)], assigned)
    unsure = np.flatnonzero(best >= bound)
    bound = np.minimum(bound, second)
    if unsure.size:
        winner[unsure], best[unsure], bound[unsure] = _nearest(
            tf.gather(samples, unsure), centroids, np.full(unsure.size, np.inf, np.float32)
        )
    return winner, best, bound


def lloyd(samples, centroids, max_iterations=20, verbose=0):
    """Cluster ids ``(n,)`` of Lloyd's K-means on float32 ``samples (n, d)`` from ``centroids (K, d)``.

    Args:
        samples: float32 ``(n, d)`` array.
        centroids: float32 ``(K, d)`` starting centroids.
        max_iterations: centroid moves at most (default 20).
        verbose: a progress bar over the moves, with the number of centroids moved.
    """
    mean = samples.mean(axis=0)
    samples, centroids = samples - mean, np.asarray(centroids, np.float32) - mean
    num_clusters = centroids.shape[0]
    scored = as_query_operand(samples)
    no_extra = np.full(samples.shape[0], np.inf, np.float32)
    assigned, score, bound = _nearest(scored, centroids, no_extra)
    clusters = np.ones(num_clusters, bool)
    progress = keras.utils.Progbar(max_iterations, unit_name="move", stateful_metrics=["moved"]) if verbose else None
    for iteration in range(1, max_iterations + 1):
        centroids, moved, touched = _move(samples, assigned, clusters, centroids)
        if moved.size == 0:  # every change left its clusters' means bitwise equal
            break
        if 2 * moved.size > num_clusters:
            # Rescoring most columns twice would cost more than one full pass.
            winner, score, bound = _nearest(scored, centroids, no_extra)
        else:
            winner, score, bound = _rescore(scored, centroids, moved, assigned, score, bound)
        changed = winner != assigned
        clusters = touched
        clusters[assigned[changed]] = clusters[winner[changed]] = True
        assigned = winner
        if progress is not None:
            progress.update(iteration, values=[("moved", moved.size)], finalize=False)
        if not changed.any():
            break
    if progress is not None:
        progress.update(iteration, finalize=True)
    return assigned.astype(np.int64)
