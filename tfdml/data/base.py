"""The in-memory description of a labelled image collection that every reader returns.

Samplers (``tfdml.sampling``) work on the label arrays alone and emit batches of
indices; ``load`` turns an index into an image inside a ``tf.data`` map, so a
reader never has to hold decoded images in memory.
"""

import dataclasses
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

SPLITS = ("train", "test", "all")


@dataclasses.dataclass
class LabelledImages:
    """A labelled image collection with random access by index.

    Attributes:
        name: human-readable name (e.g. ``"omniglot/train"``), used in messages.
        labels: int64 ``(n,)`` class label of each image.
        load: ``index (int64 scalar tensor) -> image (h, w, c) tensor`` (uint8 or float32 in [0, 255]);
            must be traceable by ``tf.data.Dataset.map``.
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

    def subset(self, indices, name):
        """The images at ``indices`` (in that order), keeping label and category ids."""
        indices = np.asarray(indices, dtype=np.int64)
        table = tf.constant(indices)
        return dataclasses.replace(
            self,
            name=name,
            labels=self.labels[indices],
            load=_through(table, self.load),
            categories=None if self.categories is None else self.categories[indices],
        )

    def resized(self, image_size):
        """The same images resized on load to ``image_size × image_size`` (bilinear, antialiased, float32).

        For fixed-size inputs without augmentation; a resizing ``Augmentation`` is cheaper
        on the images as stored.
        """
        if not isinstance(image_size, int) or image_size < 1:
            raise ValueError(f"{self.name}: image_size must be a positive int, got {image_size!r}")
        stored_load = self.load

        def load(index):
            return tf.image.resize(stored_load(index), [image_size, image_size], antialias=True)

        return dataclasses.replace(self, load=load)

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
