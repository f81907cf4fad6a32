"""Angular loss (Wang et al., 2017) on top of the N-pair loss."""

import math

import keras
import numpy as np
import tensorflow as tf

from tfdml.losses.base import DMLLoss
from tfdml.losses.math import mean_over_positive_pairs
from tfdml.losses.npair import npair_loss
from tfdml.masks import negative_mask, positive_mask
from tfdml.mining.base import check_argument


def angular_term(labels, normalized, alpha=45.0):
    """``mean_{(a,p)} log(1 + Σ_n exp(f_apn))`` (see :class:`AngularLoss`) on L2-normalised embeddings,
    ``alpha`` in degrees."""
    tan_sq = math.tan(math.radians(alpha)) ** 2
    similarity = tf.matmul(normalized, normalized, transpose_b=True)
    negatives = negative_mask(labels)
    has_negative = tf.reduce_any(negatives, axis=1)
    # Σ_n exp(c S_an + c S_pn) = Σ_n W_an W_pn · exp(m_a + m_p) with W = exp(c S − m) over
    # negatives; p shares a's class, so a's negative mask is also p's.
    scaled = 4.0 * tan_sq * similarity
    row_max = tf.where(has_negative, tf.reduce_max(tf.where(negatives, scaled, scaled.dtype.min), axis=1), 0.0)
    # Masked before exp: a same-class entry above the row max would overflow and poison the gradient.
    weights = tf.exp(tf.where(negatives, scaled - row_max[:, tf.newaxis], -np.inf))
    # Floored so a fully underflowed sum (α near 90°) gives a finite log with zero gradient.
    smallest_normal = np.finfo(similarity.dtype.as_numpy_dtype).tiny
    pair_sums = tf.maximum(tf.matmul(weights, weights, transpose_b=True), smallest_normal)
    negative_lse = tf.math.log(pair_sums) + row_max[:, tf.newaxis] + row_max[tf.newaxis, :]
    tuple_losses = tf.math.softplus(negative_lse - 2.0 * (1.0 + tan_sq) * similarity)
    return mean_over_positive_pairs(tuple_losses, positive_mask(labels), has_negative)


def angular_loss(labels, embeddings, alpha=45.0, angular_weight=2.0, nu=0.005):
    """Angular loss of a batch (see :class:`AngularLoss`): the N-pair loss of the unnormalised
    ``embeddings`` plus ``angular_weight`` times :func:`angular_term` of their L2-normalised form."""
    angular = angular_term(labels, tf.math.l2_normalize(embeddings, axis=1), alpha)
    return npair_loss(labels, embeddings, nu) + angular_weight * angular


@keras.saving.register_keras_serializable(package="tfdml")
class AngularLoss(DMLLoss):
    """N-pair loss on unnormalised embeddings plus the angular constraint on normalised ones.

    When to use: a triplet-style loss whose angular constraint is scale-invariant; needs batches of several classes with
    two or more samples each, and no miner.

    For every ordered positive pair ``(a, p)`` and negatives ``n`` (``y_n ≠ y_a``), with
    ``φ = φ* / ‖φ*‖``:

    ```
    f_apn = 4 tan²(α) (φ_a + φ_p)ᵀ φ_n − 2 (1 + tan²(α)) φ_aᵀ φ_p
    L = L_npair(φ*) + λ · mean_{(a,p)} log(1 + Σ_n exp(f_apn))
    ```

    Wang et al., "Deep Metric Learning with Angular Loss", ICCV 2017 (the N-pair form);
    Roth et al. 2020, supplementary A.1, Eq. 5 (whose extracted text misprints the
    last term as ``φ_aᵀφ_n``; Wang's ``φ_aᵀφ_p`` is used). ``y_pred`` are the unnormalised
    embeddings (model built with ``normalize=False``); the angular term normalises them
    itself. Tuples are built as in :class:`NPairLoss` (every positive pair, all other
    classes as negatives).

    The sum over negatives is computed as a ``b × b`` matrix product of per-row-stabilised
    exponentials (no ``b × b × b`` tensor); it stays accurate for ``α`` up to about 65°,
    beyond which the smallest terms underflow in float32 (the loss stays finite).

    Args:
        alpha: angular margin ``α`` in degrees, in ``(0, 90)`` (Roth et al.: 45).
        angular_weight: weight ``λ`` of the angular term (Roth et al.: 2).
        nu: weight ``ν`` of the N-pair squared-norm regulariser (Roth et al.: 0.005).
        name: name of the loss instance.

    Example:

    >>> loss = tfdml.losses.AngularLoss()
    >>> loss(tf.constant([0, 0, 1, 1]), tf.random.normal((4, 16)))
    """

    def __init__(self, alpha=45.0, angular_weight=2.0, nu=0.005, name="angular_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.alpha = check_argument("AngularLoss", "alpha", alpha, low=0.0, high=90.0, low_open=True, high_open=True)
        self.angular_weight = check_argument("AngularLoss", "angular_weight", angular_weight, low=0.0)
        self.nu = check_argument("AngularLoss", "nu", nu, low=0.0)

    def compute(self, labels, embeddings):
        return angular_loss(labels, embeddings, self.alpha, self.angular_weight, self.nu)
