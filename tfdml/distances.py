"""Pairwise distances between two sets of embeddings: tfdml's lowest layer.

Every function takes ``x`` of shape ``(n, d)`` and optionally ``y`` of shape
``(m, d)`` (``y=None`` means ``y = x``) and returns an ``(n, m)`` matrix. All are
differentiable everywhere, including at zero distance: the Euclidean distance
uses a masked square root whose gradient at ``0`` is ``0`` (the subgradient of
``|x - y|`` at ``x == y``), so identical embeddings never produce NaN or inf.

Example:

>>> x = tf.random.normal((8, 128))
>>> tfdml.distances.euclidean(x).shape
TensorShape([8, 8])
>>> tfdml.distances.pairwise_distance(x, metric="cosine").shape
TensorShape([8, 8])

The pair and tuple losses take one ``distance=`` choice from :data:`DISTANCES` (a string, so it
serialises as it is): :func:`check_distance` validates it and :func:`pairwise_comparison` gives
the matrix with its direction, a distance (larger = farther) or a similarity (larger = closer).

>>> matrix, sign = tfdml.distances.pairwise_comparison(x, distance="cosine")   # sign −1: a similarity
"""

from typing import NamedTuple

import tensorflow as tf

METRICS = ("euclidean", "squared_euclidean", "cosine")

# The losses' ``distance=`` choices; the last two are similarities (pytorch-metric-learning's ``is_inverted``).
DISTANCES = ("euclidean", "squared_euclidean", "cosine", "dot")
SIMILARITIES = ("cosine", "dot")


def squared_distances_are_finite(x):
    """Scalar bool: every entry of ``x`` ``(n, d)`` is finite and so is every squared distance between its rows.

    ``‖x_i − x_j‖² <= 4 max_k ‖x_k‖²``, so finite ``4‖x_k‖²`` bounds every squared distance, Gram entry
    and squared norm the functions here (and ``tf.math.l2_normalize``) form. Past it (``‖x‖ ≳ 9e18`` in
    float32) they overflow: TensorFlow's ``maximum`` then clamps the NaN of ``inf − inf`` to 0 while XLA
    keeps it, so losses treat such embeddings as non-finite (a NaN loss) in every mode.
    """
    x = tf.convert_to_tensor(x)
    return tf.reduce_all(tf.math.is_finite(4.0 * tf.reduce_sum(tf.square(x), axis=-1)))


def squared_euclidean(x, y=None):
    """``D²_ij = ‖x_i − y_j‖²``, clamped at 0 against rounding.

    Computed as ``‖x‖² − 2xyᵀ + ‖y‖²`` (one matmul, no ``(n, m, d)`` tensor).
    With ``y=None`` the diagonal is exactly 0.
    """
    x = tf.convert_to_tensor(x)
    same = y is None
    y = x if same else tf.convert_to_tensor(y, dtype=x.dtype)
    x_sq = tf.reduce_sum(tf.square(x), axis=1, keepdims=True)
    y_sq = tf.reduce_sum(tf.square(y), axis=1, keepdims=True)
    d2 = x_sq - 2.0 * tf.matmul(x, y, transpose_b=True) + tf.transpose(y_sq)
    d2 = tf.maximum(d2, 0.0)
    if same:
        d2 = tf.linalg.set_diag(d2, tf.zeros(tf.shape(d2)[0], dtype=d2.dtype))
    return d2


def safe_sqrt(d2):
    """``sqrt`` whose value and gradient are 0 where ``d2 <= 0`` (never NaN/inf)."""
    positive = d2 > 0.0
    return tf.where(positive, tf.sqrt(tf.where(positive, d2, tf.ones_like(d2))), 0.0)


def euclidean(x, y=None):
    """``D_ij = ‖x_i − y_j‖₂`` with a finite gradient at ``D_ij = 0``."""
    return safe_sqrt(squared_euclidean(x, y))


def cosine_similarity(x, y=None):
    """Cosine similarity ``x̂_i·ŷ_j`` (``x̂`` the L2-normalised rows), in ``[−1, 1]``."""
    x = tf.convert_to_tensor(x)
    x_hat = tf.math.l2_normalize(x, axis=1)
    y_hat = x_hat if y is None else tf.math.l2_normalize(tf.convert_to_tensor(y, dtype=x.dtype), axis=1)
    return tf.matmul(x_hat, y_hat, transpose_b=True)


def cosine(x, y=None):
    """Cosine distance ``1 − x̂_i·ŷ_j`` (:func:`cosine_similarity`), in ``[0, 2]``."""
    return 1.0 - cosine_similarity(x, y)


def pairwise_distance(x, y=None, metric="euclidean"):
    """Dispatch on ``metric`` in ``("euclidean", "squared_euclidean", "cosine")``."""
    if metric == "euclidean":
        return euclidean(x, y)
    if metric == "squared_euclidean":
        return squared_euclidean(x, y)
    if metric == "cosine":
        return cosine(x, y)
    raise ValueError(f"Unknown distance metric {metric!r}; expected one of {METRICS}.")


class Comparison(NamedTuple):
    """An ``(n, m)`` comparison ``matrix`` and its direction ``sign``: ``+1.0`` for a distance (larger =
    farther), ``−1.0`` for a similarity (larger = closer). ``sign · (a − b) > 0`` says ``a`` is the
    farther of two entries, so ``sign · (M_ij − t)`` is how far pair ``ij`` lies beyond a threshold ``t``
    on the far side (pytorch-metric-learning's ``distance.margin(M_ij, t)``)."""

    matrix: tf.Tensor
    sign: float


def check_distance(owner, distance, allowed=DISTANCES):
    """``distance`` if it is one of ``allowed`` (default :data:`DISTANCES`), else a ``ValueError`` naming
    ``owner`` and the argument.

    >>> check_distance("TripletLoss", "cosine")
    'cosine'
    """
    if not isinstance(distance, str) or distance not in allowed:
        raise ValueError(f"{owner}: distance must be one of {allowed}; got {distance!r}.")
    return distance


def pairwise_comparison(x, y=None, distance="euclidean"):
    """:class:`Comparison` of ``x`` ``(n, d)`` with ``y`` ``(m, d)`` (``y=None``: ``y = x``) under ``distance``:

    - ``"euclidean"``: ``‖x_i − y_j‖₂`` and ``"squared_euclidean"``: ``‖x_i − y_j‖²``, distances of the
      embeddings as given;
    - ``"cosine"``: ``x̂_i·ŷ_j`` of the L2-normalised rows, and ``"dot"``: ``x_i·y_j`` of the rows as given,
      similarities (``sign = −1``).
    """
    check_distance("pairwise_comparison", distance)
    if distance == "cosine":
        return Comparison(cosine_similarity(x, y), -1.0)
    if distance == "dot":
        x = tf.convert_to_tensor(x)
        y = x if y is None else tf.convert_to_tensor(y, dtype=x.dtype)
        return Comparison(tf.matmul(x, y, transpose_b=True), -1.0)
    return Comparison(pairwise_distance(x, y, metric=distance), 1.0)
