"""ProxyNCA: NCA against one learned proxy per class (Movshovitz-Attias et al., 2017)."""

import keras
import tensorflow as tf

from tfdml.distances import pairwise_distance
from tfdml.losses.proxies import ClassParametersLoss
from tfdml.mining.base import check_argument

PROXY_NCA_METRICS = ("euclidean", "squared_euclidean")


def proxy_nca_loss(labels, embeddings, proxies, metric="euclidean", scale=1.0):
    """Mean ProxyNCA loss of a batch (see :class:`ProxyNCALoss`); any float dtype.

    Args:
        labels: int ``(b,)`` class of each embedding, in ``[0, num_classes)``.
        embeddings: ``(b, d)``.
        proxies: ``(num_classes, d)`` with ``num_classes >= 2``.
        metric: ``"euclidean"`` or ``"squared_euclidean"``.
        scale: both sides are L2-normalised, then multiplied by ``scale``.
    """
    embeddings = tf.convert_to_tensor(embeddings)
    proxies = tf.convert_to_tensor(proxies, dtype=embeddings.dtype)
    x = scale * tf.math.l2_normalize(embeddings, axis=1)
    p = scale * tf.math.l2_normalize(proxies, axis=1)
    distances = pairwise_distance(x, p, metric=metric)
    own_class = tf.one_hot(labels, tf.shape(proxies)[0], on_value=True, off_value=False)
    distance_to_own_proxy = tf.gather(distances, labels, axis=1, batch_dims=1)
    # The denominator runs over the other classes only, as in Movshovitz-Attias et al.
    other_class_logits = tf.where(own_class, tf.constant(-float("inf"), distances.dtype), -distances)
    return tf.reduce_mean(distance_to_own_proxy + tf.reduce_logsumexp(other_class_logits, axis=1))


@keras.saving.register_keras_serializable(package="tfdml")
class ProxyNCALoss(ClassParametersLoss):
    """ProxyNCA loss (Movshovitz-Attias et al., "No Fuss Distance Metric Learning using Proxies", ICCV 2017).

    When to use: many classes and small batches (one proxy per class, no miner); converges fast, usually behind
    ProxyAnchorLoss.

    Each class ``c`` has one learned proxy ``ψ_c``; every embedding is pulled
    towards its class's proxy and pushed from all other proxies (Roth et al.
    2020, supplementary A.1, eq. 13):

    ``L = −(1/b) Σ_i log( exp(−d(φ_i, ψ_{y_i})) / Σ_{c ≠ y_i} exp(−d(φ_i, ψ_c)) )``

    with ``φ_i`` and ``ψ_c`` L2-normalised and scaled by ``scale``, and ``d`` the
    Euclidean distance (``metric="squared_euclidean"`` gives the original paper's
    squared distance). The loss can be negative: the target is excluded from the
    denominator.

    Defaults: ``metric="euclidean"`` and ``scale=1`` as in Roth et al.'s eq. 13;
    proxy learning rate ``1e-5``. ``num_classes`` must be at least 2.

    Example:

    >>> loss = ProxyNCALoss(num_classes=100, embedding_dim=128, seed=0)
    >>> model = tfdml.training.MetricLearningModel(embedder, loss)
    >>> model.compile(optimizer=keras.optimizers.Adam(1e-5))
    >>> model.fit(batches)   # trains embedder and the proxies
    """

    min_classes = 2

    def __init__(
        self,
        num_classes,
        embedding_dim,
        metric="euclidean",
        scale=1.0,
        learning_rate=1e-5,
        seed=None,
        name=None,
    ):
        super().__init__(num_classes, embedding_dim, learning_rate, seed=seed, name=name)
        if metric not in PROXY_NCA_METRICS:
            raise ValueError(f"ProxyNCALoss: metric must be one of {PROXY_NCA_METRICS}; got {metric!r}.")
        self.metric = metric
        self.scale = check_argument("ProxyNCALoss", "scale", scale, low=0.0, low_open=True)
        self.proxies = self.add_class_vectors("proxies", (self.num_classes, self.embedding_dim))

    def loss_from_class_vectors(self, labels, embeddings):
        return proxy_nca_loss(labels, embeddings, self.proxies, metric=self.metric, scale=self.scale)
