"""Proxy-Anchor: each proxy is an anchor that weighs all embeddings of the batch (Kim et al., 2020)."""

import keras
import tensorflow as tf

from tfdml.losses.math import log1p_sum_exp, masked_mean
from tfdml.losses.proxies import ClassParametersLoss, cosine_similarity_to_classes
from tfdml.mining.base import check_argument


def proxy_anchor_loss(labels, embeddings, proxies, margin=0.1, alpha=32.0):
    """Proxy-Anchor loss of a batch (see :class:`ProxyAnchorLoss`); any float dtype.

    Args:
        labels: int ``(b,)`` in ``[0, num_classes)``.
        embeddings: ``(b, d)``.
        proxies: ``(num_classes, d)``.
        margin: ``δ``, the margin on the cosine similarity.
        alpha: ``α``, the scale of the similarities.
    """
    cosine = cosine_similarity_to_classes(embeddings, proxies)
    positive = tf.one_hot(labels, tf.shape(cosine)[1], on_value=True, off_value=False)
    # Reduce over the batch axis: each proxy is an anchor.
    positive_terms = log1p_sum_exp(-alpha * (cosine - margin), positive, axis=0)
    negative_terms = log1p_sum_exp(alpha * (cosine + margin), tf.logical_not(positive), axis=0)
    return masked_mean(positive_terms, tf.reduce_any(positive, axis=0)) + tf.reduce_mean(negative_terms)


@keras.saving.register_keras_serializable(package="tfdml")
class ProxyAnchorLoss(ClassParametersLoss):
    """Proxy-Anchor loss (Kim et al., "Proxy Anchor Loss for Deep Metric Learning", CVPR 2020).

    When to use: large class counts, fast convergence; the strongest proxy baseline on CUB/CARS/SOP.

    Each class ``c`` has one learned proxy ``p_c``; ``s(x, p)`` is the cosine
    similarity. Unlike ProxyNCA, the proxies are the anchors: each weighs every
    embedding of the batch, so an embedding's gradient depends on the others
    (Kim et al., eq. 3):

    ``L = (1/|P⁺|) Σ_{p ∈ P⁺} log(1 + Σ_{x ∈ X_p⁺} exp(−α·(s(x, p) − δ)))
    + (1/|P|) Σ_{p ∈ P} log(1 + Σ_{x ∈ X_p⁻} exp(α·(s(x, p) + δ)))``

    ``P`` is every proxy, ``P⁺`` the proxies of the classes in the batch,
    ``X_p⁺`` the batch's embeddings of ``p``'s class and ``X_p⁻`` the others.

    Defaults (Kim et al., implementation details): ``α = 32``, ``δ = 0.1``; the paper trains the
    proxies with 100 times the network's learning rate ``1e-4`` (AdamW), so the
    proxy learning rate defaults to ``1e-2``. Proxies start from the uniform
    initialiser of :class:`~tfdml.losses.proxies.ClassParametersLoss` (the
    authors' code draws them from a Kaiming normal).

    pytorch-metric-learning's ``ProxyAnchorLoss(num_classes, embedding_size,
    margin=δ, alpha=α)`` computes the same loss (same reduction, same proxy
    layout ``(num_classes, d)``); with its proxies assigned to ``proxies`` it gives
    the same value and gradients.

    Example:

    >>> loss = ProxyAnchorLoss(num_classes=100, embedding_dim=128, seed=0)
    >>> model = tfdml.training.MetricLearningModel(embedder, loss)
    >>> model.compile(optimizer=keras.optimizers.AdamW(1e-4))
    """

    def __init__(
        self,
        num_classes,
        embedding_dim,
        margin=0.1,
        alpha=32.0,
        learning_rate=1e-2,
        seed=None,
        name=None,
    ):
        super().__init__(num_classes, embedding_dim, learning_rate, seed=seed, name=name)
        self.margin = check_argument("ProxyAnchorLoss", "margin", margin, low=0.0)
        self.alpha = check_argument("ProxyAnchorLoss", "alpha", alpha, low=0.0, low_open=True)
        self.proxies = self.add_class_vectors("proxies", (self.num_classes, self.embedding_dim))

    def loss_from_class_vectors(self, labels, embeddings):
        return proxy_anchor_loss(labels, embeddings, self.proxies, margin=self.margin, alpha=self.alpha)
