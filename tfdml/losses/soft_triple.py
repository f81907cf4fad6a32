"""SoftTriple: softmax over classes modelled by several learned centres each (Qian et al., 2019)."""

import keras
import numpy as np
import tensorflow as tf

from tfdml.distances import safe_sqrt
from tfdml.losses.proxies import ClassParametersLoss, cosine_similarity_to_classes
from tfdml.mining.base import check_argument


def soft_triple_class_similarity(embeddings, centers, gamma=0.1):
    """``S_i,c = Σ_k softmax_k(x̂_i·ŵ_c^k / γ) · x̂_i·ŵ_c^k`` for centres ``(C, K, d)``; returns ``(b, C)``."""
    similarities = cosine_similarity_to_classes(embeddings, centers)
    assignment = tf.nn.softmax(similarities / gamma, axis=-1)
    return tf.reduce_sum(assignment * similarities, axis=-1)


def center_spread(centers):
    """``Σ_c Σ_{t<s} ‖ŵ_c^t − ŵ_c^s‖₂ / (C·K·(K−1))`` over the L2-normalised centres ``(C, K, d)``; 0 when K = 1.

    Computed from the centre differences (not ``sqrt(2 − 2 ŵ·ŵ)``) so that nearly
    merged centres keep an accurate, bounded gradient.
    """
    centers = tf.convert_to_tensor(centers)
    num_classes, centers_per_class = centers.shape[0], centers.shape[1]
    if centers_per_class < 2:
        return tf.zeros([], centers.dtype)
    first, second = np.triu_indices(centers_per_class, k=1)
    unit = tf.math.l2_normalize(centers, axis=-1)
    differences = tf.gather(unit, first, axis=1) - tf.gather(unit, second, axis=1)
    distances = safe_sqrt(tf.reduce_sum(tf.square(differences), axis=-1))
    return tf.reduce_sum(distances) / (num_classes * centers_per_class * (centers_per_class - 1))


def soft_triple_loss(labels, embeddings, centers, scale=8.0, gamma=0.1, margin=0.01, tau=0.2):
    """Mean SoftTriple loss of a batch (see :class:`SoftTripleLoss`); any float dtype.

    Args:
        labels: int ``(b,)`` in ``[0, C)``.
        embeddings: ``(b, d)``.
        centers: ``(C, K, d)``, ``K`` centres per class.
        scale, gamma, margin, tau: ``λ``, ``γ``, ``δ``, ``τ`` of the paper.
    """
    embeddings = tf.convert_to_tensor(embeddings)
    centers = tf.convert_to_tensor(centers, dtype=embeddings.dtype)
    class_similarity = soft_triple_class_similarity(embeddings, centers, gamma)
    own_class = tf.one_hot(labels, tf.shape(centers)[0], dtype=class_similarity.dtype)
    logits = scale * (class_similarity - margin * own_class)
    classification = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
    return classification + tau * center_spread(centers)


@keras.saving.register_keras_serializable(package="tfdml")
class SoftTripleLoss(ClassParametersLoss):
    """SoftTriple loss (Qian et al., "SoftTriple Loss: Deep Metric Learning Without Triplet Sampling", ICCV 2019).

    When to use: classes with several modes (K centres per class) and no miner; memory grows with classes × K.

    Each class ``c`` has ``K`` learned centres ``w_c^k``. With L2-normalised
    ``x̂_i`` and ``ŵ_c^k`` (Roth et al. 2020, supplementary A.1, eqs. 16–18):

    ``S_i,c = Σ_k [exp(x̂_i·ŵ_c^k / γ) / Σ_k' exp(x̂_i·ŵ_c^k' / γ)] · x̂_i·ŵ_c^k``

    ``L = −(1/b) Σ_i log( exp(λ(S_i,y_i − δ)) / (exp(λ(S_i,y_i − δ)) + Σ_{c ≠ y_i} exp(λ S_i,c)) )
    + τ · Σ_c Σ_{t<s} ‖ŵ_c^t − ŵ_c^s‖₂ / (C·K·(K−1))``

    The second term pulls the centres of a class together, so that redundant
    centres merge. Both terms follow Qian et al.: Roth et al.'s eq. 16 as printed
    drops the factor ``x̂_i·ŵ_c^k`` (leaving a sum of softmax weights, always 1),
    and their eq. 18 counts each pair of centres twice.

    Defaults (Roth et al. A.1): ``τ = 0.2``, ``λ = 8``, ``δ = 0.01``, ``γ = 0.1``,
    ``K = 2`` centres per class, centre learning rate ``1e-5``.

    Example:

    >>> loss = SoftTripleLoss(num_classes=100, embedding_dim=128, seed=0)
    >>> loss.centers.shape
    TensorShape([100, 2, 128])
    >>> model = tfdml.training.MetricLearningModel(embedder, loss)
    """

    def __init__(
        self,
        num_classes,
        embedding_dim,
        centers_per_class=2,
        scale=8.0,
        gamma=0.1,
        margin=0.01,
        tau=0.2,
        learning_rate=1e-5,
        seed=None,
        name=None,
    ):
        super().__init__(num_classes, embedding_dim, learning_rate, seed=seed, name=name)
        self.centers_per_class = check_argument("SoftTripleLoss", "centers_per_class", centers_per_class, int, low=1)
        self.scale = check_argument("SoftTripleLoss", "scale", scale, low=0.0, low_open=True)
        self.gamma = check_argument("SoftTripleLoss", "gamma", gamma, low=0.0, low_open=True)
        self.margin = check_argument("SoftTripleLoss", "margin", margin, low=0.0)
        self.tau = check_argument("SoftTripleLoss", "tau", tau, low=0.0)
        self.centers = self.add_class_vectors("centers", (self.num_classes, self.centers_per_class, self.embedding_dim))

    def loss_from_class_vectors(self, labels, embeddings):
        return soft_triple_loss(
            labels, embeddings, self.centers, scale=self.scale, gamma=self.gamma, margin=self.margin, tau=self.tau
        )
