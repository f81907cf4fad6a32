"""Ranked list loss (Wang et al. 2019): each query's positives pulled inside α − m, its negatives pushed beyond α."""

import keras
import numpy as np
import tensorflow as tf

from tfdml.losses.base import DMLLoss
from tfdml.losses.pairs import batch_distances, nan_unless_finite, pair_masks
from tfdml.mining.base import check_argument


def softmax_weighted_mean(values, logits, mask):
    """Per row, ``Σ_j w_j values_j`` with ``w = softmax(logits)`` over the ``mask``ed entries; 0 for a row
    without one. The softmax is ``exp(logits) / Σ exp(logits)`` without its overflow (``T_n α`` may be large)."""
    has_entry = tf.reduce_any(mask, axis=1, keepdims=True)
    # A row without entries gets a finite uniform softmax (no NaN gradient) that the masked values zero.
    outside = tf.where(has_entry, tf.constant(-np.inf, logits.dtype), tf.zeros_like(logits[:, :1]))
    weights = tf.nn.softmax(tf.where(mask, logits, outside), axis=1)
    return tf.reduce_sum(weights * tf.where(mask, values, tf.zeros_like(values)), axis=1)


def ranked_list_loss(
    labels, embeddings, margin=0.4, alpha=1.2, negative_temperature=10.0, positive_temperature=0.0, balance=0.5
):
    """Ranked list loss (see :class:`RankedListLoss`) of int ``labels`` ``(b,)`` and ``embeddings`` ``(b, d)``,
    L2-normalised here: the mean over the ``b`` queries of ``(1 − λ) L_P + λ L_N`` on the ``b × b`` distances."""
    embeddings = tf.convert_to_tensor(embeddings)
    distances = batch_distances(tf.math.l2_normalize(embeddings, axis=1))
    positives, negatives = pair_masks(labels)
    # The pairwise margin loss L_m of each pair: positive beyond α − m, negative within α; the non-trivial
    # sets P* and N* are the pairs where it is positive.
    positive_gap = distances - (alpha - margin)
    negative_gap = alpha - distances
    hard_positives = tf.logical_and(positives, positive_gap > 0.0)
    hard_negatives = tf.logical_and(negatives, negative_gap > 0.0)
    positive_loss = softmax_weighted_mean(positive_gap, positive_temperature * positive_gap, hard_positives)
    negative_loss = softmax_weighted_mean(negative_gap, negative_temperature * negative_gap, hard_negatives)
    loss = tf.reduce_mean((1.0 - balance) * positive_loss + balance * negative_loss)
    return nan_unless_finite(loss, embeddings)


@keras.saving.register_keras_serializable(package="tfdml")
class RankedListLoss(DMLLoss):
    """Ranked list loss: every query ranks the whole batch; positives pulled within ``α − m``, negatives beyond ``α``.

    When to use: retrieval with P×K batches where each query ranks its whole batch, keeping each class within a margin
    band rather than a point.

    With Euclidean distances ``d_ij`` of the L2-normalised embeddings, each sample ``i`` of the batch is a
    query, its non-trivial positives and negatives the pairs that violate their boundary,

    ```
    P*_i = {j ≠ i : y_j = y_i, d_ij > α − m},      N*_i = {j : y_j ≠ y_i, d_ij < α}
    L_P(i) = Σ_{j ∈ P*_i} w⁺_ij (d_ij − (α − m)) / Σ_{j ∈ P*_i} w⁺_ij,   w⁺_ij = exp(T_p (d_ij − (α − m)))
    L_N(i) = Σ_{j ∈ N*_i} w⁻_ij (α − d_ij) / Σ_{j ∈ N*_i} w⁻_ij,         w⁻_ij = exp(T_n (α − d_ij))
    L = (1/b) Σ_i [(1 − λ) L_P(i) + λ L_N(i)]
    ```

    Wang et al., "Ranked List Loss for Deep Metric Learning", CVPR 2019 (extended in TPAMI 2021), Sec. 3:
    Eq. 1 (the pairwise margin loss ``L_m``, of which ``L_P`` and ``L_N`` are weighted means), the mining
    of ``P*`` and ``N*``, their weighting, ``L_RLL`` and the batch loss as the mean over all queries. An
    empty ``P*_i`` or ``N*_i`` makes its term 0, so a query without positives adds only ``λ L_N(i)`` to the
    mean over ``b``. ``T_p = 0`` weighs every positive alike (a plain mean over ``P*_i``). Gradients flow
    through the weights as through the distances (as in PML); the weights are a softmax over each set, so
    a large ``T_n`` cannot overflow.

    Defaults ``m = 0.4``, ``α = 1 + m/2 = 1.2``, ``T_n = 10``, ``T_p = 0``, ``λ = 0.5``: the authors'
    simpler setting (``α`` tied to ``m``, positives unweighted, the two sets balanced; "RLL-Simpler" in
    pytorch-metric-learning (PML), whose defaults for ``alpha``, ``Tp`` and ``imbalance`` these are; PML
    has no default for ``margin`` and ``Tn``).

    PML's ``RankedListLoss(margin, Tn, imbalance, alpha, Tp)`` averages its per-query terms with its
    ``AvgNonZeroReducer`` (over the queries whose loss is not 0);
    ``RankedListLoss(margin=margin, Tn=negative_temperature, imbalance=balance, alpha=alpha,
    Tp=positive_temperature, reducer=MeanReducer())`` reproduces this loss up to two details of PML: it
    adds ``1e-5`` per batch sample to each weight sum (a relative difference below ``b · 1e-5`` over the
    set's size), and it leaves a negative at distance exactly 0 out of ``N*`` (identical embeddings give
    PML a 0 loss).

    Args:
        margin: the margin ``m ≥ 0`` between the positive boundary ``α − m`` and the negative one ``α``
            (default 0.4).
        alpha: the negative boundary ``α > 0`` (default 1.2).
        negative_temperature: ``T_n ≥ 0``, the weighting of the negatives (default 10).
        positive_temperature: ``T_p ≥ 0``, the weighting of the positives (default 0: unweighted).
        balance: ``λ ∈ [0, 1]``, the weight of the negatives' term (PML's ``imbalance``; default 0.5).
        name: name of the loss instance.

    Example:

    >>> loss = tfdml.losses.RankedListLoss()
    >>> loss(tf.constant([0, 0, 1, 1]), tf.random.normal((4, 16)))
    """

    def __init__(
        self,
        margin=0.4,
        alpha=1.2,
        negative_temperature=10.0,
        positive_temperature=0.0,
        balance=0.5,
        name="ranked_list_loss",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.margin = check_argument("RankedListLoss", "margin", margin, low=0.0)
        self.alpha = check_argument("RankedListLoss", "alpha", alpha, low=0.0, low_open=True)
        self.negative_temperature = check_argument(
            "RankedListLoss", "negative_temperature", negative_temperature, low=0.0
        )
        self.positive_temperature = check_argument(
            "RankedListLoss", "positive_temperature", positive_temperature, low=0.0
        )
        self.balance = check_argument("RankedListLoss", "balance", balance, low=0.0, high=1.0)

    def compute(self, labels, embeddings):
        return ranked_list_loss(
            labels,
            embeddings,
            self.margin,
            self.alpha,
            self.negative_temperature,
            self.positive_temperature,
            self.balance,
        )
