"""Dynamic ArcFace: ArcFace with a margin per class that shrinks with the class's size, for long-tailed
training data (Ha et al., 2020)."""

import math

import keras
import numpy as np
import tensorflow as tf

from tfdml.losses.arcface import arcface_cross_entropy
from tfdml.losses.proxies import ClassParametersLoss, cosine_similarity_to_classes
from tfdml.mining.base import check_argument


def dynamic_arcface_margins(class_counts, exponent=0.25, margin_min=0.05, margin_max=0.5):
    """The margins ``m_c = a·n_c^(−λ) + b`` of classes with ``class_counts`` ``n_c`` training images, float64.

    ``a`` and ``b`` map the rarest class to ``margin_max`` and the most frequent to ``margin_min``. Classes
    without images (``n_c = 0``, e.g. held out) take no part in that mapping and get ``margin_max``, as do
    all classes when every class has the same number of images (then the loss is ArcFace's with
    ``margin_max``).

    >>> dynamic_arcface_margins([1, 16, 256])
    array([0.5       , 0.2       , 0.05      ])
    """
    counts = np.asarray(class_counts, np.float64)
    present = counts > 0
    shrink = np.where(present, np.maximum(counts, 1.0) ** -exponent, 0.0)
    low, high = shrink[present].min(), shrink[present].max()
    if high == low:
        return np.full(counts.shape, float(margin_max))
    margins = margin_min + (margin_max - margin_min) * (shrink - low) / (high - low)
    return np.where(present, margins, margin_max)


def dynamic_arcface_loss(labels, embeddings, centers, margins, scale=30.0):
    """Mean Dynamic ArcFace loss of a batch (see :class:`DynamicArcFaceLoss`); any float dtype.

    Args:
        labels: int ``(b,)`` in ``[0, num_classes)``.
        embeddings: ``(b, d)``.
        centers: ``(num_classes, d)``.
        margins: ``(num_classes,)``, each class's additive angular margin in radians
            (:func:`dynamic_arcface_margins`).
        scale: ``s``, the radius of the hypersphere the logits live on.
    """
    return arcface_cross_entropy(labels, cosine_similarity_to_classes(embeddings, centers), margins, scale)


@keras.saving.register_keras_serializable(package="tfdml")
class DynamicArcFaceLoss(ClassParametersLoss):
    """ArcFace with dynamic margins: a margin per class, larger for rare classes, for long-tailed training
    data (Ha, Liu, Liu, Liao, "Google Landmark Recognition 2020 Competition Third Place Solution", 2020).

    When to use: ArcFace on long-tailed data (landmarks, products), where rare classes need larger margins than frequent
    ones.

    :class:`ArcFaceLoss` with the target angle's margin ``m_{y_i}`` set by the size ``n_c`` of class ``c``
    in the training data (arXiv:2010.05350, its section on dynamic margins):

    ``m_c = a·n_c^(−λ) + b``, with ``a, b`` such that ``m_c`` spans ``[margin_min, margin_max]``
    (the rarest class ``margin_max``, the most frequent ``margin_min``)

    ``L = −(1/b) Σ_i log( exp(s·cos(θ_i,y_i + m_{y_i})) / (exp(s·cos(θ_i,y_i + m_{y_i})) + Σ_{c ≠ y_i} exp(s·cos θ_i,c)) )``

    Where ``θ + m > π`` the target logit continues as ``s·(cos θ − m·sin m)``, as ArcFace's. A recipe run
    passes ``class_counts`` from its training labels; without them (``None``) every class gets
    ``margin_max`` and the loss is ArcFace's. The margins (:func:`dynamic_arcface_margins`, a class
    without training images gets ``margin_max``) are fixed at construction and are not trained.

    Defaults: ``λ = 1/4`` (``exponent``) and margins in ``[0.05, 0.5]``, the paper's (its released code,
    ``(n^(−1/4) − min) / (max − min) · 0.45 + 0.05``); ``s = 30``, the default of the authors' released
    ArcFace loss with adaptive margins (not verified against the paper's training runs); the centre
    learning rate ``5e-4`` is Roth et al.'s for ArcFace's centres (2020, supplementary A.1), as
    :class:`ArcFaceLoss`. The paper trains Sub-center ArcFace (``K = 3``) with these margins; this loss
    has one centre per class.

    pytorch-metric-learning has no such loss; with equal class counts it is PML's
    ``ArcFaceLoss(num_classes, embedding_size, margin=math.degrees(margin_max), scale=s)``.

    Example:

    >>> loss = DynamicArcFaceLoss(num_classes=3, embedding_dim=128, class_counts=[500, 20, 3], seed=0)
    >>> model = tfdml.training.MetricLearningModel(embedder, loss)
    >>> model.compile(optimizer=keras.optimizers.Adam(1e-5))
    """

    data_arguments = ("num_classes", "embedding_dim", "class_counts")

    def __init__(
        self,
        num_classes,
        embedding_dim,
        class_counts=None,
        exponent=0.25,
        margin_min=0.05,
        margin_max=0.5,
        scale=30.0,
        learning_rate=5e-4,
        seed=None,
        name=None,
    ):
        super().__init__(num_classes, embedding_dim, learning_rate, seed=seed, name=name)
        who = "DynamicArcFaceLoss"
        self.class_counts = None
        if class_counts is not None:
            if isinstance(class_counts, (str, bytes)) or np.ndim(class_counts) != 1 or len(class_counts) != num_classes:
                raise ValueError(
                    f"{who}: class_counts must be a list of {self.num_classes} integers (one per class); "
                    f"got {class_counts!r}."
                )
            self.class_counts = [check_argument(who, "class_counts", n, int, low=0) for n in class_counts]
            if not any(self.class_counts):
                raise ValueError(f"{who}: class_counts must count at least one image; got {class_counts!r}.")
        self.exponent = check_argument(who, "exponent", exponent, low=0.0, low_open=True)
        self.margin_max = check_argument(who, "margin_max", margin_max, low=0.0, high=math.pi / 2, high_open=True)
        self.margin_min = check_argument(who, "margin_min", margin_min, low=0.0, high=self.margin_max)
        self.scale = check_argument(who, "scale", scale, low=0.0, low_open=True)
        counts = self.class_counts if self.class_counts is not None else [1] * self.num_classes
        self.margins = tf.constant(
            dynamic_arcface_margins(counts, self.exponent, self.margin_min, self.margin_max), tf.float32
        )
        self.centers = self.add_class_vectors("centers", (self.num_classes, self.embedding_dim))

    def loss_from_class_vectors(self, labels, embeddings):
        return dynamic_arcface_loss(labels, embeddings, self.centers, self.margins, scale=self.scale)
