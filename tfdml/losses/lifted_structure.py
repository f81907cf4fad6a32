"""Generalized lifted structure loss (Hermans et al., 2017) on unnormalised embeddings."""

import keras
import tensorflow as tf

from tfdml.distances import euclidean
from tfdml.losses.base import DMLLoss
from tfdml.losses.math import masked_logsumexp, masked_mean, squared_norm_regularizer
from tfdml.masks import negative_mask, positive_mask
from tfdml.mining.base import check_argument


def generalized_lifted_structure_loss(labels, embeddings, margin=1.0, nu=0.005):
    """Generalized lifted structure loss of a batch (see :class:`GeneralizedLiftedStructureLoss`):
    int ``labels`` ``(b,)``, unnormalised ``embeddings`` ``(b, d)``, margin ``γ``, regulariser weight ``ν``."""
    distances = euclidean(embeddings)
    positive_lse, has_positive = masked_logsumexp(distances, positive_mask(labels))
    negative_lse, has_negative = masked_logsumexp(margin - distances, negative_mask(labels))
    ranking = masked_mean(tf.nn.relu(positive_lse + negative_lse), tf.logical_and(has_positive, has_negative))
    return ranking + nu * squared_norm_regularizer(embeddings)


@keras.saving.register_keras_serializable(package="tfdml")
class GeneralizedLiftedStructureLoss(DMLLoss):
    """Lifted structure loss over all positive and negative pairs of each anchor.

    With Euclidean distances ``d`` between unnormalised embeddings ``φ*``:

    ```
    L = mean_a [ log Σ_{p: y_p = y_a, p ≠ a} exp(d(φ*_a, φ*_p))
               + log Σ_{n: y_n ≠ y_a} exp(γ − d(φ*_a, φ*_n)) ]_+
        + ν · (1/b) Σ_i ‖φ*_i‖²
    ```

    Hermans et al., "In Defense of the Triplet Loss for Person Re-Identification", 2017
    (generalising Oh Song et al., CVPR 2016); Roth et al. 2020, supplementary A.1, Eq. 3.
    ``y_pred`` are the unnormalised embeddings (model built with ``normalize=False``); the
    ``ν`` term bounds their norm. The mean runs over anchors that have at least one positive
    and one negative (the term is undefined otherwise); Roth et al.'s code also averages,
    while Eq. 3 writes a plain sum, which would tie the loss scale to the batch size.

    Args:
        margin: margin ``γ >= 0`` on negative distances (Roth et al.: 1).
        nu: weight ``ν`` of the squared-norm regulariser (Roth et al.: 0.005).
        name: name of the loss instance.

    Example:

    >>> loss = tfdml.losses.GeneralizedLiftedStructureLoss()
    >>> loss(tf.constant([0, 0, 1, 1]), tf.random.normal((4, 16)))
    """

    def __init__(self, margin=1.0, nu=0.005, name="generalized_lifted_structure_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.margin = check_argument("GeneralizedLiftedStructureLoss", "margin", margin, low=0.0)
        self.nu = check_argument("GeneralizedLiftedStructureLoss", "nu", nu, low=0.0)

    def compute(self, labels, embeddings):
        return generalized_lifted_structure_loss(labels, embeddings, self.margin, self.nu)
