"""``evaluate``: every retrieval, clustering, structure and few-shot metric of a labelled embedding set.

The metric names and their modules are listed in :mod:`tfdml.evaluation`.
"""

import warnings

import numpy as np

from tfdml.checks import as_embeddings, is_multi_hot, label_array, multi_hot_array
from tfdml.evaluation import clustering, fewshot, knn, retrieval, spectrum

RETRIEVAL_METRICS = ("recall_at_k", "r_precision", "map_at_r", "map_c")
CLUSTERING_METRICS = ("nmi", "f1")
STRUCTURE_METRICS = ("rho_spectral_decay", "pi_intra", "pi_inter", "pi_ratio")
METRICS = RETRIEVAL_METRICS + CLUSTERING_METRICS + STRUCTURE_METRICS
FEWSHOT_METRICS = tuple(fewshot.PROTOCOLS)
#: Retrieval metrics computed on request only (not in the default ``metrics``).
PRECISION_METRICS = ("precision_at_k",)
#: What ``evaluate`` computes of multi-hot label sets (relevance: sharing a label with the query).
MULTI_LABEL_METRICS = ("recall_at_k", "precision_at_k", "r_precision", "map_at_r")
DEFAULT_K = (1, 2, 4, 8)


def _selection(selector, count, name):
    """Row indices from ``None`` (all rows), an index array or a boolean mask."""
    if selector is None:
        return np.arange(count)
    selector = np.asarray(selector)
    if selector.dtype == bool:
        if selector.shape != (count,):
            raise ValueError(f"{name} as a boolean mask must have shape ({count},); got {selector.shape}.")
        return np.flatnonzero(selector)
    if selector.ndim != 1 or not np.issubdtype(selector.dtype, np.integer):
        raise ValueError(f"{name} must be a 1-D integer index array or boolean mask; got {selector.dtype} {selector.shape}.")
    if selector.size and (selector.min() < -count or selector.max() >= count):
        raise ValueError(f"{name} has indices outside [0, {count}).")
    return np.unique(selector % count)


def evaluate(
    embeddings,
    labels,
    *,
    query=None,
    gallery=None,
    metrics=METRICS,
    k=DEFAULT_K,
    metric="euclidean",
    chunk_size=1024,
    kmeans_backend="lloyd",
    kmeans_iterations=20,
    seed=0,
    verbose=0,
    categories=None,
    fewshot_episodes=fewshot.DEFAULT_EPISODES,
):
    """Retrieval, clustering and embedding-space metrics of labelled embeddings.

    Args:
        embeddings: ``(n, d)`` array or tensor.
        labels: ``(n,)`` or ``(n, 1)`` integer class labels, or multi-hot label sets ``(n, C)``
            (``C >= 2``): a neighbour is then relevant when it shares a label with the query, and only
            :data:`MULTI_LABEL_METRICS` are defined (:func:`retrieval.per_label` breaks them down by label).
        query, gallery: rows of ``embeddings`` used as queries / searched, as index
            arrays or boolean masks; default all rows for both. A query that is also
            in the gallery never retrieves itself. Clustering and structure metrics
            use the union of both.
        metrics: names from :data:`METRICS` (and :data:`PRECISION_METRICS`, :data:`FEWSHOT_METRICS`);
            ``"recall_at_k"`` and ``"precision_at_k"`` yield one ``recall_at_{k}``/``precision_at_{k}`` key
            per value of ``k``.
        k: recall and precision cut-offs (Wu et al.: ``(1, 10, 100, 1000)`` on SOP, ``(1, 2, 4, 8)`` on CUB/CARS).
        metric: ``"euclidean"`` (default), ``"squared_euclidean"`` or ``"cosine"``.
        chunk_size: queries per search step (memory ``chunk_size × gallery`` floats).
        kmeans_backend, kmeans_iterations, seed: see :func:`clustering.kmeans`.
        verbose: progress bars.
        categories: optional ``(n,)`` category of each row, for ``fewshot_20way_1shot_within``.
        fewshot_episodes: episodes per few-shot metric (default 1000, drawn with ``seed``);
            few-shot metrics use the union of query and gallery rows.

    Returns:
        ``dict`` of Python floats.

    Degenerate inputs give a ``UserWarning`` and ``nan`` for the metrics they leave undefined
    or trivial, never a score that looks meaningful:

    - one class among the evaluated rows: every neighbour is a positive and one cluster is
      perfect, so the retrieval metrics, ``nmi``, ``f1``, ``pi_inter`` and ``pi_ratio`` are ``nan``;
    - no class with two samples (every sample its own class): no query has a positive, so the
      retrieval metrics are ``nan``, and so are ``nmi``, ``f1`` (one cluster per sample) and
      ``pi_intra``/``pi_ratio`` (no same-class pair);
    - a cut-off ``k`` larger than the gallery a query ranks (the gallery less the query
      itself): ``recall_at_{k}`` is ``nan`` (it would be 1 for any embedding).

    Queries whose class has no other sample in the gallery are left out of the retrieval
    metrics silently (see :mod:`~tfdml.evaluation.retrieval`).

    Example:

    >>> evaluate(np.eye(4), [0, 0, 0, 0], metrics=["recall_at_k", "nmi"], k=1)  # warns: one class
    {'recall_at_1': nan, 'nmi': nan}
    """
    unknown = sorted(set(metrics) - set(METRICS) - set(PRECISION_METRICS) - set(FEWSHOT_METRICS))
    if unknown:
        raise ValueError(f"Unknown metrics {unknown}; expected names from {METRICS + PRECISION_METRICS + FEWSHOT_METRICS}.")
    embeddings = as_embeddings(embeddings)
    multi_label = is_multi_hot(labels)
    if multi_label:
        labels = multi_hot_array(labels, count=embeddings.shape[0])
        undefined = [name for name in metrics if name not in MULTI_LABEL_METRICS]
        if undefined:
            raise ValueError(
                f"evaluate: {undefined} are undefined for multi-label sets (labels of shape {labels.shape}); "
                f"multi-label metrics: {MULTI_LABEL_METRICS}."
            )
    else:
        labels = label_array(labels, count=embeddings.shape[0])
    cutoffs = (k,) if np.isscalar(k) else tuple(k)
    if any(int(cutoff) < 1 for cutoff in cutoffs):
        raise ValueError(f"k must hold integers >= 1; got {k}.")
    query_rows = _selection(query, embeddings.shape[0], "query")
    gallery_rows = _selection(gallery, embeddings.shape[0], "gallery")
    rows = np.union1d(query_rows, gallery_rows)
    if multi_label:  # no classes to count: a query sharing no label is left out, as a singleton is
        one_class = all_singletons = False
    else:
        _, class_sizes = np.unique(labels[rows], return_counts=True)
        one_class, all_singletons = len(class_sizes) == 1, bool(np.all(class_sizes == 1))
    if one_class:
        warnings.warn(
            f"evaluate: all {len(rows)} samples have one class: retrieval, nmi, f1 and inter-class metrics "
            "are undefined and returned as nan.",
            stacklevel=2,
        )
    elif all_singletons:
        warnings.warn(
            f"evaluate: each of the {len(rows)} samples is its own class, so no query has a positive: retrieval, "
            "nmi, f1 and intra-class metrics are undefined and returned as nan.",
            stacklevel=2,
        )
    # Gallery items a query ranks: the whole gallery, less the query itself when it is in it.
    ranked_items = len(gallery_rows) - int(np.isin(query_rows, gallery_rows).any())
    too_deep = sorted({int(cutoff) for cutoff in cutoffs if int(cutoff) > ranked_items})
    cut = [name for name in ("recall_at_k", "precision_at_k") if name in metrics]
    if too_deep and cut:
        warnings.warn(
            f"evaluate: k={too_deep} exceeds the {ranked_items} gallery items each query ranks; "
            f"{', '.join(f'{name[:-1]}{c}' for name in cut for c in too_deep)} returned as nan.",
            stacklevel=2,
        )
    results = {}
    if set(metrics) & set(RETRIEVAL_METRICS + PRECISION_METRICS):
        gallery_position = np.full(embeddings.shape[0], -1)
        gallery_position[gallery_rows] = np.arange(len(gallery_rows))

        def ranked(depth=None):
            return knn.rank_positives(
                embeddings[query_rows],
                labels[query_rows],
                embeddings[gallery_rows],
                labels[gallery_rows],
                self_index=gallery_position[query_rows],
                metric=metric,
                chunk_size=chunk_size,
                verbose=verbose,
                depth=depth,
            )

        ranks = ranked()
        deepest_cutoff = min(max(int(c) for c in cutoffs), ranked_items)
        if "precision_at_k" in metrics and ranks.depth < deepest_cutoff:
            ranks = ranked(deepest_cutoff)  # fewer positives than k: precision@k needs the k nearest ranked
        if "recall_at_k" in metrics:
            for cutoff in cutoffs:
                recall = np.nan if int(cutoff) in too_deep else retrieval.recall_at_k(ranks, cutoff)
                results[f"recall_at_{int(cutoff)}"] = recall
        if "precision_at_k" in metrics:
            for cutoff in cutoffs:
                precision = np.nan if int(cutoff) in too_deep else retrieval.precision_at_k(ranks, cutoff)
                results[f"precision_at_{int(cutoff)}"] = precision
        for name in ("r_precision", "map_at_r", "map_c"):
            if name in metrics:
                results[name] = getattr(retrieval, name)(ranks)
        if one_class:
            results.update({name: np.nan for name in results})
    if (one_class or all_singletons) and set(metrics) & set(CLUSTERING_METRICS):
        results.update({name: np.nan for name in CLUSTERING_METRICS if name in metrics})
    elif set(metrics) & set(CLUSTERING_METRICS):
        clusters = clustering.kmeans(
            embeddings[rows],
            len(np.unique(labels[rows])),
            max_iterations=kmeans_iterations,
            seed=seed,
            backend=kmeans_backend,
            verbose=verbose,
        )
        if "nmi" in metrics:
            results["nmi"] = clustering.nmi(labels[rows], clusters)
        if "f1" in metrics:
            results["f1"] = clustering.pair_f1(labels[rows], clusters)
    if "rho_spectral_decay" in metrics:
        results["rho_spectral_decay"] = spectrum.spectral_decay(embeddings[rows])
    if {"pi_intra", "pi_inter", "pi_ratio"} & set(metrics):
        statistics = spectrum.class_distance_statistics(embeddings[rows], labels[rows], metric=metric)
        results.update({name: value for name, value in statistics.items() if name in metrics})
    for name in FEWSHOT_METRICS:
        if name in metrics:
            results.update(_fewshot_scores(name, embeddings, labels, rows, categories, fewshot_episodes, seed))
    return results


def _fewshot_scores(name, embeddings, labels, rows, categories, episodes, seed):
    if categories is not None:
        categories = label_array(categories, "categories", count=labels.shape[0])[rows]
    return fewshot.protocol_scores(name, embeddings[rows], labels[rows], categories=categories, episodes=episodes,
                                   seed=seed)
