"""Checks of labels and embeddings at tfdml's entries: the one place a bad input is named.

Host-side data (evaluation, few-shot episodes, samplers, the memory bank, the gallery index,
the evaluation callback) is checked value by value and converted on the way:
:func:`label_array` (integer ids: labels, categories, sample indices), :func:`multi_hot_array` (multi-hot label
sets of multi-label data, told from ids by :func:`is_multi_hot`) and :func:`as_embeddings` (a finite float32 matrix). Inside a graph, where values are not known, the losses use the
predicates :func:`labels_are_integral`, :func:`labels_are_exact` (with :func:`inexact_message`) and
:func:`labels_are_binary`
and the in-graph assertion :func:`ids_in_range`; :func:`check_label_dtype` refuses string labels
in both worlds. :func:`tfdml.masks.flatten_labels` converts graph labels behind these checks.

Every error names the culprit (``name``, and the caller ``who`` where given).

Example:

>>> label_array([[0], [1], [1]], count=3)
array([0, 1, 1])
>>> as_embeddings([[0.0, 1.0]], "queries", dim=2, rows="q").dtype
dtype('float32')
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


def label_array(labels, name="labels", *, count=None, who=None, integral_floats=True):
    """An int64 ``(n,)`` NumPy array from ``(n,)`` or ``(n, 1)`` integer ids, or a ``ValueError``.

    For labels, categories and sample indices known on the host: it checks the values
    themselves, which a graph cannot do without a runtime assertion. ``count`` (the number of
    embeddings) fixes ``n``; without it ``n >= 1``. Float ids must hold integers, or are
    refused outright with ``integral_floats=False``. Messages name ``name`` and, when given,
    ``who`` (the caller).
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


def as_embeddings(embeddings, name="embeddings", *, dim=None, count=None, rows="n"):
    """A finite float32 ``(rows, d)`` NumPy array from an array or tensor, or a ``ValueError`` naming ``name``.

    Without ``dim`` or ``count`` at least one row is required. ``dim`` fixes ``d``; then no rows
    is fine (an empty batch of gallery items or queries). ``count`` fixes the number of rows, one
    per entry of what ``rows`` names (``"indices"``: "shape (k, d) for k indices"); otherwise
    ``rows`` names the row count in the message.
    """
    array = np.asarray(embeddings, dtype=np.float32)
    width = "d" if dim is None else dim
    if count is not None:
        if array.ndim != 2 or array.shape[0] != count or (dim is not None and array.shape[1] != dim):
            raise ValueError(f"{name} must have shape ({count}, {width}) for {count} {rows}; got {array.shape}.")
    elif dim is None:
        if array.ndim != 2 or array.shape[0] == 0:
            raise ValueError(f"{name} must have shape ({rows}, d) with {rows} >= 1; got {array.shape}.")
    elif array.ndim != 2 or array.shape[1] != dim:
        raise ValueError(f"{name} must have shape ({rows}, {dim}); got {array.shape}.")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contain NaN or inf values.")
    return array


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


def is_multi_hot(labels):
    """Whether ``labels`` (array or tensor) are label sets: rank 2 with more than one column. ``(n,)`` and
    ``(n, 1)`` are class ids (a one-label multi-hot column is the class ids 0 and 1)."""
    shape = tf.TensorShape(getattr(labels, "shape", np.shape(labels)))
    return shape.rank == 2 and shape[1] is not None and shape[1] > 1


def multi_hot_array(labels, name="labels", *, count=None, who=None):
    """An int64 ``(n, C)`` NumPy array of 0/1 label sets (``C >= 2``), or a ``ValueError`` naming ``name``.

    Row ``i`` holds 1 in column ``c`` when sample ``i`` carries label ``c``; a row of zeros is a
    sample with no label (never relevant to, nor a positive of, any other). ``count`` fixes ``n``.
    """
    prefix = f"{who}: " if who else ""
    array = np.asarray(check_label_dtype(labels, f"{prefix}{name}"))
    if array.ndim != 2 or array.shape[1] < 2 or (count is not None and array.shape[0] != count):
        rows = count if count is not None else "n"
        raise ValueError(f"{prefix}{name} must be multi-hot label sets of shape ({rows}, C), C >= 2; got {array.shape}.")
    if array.size and not np.all((array == 0) | (array == 1)):
        bad = array[(array != 0) & (array != 1)].flat[0]
        raise ValueError(f"{prefix}{name} must be multi-hot (0 or 1 per label); got the value {bad}.")
    return array.astype(np.int64)


def labels_are_binary(labels):
    """Scalar bool tensor: every entry of multi-hot ``labels`` is 0 or 1."""
    labels = tf.convert_to_tensor(labels)
    return tf.reduce_all((labels == tf.zeros_like(labels)) | (labels == tf.ones_like(labels)))
