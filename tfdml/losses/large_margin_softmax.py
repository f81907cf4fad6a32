"""L-Softmax (Liu et al., 2016) and SphereFace's A-Softmax (Liu et al., 2017): softmax cross-entropy with a
multiplicative angular margin on the target class, ``cos θ`` replaced by ``ψ(θ) = (−1)^k cos(mθ) − 2k``."""

import math

import keras
import numpy as np
import tensorflow as tf

from tfdml.distances import safe_sqrt
from tfdml.losses.proxies import ClassParametersLoss, cosine_similarity_to_classes
from tfdml.mining.base import check_argument


def large_margin_target_cosine(cosine, margin):
    """``ψ(θ) = (−1)^k cos(mθ) − 2k`` for ``θ = arccos(cosine) ∈ [kπ/m, (k+1)π/m]`` (Liu et al. 2016, eq. 6).

    ``cos(mθ)`` is the Chebyshev polynomial ``T_m(cos θ)`` (the multiple-angle formula, eq. 7), so its
    gradient needs no ``arccos``; ``k`` is piecewise constant and takes no gradient. ``ψ`` is continuous
    and decreasing in ``θ`` on ``[0, π]``, from 1 to ``1 − 2m``.
    """
    coefficients = np.polynomial.chebyshev.cheb2poly([0.0] * margin + [1.0])  # T_m, lowest degree first
    cos_m_theta = tf.math.polyval([tf.constant(c, cosine.dtype) for c in coefficients[::-1]], cosine)
    angle = tf.acos(tf.clip_by_value(tf.stop_gradient(cosine), -1.0, 1.0))
    k = tf.floor(angle * (margin / math.pi))
    return (1.0 - 2.0 * tf.math.floormod(k, 2.0)) * cos_m_theta - 2.0 * k


def _norms(vectors):
    """Row norms with a zero (not NaN) gradient at a zero row."""
    return safe_sqrt(tf.reduce_sum(tf.square(vectors), axis=-1))


def large_margin_cross_entropy(labels, cosine, logits, target_magnitudes, margin):
    """Mean softmax cross-entropy of ``logits`` ``(b, C)`` with each target logit replaced by
    ``target_magnitudes_i · ψ(θ_i,y_i)`` (:func:`large_margin_target_cosine` of the target ``cosine``).

    The other logits come as products ``W_c·x_i``, not as ``‖W_c‖‖x_i‖ cos θ_i,c``: XLA recomputes such a
    product in the softmax's fusions with other rounding, enough to overflow ``exp`` at large norms.
    """
    own_class = tf.one_hot(labels, tf.shape(logits)[1], on_value=True, off_value=False)
    target = target_magnitudes * large_margin_target_cosine(tf.gather(cosine, labels, axis=1, batch_dims=1), margin)
    logits = tf.where(own_class, target[:, tf.newaxis], logits)
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))


def large_margin_softmax_loss(labels, embeddings, centers, margin=4, scale=1.0):
    """Mean L-Softmax loss of a batch (see :class:`LargeMarginSoftmaxLoss`); any float dtype.

    Args:
        labels: int ``(b,)`` in ``[0, num_classes)``.
        embeddings: ``(b, d)``.
        centers: ``(num_classes, d)``, the class weights ``W_c`` (not normalised).
        margin: the integer angular multiplier ``m``.
        scale: ``s``, a factor on every logit (1: the paper's loss).
    """
    embeddings = tf.convert_to_tensor(embeddings)
    centers = tf.cast(centers, embeddings.dtype)
    logits = scale * tf.matmul(embeddings, centers, transpose_b=True)
    target_magnitudes = scale * _norms(embeddings) * tf.gather(_norms(centers), labels)
    cosine = cosine_similarity_to_classes(embeddings, centers)
    return large_margin_cross_entropy(labels, cosine, logits, target_magnitudes, margin)


def sphereface_loss(labels, embeddings, centers, margin=4, scale=1.0):
    """Mean SphereFace (A-Softmax) loss of a batch (see :class:`SphereFaceLoss`); any float dtype.

    Args:
        labels: int ``(b,)`` in ``[0, num_classes)``.
        embeddings: ``(b, d)``.
        centers: ``(num_classes, d)``, the class weights ``W_c`` (L2-normalised here).
        margin: the integer angular multiplier ``m``.
        scale: ``s``, a factor on every logit (1: the paper's loss).
    """
    embeddings = tf.convert_to_tensor(embeddings)
    unit_centers = tf.math.l2_normalize(tf.cast(centers, embeddings.dtype), axis=-1)
    logits = scale * tf.matmul(embeddings, unit_centers, transpose_b=True)
    cosine = cosine_similarity_to_classes(embeddings, unit_centers)
    return large_margin_cross_entropy(labels, cosine, logits, scale * _norms(embeddings), margin)


@keras.saving.register_keras_serializable(package="tfdml")
class LargeMarginSoftmaxLoss(ClassParametersLoss):
    """Large-margin softmax (L-Softmax) loss: softmax over the logits ``W_c·x`` with a multiplicative angular
    margin on the target class (Liu et al., "Large-Margin Softmax Loss for Convolutional Neural Networks",
    ICML 2016).

    When to use: a classification baseline with a multiplicative angular margin; ArcFace or CosFace train more stably
    for most tasks.

    Each class has a learned weight ``W_c`` (``centers``, not normalised); ``θ_i,c`` is the angle between
    the embedding ``x_i`` and ``W_c``. The softmax logits are ``‖W_c‖‖x_i‖ cos θ_i,c = W_c·x_i``, the
    target's with ``cos θ`` replaced by ``ψ(θ)``, a multiplicative angular margin ``m`` (ψ: eq. 6):

    ``ψ(θ) = (−1)^k cos(mθ) − 2k`` for ``θ ∈ [kπ/m, (k+1)π/m]``, ``k ∈ {0, …, m−1}``

    ``L = −(1/b) Σ_i log( exp(s‖W_y‖‖x_i‖ψ(θ_i,y)) / (exp(s‖W_y‖‖x_i‖ψ(θ_i,y)) + Σ_{c ≠ y} exp(s‖W_c‖‖x_i‖cos θ_i,c)) )``

    with ``y = y_i``; ``cos(mθ)`` is expanded as the Chebyshev polynomial of ``cos θ`` (eq. 7,
    :func:`large_margin_target_cosine`). ``s = 1`` is the paper's loss.

    Defaults: ``m = 4`` (the largest margin of the paper's experiments, its best; also
    pytorch-metric-learning's (PML)), ``s = 1`` (no scale in the paper; PML's default); the weights'
    learning rate ``5e-4`` is Roth et al.'s for ArcFace's centres (2020, supplementary A.1), the same
    kind of parameters.

    The paper eases training by annealing the target logit, ``(λ‖W‖‖x‖cos θ + ‖W‖‖x‖ψ(θ)) / (1 + λ)``
    with ``λ`` decreasing from large to small during training (its section on optimisation); like PML,
    this loss has no such schedule (``λ = 0`` throughout).

    PML's ``LargeMarginSoftmaxLoss(num_classes, embedding_size, margin=m, scale=s)`` computes the same
    loss (without its optional weight regulariser) but stores the weights transposed, as ``W`` of shape
    ``(d, num_classes)``: with ``centers = W.T`` it gives the same value and gradients.

    Example:

    >>> loss = LargeMarginSoftmaxLoss(num_classes=100, embedding_dim=128, margin=4, seed=0)
    >>> model = tfdml.training.MetricLearningModel(embedder, loss)
    >>> model.compile(optimizer=keras.optimizers.Adam(1e-5))
    """

    def __init__(
        self,
        num_classes,
        embedding_dim,
        margin=4,
        scale=1.0,
        learning_rate=5e-4,
        seed=None,
        name=None,
    ):
        super().__init__(num_classes, embedding_dim, learning_rate, seed=seed, name=name)
        loss_name = type(self).__name__
        self.margin = check_argument(loss_name, "margin", margin, int, low=1)
        self.scale = check_argument(loss_name, "scale", scale, low=0.0, low_open=True)
        self.centers = self.add_class_vectors("centers", (self.num_classes, self.embedding_dim))

    def loss_from_class_vectors(self, labels, embeddings):
        return large_margin_softmax_loss(labels, embeddings, self.centers, margin=self.margin, scale=self.scale)


@keras.saving.register_keras_serializable(package="tfdml")
class SphereFaceLoss(LargeMarginSoftmaxLoss):
    """SphereFace's angular softmax (A-Softmax) loss: L-Softmax with L2-normalised class weights, so that
    the margin acts on angles alone (Liu et al., "SphereFace: Deep Hypersphere Embedding for Face
    Recognition", CVPR 2017).

    When to use: reproducing SphereFace; ArcFace or CosFace train more stably and are usually preferred.

    :class:`LargeMarginSoftmaxLoss` with ``‖W_c‖ = 1``: the logits are ``‖x_i‖ cos θ_i,c``, the target's with ``ψ(θ)`` (the same
    ``ψ(θ) = (−1)^k cos(mθ) − 2k`` for ``θ ∈ [kπ/m, (k+1)π/m]``), so the decision depends on angles alone
    (the A-Softmax loss of section 3.3; equation number not verified):

    ``L = −(1/b) Σ_i log( exp(s‖x_i‖ψ(θ_i,y)) / (exp(s‖x_i‖ψ(θ_i,y)) + Σ_{c ≠ y} exp(s‖x_i‖cos θ_i,c)) )``

    Defaults: ``m = 4`` (the paper's; also pytorch-metric-learning's (PML)), ``s = 1`` (no scale in the
    paper; PML's default), the weights' learning rate ``5e-4`` as :class:`LargeMarginSoftmaxLoss`.

    As for L-Softmax, the paper anneals the target logit towards ``cos θ`` early in training (λ, section 4
    and its released code); like PML, this loss has no such schedule.

    PML's ``SphereFaceLoss(num_classes, embedding_size, margin=m, scale=s)`` computes the same loss with
    ``W`` of shape ``(d, num_classes)``: with ``centers = W.T`` it gives the same value and gradients.

    Example:

    >>> loss = SphereFaceLoss(num_classes=100, embedding_dim=128, seed=0)
    >>> model = tfdml.training.MetricLearningModel(embedder, loss)
    >>> model.compile(optimizer=keras.optimizers.Adam(1e-5))
    """

    def loss_from_class_vectors(self, labels, embeddings):
        return sphereface_loss(labels, embeddings, self.centers, margin=self.margin, scale=self.scale)
