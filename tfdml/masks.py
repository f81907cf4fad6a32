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

# Mantissa bits (the implicit one included) of each float dtype: it holds every integer of magnitude below
# 2**bits, and no longer tells 2**bits from 2**bits + 1 (Keras hands losses y_true as float32: 2**24).
_EXACT_INTEGER_BITS = {tf.float16: 11, tf.bfloat16: 8, tf.float32: 24, tf.float64: 53}


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
    """int64 labels of shape ``(b,)`` from ``(b,)`` or ``(b, 1)`` (any numeric dtype): every integer id is kept.

    Float labels must hold integers their dtype represents exactly (``|id| < 2**24`` for float32,
    ``2**53`` for float64): fractional or larger values known without running the graph raise a
    ``ValueError`` here; in a graph, :func:`labels_are_integral` and :func:`labels_are_exact` are
    the runtime checks. String labels raise a ``TypeError``.
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
    if array.dtype.kind in "uf" and array.size and np.max(np.abs(array)) >= 2**63:  # would wrap in int64
        raise ValueError(f"{prefix}{name} must fit in int64; got {np.max(np.abs(array))}.")
    return array.astype(np.int64)


def labels_are_integral(labels):
    """Scalar bool tensor: every label holds an integer (always true for integer dtypes)."""
    labels = tf.convert_to_tensor(labels)
    if not labels.dtype.is_floating:
        return tf.constant(True)
    return tf.reduce_all(tf.equal(labels, tf.round(labels)))


def exact_integer_bits(dtype):
    """``p`` such that float ``dtype`` holds exactly the integers of magnitude below ``2**p``."""
    return _EXACT_INTEGER_BITS[tf.as_dtype(dtype)]


def inexact_message(dtype):
    """Why float labels of ``dtype`` at or above ``2**p`` are refused, and what to pass instead."""
    bits = exact_integer_bits(dtype)
    return (
        f"{tf.as_dtype(dtype).name} labels hold class ids exactly only below 2**{bits} = {2**bits} in magnitude "
        "(ids beyond it merge); pass integer labels (int32 or int64; Keras casts float64 NumPy labels to float32)"
    )


def labels_are_exact(labels):
    """Scalar bool tensor: every float label is below ``2**p`` in magnitude, where its dtype still tells
    neighbouring integers apart (always true for integer dtypes, which hold every id they store)."""
    labels = tf.convert_to_tensor(labels)
    if not labels.dtype.is_floating:
        return tf.constant(True)
    return tf.reduce_all(tf.abs(labels) < 2.0 ** exact_integer_bits(labels.dtype))


def ids_in_range(ids, bound, who, bound_name, what="label"):
    """``(ids, in_range)``: integer ``ids`` behind an in-graph assertion that each lies in ``[0, bound)``
    (its message names ``who``, ``bound_name``, ``bound`` and an offending id), and the scalar bool condition.

    XLA (``jit_compile=True``) drops assertions and clamps out-of-range gathers, so a caller that
    indexes a table with ``ids`` must also turn its result to NaN where ``in_range`` is false.
    """
    largest, smallest = tf.reduce_max(ids), tf.reduce_min(ids)
    in_range = tf.logical_and(smallest >= 0, largest < bound)
    check = tf.debugging.Assert(
        in_range,
        [
            f"{who} must be integers in [0, {bound_name}={bound}); out-of-range {what}:",
            tf.where(largest >= bound, largest, smallest),
        ],
    )
    with tf.control_dependencies([check]):
        return tf.identity(ids), in_range


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
