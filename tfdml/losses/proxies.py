"""Shared pieces of the losses that learn parameter vectors per class (proxies, class centres).

ProxyNCA, SoftTriple, Normalized softmax and ArcFace compare each embedding with
learned class vectors instead of with other samples of the batch. They share:

* :class:`ClassParametersLoss`, the base that owns ``num_classes``,
  ``embedding_dim``, the learning rate of the class vectors and their seeded
  initialiser, and checks that every label is in ``[0, num_classes)`` (an error,
  or a NaN loss under XLA, which drops assertions);
* :func:`cosine_similarity_to_classes`, ``x̂_i · ŵ`` between L2-normalised
  embeddings and L2-normalised class vectors.

Example:

>>> x = tf.random.normal((8, 16))
>>> w = tf.random.normal((10, 16))
>>> cosine_similarity_to_classes(x, w).shape
TensorShape([8, 10])
"""

import math

import keras
import tensorflow as tf

from tfdml.losses.base import LossParameters, ParametricDMLLoss
from tfdml.losses.math import nan_unless
from tfdml.checks import ids_in_range
from tfdml.mining.base import check_argument


def cosine_similarity_to_classes(embeddings, class_vectors):
    """``x̂_i · ŵ`` for embeddings ``(b, d)`` and class vectors ``(..., d)``; returns ``(b, ...)``."""
    embeddings = tf.convert_to_tensor(embeddings)
    class_vectors = tf.convert_to_tensor(class_vectors, dtype=embeddings.dtype)
    x_hat = tf.math.l2_normalize(embeddings, axis=-1)
    w_hat = tf.math.l2_normalize(class_vectors, axis=-1)
    dim = tf.shape(class_vectors)[-1]
    similarities = tf.matmul(x_hat, tf.reshape(w_hat, [-1, dim]), transpose_b=True)
    return tf.reshape(similarities, tf.concat([tf.shape(embeddings)[:1], tf.shape(class_vectors)[:-1]], axis=0))


def checked_labels(labels, num_classes, loss_name):
    """``(labels, in_range)``: ``labels`` checked to lie in ``[0, num_classes)`` (the error names the label
    and ``num_classes``), and the scalar bool condition.

    Labels known without running the graph (eager tensors, constants) raise a
    ``ValueError`` at once. Inside ``tf.function`` the returned labels depend on
    an in-graph assertion (:func:`tfdml.checks.ids_in_range`), so a bad label raises
    ``InvalidArgumentError`` before any op indexes with it; XLA drops the assertion,
    so the loss turns NaN where ``in_range`` is false.
    """
    known = tf.get_static_value(labels)
    if known is not None:
        out_of_range = known[(known < 0) | (known >= num_classes)]
        if out_of_range.size:
            raise ValueError(
                f"{loss_name}: label {int(out_of_range[0])} is out of range for num_classes={num_classes}; "
                f"labels must be integers in [0, {num_classes})."
            )
        return labels, tf.constant(True)
    return ids_in_range(labels, num_classes, f"{loss_name}: labels", "num_classes")


class ClassParametersLoss(ParametricDMLLoss):
    """Base of the losses that learn vectors per class, created eagerly in ``self.parameters``.

    Class vectors start from ``U(−1/√d, 1/√d)`` (a linear layer's usual
    initialisation) drawn with ``seed``; they are compared after L2
    normalisation, so only their directions matter.

    Args:
        num_classes: number of training classes; labels must lie in ``[0, num_classes)``.
        embedding_dim: dimension ``d`` of the embeddings (and of the class vectors).
        learning_rate: learning rate of the class vectors (their own optimizer, no weight decay).
        seed: seed of the class vectors' initialiser (``None``: nondeterministic).

    A label outside ``[0, num_classes)`` is an error (eagerly and in a graph) and gives a NaN loss
    under XLA, which drops the assertion (``keras.callbacks.TerminateOnNaN`` stops there).
    """

    data_arguments = ("num_classes", "embedding_dim")

    min_classes = 1

    def __init__(self, num_classes, embedding_dim, learning_rate, seed=None, name=None):
        super().__init__(name=name)
        loss_name = type(self).__name__
        self.num_classes = check_argument(loss_name, "num_classes", num_classes, int, low=self.min_classes)
        self.embedding_dim = check_argument(loss_name, "embedding_dim", embedding_dim, int, low=1)
        self.learning_rate = check_argument(loss_name, "learning_rate", learning_rate, low=0.0, low_open=True)
        self.seed = check_argument(loss_name, "seed", seed, int, optional=True)
        # float32 under any global policy (mixed_float16 included): the loss math runs in float32.
        self.parameters = LossParameters(self.learning_rate, name=f"{self.name}_parameters", dtype="float32")

    def add_class_vectors(self, name, shape):
        """A trainable float32 variable of ``shape`` (ending in ``embedding_dim``) in ``self.parameters``."""
        limit = 1.0 / math.sqrt(self.embedding_dim)
        return self.parameters.add_weight(
            name=name,
            shape=shape,
            initializer=keras.initializers.RandomUniform(-limit, limit, seed=self.seed),
            dtype="float32",
            trainable=True,
        )

    def compute(self, labels, embeddings):
        if embeddings.shape[-1] is not None and embeddings.shape[-1] != self.embedding_dim:
            raise ValueError(
                f"{type(self).__name__}: embeddings have dimension {embeddings.shape[-1]} but the loss was built "
                f"with embedding_dim={self.embedding_dim}."
            )
        labels, in_range = checked_labels(labels, self.num_classes, type(self).__name__)
        return nan_unless(in_range, self.loss_from_class_vectors(labels, embeddings))

    def loss_from_class_vectors(self, labels, embeddings):
        """Scalar loss from labels known to be in range and embeddings of dimension ``embedding_dim``."""
        raise NotImplementedError
