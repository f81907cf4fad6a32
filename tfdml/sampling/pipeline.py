"""From a sampler's index batches to ``tf.data`` batches of decoded, preprocessed images."""

import numpy as np
import tensorflow as tf


def _elements(data, indices, preprocess, with_index=False, with_categories=False, seed_offset=0):
    """``(image float32, label or index[, category])`` per index, loaded in a parallel, ordered map.

    A random augmentation draws the ``i``-th image's seed from position ``seed_offset + i`` of
    its seed stream, so a stream started mid-run augments as the full stream would have.
    """
    labels = tf.constant(data.labels, tf.int64)
    categories = tf.constant(data.categories if data.categories is not None else np.full(len(data), -1), tf.int64)

    def element(index):
        image = tf.cast(data.load(index), tf.float32)
        second = index if with_index else tf.gather(labels, index)
        return (image, second, tf.gather(categories, index)) if with_categories else (image, second)

    elements = indices.map(element, num_parallel_calls=tf.data.AUTOTUNE)
    if preprocess is None:
        return elements
    if getattr(preprocess, "is_random", False):
        seeds = preprocess.seeds().skip(seed_offset)
        return tf.data.Dataset.zip(elements, seeds).map(
            lambda element, seed: (preprocess(element[0], seed), *element[1:]), num_parallel_calls=tf.data.AUTOTUNE
        )
    if hasattr(preprocess, "apply"):
        return preprocess.apply(elements)
    return elements.map(lambda image, *rest: (preprocess(image), *rest), num_parallel_calls=tf.data.AUTOTUNE)


def batches(data, sampler, *, preprocess=None, epochs=None, initial_epoch=0, start=0, with_categories=False):
    """``tf.data.Dataset`` of ``(images, labels)`` batches in the order ``sampler`` plans them.

    Images are loaded with ``data.load`` in a parallel, order-preserving map (``AUTOTUNE``),
    cast to float32 (values stay in the reader's range, [0, 255]) and preprocessed one at
    a time; batches are prefetched. With ``epochs=None`` the dataset never ends: give
    ``keras.Model.fit`` ``steps_per_epoch=sampler.batches_per_epoch``.

    Args:
        data: a ``tfdml.data.LabelledImages``.
        sampler: a ``tfdml.sampling`` sampler built from ``data.labels`` (and ``data.categories``).
        preprocess: optional per-image transform: a ``tfdml.data.Augmentation`` (or any object
            with ``apply(dataset)``; its per-image seeds make the batches reproducible), or a
            callable ``image -> image`` traceable by ``tf.data``.
        epochs: number of sampler epochs (``None``: forever).
        initial_epoch: first epoch to plan (to resume with the same batches).
        start: number of batches of the stream to skip (a run resumed after ``e`` Keras epochs of
            ``s`` steps starts at ``e * s``): the batches and the augmentation seeds continue
            where the uninterrupted stream would be, without loading the skipped images.
        with_categories: also yield the batch's categories (``-1`` = unknown).

    Returns:
        ``(images (b, h, w, c) float32, labels (b,) int64)``, or with ``with_categories``
        ``(images, labels, categories (b,) int64)``.

    Example:

    >>> data = tfdml.data.load("omniglot", split="train", image_size=28)
    >>> sampler = tfdml.sampling.SPCSampler(data.labels, batch_size=64, samples_per_class=4)
    >>> augment = tfdml.data.Augmentation("base", size=28, seed=0)
    >>> images, labels = next(iter(tfdml.sampling.batches(data, sampler, preprocess=augment)))
    """
    if not np.array_equal(np.asarray(data.labels), sampler.labels):
        raise ValueError(
            f"batches: the sampler was built from other labels than those of {data.name!r}"
            f" ({sampler.num_samples} sampler labels, {len(data)} in the data)."
        )
    skipped_epochs, offset = divmod(int(start), sampler.batches_per_epoch)
    if epochs is not None:
        epochs -= skipped_epochs
    indices = sampler.index_dataset(epochs=epochs, initial_epoch=initial_epoch + skipped_epochs).skip(offset).unbatch()
    return (
        _elements(data, indices, preprocess, with_categories=with_categories, seed_offset=start * sampler.batch_size)
        .batch(sampler.batch_size, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )


def indexed_batches(data, batch_size, *, preprocess=None):
    """Every image of ``data`` once, in index order, as ``(images, indices)`` batches.

    The input of :class:`~tfdml.sampling.MemoryBankRefresh`; the last batch may be smaller.

    Args:
        data: a ``tfdml.data.LabelledImages``.
        batch_size: images per batch.
        preprocess: optional per-image transform, as in :func:`batches` (e.g. the ``"eval"``
            protocol).

    Example:

    >>> refresh = MemoryBankRefresh(bank, indexed_batches(data, 256))
    """
    indices = tf.data.Dataset.range(len(data))
    return _elements(data, indices, preprocess, with_index=True).batch(batch_size).prefetch(tf.data.AUTOTUNE)
