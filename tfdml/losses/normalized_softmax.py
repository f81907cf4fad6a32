"""Normalized softmax: softmax cross-entropy over cosine similarities to class proxies (Zhai & Wu, 2018)."""

import keras
import tensorflow as tf

from tfdml.losses.proxies import ClassParametersLoss, cosine_similarity_to_classes
from tfdml.mining.base import check_argument


def normalized_softmax_loss(labels, embeddings, proxies, temperature=0.05):
    """Mean normalized-softmax loss of a batch (see :class:`NormalizedSoftmaxLoss`); any float dtype.

    Args:
        labels: int ``(b,)`` in ``[0, num_classes)``.
        embeddings: ``(b, d)``.
        proxies: ``(num_classes, d)``.
        temperature: ``T``; logits are cosine similarities divided by ``T``.
    """
    logits = cosine_similarity_to_classes(embeddings, proxies) / temperature
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))


@keras.saving.register_keras_serializable(package="tfdml")
class NormalizedSoftmaxLoss(ClassParametersLoss):
    """Normalized softmax loss (Zhai & Wu, "Classification is a Strong Baseline for Deep Metric Learning", BMVC 2019).

    When to use: a strong, simple classification baseline for many classes (Zhai & Wu 2019); no miner and no large
    batches needed.

    A softmax classifier whose weights ``ψ_c`` (one proxy per class) and inputs
    are L2-normalised, with temperature ``T`` (Roth et al. 2020, supplementary
    A.1, eq. 19):

    ``L = −(1/b) Σ_i log( exp(φ̂_i·ψ̂_{y_i} / T) / Σ_c exp(φ̂_i·ψ̂_c / T) )``

    As in Zhai & Wu, the denominator runs over all classes and the loss is the
    batch mean (Roth et al.'s eq. 19 as printed leaves out the target class and
    the ``1/b``).

    Defaults (Roth et al. A.1): ``T = 0.05``, proxy learning rate ``1e-5``.

    Example:

    >>> loss = NormalizedSoftmaxLoss(num_classes=100, embedding_dim=128, seed=0)
    >>> model = tfdml.training.MetricLearningModel(embedder, loss)
    >>> model.compile(optimizer=keras.optimizers.Adam(1e-5))
    """

    def __init__(
        self,
        num_classes,
        embedding_dim,
        temperature=0.05,
        learning_rate=1e-5,
        seed=None,
        name=None,
    ):
        super().__init__(num_classes, embedding_dim, learning_rate, seed=seed, name=name)
        self.temperature = check_argument("NormalizedSoftmaxLoss", "temperature", temperature, low=0.0, low_open=True)
        self.proxies = self.add_class_vectors("proxies", (self.num_classes, self.embedding_dim))

    def loss_from_class_vectors(self, labels, embeddings):
        return normalized_softmax_loss(labels, embeddings, self.proxies, temperature=self.temperature)
