"""Neighbourhood Components Analysis (Goldberger et al., 2004) within the batch: each sample's stochastic
nearest neighbour, a softmax over negative squared distances, should share its label."""

import keras
import tensorflow as tf

from tfdml.distances import squared_euclidean
from tfdml.losses.base import DMLLoss
from tfdml.losses.math import masked_logsumexp, masked_mean
from tfdml.losses.pairs import nan_unless_finite, pair_masks, without_diagonal
from tfdml.mining.base import check_argument


def nca_loss(labels, embeddings, scale=1.0):
    """NCA loss (see :class:`NCALoss`) of int ``labels`` ``(b,)`` and ``embeddings`` ``(b, d)``, used as
    given: the mean, over the anchors with a positive, of ``−log p_i`` with

        log p_i = logsumexp_{j ∈ P_i} (−s·D²_ij) − logsumexp_{k ≠ i} (−s·D²_ik),

    in log space, so a ``p_i`` that underflows ``exp`` still has a finite loss and gradient."""
    embeddings = tf.convert_to_tensor(embeddings)
    logits = -scale * squared_euclidean(embeddings)
    positives, _ = pair_masks(labels)
    log_denominator, _ = masked_logsumexp(logits, without_diagonal(tf.ones_like(positives)))
    log_positive, has_positive = masked_logsumexp(logits, positives)
    return nan_unless_finite(masked_mean(log_denominator - log_positive, has_positive), embeddings)


@keras.saving.register_keras_serializable(package="tfdml")
class NCALoss(DMLLoss):
    """Neighbourhood Components Analysis loss: the log-probability that a sample's stochastic nearest
    neighbour in the batch has its label.

    When to use: a soft nearest-neighbour objective over the batch with no margin and no miner; a simple baseline for
    modest class counts.

    With the squared Euclidean distances ``D²_ij = ‖x_i − x_j‖²`` of the embeddings (used as given, not
    normalised), each sample ``i`` picks a neighbour ``j ≠ i`` with a softmax over negative scaled
    squared distances, and ``p_i`` is the probability that it picks a positive ``P_i = {j ≠ i: y_j = y_i}``:

    ```
    p_ij = exp(−s·D²_ij) / Σ_{k ≠ i} exp(−s·D²_ik),    p_i = Σ_{j ∈ P_i} p_ij,
    L = (1/|I|) Σ_{i ∈ I} −log p_i,    I = {i : P_i ≠ ∅}
    ```

    Goldberger et al., "Neighbourhood Components Analysis", NIPS 2004 (Goldberger, Roweis, Hinton,
    Salakhutdinov): ``p_ij`` and ``p_i`` are its stochastic-neighbour probabilities and ``Σ_i log p_i``
    the log objective it proposes beside ``Σ_i p_i`` (equation numbers not verified). The paper learns
    a linear map ``A`` over a whole training set (``D²_ij = ‖Ax_i − Ax_j‖²``); here the network's
    embeddings take ``A x``'s place and the neighbours are the batch's, as in pytorch-metric-learning
    (PML). The terms are averaged over the anchors with a positive (the paper sums over all samples,
    where every sample's class has another member); a batch without positive pairs gives 0. The scale
    ``s`` is the inverse temperature, which the paper's ``A`` absorbs.

    Default ``s = 1``: the paper's softmax (no scale) and PML's ``softmax_scale`` default.

    PML's ``NCALoss`` normalises the embeddings by default (its ``LpDistance(power=2)``). This loss
    equals ``NCALoss(softmax_scale=s, distance=LpDistance(power=2, normalize_embeddings=False))``
    (same value and gradient; PML's default ``MeanReducer`` averages over the anchors whose ``p_i``
    is non-zero, the anchors with a positive unless ``p_i`` underflows); PML's default is this loss
    of L2-normalised embeddings.

    Args:
        scale: ``s > 0``, multiplies the negative squared distances in the softmax (default 1).
        name: name of the loss instance.

    Example:

    >>> loss = tfdml.losses.NCALoss(scale=4.0)
    >>> loss(tf.constant([0, 0, 1, 1]), tf.random.normal((4, 16)))
    """

    def __init__(self, scale=1.0, name="nca_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.scale = check_argument("NCALoss", "scale", scale, low=0.0, low_open=True)

    def compute(self, labels, embeddings):
        return nca_loss(labels, embeddings, self.scale)
