"""Omniglot's two "background small" zips: alphabet = category, character = class.

Both zips ship with tfdml (MIT licence, Lake, Salakhutdinov & Tenenbaum 2015; see
``omniglot_background_small/README.md``), so ``omniglot()`` with no ``root`` reads the packaged
copy, offline, in an installed package as in a checkout.
"""

import pathlib
import zipfile
import zlib

import numpy as np
import tensorflow as tf

from tfdml.data import images
from tfdml.data.base import DataFileError, EncodedImages, LabelledImages, class_disjoint_split

ZIP_NAMES = ("images_background_small1.zip", "images_background_small2.zip")
#: The copy that ships inside the package (package data, with its LICENSE and attribution).
PACKAGED_ROOT = pathlib.Path(__file__).resolve().parent / "omniglot_background_small"
_WAYS_OUT = (
    "set data.root (--data-root, or root= in Python) to a folder holding "
    + " and ".join(ZIP_NAMES)
    + ", or read Omniglot through TFDS with data.name: omniglot_tfds (tfdml.data.load('omniglot_tfds'))"
)


def omniglot(root=None, *, split="train", image_size=None, invert=True, validate=None):
    """Omniglot (Lake et al. 2015) from ``images_background_small1.zip`` and ``…small2.zip``.

    The zips are read into memory (4,840 small PNGs). Greek and Latin are in both
    zips with the same drawings and are kept once, leaving 8 alphabets, 242
    characters and 20 drawings of each. Each alphabet is a category and each
    character a class, with class ids unique across alphabets.

    Splits are class-disjoint by alphabet: ``"train"`` holds the alphabets of
    ``small1`` (Balinese, Early_Aramaic, Greek, Korean, Latin: 136 characters),
    ``"test"`` the alphabets found only in ``small2`` (Japanese_(katakana), Sanskrit,
    Tagalog: 106 characters), ``"all"`` both. Ids are numbered train alphabets first
    (each group in name order), so train classes are 0–135 and test 136–241,
    train categories 0–4 and test 5–7.

    The original files are the zips' PNGs; ``preprocess`` (inversion, then the resize)
    is the reader's eval preprocessing. Images are 105×105, one channel. ``invert=True`` (default) makes strokes 255 on a
    0 background, so zero padding and resizing treat the background as empty.
    ``image_size`` resizes them (area interpolation, float32) e.g. to 28 for fast CPU
    recipes; ``None`` keeps 105×105 uint8. With a resizing augmentation (e.g.
    ``Augmentation("base", size=28)``) keep ``None``, so each image is resized once.

    Args:
        root: folder holding the two zips; ``None`` (default): the copy shipped with tfdml
            (:data:`PACKAGED_ROOT`).
        split: ``"train"``, ``"test"`` or ``"all"``.
        image_size: output side, or ``None``.
        invert: whether to make strokes bright.
        validate: ``"decode"``, ``"header"`` or ``"none"``; undecodable PNGs are
            skipped with a warning and listed in ``skipped``. Default: ``"decode"``, except ``"none"`` for the
            packaged copy, whose every drawing decodes (tested) and whose bytes ``zipfile`` checks
            against the archive's CRC-32 as it reads them.

    Example:

    >>> train = omniglot(split="train", image_size=28)
    >>> len(train), len(set(train.labels)), len(set(train.categories))
    (2720, 136, 5)
    """
    if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
        raise ValueError(f"omniglot: image_size must be a positive int or None, got {image_size!r}")
    root = PACKAGED_ROOT if root is None else pathlib.Path(root)
    if validate is None:
        validate = "none" if root.resolve() == PACKAGED_ROOT else "decode"
    members, train_alphabets = _read_zips(root)
    alphabets = sorted(train_alphabets) + sorted({a for a, _, _ in members} - train_alphabets)
    characters = sorted({(a, c) for a, c, _ in members}, key=lambda ac: (alphabets.index(ac[0]), ac[1]))
    class_ids = {ac: i for i, ac in enumerate(characters)}
    keys = sorted(members, key=lambda key: (class_ids[key[:2]], key[2]))
    labels = np.array([class_ids[key[:2]] for key in keys], dtype=np.int64)
    categories = np.array([alphabets.index(key[0]) for key in keys], dtype=np.int64)
    encoded = [members[key] for key in keys]

    readable = images.decodable(encoded, from_files=False, channels=1, mode=validate)
    skipped = tuple("/".join(key) for key, ok in zip(keys, readable) if not ok)
    images.report_skipped(f"omniglot/{split}", skipped, len(keys))

    preprocess = preprocessing(invert, image_size)
    collection = LabelledImages(
        name="omniglot",
        labels=labels[readable],
        load=EncodedImages(
            images.bytes_table([e for e, ok in zip(encoded, readable) if ok]), channels=1, preprocess=preprocess
        ),
        categories=categories[readable],
        class_names=["/".join(ac) for ac in characters],
        category_names=alphabets,
        skipped=skipped,
    )
    name = f"omniglot/{split}"
    indices = class_disjoint_split(collection.labels, split, _count_classes(characters, train_alphabets), "omniglot")
    return collection.subset(indices, name)


def preprocessing(invert, image_size):
    """Omniglot's eval preprocessing of a decoded drawing: strokes made bright, area resize."""

    def preprocess(image):
        if invert:
            image = 255 - image
        if image_size is not None:
            image = tf.image.resize(image, [image_size, image_size], method="area")
        return image

    return preprocess


def _read_zips(root):
    """``{(alphabet, character, file): png bytes}`` over both zips, and small1's alphabets.

    A missing, truncated or corrupt zip is a :class:`DataFileError` naming the file and the ways
    out, never a ``zipfile`` traceback.
    """
    packaged = root == PACKAGED_ROOT
    if not packaged and not root.is_dir():
        raise FileNotFoundError(f"omniglot: root folder {root} does not exist (expected it to hold {ZIP_NAMES})")
    members = {}
    alphabets_per_zip = []
    for zip_name in ZIP_NAMES:
        path = root / zip_name
        if not path.is_file() and packaged:
            raise DataFileError(
                f"omniglot: {path} not found: the copy shipped with tfdml is missing (the installation dropped its "
                f"package data); reinstall tfdml, or {_WAYS_OUT}"
            )
        if not path.is_file():
            raise FileNotFoundError(f"omniglot: {path} not found (the reader needs both {ZIP_NAMES})")
        alphabets = set()
        try:
            with zipfile.ZipFile(path) as archive:
                for member in archive.namelist():
                    parts = member.split("/")
                    if len(parts) == 4 and parts[3].endswith(".png"):
                        alphabets.add(parts[1])
                        # Greek and Latin are in both zips: the first copy wins.
                        members.setdefault(tuple(parts[1:]), archive.read(member))
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
            owner = "the copy shipped with tfdml" if packaged else "this file"
            raise DataFileError(
                f"omniglot: {path} is not a readable zip ({type(error).__name__}: {error}): {owner} is truncated or "
                f"corrupt; {'reinstall tfdml, or ' if packaged else 'replace it, or '}{_WAYS_OUT}"
            ) from None
        if not alphabets:
            raise ValueError(f"omniglot: {path} holds no <zip>/<alphabet>/<character>/<drawing>.png files")
        alphabets_per_zip.append(alphabets)
    return members, alphabets_per_zip[0]


def _count_classes(characters, alphabets):
    return sum(alphabet in alphabets for alphabet, _ in characters)
