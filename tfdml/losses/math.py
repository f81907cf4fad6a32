"""Math shared by several losses: masked log-sum-exps, masked means, the embedding-norm regulariser and
the NaN that marks an undefined loss.

Every helper is vectorised, keeps static shapes (masks select entries, never
``boolean_mask``) and gives finite values and gradients on empty selections, so the
losses built on them compile under XLA and stay defined on batches without positives
or negatives.

Example:

>>> logits = tf.constant([[0.0, 1.0], [2.0, 3.0]])
>>> log1p_sum_exp(logits, tf.constant([[True, False], [False, False]]))   # [log 2, 0]
"""

import numpy as np
import tensorflow as tf


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


def masked_mean(values, valid):
    """Mean of ``values`` where ``valid``; 0 (with a zero gradient) when none is."""
    total = tf.reduce_sum(tf.where(valid, values, tf.zeros_like(values)))
    return tf.math.divide_no_nan(total, tf.reduce_sum(tf.cast(valid, values.dtype)))


def mean_over_positive_pairs(tuple_losses, positives, has_negative):
    """``Σ_{(a,p)} ℓ_ap / #positive pairs`` over the ``(b, b)`` positive-pair mask, counting an
    anchor without negatives (``has_negative`` false, ``(b,)``) as a 0 term; 0 without positive pairs."""
    valid = tf.logical_and(positives, has_negative[:, tf.newaxis])
    return tf.math.divide_no_nan(
        tf.reduce_sum(tf.where(valid, tuple_losses, 0.0)),
        tf.reduce_sum(tf.cast(positives, tuple_losses.dtype)),
    )


def nan_unless(condition, loss):
    """``loss`` where the scalar bool ``condition`` holds, else NaN: how a loss reports inputs it is undefined
    for (non-finite embeddings; bad labels under XLA, which drops assertions), so that
    ``keras.callbacks.TerminateOnNaN`` stops training."""
    return tf.where(condition, loss, tf.constant(float("nan"), loss.dtype))


def squared_norm_regularizer(embeddings):
    """``(1/b) Σ_i ‖φ*_i‖²``: keeps unnormalised embeddings from growing without bound."""
    return tf.reduce_mean(tf.reduce_sum(tf.square(embeddings), axis=1))
