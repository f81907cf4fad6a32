"""Dataset readers with class-disjoint DML splits, and augmentation protocols.

Every reader returns a ``LabelledImages``: int64 class labels (and categories,
``-1`` where unknown) plus a ``load(index)`` that decodes one image inside
``tf.data``: ``load(index) == preprocess(decode(encoded(index)))``, from the image's
original file bytes through the reader's one eval preprocessing, which exported
models run too. ``load(name, ...)`` picks a reader by name:

| name                                         | reader          | source                                   |
|----------------------------------------------|-----------------|------------------------------------------|
| ``"digits"``                                 | ``digits``      | scikit-learn, no ``root``                |
| ``"omniglot"``                               | ``omniglot``    | the two background-small zips shipped with tfdml, or ``root`` |
| ``"omniglot_tfds"``                          | ``omniglot_tfds``| TFDS ``omniglot`` (``root``: TFDS ``data_dir``) |
| ``"cub200"``, ``"caltech_birds2011"``        | ``tfds_dataset``| TFDS ``data_dir``                        |
| ``"cars196"``                                | ``tfds_dataset``| TFDS ``data_dir``                        |
| ``"sop"``, ``"stanford_online_products"``    | ``tfds_dataset``| TFDS ``data_dir``                        |
| ``"folder"``                                 | ``image_folder``| ``root/<class>/`` or ``root/<category>/<class>/`` |
| ``"list"``                                   | ``list_file``   | ``path,class[,category]`` file           |

Example:

>>> train = load("omniglot", split="train", image_size=28)  # the copy shipped with tfdml
>>> batches = train.dataset(batch_size=32, augmentation=Augmentation("base", size=28, seed=0))
"""

import pathlib
import warnings

from tfdml.data.augment import PROTOCOLS, Augmentation, augmentation
from tfdml.data.base import SPLITS, DataFileError, EncodedImages, LabelledImages
from tfdml.data.digits import digits
from tfdml.data.folder import image_folder, list_file
from tfdml.data.omniglot import ZIP_NAMES as _OMNIGLOT_ZIPS
from tfdml.data.omniglot import omniglot
from tfdml.data.omniglot_tfds import omniglot_tfds
from tfdml.data.rotations import with_rotations
from tfdml.data.tfds_readers import TFDS_SPECS, tfds_dataset
from tfdml.data.validation import hold_out_validation

_TFDS_ALIASES = {
    "cub200": "caltech_birds2011",
    "caltech_birds2011": "caltech_birds2011",
    "cars196": "cars196",
    "sop": "stanford_online_products",
    "stanford_online_products": "stanford_online_products",
}
NAMES = ("digits", "omniglot", "omniglot_tfds", *_TFDS_ALIASES, "folder", "list")


def load(name, *, root=None, split="train", image_size=None, **options):
    """Reads dataset ``name`` (see the module table) and returns its ``split`` as ``LabelledImages``.

    Args:
        name: a name from ``NAMES``.
        root: where the data is: the Omniglot folder, the TFDS ``data_dir``, the image
            folder, or the list file; unused by ``"digits"``. ``"omniglot"`` without ``root``
            reads the two zips shipped with tfdml (offline); with a ``root`` that lacks them it
            warns and reads TFDS (``"omniglot_tfds"``: downloaded once when not prepared; the
            same classes and splits).
        split: ``"train"``, ``"test"`` or ``"all"`` (class-disjoint).
        image_size: resize every image to ``image_size × image_size`` on load (the
            reader's own resize for digits and Omniglot, else
            ``LabelledImages.resized``); ``None`` keeps the stored size (8×8 digits,
            105×105 Omniglot), which is what a resizing ``Augmentation`` wants.
        **options: passed on to the reader (e.g. ``validate``, ``invert``, ``channels``).
    """
    if name == "digits":
        return digits(split=split, image_size=image_size, **options)
    if name == "omniglot":
        if root is None or all((pathlib.Path(root) / zip_name).is_file() for zip_name in _OMNIGLOT_ZIPS):
            return omniglot(root, split=split, image_size=image_size, **options)
        warnings.warn(f"tfdml.data.load('omniglot'): {root} does not hold {_OMNIGLOT_ZIPS}; reading TFDS's omniglot")
        return omniglot_tfds(split=split, image_size=image_size, **options)
    if name == "omniglot_tfds":
        return omniglot_tfds(split=split, image_size=image_size, data_dir=root, **options)
    if name in _TFDS_ALIASES:
        collection = tfds_dataset(_TFDS_ALIASES[name], split=split, data_dir=root, **options)
    elif name not in NAMES:
        raise ValueError(f"tfdml.data.load: unknown dataset {name!r}; expected one of {NAMES}")
    elif root is None:
        raise ValueError(f"tfdml.data.load({name!r}) needs root=")
    else:
        collection = {"folder": image_folder, "list": list_file}[name](root, split=split, **options)
    return collection if image_size is None else collection.resized(image_size)


__all__ = [
    "NAMES",
    "PROTOCOLS",
    "SPLITS",
    "TFDS_SPECS",
    "Augmentation",
    "DataFileError",
    "EncodedImages",
    "LabelledImages",
    "augmentation",
    "digits",
    "hold_out_validation",
    "image_folder",
    "list_file",
    "load",
    "omniglot",
    "omniglot_tfds",
    "tfds_dataset",
    "with_rotations",
]
