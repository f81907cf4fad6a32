"""Multi-class N-pair loss (Sohn, 2016) on unnormalised embeddings."""

import keras
import numpy as np
import tensorflow as tf

from tfdml.losses.base import DMLLoss
from tfdml.masks import negative_mask, positive_mask


def masked_logsumexp(logits, mask, axis=-1):
    """``(log Σ_{mask} exp(logits), any(mask))`` along ``axis``.

    Rows without a selected entry get a finite placeholder value (and no gradient), so
    callers must drop them with the returned ``any(mask)``; this keeps ``reduce_logsumexp``
    away from an all ``-inf`` row, whose gradient is NaN.
    """
    has_entry = tf.reduce_any(mask, axis=axis, keepdims=True)
    masked = tf.where(mask, logits, -np.inf)
    lse = tf.reduce_logsumexp(tf.where(has_entry, masked, tf.zeros_like(logits)), axis=axis)
    return lse, tf.squeeze(has_entry, axis=axis)


def log1p_sum_exp(logits, mask, axis=-1):
    """``log(1 + Σ_{mask} exp(logits))`` along ``axis``, overflow-free and 0 for an empty mask."""
    masked = tf.where(mask, logits, -np.inf)
    zero = tf.zeros_like(tf.reduce_sum(logits, axis=axis, keepdims=True))
    return tf.reduce_logsumexp(tf.concat([zero, masked], axis=axis), axis=axis)


def squared_norm_regularizer(embeddings):
    """``(1/b) Σ_i ‖φ*_i‖²``: keeps unnormalised embeddings from growing without bound."""
    return tf.reduce_mean(tf.reduce_sum(tf.square(embeddings), axis=1))


@keras.saving.register_keras_serializable(package="tfdml")
class NPairLoss(DMLLoss):
    """Multi-class N-pair loss with an embedding-norm regulariser.

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
        if nu < 0:
            raise ValueError(f"NPairLoss: nu must be >= 0; got {nu}.")
        self.nu = float(nu)

    def compute(self, labels, embeddings):
        similarity = tf.matmul(embeddings, embeddings, transpose_b=True)
        positives = positive_mask(labels)
        # log(1 + Σ_n exp(S_an − S_ap)) = softplus(log Σ_n exp(S_an) − S_ap): b×b, not b×b×b.
        negative_lse, has_negative = masked_logsumexp(similarity, negative_mask(labels))
        tuple_losses = tf.math.softplus(negative_lse[:, tf.newaxis] - similarity)
        valid = tf.logical_and(positives, has_negative[:, tf.newaxis])
        ranking = tf.math.divide_no_nan(
            tf.reduce_sum(tf.where(valid, tuple_losses, 0.0)),
            tf.reduce_sum(tf.cast(positives, similarity.dtype)),
        )
        return ranking + self.nu * squared_norm_regularizer(embeddings)
