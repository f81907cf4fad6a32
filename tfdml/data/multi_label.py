"""Multi-label image collections: ``LabelledImages`` whose ``labels`` are multi-hot label sets ``(n, C)``.

Two sources: a list file of ``path<TAB>label1,label2[<TAB>split]`` rows (:func:`multi_label_list_file`, the
reader ``"multi_label_list"``), and Omniglot characters overlaid in pairs, built offline from the zips
shipped with tfdml (:func:`omniglot_pairs`, the reader ``"omniglot_pairs"``). Sample them with
``tfdml.sampling.SharedLabelSampler``, train ``tfdml.losses.MultiSupConLoss`` and evaluate with
``tfdml.evaluation.evaluate`` (relevance: sharing a label with the query).
"""

import os
import pathlib

import numpy as np
import tensorflow as tf

from tfdml.data import images
from tfdml.data.base import READERS, SPLITS, EncodedImages, LabelledImages
from tfdml.data.folder import listed_paths
from tfdml.data.omniglot import omniglot


def multi_label_list_file(path, *, image_root=None, split="all", delimiter="\t", label_delimiter=",", channels=3,
                          validate="decode"):
    """Images listed one per row as ``path<TAB>label1,label2,…[<TAB>split]``, each with a set of labels.

    Relative image paths are resolved against ``image_root`` (default: the list file's folder). Blank rows
    and rows starting with ``#`` are ignored, as is a first row whose first field is ``path`` (a header). An
    empty label field is an image without labels (a row of zeros: never relevant to another image). Integer
    labels are columns of their own id (``C`` = the largest id + 1); other labels are named, numbered in
    sorted order and kept in ``class_names``. The optional third field puts the row in the ``"train"`` or
    ``"test"`` split; ``split="all"`` reads every row.

    Args:
        path: the list file.
        image_root: folder that relative image paths start from.
        split: ``"all"`` (default), ``"train"`` or ``"test"`` (the rows whose third field says so).
        delimiter: the field separator (default a tab). label_delimiter: the separator of the labels (``,``).
        channels: decoded channels (3 = RGB, 1 = grayscale).
        validate: ``"decode"``, ``"header"`` or ``"none"``, as for :func:`tfdml.data.image_folder`.

    Returns:
        ``LabelledImages`` whose ``labels`` are int64 multi-hot ``(n, C)``, ``C >= 2``.

    Example:

    >>> shelves = multi_label_list_file("shelves.tsv")  # rows: photos/0001.jpg<TAB>cereal,milk
    >>> shelves.labels.shape  # (images, labels)
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"multi_label_list_file: list file {path} does not exist")
    if split not in SPLITS:
        raise ValueError(f"multi_label_list_file: split must be one of {SPLITS}, got {split!r}")
    image_root = path.parent if image_root is None else pathlib.Path(image_root)
    rows = _read_label_rows(path, delimiter, label_delimiter)
    if split != "all":
        unsplit = [line for line, row in rows if len(row) < 3]
        if unsplit:
            raise ValueError(
                f"multi_label_list_file: {path}, line {unsplit[0]}: split={split!r} reads the rows whose third field "
                "is 'train' or 'test', but this row has none"
            )
        rows = [(line, row) for line, row in rows if row[2] == split]
        if not rows:
            raise ValueError(f"multi_label_list_file: {path} has no row of split {split!r}")
    paths = listed_paths(rows, image_root, path, "multi_label_list_file")
    label_sets, class_names = _multi_hot([row[1] for _, row in rows], path)
    paths = [os.fspath(p) for p in paths]
    readable = images.decodable(paths, from_files=True, channels=channels, mode=validate)
    name = f"multi_label_list_file({path})/{split}"
    skipped = tuple(p for p, ok in zip(paths, readable) if not ok)
    images.report_skipped(name, skipped, len(paths))
    return LabelledImages(
        name=name,
        labels=label_sets[readable],
        load=EncodedImages(images.file_table([p for p, ok in zip(paths, readable) if ok]), channels),
        class_names=class_names,
        skipped=skipped,
    )


def _read_label_rows(path, delimiter, label_delimiter):
    """``[(line number, (path, labels, split?))]``, ``labels`` a list of names, checked row by row."""
    rows = []
    with open(path) as handle:
        for line, text in enumerate(handle, start=1):
            fields = [field.strip() for field in text.rstrip("\n").split(delimiter)]
            if not any(fields) or fields[0].startswith("#"):
                continue
            if not rows and fields[0].lower() == "path":
                continue
            expected = f"expected 'path{delimiter!r}label1{label_delimiter}label2…[{delimiter!r}train|test]'"
            if len(fields) not in (2, 3) or not fields[0]:
                raise ValueError(f"multi_label_list_file: {path}, line {line}: {expected}, got {fields}")
            labels = [label.strip() for label in fields[1].split(label_delimiter)] if fields[1] else []
            if not all(labels):
                raise ValueError(f"multi_label_list_file: {path}, line {line}: an empty label in {fields[1]!r}")
            if len(fields) == 3 and fields[2] not in ("train", "test"):
                raise ValueError(
                    f"multi_label_list_file: {path}, line {line}: the split field must be 'train' or 'test', "
                    f"got {fields[2]!r}"
                )
            rows.append((line, (fields[0], labels, *fields[2:])))
    if not rows:
        raise ValueError(f"multi_label_list_file: {path} lists no images")
    return rows


def _multi_hot(label_lists, path):
    """int64 multi-hot ``(n, C)`` and the label names (``None`` for integer ids, which are their columns)."""
    given = sorted({label for labels in label_lists for label in labels})
    try:
        column = {label: int(label) for label in given}
        names = None
    except ValueError:
        names = given
        column = {label: i for i, label in enumerate(names)}
    if any(c < 0 for c in column.values()):
        raise ValueError(f"multi_label_list_file: {path}: integer labels must be >= 0; got {min(column.values())}")
    width = max(column.values(), default=-1) + 1
    if width < 2:
        raise ValueError(f"multi_label_list_file: {path}: multi-label data needs at least 2 labels; got {width}")
    label_sets = np.zeros((len(label_lists), width), np.int64)
    for row, labels in enumerate(label_lists):
        label_sets[row, [column[label] for label in labels]] = 1
    return label_sets, names


def omniglot_pairs(root=None, *, split="train", image_size=28, characters=None, singles=0.25, seed=0):
    """Omniglot characters overlaid in pairs: each image carries the labels of the characters drawn in it.

    A small multi-label data set made offline from :func:`tfdml.data.omniglot` (the zips shipped with tfdml,
    or ``root``): the ``split``'s drawings (strokes bright, ``image_size × image_size``) are shuffled by
    ``seed`` and each is used once: a ``singles`` fraction of the images holds one drawing and its label, the
    others the pixel-wise maximum of two drawings of different characters, labelled with both. No drawing
    appears in two images, so a neighbour that shares a label shares a character, never a copied drawing.
    Labels are class-disjoint across splits as Omniglot's are (``"train"``: the background alphabets'
    characters, ``"test"``: the others), so the test split's labels are held out. Columns are the split's
    characters in Omniglot's order (``class_names``).

    The images come as arrays, not files: each image's "original file" is its lossless PNG, so an exported
    model's ``serving_bytes`` takes these PNGs (strokes bright).

    Args:
        root: the Omniglot folder; ``None`` reads the zips shipped with tfdml.
        split: ``"train"``, ``"test"`` or ``"all"``.
        image_size: side of the drawings and of the images (default 28; ``None``: Omniglot's 105).
        characters: use only the split's first ``characters`` characters (a tiny set for tests); default all.
        singles: fraction of the images with one character (default 0.25).
        seed: shuffling seed.

    Returns:
        ``LabelledImages`` with int64 multi-hot ``labels`` ``(n, C)``, ``C`` = the characters used.

    Example:

    >>> train = omniglot_pairs(split="train", image_size=28)
    >>> train.labels.shape, np.bincount(train.labels.sum(axis=1))  # the 2720 drawings in 1565 images
    ((1565, 136), array([   0,  410, 1155]))
    """
    if not 0.0 <= singles < 1.0:
        raise ValueError(f"omniglot_pairs: singles must be in [0, 1); got {singles!r}")
    drawings = omniglot(root, split=split, image_size=image_size, validate="none")
    used = np.unique(drawings.labels)
    if characters is not None:
        if not 2 <= int(characters) <= used.size:
            raise ValueError(f"omniglot_pairs: characters must be in 2..{used.size} for split {split!r}; got {characters}")
        used = used[: int(characters)]
        drawings = drawings.subset(np.flatnonzero(np.isin(drawings.labels, used)), drawings.name)
    pixels = np.concatenate([batch.numpy() for batch, _ in drawings.dataset(batch_size=512)])
    character = np.searchsorted(used, drawings.labels)
    order = np.random.default_rng(seed).permutation(len(drawings))
    # s singles and p pairs use every drawing once: s + 2p = n with s = singles · (s + p).
    num_singles = int(round(singles * len(order) / (2.0 - singles)))
    half = (len(order) - num_singles) // 2
    first, second = order[num_singles:num_singles + half], order[num_singles + half:num_singles + 2 * half]
    clash = character[first] == character[second]  # two drawings of one character: two single images
    alone = np.concatenate([order[:num_singles], first[clash], second[clash], order[num_singles + 2 * half:]])
    first, second = np.concatenate([first[~clash], alone]), np.concatenate([second[~clash], np.full(alone.size, -1)])
    paired = second >= 0
    composed = np.where(paired[:, None, None, None], np.maximum(pixels[first], pixels[np.maximum(second, 0)]), pixels[first])
    label_sets = np.zeros((len(first), used.size), np.int64)
    label_sets[np.arange(len(first)), character[first]] = 1
    label_sets[np.flatnonzero(paired), character[second[paired]]] = 1
    stored = np.clip(np.round(composed), 0, 255).astype(np.uint8)
    png_files = tf.data.Dataset.from_tensor_slices(stored).map(tf.io.encode_png).batch(len(stored)).get_single_element()
    return LabelledImages(
        name=f"omniglot_pairs/{split}",
        labels=label_sets,
        load=EncodedImages(lambda index: tf.gather(png_files, index), channels=1),
        class_names=[drawings.class_names[c] for c in used],
    )


@READERS.register("multi_label_list")
def _multi_label_list_reader(root, *, split, image_size, **options):
    """``load("multi_label_list", root=...)``: :func:`multi_label_list_file`, ``root`` being the list file."""
    if root is None:
        raise ValueError("tfdml.data.load('multi_label_list') needs root=")
    return multi_label_list_file(root, split=split, **options).resized_to(image_size)


@READERS.register("omniglot_pairs")
def _omniglot_pairs_reader(root, *, split, image_size, **options):
    """``load("omniglot_pairs")``: :func:`omniglot_pairs` at ``image_size``."""
    return omniglot_pairs(root, split=split, image_size=image_size, **options)
