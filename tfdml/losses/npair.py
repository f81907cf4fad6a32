"""Multi-class N-pair loss (Sohn, 2016) on unnormalised embeddings."""

import keras
import tensorflow as tf

from tfdml.losses.base import DMLLoss
from tfdml.losses.math import masked_logsumexp, mean_over_positive_pairs, squared_norm_regularizer
from tfdml.masks import negative_mask, positive_mask
from tfdml.mining.base import check_argument


def npair_loss(labels, embeddings, nu=0.005):
    """Multi-class N-pair loss of a batch (see :class:`NPairLoss`): int ``labels`` ``(b,)``,
    unnormalised ``embeddings`` ``(b, d)``, regulariser weight ``nu``; a scalar of the embeddings' dtype."""
    similarity = tf.matmul(embeddings, embeddings, transpose_b=True)
    # log(1 + Σ_n exp(S_an − S_ap)) = softplus(log Σ_n exp(S_an) − S_ap): b×b, not b×b×b.
    negative_lse, has_negative = masked_logsumexp(similarity, negative_mask(labels))
    tuple_losses = tf.math.softplus(negative_lse[:, tf.newaxis] - similarity)
    ranking = mean_over_positive_pairs(tuple_losses, positive_mask(labels), has_negative)
    return ranking + nu * squared_norm_regularizer(embeddings)


@keras.saving.register_keras_serializable(package="tfdml")
class NPairLoss(DMLLoss):
    """Multi-class N-pair loss with an embedding-norm regulariser.

    When to use: batches of many classes with two samples each; every negative of the batch is used, with no miner.

    Every ordered positive pair ``(a, p)`` (``y_a = y_p``, ``a ≠ p``) is an anchor/positive
    tuple whose negatives are all batch samples of other classes:

    ```
    L = mean_{(a,p)} log(1 + Σ_{n: y_n ≠ y_a} exp(φ*_aᵀφ*_n − φ*_aᵀφ*_p))
        + ν · (1/b) Σ_i ‖φ*_i‖²
    ```

    Sohn, "Improved Deep Metric Learning with Multi-class N-pair Loss Objective",
    NeurIPS 2016; Roth et al. 2020, supplementary A.1, Eq. 4. ``φ*`` are the *unnormalised*
    embeddings: build the embedding model with ``normalize=False`` (Sohn notes slow
    convergence on normalised embeddings; the ``ν`` term bounds their norm instead).

    Batches: Sohn's N pairs from N classes is the SPC-2 batch, where the mean over positive
    pairs is Roth's ``1/b`` sum. With ``n`` samples per class every sample is the anchor of
    ``n − 1`` tuples, one per same-class partner; no random choice is involved. A batch
    without any positive pair contributes only the regulariser.

    Args:
        nu: weight ``ν`` of the squared-norm regulariser (Roth et al.: 0.005).
        name: name of the loss instance.

    Example:

    >>> loss = tfdml.losses.NPairLoss()
    >>> model.compile(optimizer="adam", loss=loss)  # model built with normalize=False
    >>> loss(tf.constant([0, 0, 1, 1]), tf.random.normal((4, 16)))
    """

    def __init__(self, nu=0.005, name="npair_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.nu = check_argument("NPairLoss", "nu", nu, low=0.0)

    def compute(self, labels, embeddings):
        return npair_loss(labels, embeddings, self.nu)
