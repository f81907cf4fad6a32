"""Figures of an image collection and its embeddings, written crash-safe (:mod:`tfdml.io`, through :mod:`.plots`).

What a person looks at after training, rather than a table: :func:`retrieval_figure` (queries of
distinct classes and their nearest neighbours, right ones framed green, wrong ones red) and
:func:`embedding_map` (a 2-D t-SNE map of a few classes, one panel per embedding, e.g. raw pixels
beside the trained network). ``train.py`` and ``python -m tfdml.evaluate`` write them.

Example:

>>> retrieval_figure(embeddings, test_data, "runs/x/retrieval.png")
'runs/x/retrieval.png'
>>> embedding_map({"raw pixels": pixels, "trained": embeddings}, test_data.labels, "runs/x/embedding_map.png")
'runs/x/embedding_map.png'
"""

import numpy as np
import tensorflow as tf

from tfdml.evaluation import plots
from tfdml.evaluation.knn import nearest_neighbors


def spread_queries(labels, count, seed=0):
    """``count`` (at most one per class, at most the number of classes) row indices of distinct
    classes drawn with ``seed``, sorted."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    classes = rng.choice(np.unique(labels), size=min(count, len(np.unique(labels))), replace=False)
    return np.sort([rng.choice(np.flatnonzero(labels == label)) for label in classes])


def retrieval_figure(embeddings, data, path, *, queries=8, neighbours=8, metric="euclidean", seed=0):
    """Write ``path`` (PNG): ``queries`` images of distinct classes of ``data`` (a
    :class:`~tfdml.data.LabelledImages`, ``embeddings`` its rows in index order), each followed by
    its ``neighbours`` nearest other images, framed green where they share the query's class.

    Images are shown as the model saw them (``data.load``). Returns ``path``.
    """
    labels = np.asarray(data.labels)
    chosen = spread_queries(labels, queries, seed)
    _, nearest = nearest_neighbors(
        np.asarray(embeddings)[chosen], embeddings, k=min(neighbours, len(labels) - 1), metric=metric,
        self_index=chosen,
    )

    def image(index):
        return data.load(tf.constant(index, tf.int64)).numpy()

    return plots.retrieval_grid(
        np.stack([image(index) for index in chosen]),
        np.stack([[image(index) for index in row] for row in nearest]),
        labels[nearest] == labels[chosen][:, np.newaxis],
        str(path),
        query_labels=labels[chosen],
        neighbour_labels=labels[nearest],
        title=f"{data.name}: queries of {len(chosen)} classes and their nearest neighbours "
        "(green: same class, red: another class)",
    )


def embedding_map(panels, labels, path, *, classes=10, seed=0, data_name="embeddings"):
    """Write ``path`` (PNG): a t-SNE map of the rows of ``classes`` classes (drawn with ``seed``),
    coloured by class, one panel per entry of ``panels`` (``{title: (n, d) embeddings}``, the same
    ``n`` rows as ``labels``); ``data_name`` heads the figure. Returns ``path``."""
    labels = np.asarray(labels)
    shown = np.unique(labels)
    shown = np.random.default_rng(seed).choice(shown, size=min(classes, len(shown)), replace=False)
    rows = np.flatnonzero(np.isin(labels, shown))
    return plots.projection_plot(
        {title: np.asarray(embeddings)[rows] for title, embeddings in panels.items()},
        labels[rows],
        str(path),
        method="tsne",
        seed=seed,
        title=f"{data_name}: all images of {len(shown)} classes, coloured by class",
    )
