"""Decoupled contrastive learning (Yeh et al., 2022): NT-Xent without the positive in the denominator."""

import keras
import tensorflow as tf

from tfdml.losses.base import DMLLoss
from tfdml.losses.math import masked_logsumexp, mean_over_positive_pairs
from tfdml.losses.pairs import nan_unless_finite, pair_masks
from tfdml.mining.base import check_argument


def positive_weights(similarity, positives, sigma):
    """DCLW's von Mises–Fisher weights ``w_ij = 2 − |P| softmax_{(k,l) ∈ P}(s_kl/σ)_ij`` on the positive pairs
    (1 elsewhere): ``w = 2 − exp(s_ij/σ) / mean_P exp(s_kl/σ)``, below 1 for the easy (similar) pairs."""
    logits = tf.where(positives, similarity / sigma, tf.fill(tf.shape(similarity), similarity.dtype.min))
    flat = tf.reshape(logits, [-1])
    num_positives = tf.reduce_sum(tf.cast(positives, similarity.dtype))
    probabilities = tf.reshape(tf.nn.softmax(flat), tf.shape(similarity))
    return tf.where(positives, 2.0 - num_positives * probabilities, tf.ones_like(similarity))


def decoupled_contrastive_loss(labels, embeddings, temperature=0.1, sigma=None):
    """Decoupled contrastive loss (see :class:`DecoupledContrastiveLoss`) of int ``labels`` ``(b,)`` and
    ``embeddings`` ``(b, d)``, L2-normalised here: the mean over the ordered positive pairs ``(i, j)`` of

        −w_ij s_ij/τ + logsumexp_{k ∈ N_i} s_ik/τ,

    with ``w_ij = 1`` (DCL) or the weights of :func:`positive_weights` (DCLW, ``sigma`` given); a pair
    whose anchor has no negative adds 0."""
    embeddings = tf.convert_to_tensor(embeddings)
    normalized = tf.math.l2_normalize(embeddings, axis=1)
    similarity = tf.matmul(normalized, normalized, transpose_b=True)
    logits = similarity / temperature
    positives, negatives = pair_masks(labels)
    negative_lse, has_negative = masked_logsumexp(logits, negatives)
    weights = tf.ones_like(logits) if sigma is None else positive_weights(similarity, positives, sigma)
    pair_terms = negative_lse[:, tf.newaxis] - weights * logits
    return nan_unless_finite(mean_over_positive_pairs(pair_terms, positives, has_negative), embeddings)


@keras.saving.register_keras_serializable(package="tfdml")
class DecoupledContrastiveLoss(DMLLoss):
    """Decoupled contrastive loss (DCL): NT-Xent with the positive pair removed from the softmax's denominator.

    When to use: NT-Xent-style training with small batches, where dropping the positive from the denominator learns
    faster and more stably.

    With cosine similarities ``s_ij`` of the L2-normalised embeddings, the ordered positive pairs
    ``P = {(i, j): i ≠ j, y_i = y_j}`` and the negatives ``N_i = {k: y_k ≠ y_i}`` of anchor ``i``:

    ```
    L = (1/|P|) Σ_{(i,j) ∈ P} [ −w_ij s_ij/τ + log Σ_{k ∈ N_i} exp(s_ik/τ) ]
    w_ij = 1                                                  (DCL)
    w_ij = 2 − exp(s_ij/σ) / ((1/|P|) Σ_{(k,l) ∈ P} exp(s_kl/σ))   (DCLW, the von Mises–Fisher weighting)
    ```

    Yeh, Hong, Hsu, Liu, Chen, LeCun, "Decoupled Contrastive Learning", ECCV 2022 (Eq. 6 for DCL, Eq. 7
    and its weighting function for DCLW). NT-Xent (:class:`NTXentLoss`) has ``exp(s_ij/τ)`` in its
    denominator too; removing it removes the negative-positive coupling that scales NT-Xent's gradient
    down when positives are easy, so DCL trains with small batches. Positives are defined by the labels
    as in :class:`NTXentLoss`: two views of an image share a label (the paper's setting: two samples per
    class); with class labels the other samples of the class are positives. Unlike NT-Xent the value
    can be negative. The weights ``w_ij`` keep their gradient (the authors' code does not stop it). A
    pair whose anchor has no negative adds 0; a batch without positive pairs gives 0.

    Defaults: ``τ = 0.1`` and no weighting, the authors' code's (``DCL(temperature=0.1)``); ``σ = 0.5`` is
    the paper's DCLW setting. Normalisation: the authors' code sums the means of the two directions
    (``dcl(z1, z2) + dcl(z2, z1)``), twice this mean over ordered pairs. pytorch-metric-learning has no
    decoupled contrastive loss.

    Args:
        temperature: ``τ > 0`` (default 0.1).
        sigma: ``σ > 0`` of DCLW's weighting, or ``None`` for DCL (default ``None``).
        name: name of the loss instance.

    Example:

    >>> loss = tfdml.losses.DecoupledContrastiveLoss(sigma=0.5)  # DCLW
    >>> loss(tf.constant([0, 1, 0, 1]), tf.random.normal((4, 16)))
    """

    def __init__(self, temperature=0.1, sigma=None, name="decoupled_contrastive_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.temperature = check_argument(
            "DecoupledContrastiveLoss", "temperature", temperature, low=0.0, low_open=True
        )
        self.sigma = check_argument("DecoupledContrastiveLoss", "sigma", sigma, low=0.0, low_open=True, optional=True)

    def compute(self, labels, embeddings):
        return decoupled_contrastive_loss(labels, embeddings, self.temperature, self.sigma)
