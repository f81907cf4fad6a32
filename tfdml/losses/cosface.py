"""CosFace: softmax over scaled cosines with an additive cosine margin on the target class (Wang et al., 2018)."""

import keras
import tensorflow as tf

from tfdml.losses.proxies import ClassParametersLoss, cosine_similarity_to_classes
from tfdml.mining.base import check_argument


def cosface_loss(labels, embeddings, centers, margin=0.35, scale=64.0):
    """Mean CosFace loss of a batch (see :class:`CosFaceLoss`); any float dtype.

    Args:
        labels: int ``(b,)`` in ``[0, num_classes)``.
        embeddings: ``(b, d)``.
        centers: ``(num_classes, d)``.
        margin: ``m``, subtracted from the target cosine.
        scale: ``s``, the radius of the hypersphere the logits live on.
    """
    cosine = cosine_similarity_to_classes(embeddings, centers)
    target_margin = tf.one_hot(labels, tf.shape(cosine)[1], on_value=margin, off_value=0.0, dtype=cosine.dtype)
    logits = scale * (cosine - target_margin)
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))


@keras.saving.register_keras_serializable(package="tfdml")
class CosFaceLoss(ClassParametersLoss):
    """CosFace loss (Wang et al., "CosFace: Large Margin Cosine Loss for Deep Face Recognition", CVPR 2018).

    When to use: like ArcFace (many classes, faces or landmarks) with an additive cosine margin, simpler and more stable
    early in training.

    Each class has a learned centre ``W_c``; ``cos θ_i,c`` is the cosine between
    the embedding ``x_i`` and ``W_c``. The target cosine gets an additive margin
    ``m`` and all cosines are scaled by ``s`` (Wang et al., eq. 4, the large
    margin cosine loss):

    ``L = −(1/b) Σ_i log( exp(s·(cos θ_i,y_i − m)) / (exp(s·(cos θ_i,y_i − m)) + Σ_{c ≠ y_i} exp(s·cos θ_i,c)) )``

    Defaults: ``s = 64`` and ``m = 0.35``, the paper's (its experiments, section 4;
    also pytorch-metric-learning's); the centre learning rate ``5e-4`` is Roth et al.'s
    for ArcFace's centres (2020, supplementary A.1), the same kind of parameters.

    pytorch-metric-learning's ``CosFaceLoss(num_classes, embedding_size,
    margin=m, scale=s)`` computes the same loss but stores the centres
    transposed, as ``W`` of shape ``(d, num_classes)``: with ``centers = W.T`` it
    gives the same value and gradients.

    Example:

    >>> loss = CosFaceLoss(num_classes=100, embedding_dim=128, seed=0)
    >>> model = tfdml.training.MetricLearningModel(embedder, loss)
    >>> model.compile(optimizer=keras.optimizers.Adam(1e-5))
    """

    def __init__(
        self,
        num_classes,
        embedding_dim,
        margin=0.35,
        scale=64.0,
        learning_rate=5e-4,
        seed=None,
        name=None,
    ):
        super().__init__(num_classes, embedding_dim, learning_rate, seed=seed, name=name)
        self.margin = check_argument("CosFaceLoss", "margin", margin, low=0.0)
        self.scale = check_argument("CosFaceLoss", "scale", scale, low=0.0, low_open=True)
        self.centers = self.add_class_vectors("centers", (self.num_classes, self.embedding_dim))

    def loss_from_class_vectors(self, labels, embeddings):
        return cosface_loss(labels, embeddings, self.centers, margin=self.margin, scale=self.scale)
