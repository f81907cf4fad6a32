"""Label masks over a (queries × keys) distance matrix.

Queries and keys are usually the same batch; a memory bank or a cross-replica
gather can stand in as the keys. ``self_index[i]`` is the key position of query
``i`` (``None``: in-batch, query ``i`` is key ``i``; ``-1`` entries: the query is
not among the keys). Self-pairs are never positives and never negatives.

Example:

>>> labels = tf.constant([0, 0, 1])
>>> positive_mask(labels).numpy().astype(int)
array([[0, 1, 0],
       [1, 0, 0],
       [0, 0, 0]])
"""

from typing import NamedTuple

import numpy as np
import tensorflow as tf

from tfdml.checks import check_label_dtype, exact_integer_bits, inexact_message, is_multi_hot, multi_hot_array


def flatten_labels(labels, who="labels"):
    """int64 labels of shape ``(b,)`` from ``(b,)`` or ``(b, 1)`` (any numeric dtype): every integer id is kept.

    Float labels must hold integers their dtype represents exactly (``|id| < 2**24`` for float32,
    ``2**53`` for float64): fractional or larger values known without running the graph raise a
    ``ValueError`` here; in a graph, :func:`tfdml.checks.labels_are_integral` and
    :func:`tfdml.checks.labels_are_exact` are the runtime checks. String labels raise a ``TypeError``.
    """
    labels = tf.convert_to_tensor(check_label_dtype(labels, who))
    if labels.shape.rank is not None and labels.shape.rank == 2 and labels.shape[1] not in (None, 1):
        raise ValueError(f"{who}: labels must have shape (b,) or (b, 1); got {labels.shape}.")
    if labels.shape.rank is not None and labels.shape.rank > 2:
        raise ValueError(f"{who}: labels must have shape (b,) or (b, 1); got {labels.shape}.")
    if labels.dtype.is_floating:
        known = tf.get_static_value(labels)
        if known is not None:
            fractional = known[~(np.isfinite(known) & (known == np.round(known)))]
            if fractional.size:
                raise ValueError(
                    f"{who}: labels must be integer class ids; got the fractional label {fractional.flat[0]}."
                )
            inexact = known[np.abs(known.astype(np.float64)) >= 2.0 ** exact_integer_bits(labels.dtype)]
            if inexact.size:
                raise ValueError(f"{who}: {inexact_message(labels.dtype)}; got the label {inexact.flat[0]}.")
        labels = tf.round(labels)
    return tf.reshape(tf.cast(labels, tf.int64), [-1])


def self_mask(num_queries, num_keys, self_index=None):
    """Boolean ``(n, m)``: ``True`` where key ``j`` is query ``i`` itself."""
    if self_index is None:
        self_index = tf.range(num_queries)
    return tf.equal(tf.expand_dims(tf.cast(self_index, tf.int32), 1), tf.range(num_keys)[tf.newaxis, :])


def same_label_mask(query_labels, key_labels=None):
    """Boolean ``(n, m)``: ``True`` where labels are equal (self included)."""
    query_labels = flatten_labels(query_labels)
    key_labels = query_labels if key_labels is None else flatten_labels(key_labels)
    return tf.equal(query_labels[:, tf.newaxis], key_labels[tf.newaxis, :])


def positive_mask(query_labels, key_labels=None, self_index=None):
    """Boolean ``(n, m)``: same label and not self."""
    same = same_label_mask(query_labels, key_labels)
    if key_labels is None and self_index is None:
        self_index = tf.range(tf.shape(same)[0])
    if self_index is None:
        return same
    return tf.logical_and(same, tf.logical_not(self_mask(tf.shape(same)[0], tf.shape(same)[1], self_index)))


def negative_mask(query_labels, key_labels=None):
    """Boolean ``(n, m)``: different label (self is never a negative)."""
    return tf.logical_not(same_label_mask(query_labels, key_labels))


class Keys(NamedTuple):
    """Keys that a batch's queries are compared with instead of the batch itself (a cross-batch memory).

    ``embeddings`` ``(m, d)`` and int64 ``labels`` ``(m,)`` of the keys; ``valid`` ``(m,)`` says which
    keys exist (a memory slot not yet filled is not a key: it is neither a positive nor a negative);
    ``self_index`` ``(b,)`` int32 is the key position of query ``i``'s own copy (``-1``: none), a pair
    that is never formed. Losses and miners that take ``keys=`` compare the ``b`` queries with the ``m``
    keys on a ``(b, m)`` rectangle; ``keys=None`` is the batch with itself.
    """

    embeddings: tf.Tensor
    labels: tf.Tensor
    valid: tf.Tensor
    self_index: tf.Tensor


def key_masks(query_labels, keys):
    """Boolean ``(b, m)`` ``(positives, negatives)`` of the queries against :class:`Keys`: same label and
    different label, both among the valid keys, the query's own copy excluded."""
    same = same_label_mask(query_labels, keys.labels)
    exists = tf.logical_and(
        keys.valid[tf.newaxis, :], tf.logical_not(self_mask(tf.shape(same)[0], tf.shape(same)[1], keys.self_index))
    )
    return tf.logical_and(same, exists), tf.logical_and(tf.logical_not(same), exists)


def label_sets(labels, who="labels"):
    """float32 multi-hot label sets ``(b, C)`` of multi-hot ``labels`` ``(b, C)``, ``C >= 2``, or of class ids
    ``(b,)``/``(b, 1)``: ids become the one-hot sets ``(b, b)`` of the batch's own classes (column ``j`` is
    the class of sample ``j`` where ``j`` is its first sample, else empty), a static shape whatever the ids.

    Multi-hot values known without running the graph must be 0 or 1 (a ``ValueError`` naming ``who``);
    in a graph, :func:`tfdml.checks.labels_are_binary` is the runtime check. Ids are checked by
    :func:`flatten_labels`.
    """
    if not is_multi_hot(labels):
        ids = flatten_labels(labels, who)
        same = same_label_mask(ids)
        # Column j names a class only at the class's first sample: no earlier sample shares it.
        earlier = tf.linalg.band_part(tf.cast(same, tf.int32), 0, -1) - tf.linalg.band_part(tf.cast(same, tf.int32), 0, 0)
        first = tf.reduce_sum(earlier, axis=0) == 0
        return tf.cast(same & first[tf.newaxis, :], tf.float32)
    labels = tf.convert_to_tensor(check_label_dtype(labels, who))
    known = tf.get_static_value(labels)
    if known is not None:
        multi_hot_array(known, who)
    return tf.cast(labels, tf.float32)
