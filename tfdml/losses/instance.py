"""Instance loss (Zheng et al. 2020): each sample classified among the batch by scaled cosine similarity."""

import keras
import tensorflow as tf

from tfdml.losses.base import DMLLoss
from tfdml.losses.pairs import nan_unless_finite
from tfdml.masks import same_label_mask
from tfdml.mining.base import check_argument


def instance_loss(labels, embeddings, scale=64.0):
    """Instance loss (see :class:`InstanceLoss`) of int ``labels`` ``(b,)`` and ``embeddings`` ``(b, d)``,
    L2-normalised here: the mean over the ``b`` samples of the cross-entropy between the softmax of their
    row of ``γ S`` and the uniform distribution over their class (themselves included)."""
    embeddings = tf.convert_to_tensor(embeddings)
    normalized = tf.math.l2_normalize(embeddings, axis=1)
    logits = scale * tf.matmul(normalized, normalized, transpose_b=True)
    same = tf.cast(same_label_mask(labels), logits.dtype)
    targets = same / tf.reduce_sum(same, axis=1, keepdims=True)
    loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=targets, logits=logits))
    return nan_unless_finite(loss, embeddings)


@keras.saving.register_keras_serializable(package="tfdml")
class InstanceLoss(DMLLoss):
    """Instance loss: a softmax classifier whose class vectors are the batch's own normalised embeddings.

    When to use: instance-level retrieval with few images per class (image–text, person re-identification), each batch
    sample its own class.

    With cosine similarities ``s_ij`` of the L2-normalised embeddings and ``C_i = {j : y_j = y_i}`` (``i``
    itself included), each sample is classified among the ``b`` samples of the batch, its targets spread
    evenly over its class:

    ```
    L = (1/b) Σ_i −(1/|C_i|) Σ_{j ∈ C_i} log( exp(γ s_ij) / Σ_k exp(γ s_ik) )
    ```

    Zheng et al., "Dual-Path Convolutional Image-Text Embeddings with Instance Loss", TOMM 2020,
    Sec. 3 (the instance loss ``−log P(c)``, ``P`` a softmax over one class per training instance), here
    without the learned shared classifier ``W_share``: as in pytorch-metric-learning (PML), the batch's
    embeddings stand in for the class weights, so the loss has no parameters. With one label per sample
    (instance discrimination, the paper's setting) ``C_i = {i}``: every other sample is pushed away from
    ``i``. With class labels the softmax mass goes to ``i``'s class, which pulls the class together.

    Default ``γ = 64``: PML's; the paper learns its classifier's scale with its weights.

    PML's ``InstanceLoss(gamma)`` takes as the target of sample ``i`` the column numbered by the rank of
    ``y_i`` among the batch's labels, one sample rather than ``i``'s class: the two agree when the labels are
    distinct and sorted (the ``i``-th smallest label at position ``i``, e.g. ``y = arange(b)``, its
    instance-discrimination use), where ``InstanceLoss(gamma=scale)`` reproduces this loss. PML has no
    setting that reproduces it for class labels.

    Args:
        scale: the scale ``γ > 0`` of the cosine similarities (PML's ``gamma``; default 64).
        name: name of the loss instance.

    Example:

    >>> loss = tfdml.losses.InstanceLoss()
    >>> loss(tf.range(4), tf.random.normal((4, 16)))
    """

    def __init__(self, scale=64.0, name="instance_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.scale = check_argument("InstanceLoss", "scale", scale, low=0.0, low_open=True)

    def compute(self, labels, embeddings):
        return instance_loss(labels, embeddings, self.scale)
