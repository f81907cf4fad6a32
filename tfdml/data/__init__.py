"""Dataset readers with class-disjoint DML splits, and augmentation protocols.

Every reader returns a ``LabelledImages``: int64 class labels (and categories,
``-1`` where unknown) plus a ``load(index)`` that decodes one image inside
``tf.data``: ``load(index) == preprocess(decode(encoded(index)))``, from the image's
original file bytes through the reader's one eval preprocessing, which exported
models run too. ``load(name, ...)`` picks a reader by name from :data:`READERS`, where each
reader module registers its names (so a new dataset is one module of this package):

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
| ``"multi_label_list"``                       | ``multi_label_list_file``| ``path<TAB>label1,label2[<TAB>split]`` file (multi-hot labels) |
| ``"omniglot_pairs"``                         | ``omniglot_pairs``| Omniglot characters overlaid in pairs (multi-hot labels) |
| ``"unlabelled_folder"``                      | ``unlabelled_folder``| ``root/**/*.jpg``, each image its own class |

Example:

>>> train = load("omniglot", split="train", image_size=28)  # the copy shipped with tfdml
>>> batches = train.dataset(batch_size=32, augmentation=Augmentation("base", size=28, seed=0))
"""

import importlib
import pkgutil

from tfdml.data.augment import PROTOCOLS, Augmentation, augmentation
from tfdml.data.base import READERS, SPLITS, DataFileError, EncodedImages, LabelledImages
from tfdml.data.digits import digits
from tfdml.data.folder import image_folder, list_file
from tfdml.data.multi_label import multi_label_list_file, omniglot_pairs
from tfdml.data.omniglot import omniglot
from tfdml.data.omniglot_tfds import omniglot_tfds
from tfdml.data.rotations import with_rotations
from tfdml.data.tfds_readers import TFDS_SPECS, tfds_dataset
from tfdml.data.unlabelled import UNLABELLED_READERS, instance_labels, unlabelled_folder
from tfdml.data.validation import hold_out_validation

# Every module of the package, so each reader module registers its names in READERS, listed here or not.
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


def load(name, *, root=None, split="train", image_size=None, **options):
    """Reads dataset ``name`` (see the module table) and returns its ``split`` as ``LabelledImages``.

    Args:
        name: a name registered in :data:`READERS` (an unknown one is a ``ValueError`` listing them).
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
    return READERS.get(name)(root, split=split, image_size=image_size, **options)


__all__ = [
    "PROTOCOLS",
    "READERS",
    "SPLITS",
    "TFDS_SPECS",
    "UNLABELLED_READERS",
    "Augmentation",
    "DataFileError",
    "EncodedImages",
    "LabelledImages",
    "augmentation",
    "digits",
    "hold_out_validation",
    "instance_labels",
    "image_folder",
    "list_file",
    "multi_label_list_file",
    "load",
    "omniglot",
    "omniglot_pairs",
    "omniglot_tfds",
    "tfds_dataset",
    "unlabelled_folder",
    "with_rotations",
]
