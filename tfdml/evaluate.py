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

``DIR`` is written as a whole (:func:`tfdml.io.write_directory_atomically`): a new folder,
or one holding only an earlier report, which is replaced; a failed evaluation leaves it as
it was. It receives:

- ``report.json``: every metric of :func:`tfdml.evaluation.evaluate` (plus the
  ``--fewshot`` protocols, within-category ones over the reader's categories), the
  settings and the figure file names;
- ``retrieval_grid.png``, ``negative_distances.png``, ``singular_values.png`` and
  ``projection.png`` (see :mod:`tfdml.evaluation.plots`); ``negative_distances.png``
  is left out, with a warning, when all images have one class.

Degenerate data (one class, every image its own class) warns and reports ``nan`` as
:func:`tfdml.evaluation.evaluate` does. Bad arguments (a ``MODEL`` folder without a
SavedModel, a retrieval export ``models/<name>-search/<version>``, an unknown ``--data``,
an ``--out`` that is a file or cannot be written, ...) stop it before any work with one
argparse error line (status 2).

Example::

    python -m tfdml.evaluate runs/margin/export --data omniglot --out runs/margin/eval
"""

import argparse
import importlib
import json
import pathlib
import sys
import tempfile
import warnings

import keras
import numpy as np
import tensorflow as tf

import tfdml.data
from tfdml import evaluation
from tfdml.evaluation import figures, plots
from tfdml.io import check_replaceable, write_directory_atomically, write_file_atomically

#: Random different-class pairs drawn for the negative-distance histogram.
NEGATIVE_PAIRS = 100_000
#: The files of a report folder: an existing ``--out`` holding anything else is refused, not replaced.
REPORT_FILES = ("report.json", "retrieval_grid.png", "negative_distances.png", "singular_values.png", "projection.png")


def load_embedder(path):
    """A function ``images (b, h, w, c) float32 → embeddings (b, d)`` for a SavedModel dir or ``.keras`` file."""
    path = pathlib.Path(path)
    if not path.exists():
        raise ValueError(f"MODEL not found: {path} (expected a SavedModel directory or a .keras file).")
    if path.is_dir():
        signature, output = _embedding_signature(path, "serving_default")
        inputs = list(signature.structured_input_signature[1])
        if len(inputs) != 1:
            raise ValueError(f"SavedModel {path}: serving_default must take one image input; it takes {inputs}.")
        return lambda images: signature(**{inputs[0]: images})[output]
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
    signature (a tfdml export), or ``None`` when ``path`` is not a folder or has no such signature."""
    path = pathlib.Path(path)
    if not path.is_dir():
        return None
    found = _embedding_signature(path, "serving_bytes", required=False)
    if found is None:
        return None
    signature, output = found
    return lambda encoded: signature(image_bytes=encoded)[output]


def _embedding_signature(path, name, required=True):
    """Signature ``name`` of the SavedModel folder ``path`` and the key of its one output, the embeddings
    (``None`` when it lacks the signature and ``required`` is false). A ``ValueError`` refuses a folder
    without a SavedModel, and a retrieval export, whose outputs are search results."""
    if not any((path / pb).is_file() for pb in ("saved_model.pb", "saved_model.pbtxt")):
        raise ValueError(
            f"MODEL {path} holds no SavedModel (saved_model.pb): expected an export version folder "
            "models/<name>/<version> or a .keras file."
        )
    signatures = tf.saved_model.load(str(path)).signatures
    if name not in signatures:
        if required:
            raise ValueError(f"SavedModel {path} has no {name!r} signature; found {list(signatures)}.")
        return None
    outputs = sorted(signatures[name].structured_outputs)
    if {"ids", "distances"} <= set(outputs):
        raise ValueError(
            f"MODEL {path} is a retrieval export (models/<name>-search/<version>): it returns {outputs}, not "
            "embeddings. Point tfdml.evaluate at the embedding export it was built from, models/<name>/<version>."
        )
    if len(outputs) != 1:
        raise ValueError(f"SavedModel {path}: {name} must return one embedding; it returns {outputs}.")
    return signatures[name], outputs[0]


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
    """Evaluates ``embeddings`` of ``data`` and writes ``report.json`` and the figures as the folder ``out_dir``.

    The folder is written as a whole (:func:`tfdml.io.write_directory_atomically`): an existing
    ``out_dir`` holding only :data:`REPORT_FILES` is replaced, one holding anything else is
    refused (``FileExistsError``), and a failure leaves it as it was. With one class there is no
    different-class pair: ``negative_distances.png`` is left out with a warning.

    ``fewshot``: names from :data:`tfdml.evaluation.FEWSHOT_METRICS` to add to the metrics.
    ``preprocessing`` (recorded in the report) says which eval preprocessing made the embeddings.

    Returns the report as a ``dict``.
    """
    labels = np.asarray(data.labels)
    rng = np.random.default_rng(seed)
    scores = evaluation.evaluate(
        embeddings, labels, metrics=evaluation.METRICS + tuple(fewshot), k=k, metric=metric, seed=seed,
        verbose=verbose, categories=data.categories,
    )
    first, second = rng.integers(0, len(labels), size=(2, NEGATIVE_PAIRS))
    negative = labels[first] != labels[second]
    if not negative.any():
        warnings.warn(
            f"tfdml.evaluate: all {len(labels)} images have one class, so there is no different-class pair and "
            "negative_distances.png is not drawn.",
            stacklevel=2,
        )
    report = {
        "data": data.name,
        "preprocessing": preprocessing,
        "num_images": int(len(labels)),
        "num_classes": int(len(np.unique(labels))),
        "embedding_dim": int(embeddings.shape[1]),
        "metric": metric,
        "metrics": scores,
    }

    def write(folder):
        folder = pathlib.Path(folder)
        drawn = {
            "retrieval_grid": figures.retrieval_figure(
                embeddings, data, folder / "retrieval_grid.png", queries=grid_queries, neighbours=grid_neighbours,
                metric=metric, seed=seed,
            )
        }
        if negative.any():
            drawn["negative_distances"] = plots.negative_distance_histogram(
                evaluation.paired_distances(embeddings[first[negative]], embeddings[second[negative]], metric),
                folder / "negative_distances.png", metric=metric,
            )
        drawn["singular_values"] = plots.singular_value_plot(
            evaluation.singular_values(embeddings), folder / "singular_values.png"
        )
        drawn["projection"] = plots.projection_plot(embeddings, labels, folder / "projection.png")
        report["figures"] = {name: pathlib.Path(path).name for name, path in drawn.items()}
        write_file_atomically(str(folder / "report.json"), json.dumps(report, indent=2))

    write_directory_atomically(str(out_dir), write, overwrite=True, owned=REPORT_FILES)
    return report


def _check_report_folder(out_dir):
    """Raise ``OSError`` naming the problem if :func:`write_report` could not write the folder
    ``out_dir``: a file, a folder holding other files than :data:`REPORT_FILES`, or a place where
    no folder can be created."""
    out_dir = pathlib.Path(out_dir).absolute()
    if out_dir.exists():
        check_replaceable(str(out_dir), REPORT_FILES)
    parent = out_dir.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise NotADirectoryError(f"{parent} is not a folder")
    try:
        tempfile.TemporaryDirectory(dir=parent).cleanup()
    except OSError as error:
        raise PermissionError(f"cannot write in {parent} ({error.strerror})") from None


def _integer_at_least(minimum):
    """An argparse ``type``: an integer ``>= minimum``."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}; got {text!r}")
        return value

    return parse


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tfdml.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="SavedModel directory (an export models/<name>/<version>) or .keras file")
    parser.add_argument("--data", required=True, choices=tfdml.data.READERS.names, metavar="NAME",
                        help=f"dataset name for tfdml.data.load: {', '.join(tfdml.data.READERS.names)}")
    parser.add_argument("--root", default=None, help="dataset location (see tfdml.data.load)")
    parser.add_argument("--split", default="test", choices=tfdml.data.SPLITS, help="split to evaluate (default: test)")
    parser.add_argument(
        "--image-size", type=_integer_at_least(1), default=None,
        help="image size passed to the reader (for models without serving_bytes; it also sizes the figures)",
    )
    parser.add_argument("--out", required=True, help="output directory (new, or holding an earlier report)")
    parser.add_argument("--k", type=_integer_at_least(1), nargs="+", default=[1, 2, 4, 8], help="recall cut-offs")
    parser.add_argument("--metric", default="euclidean", choices=("euclidean", "squared_euclidean", "cosine"))
    parser.add_argument("--batch-size", type=_integer_at_least(1), default=128)
    parser.add_argument("--fewshot", nargs="*", default=[], choices=evaluation.FEWSHOT_METRICS,
                        help="few-shot protocols to report (1000 episodes each)")
    parser.add_argument("--seed", type=_integer_at_least(0), default=0)
    parser.add_argument("--verbose", type=int, default=1)
    args = parser.parse_args(argv)
    if not pathlib.Path(args.model).exists():
        parser.error(f"model not found: {args.model}")
    try:
        _check_report_folder(args.out)
    except OSError as error:
        parser.error(f"--out {args.out}: {error}")

    # Everything that can be refused is checked before the images are embedded.
    try:
        bytes_embedder = load_bytes_embedder(args.model)
        options = {} if args.image_size is None else {"image_size": args.image_size}
        data = tfdml.data.load(args.data, root=args.root, split=args.split, **options)
        from_files = bytes_embedder is not None and data.has_files
        embedder = bytes_embedder if from_files else load_embedder(args.model)
    except (ValueError, OSError) as error:
        parser.error(str(error))
    if from_files:
        preprocessing = "serving_bytes: original files, the export's eval preprocessing"
        embeddings = embed_files(embedder, data, batch_size=args.batch_size)
    else:
        preprocessing = f"reader: {data.name} load" + ("" if args.image_size is None else f", image_size {args.image_size}")
        embeddings = embed_images(embedder, data, batch_size=args.batch_size)
    report = write_report(
        embeddings, data, args.out, k=args.k, metric=args.metric, seed=args.seed, verbose=args.verbose,
        fewshot=args.fewshot, preprocessing=preprocessing,
    )
    json.dump(report["metrics"], sys.stdout, indent=2)
    print()
    return report


if __name__ == "__main__":
    main()
