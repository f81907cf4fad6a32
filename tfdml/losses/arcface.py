"""ArcFace: softmax over scaled cosines with an additive angular margin on the target class (Deng et al., 2019)."""

import math

import keras
import tensorflow as tf

from tfdml.distances import safe_sqrt
from tfdml.losses.proxies import ClassParametersLoss, cosine_similarity_to_classes
from tfdml.mining.base import check_argument


def arcface_target_cosine(cosine, margin):
    """``cos(θ + m)`` from ``cos θ``, continued as ``cos θ − m·sin m`` where ``θ + m > π``.

    Past ``θ = π − m``, ``cos(θ + m)`` would grow again with ``θ`` and reward moving
    away from the class centre; the continuation (from the authors' code) keeps
    the target logit decreasing in ``θ``. ``sin θ`` uses a square root with a
    finite gradient at ``θ = 0``. ``margin``: a float or a tensor broadcastable to ``cosine``.
    """
    margin = tf.cast(tf.convert_to_tensor(margin, dtype_hint=cosine.dtype), cosine.dtype)
    sine = safe_sqrt(1.0 - tf.square(cosine))
    with_margin = cosine * tf.cos(margin) - sine * tf.sin(margin)
    return tf.where(cosine > -tf.cos(margin), with_margin, cosine - margin * tf.sin(margin))


def arcface_loss(labels, embeddings, centers, margin=0.5, scale=16.0):
    """Mean ArcFace loss of a batch (see :class:`ArcFaceLoss`); any float dtype.

    Args:
        labels: int ``(b,)`` in ``[0, num_classes)``.
        embeddings: ``(b, d)``.
        centers: ``(num_classes, d)``.
        margin: additive angular margin ``m`` in radians.
        scale: ``s``, the radius of the hypersphere the logits live on.
    """
    return arcface_cross_entropy(labels, cosine_similarity_to_classes(embeddings, centers), margin, scale)


def arcface_cross_entropy(labels, cosine, margin, scale):
    """Mean softmax cross-entropy of ``scale·cos`` with the target cosine ``cos θ_i,y_i`` replaced by
    ``cos(θ_i,y_i + margin)`` (:func:`arcface_target_cosine`): ArcFace's loss given the cosines ``(b, C)``
    of each sample to each class (Sub-center ArcFace's: to each class's nearest sub-centre). ``margin`` is a
    float, or a ``(C,)`` tensor of margins per class (Dynamic ArcFace's)."""
    own_class = tf.one_hot(labels, tf.shape(cosine)[1], on_value=True, off_value=False)
    margin = tf.cast(tf.convert_to_tensor(margin, dtype_hint=cosine.dtype), cosine.dtype)
    if margin.shape.rank:
        margin = tf.gather(margin, labels)
    target = arcface_target_cosine(tf.gather(cosine, labels, axis=1, batch_dims=1), margin)
    logits = scale * tf.where(own_class, target[:, tf.newaxis], cosine)
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))


@keras.saving.register_keras_serializable(package="tfdml")
class ArcFaceLoss(ClassParametersLoss):
    """ArcFace loss (Deng et al., "ArcFace: Additive Angular Margin Loss for Deep Face Recognition", CVPR 2019).

    When to use: many classes with several images each (faces, landmarks, re-identification); a classification loss that
    needs no miner and no special batches.

    Each class has a learned centre ``W_c``; ``θ_i,c`` is the angle between the
    embedding ``φ_i`` and ``W_c``. The target angle gets an additive margin
    ``m`` and all cosines are scaled by ``s`` (Roth et al. 2020, supplementary
    A.1, eq. 6):

    ``L = −(1/b) Σ_i log( exp(s·cos(θ_i,y_i + m)) / (exp(s·cos(θ_i,y_i + m)) + Σ_{c ≠ y_i} exp(s·cos θ_i,c)) )``

    As in Deng et al., the denominator runs over all other classes (Roth et al.'s
    eq. 6 as printed sums over the batch's samples of other classes). Where
    ``θ + m > π`` the target logit continues as ``s·(cos θ − m·sin m)`` (see
    :func:`arcface_target_cosine`).

    Defaults (Roth et al. A.1): ``m = 0.5`` rad, ``s = 16``, centre learning rate ``5e-4``.

    Example:

    >>> loss = ArcFaceLoss(num_classes=100, embedding_dim=128, seed=0)
    >>> model = tfdml.training.MetricLearningModel(embedder, loss)
    >>> model.compile(optimizer=keras.optimizers.Adam(1e-5))
    """

    def __init__(
        self,
        num_classes,
        embedding_dim,
        margin=0.5,
        scale=16.0,
        learning_rate=5e-4,
        seed=None,
        name=None,
    ):
        super().__init__(num_classes, embedding_dim, learning_rate, seed=seed, name=name)
        self.margin = check_argument("ArcFaceLoss", "margin", margin, low=0.0, high=math.pi / 2, high_open=True)
        self.scale = check_argument("ArcFaceLoss", "scale", scale, low=0.0, low_open=True)
        self.centers = self.add_class_vectors("centers", (self.num_classes, self.embedding_dim))

    def loss_from_class_vectors(self, labels, embeddings):
        return arcface_loss(labels, embeddings, self.centers, margin=self.margin, scale=self.scale)
