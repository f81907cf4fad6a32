"""Omniglot's background-small sets from TensorFlow Datasets, for when the two zips are not on disk.

TFDS's ``omniglot`` builder (version 3) has the splits ``small1`` and ``small2``
(the two background-small zips) with features ``image`` (105×105×3 PNG),
``alphabet`` (a 50-name class label), ``alphabet_char_id`` (0-based character
number within the alphabet) and ``label``. This reader gives the same collection as
:func:`tfdml.data.omniglot` on the zips: the same alphabets (categories), class
ids, class names ``"<alphabet>/characterNN"``, train/test alphabets (``small1``'s
alphabets / those only in ``small2``), Greek and Latin kept once (from ``small1``),
one channel, inverted strokes and area resizing. Only the order of the 20
drawings inside a class differs: TFDS keeps no file names, so they follow TFDS's
stored order.
"""

import pathlib
import warnings

import numpy as np

from tfdml.data import images
from tfdml.data.base import READERS, EncodedImages, LabelledImages, class_disjoint_split
from tfdml.data.omniglot import ZIP_NAMES, omniglot, preprocessing
from tfdml.extras import require

TFDS_SPLITS = ("small1", "small2")


def omniglot_tfds(*, split="train", image_size=None, invert=True, data_dir=None, download=True, validate="header"):
    """Omniglot background-small from TFDS, numbered as :func:`tfdml.data.omniglot` numbers the zips.

    Args:
        split: ``"train"`` (``small1``'s 5 alphabets), ``"test"`` (the 3 alphabets only in
            ``small2``) or ``"all"``.
        image_size: output side (area resize, float32), or ``None`` for 105×105 uint8.
        invert: make strokes 255 on a 0 background (as the zip reader).
        data_dir: TFDS data folder (default ``~/tensorflow_datasets``).
        download: let TFDS download (about 15 MB: TFDS fetches all four Omniglot zips) and
            prepare the data when it is missing.
        validate: ``"header"`` (default; TFDS re-encoded every image), ``"decode"`` or ``"none"``.

    Example:

    >>> train = omniglot_tfds(split="train", image_size=28)
    >>> len(set(train.labels)), len(set(train.categories))
    (136, 5)
    """
    if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
        raise ValueError(f"omniglot: image_size must be a positive int or None, got {image_size!r}")
    tfds = require("tensorflow_datasets", "Reading Omniglot through TFDS")
    builder = tfds.builder("omniglot", data_dir=data_dir)
    if download:
        try:
            builder.download_and_prepare()
        except Exception as error:  # TFDS raises many kinds (network, missing extras); all mean "no data".
            raise FileNotFoundError(_unavailable_message(builder.data_dir, error)) from error
    alphabet_names = builder.info.features["alphabet"].names
    per_split = {}
    for tfds_split in TFDS_SPLITS:
        try:
            examples = builder.as_dataset(
                split=tfds_split, decoders={"image": tfds.decode.SkipDecoding()}, shuffle_files=False
            )
        except AssertionError as error:  # TFDS signals an unprepared dataset with an AssertionError.
            raise FileNotFoundError(_unavailable_message(builder.data_dir, error)) from error
        per_split[tfds_split] = _read(examples, alphabet_names)

    train_alphabets = {alphabet for alphabet, _, _ in per_split["small1"]}
    # Greek and Latin are in both splits with the same drawings: small1's copy is kept, as in the zip reader.
    kept = per_split["small1"] + [row for row in per_split["small2"] if row[0] not in train_alphabets]
    alphabets = sorted(train_alphabets) + sorted({alphabet for alphabet, _, _ in kept} - train_alphabets)
    characters = sorted({(a, c) for a, c, _ in kept}, key=lambda ac: (alphabets.index(ac[0]), ac[1]))
    class_ids = {ac: i for i, ac in enumerate(characters)}
    order = sorted(range(len(kept)), key=lambda i: class_ids[kept[i][:2]])
    labels = np.array([class_ids[kept[i][:2]] for i in order], dtype=np.int64)
    categories = np.array([alphabets.index(kept[i][0]) for i in order], dtype=np.int64)
    encoded = [kept[i][2] for i in order]

    readable = images.decodable(encoded, from_files=False, channels=1, mode=validate)
    skipped = tuple(f"omniglot[{i}]" for i in np.flatnonzero(~readable))
    images.report_skipped(f"omniglot/{split}", skipped, len(encoded))
    collection = LabelledImages(
        name="omniglot",
        labels=labels[readable],
        load=EncodedImages(
            images.bytes_table([e for e, ok in zip(encoded, readable) if ok]),
            channels=1,
            preprocess=preprocessing(invert, image_size),
        ),
        categories=categories[readable],
        class_names=["/".join(ac) for ac in characters],
        category_names=alphabets,
        skipped=skipped,
    )
    first_test_label = sum(alphabet in train_alphabets for alphabet, _ in characters)
    indices = class_disjoint_split(collection.labels, split, first_test_label, "omniglot")
    return collection.subset(indices, f"omniglot/{split}")


@READERS.register("omniglot")
def _omniglot_reader(root, *, split, image_size, **options):
    """``load("omniglot")``: the zips shipped with tfdml, or those in ``root``; TFDS's copy (with a
    warning) when ``root`` lacks them. Registered here, beside the TFDS reader it falls back to."""
    if root is None or all((pathlib.Path(root) / zip_name).is_file() for zip_name in ZIP_NAMES):
        return omniglot(root, split=split, image_size=image_size, **options)
    warnings.warn(f"tfdml.data.load('omniglot'): {root} does not hold {ZIP_NAMES}; reading TFDS's omniglot")
    return omniglot_tfds(split=split, image_size=image_size, **options)


@READERS.register("omniglot_tfds")
def _omniglot_tfds_reader(root, *, split, image_size, **options):
    """``load("omniglot_tfds", root=data_dir)``."""
    return omniglot_tfds(split=split, image_size=image_size, data_dir=root, **options)


def _read(examples, alphabet_names):
    """``[(alphabet, "characterNN", png bytes)]`` of a TFDS split, in its stored order."""
    rows = []
    columns = examples.map(lambda e: (e["alphabet"], e["alphabet_char_id"], e["image"])).batch(1024)
    for alphabet_ids, character_ids, encoded in columns.as_numpy_iterator():
        rows.extend(
            (alphabet_names[a], f"character{c + 1:02d}", e) for a, c, e in zip(alphabet_ids, character_ids, encoded)
        )
    return rows


def _unavailable_message(data_dir, error):
    return (
        f"omniglot: TFDS's 'omniglot' is not prepared in {data_dir} and could not be prepared "
        f"({type(error).__name__}: {error}). Either read the background-small zips that ship with tfdml "
        "(tfdml.data.load('omniglot') with no root), pass root= a folder holding "
        "images_background_small1.zip and images_background_small2.zip "
        "(https://github.com/brendenlake/omniglot/tree/master/python), or prepare it once with "
        "`tfds build omniglot` on a machine with internet access."
    )
