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

import tensorflow as tf


def flatten_labels(labels):
    """Integer labels of shape ``(b,)`` from ``(b,)`` or ``(b, 1)`` (any numeric dtype)."""
    labels = tf.convert_to_tensor(labels)
    if labels.shape.rank is not None and labels.shape.rank == 2 and labels.shape[1] not in (None, 1):
        raise ValueError(f"labels must have shape (b,) or (b, 1); got {labels.shape}.")
    if labels.shape.rank is not None and labels.shape.rank > 2:
        raise ValueError(f"labels must have shape (b,) or (b, 1); got {labels.shape}.")
    if not labels.dtype.is_integer:
        labels = tf.cast(tf.round(tf.cast(labels, tf.float64)), tf.int64)
    return tf.reshape(tf.cast(labels, tf.int32), [-1])


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
