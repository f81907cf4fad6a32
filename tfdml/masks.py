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

import numpy as np
import tensorflow as tf


def check_label_dtype(labels, who="labels"):
    """Raise a ``TypeError`` naming ``who`` for string (or other non-numeric) labels; returns ``labels``."""
    dtype = getattr(labels, "dtype", None)
    if dtype is None:
        dtype = np.asarray(labels).dtype
    try:
        tf_dtype = tf.as_dtype(dtype)
    except TypeError:  # NumPy unicode/object arrays have no TensorFlow dtype
        tf_dtype = tf.string
    if not (tf_dtype.is_integer or tf_dtype.is_floating or tf_dtype == tf.bool):
        raise TypeError(
            f"{who}: labels must be integer class ids; got labels of dtype {dtype}. "
            "Map class names to integers first (e.g. with a tf.keras.layers.StringLookup)."
        )
    return labels


def flatten_labels(labels, who="labels"):
    """Integer labels of shape ``(b,)`` from ``(b,)`` or ``(b, 1)`` (any numeric dtype).

    Float labels must hold integers (Keras passes ``y_true`` to losses as float32):
    fractional values known without running the graph raise a ``ValueError`` here; in a
    graph, :func:`labels_are_integral` is the runtime check. String labels raise a ``TypeError``.
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
        labels = tf.round(labels)
    return tf.reshape(tf.cast(labels, tf.int32), [-1])


def label_array(labels, name="labels", *, count=None, who=None, integral_floats=True):
    """An int64 ``(n,)`` NumPy array from ``(n,)`` or ``(n, 1)`` labels, or a ``ValueError``.

    The NumPy counterpart of :func:`flatten_labels` for data known on the host (evaluation,
    samplers, the gallery index): it checks the values themselves, which a graph cannot do
    without a runtime assertion. ``count`` (the number of embeddings) fixes ``n``; without it
    ``n >= 1``. Float labels must hold integers, or are refused outright with
    ``integral_floats=False``. Messages name ``name`` and, when given, ``who`` (the caller).
    """
    prefix = f"{who}: " if who else ""
    array = np.asarray(labels)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if count is not None:
        if array.ndim != 1 or array.shape[0] != count:
            raise ValueError(f"{prefix}{name} must have shape ({count},) to match the embeddings; got {np.shape(labels)}.")
    elif array.ndim != 1 or array.size == 0:
        raise ValueError(f"{prefix}{name} must be a non-empty 1-D array; got shape {array.shape}.")
    if not np.issubdtype(array.dtype, np.integer):
        if not integral_floats or array.dtype.kind not in "fb":
            raise ValueError(f"{prefix}{name} must hold integers; got dtype {array.dtype}.")
        if not np.all(np.equal(np.round(array), array)):
            raise ValueError(f"{prefix}{name} must be integer class ids; got non-integer values.")
    return array.astype(np.int64)


def labels_are_integral(labels):
    """Scalar bool tensor: every label holds an integer (always true for integer dtypes)."""
    labels = tf.convert_to_tensor(labels)
    if not labels.dtype.is_floating:
        return tf.constant(True)
    return tf.reduce_all(tf.equal(labels, tf.round(labels)))


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
