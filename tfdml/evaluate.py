"""Command line evaluation of a trained embedding model: a JSON report and PNG figures.

Usage::

    python -m tfdml.evaluate MODEL --data NAME [--root DIR] [--split test] --out DIR
        [--k 1 2 4 8] [--metric euclidean] [--batch-size 128] [--image-size N]
        [--fewshot fewshot_20way_1shot_within fewshot_5way_1shot fewshot_5way_5shot]

``MODEL`` is a SavedModel directory or a ``.keras`` file. ``--data`` names a dataset of
:func:`tfdml.data.load`; its ``--split`` (default ``test``) is embedded and evaluated
as query and gallery at once. The images go through the one eval preprocessing the
model was evaluated with:

- a tfdml export (``models/<name>/<version>``, with a ``serving_bytes`` signature) is
  sent the dataset's original files, and its in-graph preprocessing (the training
  data's ``LabelledImages.preprocess``) prepares them, as TF Serving would;
- any other model (a ``.keras`` file, or a SavedModel with only ``serving_default``,
  e.g. from ``model.export(dir)``) gets the reader's ``load`` (its ``preprocess``,
  resized to ``--image-size`` if given).

``DIR`` receives:

- ``report.json``: every metric of :func:`tfdml.evaluation.evaluate` (plus the
  ``--fewshot`` protocols, within-category ones over the reader's categories), the
  settings and the figure file names;
- ``retrieval_grid.png``, ``negative_distances.png``, ``singular_values.png`` and
  ``projection.png`` (see :mod:`tfdml.evaluation.plots`).

Example::

    python -m tfdml.evaluate runs/margin/export --data omniglot --out runs/margin/eval
"""

import argparse
import importlib
import json
import pathlib
import sys

import keras
import numpy as np
import tensorflow as tf

import tfdml.data
from tfdml import evaluation
from tfdml.evaluation import figures, plots

#: Random different-class pairs drawn for the negative-distance histogram.
NEGATIVE_PAIRS = 100_000


def load_embedder(path):
    """A function ``images (b, h, w, c) float32 → embeddings (b, d)`` for a SavedModel dir or ``.keras`` file."""
    path = pathlib.Path(path)
    if not path.exists():
        raise ValueError(f"MODEL not found: {path} (expected a SavedModel directory or a .keras file).")
    if path.is_dir():
        loaded = tf.saved_model.load(str(path))
        if "serving_default" not in loaded.signatures:
            raise ValueError(f"SavedModel {path} has no 'serving_default' signature; found {list(loaded.signatures)}.")
        signature = loaded.signatures["serving_default"]
        inputs = list(signature.structured_input_signature[1])
        if len(inputs) != 1:
            raise ValueError(f"SavedModel {path}: serving_default must take one image input; it takes {inputs}.")

        def embed(images):
            outputs = signature(**{inputs[0]: images})
            if len(outputs) != 1:
                raise ValueError(f"SavedModel {path}: serving_default must return one embedding; it returns {list(outputs)}.")
            return next(iter(outputs.values()))

        return embed
    if path.suffix == ".keras" and path.is_file():
        # Registers tfdml's serialisable layers and models before deserialising.
        importlib.import_module("tfdml.models")
        importlib.import_module("tfdml.training.model")
        model = keras.saving.load_model(str(path), compile=False)
        model = getattr(model, "embedding_model", model)
        return lambda images: model(images, training=False)
    raise ValueError(f"MODEL must be a SavedModel directory or a .keras file; got {path}.")


def load_bytes_embedder(path):
    """``encoded images (b,) string → embeddings (b, d)`` through a SavedModel's ``serving_bytes``
    signature (a tfdml export), or ``None`` when ``path`` has none."""
    path = pathlib.Path(path)
    if not path.is_dir():
        return None
    signatures = tf.saved_model.load(str(path)).signatures
    if "serving_bytes" not in signatures:
        return None
    signature = signatures["serving_bytes"]
    return lambda encoded: signature(image_bytes=encoded)["embeddings"]


def embed_files(embedder, data, *, batch_size=128):
    """``(len(data), d)`` float32 embeddings of the original files of a ``LabelledImages``, in index order,
    from ``embedder`` (encoded images → embeddings, e.g. :func:`load_bytes_embedder`)."""
    files = tf.data.Dataset.range(len(data)).map(data.encoded).batch(batch_size)
    return np.concatenate([np.asarray(embedder(batch), dtype=np.float32) for batch in files])


def embed_images(embedder, data, *, batch_size=128):
    """``(len(data), d)`` float32 embeddings of every image of a ``LabelledImages``, in index order."""
    images = (
        tf.data.Dataset.range(len(data))
        .map(lambda index: tf.cast(data.load(index), tf.float32), num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    return np.concatenate([np.asarray(embedder(batch), dtype=np.float32) for batch in images])


def write_report(embeddings, data, out_dir, *, k=(1, 2, 4, 8), metric="euclidean", grid_queries=8, grid_neighbours=8,
                 seed=0, verbose=0, fewshot=(), preprocessing="reader"):
    """Evaluates ``embeddings`` of ``data`` and writes ``report.json`` and the figures into ``out_dir``.

    ``fewshot``: names from :data:`tfdml.evaluation.FEWSHOT_METRICS` to add to the metrics.
    ``preprocessing`` (recorded in the report) says which eval preprocessing made the embeddings.

    Returns the report as a ``dict``.
    """
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = np.asarray(data.labels)
    rng = np.random.default_rng(seed)
    scores = evaluation.evaluate(
        embeddings, labels, metrics=evaluation.METRICS + tuple(fewshot), k=k, metric=metric, seed=seed,
        verbose=verbose, categories=data.categories,
    )

    drawn = {
        "retrieval_grid": figures.retrieval_figure(
            embeddings, data, out_dir / "retrieval_grid.png", queries=grid_queries, neighbours=grid_neighbours,
            metric=metric, seed=seed,
        )
    }
    first, second = rng.integers(0, len(labels), size=(2, NEGATIVE_PAIRS))
    negative = labels[first] != labels[second]
    negative_distances = evaluation.paired_distances(embeddings[first[negative]], embeddings[second[negative]], metric)
    drawn["negative_distances"] = plots.negative_distance_histogram(
        negative_distances, out_dir / "negative_distances.png", metric=metric
    )
    drawn["singular_values"] = plots.singular_value_plot(
        evaluation.singular_values(embeddings), out_dir / "singular_values.png"
    )
    drawn["projection"] = plots.projection_plot(embeddings, labels, out_dir / "projection.png")

    report = {
        "data": data.name,
        "preprocessing": preprocessing,
        "num_images": int(len(labels)),
        "num_classes": int(len(np.unique(labels))),
        "embedding_dim": int(embeddings.shape[1]),
        "metric": metric,
        "metrics": scores,
        "figures": {name: pathlib.Path(path).name for name, path in drawn.items()},
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tfdml.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="SavedModel directory or .keras file")
    parser.add_argument("--data", required=True, help="dataset name for tfdml.data.load (e.g. digits, omniglot)")
    parser.add_argument("--root", default=None, help="dataset location (see tfdml.data.load)")
    parser.add_argument("--split", default="test", help="split to evaluate (default: test)")
    parser.add_argument(
        "--image-size", type=int, default=None,
        help="image size passed to the reader (for models without serving_bytes; it also sizes the figures)",
    )
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--k", type=int, nargs="+", default=[1, 2, 4, 8], help="recall cut-offs")
    parser.add_argument("--metric", default="euclidean", choices=("euclidean", "squared_euclidean", "cosine"))
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--fewshot", nargs="*", default=[], choices=evaluation.FEWSHOT_METRICS,
                        help="few-shot protocols to report (1000 episodes each)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", type=int, default=1)
    args = parser.parse_args(argv)
    if not pathlib.Path(args.model).exists():
        parser.error(f"model not found: {args.model}")

    options = {} if args.image_size is None else {"image_size": args.image_size}
    data = tfdml.data.load(args.data, root=args.root, split=args.split, **options)
    bytes_embedder = load_bytes_embedder(args.model) if data.has_files else None
    if bytes_embedder is not None:
        preprocessing = "serving_bytes: original files, the export's eval preprocessing"
        embeddings = embed_files(bytes_embedder, data, batch_size=args.batch_size)
    else:
        preprocessing = f"reader: {data.name} load" + ("" if args.image_size is None else f", image_size {args.image_size}")
        embeddings = embed_images(load_embedder(args.model), data, batch_size=args.batch_size)
    report = write_report(
        embeddings, data, args.out, k=args.k, metric=args.metric, seed=args.seed, verbose=args.verbose,
        fewshot=args.fewshot, preprocessing=preprocessing,
    )
    json.dump(report["metrics"], sys.stdout, indent=2)
    print()
    return report


if __name__ == "__main__":
    main()
