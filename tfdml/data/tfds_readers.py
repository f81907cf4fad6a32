"""CUB-200-2011, CARS196 and Stanford Online Products from TensorFlow Datasets, split as in DML.

TFDS splits CUB and CARS196 by image; metric learning splits them by class. The
reader therefore reads both TFDS splits and keeps the classes of the requested
half: CUB-200-2011 trains on classes 1–100 and tests on 101–200, CARS196 on 1–98
and 99–196 (TFDS ids are 0-based: 0–99 / 100–199 and 0–97 / 98–195, kept as
they are). Stanford Online Products' official train/test splits are already
class-disjoint (11,318 / 11,316 products) and its ``super_class_id`` (12 kinds
of product) is the category.

The JPEG bytes of the chosen split are read into memory once (CUB about 1.1 GB,
CARS196 1.9 GB, SOP 2.9 GB for ``"all"``) and decoded on load. TFDS checked and
re-encoded every image when it built the dataset, so validation defaults to the
cheap ``"header"`` check.
"""

import dataclasses
from typing import Optional

import numpy as np

from tfdml.data import images
from tfdml.data.base import READERS, SPLITS, EncodedImages, LabelledImages, class_disjoint_split
from tfdml.extras import require


@dataclasses.dataclass(frozen=True)
class _Spec:
    label: str
    category: Optional[str] = None
    first_test_label: Optional[int] = None  # None: the official TFDS train/test splits are class-disjoint.


TFDS_SPECS = {
    "caltech_birds2011": _Spec(label="label", first_test_label=100),
    "cars196": _Spec(label="label", first_test_label=98),
    "stanford_online_products": _Spec(label="class_id", category="super_class_id"),
}


def tfds_dataset(name, *, split="train", data_dir=None, download=False, validate="header"):
    """A DML split of a TFDS image dataset (``caltech_birds2011``, ``cars196``, ``stanford_online_products``).

    Args:
        name: the TFDS name.
        split: ``"train"``, ``"test"`` or ``"all"`` — class-disjoint, see the module docstring.
        data_dir: TFDS data folder (default ``~/tensorflow_datasets``).
        download: let TFDS download and prepare the data when it is missing; by default
            a missing dataset raises ``FileNotFoundError`` saying how to prepare it.
        validate: ``"header"`` (default), ``"decode"`` or ``"none"``; unreadable images are
            skipped with a warning and listed in ``skipped``.

    Example:

    >>> cub_test = tfds_dataset("caltech_birds2011", split="test", data_dir="/data/tfds")
    >>> sorted(set(cub_test.labels))[:2]
    [100, 101]
    """
    if name not in TFDS_SPECS:
        raise ValueError(f"tfds_dataset: name must be one of {sorted(TFDS_SPECS)}, got {name!r}")
    if split not in SPLITS:
        raise ValueError(f"tfds_dataset({name}): split must be one of {SPLITS}, got {split!r}")
    spec = TFDS_SPECS[name]
    tfds = require("tensorflow_datasets", f"Reading {name} through TFDS")
    builder = tfds.builder(name, data_dir=data_dir)
    if download:
        builder.download_and_prepare()
    tfds_split = "train+test" if spec.first_test_label is not None or split == "all" else split
    try:
        examples = builder.as_dataset(
            split=tfds_split, decoders={"image": tfds.decode.SkipDecoding()}, shuffle_files=False
        )
    except AssertionError as error:  # TFDS signals an unprepared dataset with an AssertionError.
        raise FileNotFoundError(_not_prepared_message(name, builder.data_dir)) from error

    encoded, labels, categories = _read_examples(examples, spec)
    readable = images.decodable(encoded, from_files=False, channels=3, mode=validate)
    skipped = tuple(f"{name}[{i}]" for i in np.flatnonzero(~readable))
    images.report_skipped(f"{name}/{split}", skipped, len(encoded))
    features = builder.info.features
    collection = LabelledImages(
        name=name,
        labels=labels[readable],
        load=EncodedImages(images.bytes_table([e for e, ok in zip(encoded, readable) if ok]), channels=3),
        categories=None if categories is None else categories[readable],
        class_names=list(features[spec.label].names),
        category_names=None if spec.category is None else list(features[spec.category].names),
        skipped=skipped,
    )
    if spec.first_test_label is None:
        return dataclasses.replace(collection, name=f"{name}/{split}")
    indices = class_disjoint_split(collection.labels, split, spec.first_test_label, name)
    return collection.subset(indices, f"{name}/{split}")


def _reader(name):
    """``load(name, root=data_dir)`` for the TFDS dataset ``name``."""

    def read(root, *, split, image_size, **options):
        return tfds_dataset(name, split=split, data_dir=root, **options).resized_to(image_size)

    return read


for _name, _aliases in (("caltech_birds2011", ("cub200",)), ("cars196", ()), ("stanford_online_products", ("sop",))):
    READERS.register(_name, *_aliases)(_reader(_name))


def _read_examples(examples, spec):
    """Encoded images, int64 labels and categories (or ``None``) of every example."""
    keys = ["image", spec.label] + ([spec.category] if spec.category else [])
    examples = examples.map(lambda example: tuple(example[key] for key in keys)).batch(1024)
    columns = [[] for _ in keys]
    for batch in examples.as_numpy_iterator():
        for column, values in zip(columns, batch):
            column.extend(values)
    encoded = columns[0]
    labels = np.asarray(columns[1], dtype=np.int64)
    categories = np.asarray(columns[2], dtype=np.int64) if spec.category else None
    return encoded, labels, categories


def _not_prepared_message(name, data_dir):
    return (
        f"TFDS dataset {name!r} is not prepared in {data_dir}. Prepare it once with\n"
        f"    tfds build {name} --data_dir=<your data_dir>\n"
        f"(or tfds.builder({name!r}, data_dir=...).download_and_prepare(), or pass download=True). "
        "If its download URL is unavailable, download the archives yourself, put them in "
        f"<data_dir>/downloads/manual and run tfds build {name} --manual_dir=<data_dir>/downloads/manual."
    )
