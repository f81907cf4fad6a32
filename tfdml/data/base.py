"""The in-memory description of a labelled image collection that every reader returns.

Samplers (``tfdml.sampling``) work on the label arrays alone and emit batches of
indices; ``load`` turns an index into an image inside a ``tf.data`` map, so a
reader never has to hold decoded images in memory.

Every reader loads through an ``EncodedImages``: ``load(index) ==
preprocess(decode(encoded(index)))``, where ``encoded`` gives the image's original
file bytes, ``decode`` is :func:`tfdml.data.images.decode` with the reader's channel
count and ``preprocess`` is the reader's one definition of its pixel transforms
(inversion, scaling, resizing). Evaluation, the gallery of a retrieval export and
both signatures of an exported model use that same ``preprocess``, so a served
model sees the pixels it was evaluated on.
"""

import dataclasses
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from tfdml.data import images
from tfdml.registry import Registry

SPLITS = ("train", "test", "all")

#: Dataset readers by name, for :func:`tfdml.data.load` and recipe validation. Each reader module
#: registers ``reader(root, *, split, image_size, **options) -> LabelledImages`` under its names;
#: ``image_size=None`` keeps the stored size.
READERS = Registry("dataset")


class DataFileError(OSError):
    """A dataset file that is missing or unreadable (truncated, corrupt); the message names the file
    and what to do instead."""


def _unchanged(image):
    return image


@dataclasses.dataclass(frozen=True)
class EncodedImages:
    """A ``load`` function made of the original files and one preprocessing function.

    Attributes:
        encoded: ``index (int64 scalar) -> scalar string``, the image's original file bytes.
        channels: decoded channel count (1 or 3), see :func:`tfdml.data.images.decode`.
        preprocess: ``decoded uint8 image (h0, w0, channels) -> image (h, w, c)`` (uint8 or float32
            in [0, 255]): the reader's pixel transforms; traceable, so it can run in ``tf.data``
            and inside an exported signature.
    """

    encoded: Callable[[tf.Tensor], tf.Tensor]
    channels: int
    preprocess: Callable[[tf.Tensor], tf.Tensor] = _unchanged

    def decode(self, encoded):
        return images.decode(encoded, self.channels)

    def __call__(self, index):
        return self.preprocess(self.decode(self.encoded(index)))


@dataclasses.dataclass
class LabelledImages:
    """A labelled image collection with random access by index.

    Attributes:
        name: human-readable name (e.g. ``"omniglot/train"``), used in messages.
        labels: int64 ``(n,)`` class label of each image, or int64 multi-hot label sets ``(n, C)`` for
            multi-label data (:mod:`tfdml.data.multi_label`).
        load: ``index (int64 scalar tensor) -> image (h, w, c) tensor`` (uint8 or float32 in [0, 255]);
            must be traceable by ``tf.data.Dataset.map``. Readers give an ``EncodedImages``, which
            adds ``encoded``, ``decode`` and ``preprocess``; a plain function (in-memory images)
            has no original files and cannot be exported with its preprocessing.
        categories: optional int64 ``(n,)`` category (super-class) of each image, ``-1`` where unknown.
        class_names / category_names: optional names indexed by label / category id.
        skipped: names (paths or archive members) of the images the reader dropped because
            they could not be decoded; ``len(skipped)`` is the count.
    """

    name: str
    labels: np.ndarray
    load: Callable[[tf.Tensor], tf.Tensor]
    categories: Optional[np.ndarray] = None
    class_names: Optional[list] = None
    category_names: Optional[list] = None
    skipped: tuple = ()

    def __len__(self):
        return int(self.labels.shape[0])

    @property
    def multi_label(self):
        """Whether ``labels`` are multi-hot label sets ``(n, C)`` rather than class ids ``(n,)``."""
        return np.ndim(self.labels) == 2

    def class_counts(self):
        """int64 images per class id ``0..max`` (``np.bincount``), or per label column of multi-hot label sets."""
        return self.labels.sum(axis=0) if self.multi_label else np.bincount(self.labels)

    @property
    def num_classes(self):
        """Distinct classes, or labels carried by at least one image of multi-hot label sets."""
        return int(np.count_nonzero(self.class_counts()))

    @property
    def has_files(self):
        """Whether the images come from original files (``encoded``, ``decode``, ``preprocess``)."""
        return isinstance(self.load, EncodedImages)

    @property
    def encoded(self):
        """``index -> scalar string``: the original file bytes of image ``index``."""
        return self._files("encoded").encoded

    @property
    def channels(self):
        return self._files("channels").channels

    @property
    def decode(self):
        """``encoded bytes -> uint8 (h0, w0, channels)``, as ``load`` decodes them."""
        return self._files("decode").decode

    @property
    def preprocess(self):
        """The eval preprocessing of a decoded image: ``load(i) == preprocess(decode(encoded(i)))``."""
        return self._files("preprocess").preprocess

    def subset(self, indices, name):
        """The images at ``indices`` (in that order), keeping label and category ids."""
        indices = np.asarray(indices, dtype=np.int64)
        table = tf.constant(indices)
        if self.has_files:
            load = dataclasses.replace(self.load, encoded=_through(table, self.load.encoded))
        else:
            load = _through(table, self.load)
        return dataclasses.replace(
            self,
            name=name,
            labels=self.labels[indices],
            load=load,
            categories=None if self.categories is None else self.categories[indices],
        )

    def preprocessed(self, transform):
        """The same images with ``transform`` (image -> image, traceable) applied after the preprocessing."""
        if self.has_files:
            preprocess = self.load.preprocess
            return self.with_preprocess(lambda image: transform(preprocess(image)))
        stored_load = self.load
        return dataclasses.replace(self, load=lambda index: transform(stored_load(index)))

    def with_preprocess(self, preprocess):
        """The same files decoded as before but preprocessed by ``preprocess`` instead (e.g. a gallery
        folder given the training data's eval preprocessing)."""
        return dataclasses.replace(self, load=dataclasses.replace(self._files("with_preprocess"), preprocess=preprocess))

    def resized(self, image_size):
        """The same images resized on load to ``image_size × image_size`` (bilinear, antialiased, float32).

        For fixed-size inputs without augmentation; a resizing ``Augmentation`` is cheaper
        on the images as stored.
        """
        if not isinstance(image_size, int) or image_size < 1:
            raise ValueError(f"{self.name}: image_size must be a positive int, got {image_size!r}")
        return self.preprocessed(lambda image: tf.image.resize(image, [image_size, image_size], antialias=True))

    def resized_to(self, image_size):
        """:meth:`resized`, or the images as stored for ``image_size=None``."""
        return self if image_size is None else self.resized(image_size)

    def _files(self, attribute):
        if not self.has_files:
            raise TypeError(
                f"{self.name}: LabelledImages.{attribute} needs a reader's EncodedImages loader; this collection "
                "was built from a load function and has no original files."
            )
        return self.load

    def map_indices(self, indices, augmentation=None, with_categories=False):
        """Maps a dataset of scalar int64 indices to ``(image, label[, category])`` elements.

        Images are loaded and augmented (``augmentation``: a
        ``tfdml.data.augment.Augmentation``) in one parallel, deterministic map; the
        per-image stateless seeds replay exactly for a fixed ``augmentation.seed``
        and change every epoch.
        """
        labels = tf.constant(self.labels, dtype=tf.int64)
        categories = tf.constant(self._categories_or_unknown(), dtype=tf.int64)

        def element(index, seed=None):
            image = self.load(index) if augmentation is None else augmentation(self.load(index), seed)
            label = tf.gather(labels, index)
            return (image, label, tf.gather(categories, index)) if with_categories else (image, label)

        if augmentation is not None and augmentation.is_random:
            indices = tf.data.Dataset.zip(indices, augmentation.seeds())
        return indices.map(element, num_parallel_calls=tf.data.AUTOTUNE)

    def dataset(self, *, batch_size=None, augmentation=None, shuffle=False, seed=None, cache=False,
                with_categories=False):
        """Every image once, as ``(image, label[, category])``, e.g. for evaluation.

        Args:
            batch_size: batch the elements (images must then share a shape, i.e. an
                ``augmentation`` or same-size images); ``None`` keeps single images.
            augmentation: optional ``Augmentation`` applied to each image.
            shuffle: shuffle the image order each epoch (seeded by ``seed``).
            cache: keep the decoded images in memory after the first epoch (before
                augmentation, so random augmentations still change every epoch).
            with_categories: also yield each image's category (``-1`` where unknown).
        """
        indices = tf.data.Dataset.range(len(self))
        if cache:
            # Cache in index order, then shuffle the cached images, so the order still changes per epoch.
            images = self.map_indices(indices, with_categories=with_categories).cache()
            if shuffle:
                images = images.shuffle(len(self), seed=seed, reshuffle_each_iteration=True)
            if augmentation is not None:
                images = augmentation.apply(images)
        else:
            if shuffle:
                indices = indices.shuffle(len(self), seed=seed, reshuffle_each_iteration=True)
            images = self.map_indices(indices, augmentation, with_categories)
        if batch_size is not None:
            images = images.batch(batch_size)
        return images.prefetch(tf.data.AUTOTUNE)

    def _categories_or_unknown(self):
        if self.categories is None:
            return np.full(len(self), -1, dtype=np.int64)
        return self.categories


def _through(indices, index_fn):
    """``index_fn`` composed with a lookup in the int64 tensor ``indices``."""
    return lambda index: index_fn(tf.gather(indices, index))


def class_disjoint_split(labels, split, first_test_label, name):
    """Indices of the images of ``split``: ``"train"`` = labels below ``first_test_label``,
    ``"test"`` = the rest, ``"all"`` = every image."""
    if split not in SPLITS:
        raise ValueError(f"{name}: split must be one of {SPLITS}, got {split!r}")
    if split == "all":
        return np.arange(len(labels))
    in_train = np.asarray(labels) < first_test_label
    return np.flatnonzero(in_train if split == "train" else ~in_train)
