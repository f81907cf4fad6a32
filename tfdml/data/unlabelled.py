"""A folder of unlabelled images, for self-supervised training: every image is its own class.

Self-supervised recipes (``sampler.class: ViewsSampler``, see ``docs/self_supervised.md``) train on
the instance ids this reader gives as labels; what they are evaluated on comes from a labelled
dataset (``evaluation.data``), since an unlabelled folder has no classes to retrieve.
"""

import dataclasses
import os
import pathlib

import numpy as np

from tfdml.data import images
from tfdml.data.base import READERS, EncodedImages, LabelledImages

#: Readers whose labels are instance ids, not classes: a recipe evaluates them on ``evaluation.data``.
UNLABELLED_READERS = ("unlabelled_folder",)


def unlabelled_folder(root, *, channels=3, validate="decode"):
    """Every image file under ``root`` (sub-folders included), labelled by its own index.

    Files are taken in the sorted order of their paths relative to ``root``, with the extensions
    ``.jpg .jpeg .png .gif .bmp`` (others are ignored); image ``i`` gets label ``i`` (instance
    discrimination: each image is its own pseudo-class, the views of :class:`~tfdml.sampling.ViewsSampler`
    share it). Decoding and validation are :func:`tfdml.data.image_folder`'s: unreadable files are
    skipped with a warning naming them (and listed in ``skipped``), and a folder in which none can
    be decoded is an error naming them; the labels of the kept images are renumbered ``0 … n − 1``.

    Args:
        root: the folder.
        channels: decoded channels (3 = RGB, 1 = grayscale).
        validate: ``"decode"`` (decode each image once now), ``"header"`` (check the file
            signature) or ``"none"``.

    Example:

    >>> photos = unlabelled_folder("data/photos")  # data/photos/**/*.jpg
    >>> photos.labels[:3]
    array([0, 1, 2])
    """
    root = pathlib.Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"unlabelled_folder: root folder {root} does not exist")
    paths = sorted(
        (p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in images.IMAGE_EXTENSIONS),
        key=lambda p: p.relative_to(root).as_posix(),
    )
    if not paths:
        raise ValueError(f"unlabelled_folder: no {images.IMAGE_EXTENSIONS} files under {root}")
    name = f"unlabelled_folder({root})"
    paths = [os.fspath(p) for p in paths]
    readable = images.decodable(paths, from_files=True, channels=channels, mode=validate)
    skipped = tuple(p for p, ok in zip(paths, readable) if not ok)
    images.report_skipped(name, skipped, len(paths))
    kept = [p for p, ok in zip(paths, readable) if ok]
    return LabelledImages(
        name=name,
        labels=np.arange(len(kept), dtype=np.int64),
        load=EncodedImages(images.file_table(kept), channels),
        skipped=skipped,
    )


def instance_labels(data):
    """``data`` with its labels dropped: image ``i`` labelled ``i`` (its own class), no categories or class names.

    What ``data.labels: false`` trains on: a labelled dataset read as if unlabelled (e.g. Omniglot
    trained self-supervised, while its held-out classes are still evaluated by their labels).

    Example:

    >>> instance_labels(tfdml.data.load("omniglot", split="train")).labels[:3]
    array([0, 1, 2])
    """
    return dataclasses.replace(
        data, name=f"{data.name} (labels dropped)", labels=np.arange(len(data), dtype=np.int64), categories=None,
        class_names=None, category_names=None,
    )


@READERS.register("unlabelled_folder")
def _unlabelled_folder_reader(root, *, split, image_size, **options):
    """``load("unlabelled_folder", root=...)``: :func:`unlabelled_folder`; ``"train"`` and ``"all"`` are every
    image, and there is no ``"test"`` split (a recipe evaluates on ``evaluation.data``)."""
    if root is None:
        raise ValueError("tfdml.data.load('unlabelled_folder') needs root=")
    if split not in ("train", "all"):
        raise ValueError(
            f"unlabelled_folder: split must be 'train' or 'all' (every image); got {split!r}. An unlabelled folder "
            "has no classes to test retrieval on: evaluate on a labelled dataset (evaluation.data)."
        )
    return unlabelled_folder(root, **options).resized_to(image_size)
