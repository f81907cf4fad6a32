"""Sub-center ArcFace: ArcFace with K learned sub-centres per class, each sample compared with its class's
nearest one, and the dominant-sub-centre filter that finds noisy samples (Deng et al., 2020)."""

import math

import keras
import numpy as np
import tensorflow as tf

from tfdml.checks import as_embeddings, label_array
from tfdml.losses.arcface import arcface_cross_entropy
from tfdml.losses.proxies import ClassParametersLoss, checked_labels, cosine_similarity_to_classes
from tfdml.mining.base import check_argument


def subcenter_arcface_loss(labels, embeddings, centers, margin=0.5, scale=64.0):
    """Mean sub-center ArcFace loss of a batch (see :class:`SubCenterArcFaceLoss`); any float dtype.

    Args:
        labels: int ``(b,)`` in ``[0, num_classes)``.
        embeddings: ``(b, d)``.
        centers: ``(num_classes, K, d)``, the ``K`` sub-centres of each class.
        margin: additive angular margin ``m`` in radians.
        scale: ``s``, the radius of the hypersphere the logits live on.
    """
    cosine = tf.reduce_max(cosine_similarity_to_classes(embeddings, centers), axis=2)
    return arcface_cross_entropy(labels, cosine, margin, scale)


def subcenter_arcface_outliers(labels, embeddings, centers, threshold=math.radians(75.0)):
    """``(outliers, dominant)``: the samples far from their class's dominant sub-centre, and that sub-centre.

    Each sample votes for the sub-centre of its own class nearest to it; a class's dominant sub-centre
    is the one with most votes (the lowest index among ties; 0 for a class without samples). A sample
    is an outlier when its angle to its class's dominant sub-centre exceeds ``threshold``.

    Args:
        labels: int ``(b,)`` in ``[0, num_classes)``.
        embeddings: ``(b, d)``.
        centers: ``(num_classes, K, d)``.
        threshold: angle in radians (default 75°, Deng et al.'s).

    Returns:
        bool ``(b,)``, true for the outliers, and int32 ``(num_classes,)``, each class's dominant sub-centre.
    """
    centers = tf.convert_to_tensor(centers)
    own = tf.gather(cosine_similarity_to_classes(embeddings, centers), labels, axis=1, batch_dims=1)  # (b, K)
    sub_centers = tf.shape(centers)[1]
    votes = tf.math.unsorted_segment_sum(
        tf.one_hot(tf.argmax(own, axis=1), sub_centers, dtype=tf.int32), labels, tf.shape(centers)[0]
    )
    # tf.argmax leaves ties unspecified: a score unique per sub-centre that prefers the lower index.
    dominant = tf.argmax(votes * sub_centers - tf.range(sub_centers), axis=1, output_type=tf.int32)
    dominant_cosine = tf.gather(own, tf.gather(dominant, labels), axis=1, batch_dims=1)
    return dominant_cosine < math.cos(threshold), dominant


@keras.saving.register_keras_serializable(package="tfdml")
class SubCenterArcFaceLoss(ClassParametersLoss):
    """Sub-center ArcFace loss: ArcFace with K learned sub-centres per class, each sample scored
    against its class's nearest, so that noisy samples can settle away from the dominant sub-centre.

    When to use: ArcFace on noisy web-scale labels: outliers settle on non-dominant sub-centres instead of pulling the
    class centre.

    Deng et al., "Sub-center ArcFace: Boosting Face Recognition by Large-scale Noisy Web Faces", ECCV 2020.
    Each class ``c`` has ``K`` learned sub-centres ``W_c,1 … W_c,K``; a sample's angle to a class is its
    angle to the class's nearest sub-centre, ``θ_i,c = arccos(max_k x̂_i · Ŵ_c,k)``. The loss is then
    ArcFace's: the target angle gets an additive margin ``m`` and all cosines are scaled by ``s``
    (Deng et al. 2020, the ArcFace loss with the max-pooled sub-centre cosine; equation number not verified):

    ``L = −(1/b) Σ_i log( exp(s·cos(θ_i,y_i + m)) / (exp(s·cos(θ_i,y_i + m)) + Σ_{c ≠ y_i} exp(s·cos θ_i,c)) )``

    Where ``θ + m > π`` the target logit continues as ``s·(cos θ − m·sin m)``
    (:func:`tfdml.losses.arcface.arcface_target_cosine`, as :class:`ArcFaceLoss`). A clean sample pulls its
    class towards one sub-centre (the dominant one) and a noisy sample can settle on another, so
    :meth:`get_outliers` (:func:`subcenter_arcface_outliers`) finds each class's dominant sub-centre
    and the samples more than 75° from it, which the paper drops before training on the dominant
    sub-centres alone.

    Defaults: ``K = 3`` (``sub_centers``), ``s = 64`` and ``m = 0.5`` rad, the paper's (with ArcFace's ``s`` and ``m``);
    the centre learning rate ``5e-4`` is Roth et al.'s for ArcFace's centres (2020, supplementary A.1),
    as :class:`ArcFaceLoss`.

    pytorch-metric-learning's (PML) ``SubCenterArcFaceLoss(num_classes, embedding_size, margin=28.6,
    scale=64, sub_centers=3)`` takes the margin in degrees (28.6° ≈ 0.4992 rad; ``margin=m`` here is
    ``margin=math.degrees(m)`` there) and stores the sub-centres as ``W`` of shape ``(d, num_classes·K)``,
    column ``c·K + k`` for sub-centre ``k`` of class ``c``: with ``centers = W.T.reshape(num_classes, K, d)``
    it gives the same value and gradients. Its ``get_outliers(embeddings, labels, threshold=75)`` takes
    degrees, returns the outliers grouped by class and leaves the dominant centres of classes without
    samples unset; :meth:`get_outliers` takes radians and returns them in batch order.

    Example:

    >>> loss = SubCenterArcFaceLoss(num_classes=100, embedding_dim=128, seed=0)
    >>> model = tfdml.training.MetricLearningModel(embedder, loss)
    >>> model.compile(optimizer=keras.optimizers.Adam(1e-5))
    >>> outliers, dominant_centers = loss.get_outliers(labels, embedder.predict(images))
    """

    def __init__(
        self,
        num_classes,
        embedding_dim,
        margin=0.5,
        scale=64.0,
        sub_centers=3,
        learning_rate=5e-4,
        seed=None,
        name=None,
    ):
        super().__init__(num_classes, embedding_dim, learning_rate, seed=seed, name=name)
        self.margin = check_argument(
            "SubCenterArcFaceLoss", "margin", margin, low=0.0, high=math.pi / 2, high_open=True
        )
        self.scale = check_argument("SubCenterArcFaceLoss", "scale", scale, low=0.0, low_open=True)
        self.sub_centers = check_argument("SubCenterArcFaceLoss", "sub_centers", sub_centers, int, low=1)
        self.centers = self.add_class_vectors("centers", (self.num_classes, self.sub_centers, self.embedding_dim))

    def loss_from_class_vectors(self, labels, embeddings):
        return subcenter_arcface_loss(labels, embeddings, self.centers, margin=self.margin, scale=self.scale)

    def get_outliers(self, labels, embeddings, threshold=math.radians(75.0)):
        """``(outlier indices, dominant centres)`` of a labelled set, on the host (see
        :func:`subcenter_arcface_outliers`).

        Args:
            labels: int ``(n,)`` or ``(n, 1)`` in ``[0, num_classes)``.
            embeddings: ``(n, embedding_dim)``, finite.
            threshold: angle in radians in ``[0, π]`` (default 75°, the paper's).

        Returns:
            int64 ``(o,)``, the indices of the outliers in increasing order, and float32
            ``(num_classes, embedding_dim)``, each class's dominant sub-centre (sub-centre 0 for a class
            without samples).
        """
        who = "SubCenterArcFaceLoss.get_outliers"
        threshold = check_argument(who, "threshold", threshold, low=0.0, high=math.pi)
        embeddings = as_embeddings(embeddings, f"{who}: embeddings", dim=self.embedding_dim)
        labels, _ = checked_labels(
            tf.constant(label_array(labels, count=len(embeddings), who=who)), self.num_classes, who
        )
        outliers, dominant = subcenter_arcface_outliers(labels, embeddings, self.centers, threshold)
        dominant_centers = tf.gather(self.centers, dominant, axis=1, batch_dims=1)
        return np.flatnonzero(outliers.numpy()).astype(np.int64), dominant_centers.numpy()
