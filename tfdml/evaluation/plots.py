"""Evaluation figures (matplotlib, no pyplot state): each function writes one PNG (through
:func:`tfdml.io.save_file_atomically`) and returns its path.

- :func:`retrieval_grid`: queries and their nearest gallery images, correct results
  framed green and wrong ones red (Wu et al. 2017, Fig. 5).
- :func:`negative_distance_histogram`: distribution of distances between
  different-class pairs (Wu et al. 2017, supplementary Fig. 1).
- :func:`singular_value_plot`: the normalised singular value spectrum (Roth et al. 2020, Fig. 8).
- :func:`projection_plot`: a 2-D PCA or t-SNE projection of the embeddings coloured by class.

Example:

>>> singular_value_plot(tfdml.evaluation.singular_values(embeddings), "out/spectrum.png")
'out/spectrum.png'
"""

import numpy as np
import sklearn.decomposition
import sklearn.manifold

from tfdml.extras import require
from tfdml.io import save_file_atomically

CORRECT_COLOUR = "tab:green"
WRONG_COLOUR = "tab:red"


def _figure(figsize):
    return require("matplotlib.figure", "Writing evaluation plots").Figure(figsize=figsize)


def _save(figure, path):
    figure.tight_layout()
    return save_file_atomically(str(path), lambda tmp: figure.savefig(tmp, dpi=100, format="png"))


def _show_image(axis, image):
    image = np.asarray(image, dtype=np.float32)
    span = image.max() - image.min()
    image = (image - image.min()) / span if span > 0 else np.zeros_like(image)
    # Reversed grey: bright strokes (Omniglot as read, digits) show dark on white, as drawn.
    axis.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray_r")
    axis.set_xticks([])
    axis.set_yticks([])


def retrieval_grid(query_images, neighbour_images, correct, path, *, query_labels=None, neighbour_labels=None,
                   title=None):
    """Rows of ``query | k nearest``; neighbours framed green when they share the query's class.

    Args:
        query_images: ``(q, h, w, c)``. neighbour_images: ``(q, k, h, w, c)``, nearest first.
        correct: bool ``(q, k)``. path: PNG file to write.
        query_labels, neighbour_labels: optional ``(q,)``/``(q, k)`` labels printed as titles.
        title: optional heading of the figure.
    """
    correct = np.asarray(correct, dtype=bool)
    rows, k = correct.shape
    figure = _figure(figsize=(1.2 * (k + 1), 1.3 * rows))
    axes = figure.subplots(rows, k + 1, squeeze=False)
    for row in range(rows):
        _show_image(axes[row, 0], query_images[row])
        axes[row, 0].set_title("query" if query_labels is None else f"query {query_labels[row]}", fontsize=7)
        for column in range(k):
            axis = axes[row, column + 1]
            _show_image(axis, neighbour_images[row][column])
            colour = CORRECT_COLOUR if correct[row, column] else WRONG_COLOUR
            for spine in axis.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(3)
            if neighbour_labels is not None:
                axis.set_title(str(neighbour_labels[row][column]), fontsize=7, color=colour)
    if title is not None:
        figure.suptitle(title, fontsize=9)
    return _save(figure, path)


def negative_distance_histogram(distances, path, *, bins=100, metric="euclidean"):
    """Histogram (density) of negative-pair distances."""
    figure = _figure(figsize=(5, 3.5))
    axis = figure.subplots()
    axis.hist(np.asarray(distances), bins=bins, density=True, color="tab:blue")
    axis.set_xlabel(f"{metric} distance between different-class pairs")
    axis.set_ylabel("density")
    return _save(figure, path)


def singular_value_plot(singular_values, path):
    """Singular values normalised to sum 1, largest first, on a log scale."""
    values = np.asarray(singular_values, dtype=np.float64)
    figure = _figure(figsize=(5, 3.5))
    axis = figure.subplots()
    axis.semilogy(np.arange(1, values.size + 1), values / values.sum(), marker=".")
    axis.set_xlabel("singular value index")
    axis.set_ylabel("normalised singular value")
    return _save(figure, path)


def projection_plot(embeddings, labels, path, *, method="pca", seed=0, title=None):
    """2-D projection of ``embeddings`` coloured by class (colours cycle past 20 classes).

    Args:
        embeddings: ``(n, d)``, or ``{title: (n, d)}`` for side-by-side panels of the same rows.
        labels: ``(n,)`` class of each row. path: PNG file to write.
        method: ``"pca"`` (linear, every row) or ``"tsne"`` (t-SNE, perplexity ``min(30, (n-1)/3)``:
            neighbourhoods kept, for a few classes).
        seed: t-SNE's initialisation.
        title: optional heading of the figure.
    """
    panels = embeddings if isinstance(embeddings, dict) else {None: embeddings}
    _, class_index = np.unique(labels, return_inverse=True)
    figure = _figure(figsize=(5 * len(panels), 5))
    for axis, (panel, values) in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels.items()):
        values = np.asarray(values, dtype=np.float64)
        if method == "tsne":
            points = sklearn.manifold.TSNE(
                n_components=2, perplexity=min(30.0, (len(values) - 1) / 3), init="pca", random_state=seed
            ).fit_transform(values)
            axis.set_xticks([])
            axis.set_yticks([])
        elif method == "pca":
            points = sklearn.decomposition.PCA(n_components=2).fit_transform(values)
            axis.set_xlabel("principal component 1")
            axis.set_ylabel("principal component 2")
        else:
            raise ValueError(f"projection_plot: method must be 'pca' or 'tsne'; got {method!r}")
        # Ten classes or fewer get ten clearly distinct colours; more cycle through twenty.
        colours = 10 if class_index.max() < 10 else 20
        axis.scatter(points[:, 0], points[:, 1], c=class_index % colours, cmap=f"tab{colours}", vmin=0,
                     vmax=colours - 1, s=10)
        if panel is not None:
            axis.set_title(f"{panel} ({method.upper() if method == 'pca' else 't-SNE'})")
    if title is not None:
        figure.suptitle(title, fontsize=10)
    return _save(figure, path)
