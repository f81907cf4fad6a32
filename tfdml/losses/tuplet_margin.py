"""Tuplet margin loss and intra-pair variance loss (Yu & Tao 2019) on the cosine similarities of positive and
negative pairs: every pair of the batch, or a miner's."""

import math

import keras
import tensorflow as tf

from tfdml.distances import safe_sqrt
from tfdml.losses.base import DMLLoss
from tfdml.losses.math import masked_logsumexp, masked_mean, mean_over_positive_pairs
from tfdml.losses.pairs import nan_unless_finite, pair_masks
from tfdml.losses.tuples import mine_pairs, resolve_miner
from tfdml.mining.base import check_argument
from tfdml.mining.multi_similarity import PairMasks


def cosine_similarity(embeddings):
    """The ``(b, b)`` cosine similarity of the L2-normalised ``embeddings``."""
    normalized = tf.math.l2_normalize(embeddings, axis=1)
    return tf.matmul(normalized, normalized, transpose_b=True)


def shifted_cosine(cosine, margin):
    """``cos(θ − β) = cos θ cos β + sin θ sin β`` from ``cos θ`` (clipped to ``[−1, 1]`` against rounding).

    ``acos`` has an infinite derivative at ``θ = 0``; ``sin θ`` is a square root with a zero gradient
    there (:func:`tfdml.distances.safe_sqrt`), so identical positives get a finite gradient.
    """
    cosine = tf.clip_by_value(cosine, -1.0, 1.0)
    return cosine * math.cos(margin) + safe_sqrt(1.0 - tf.square(cosine)) * math.sin(margin)


def tuplet_margin_loss(pairs, embeddings, margin=0.1, scale=64.0):
    """Tuplet margin loss (see :class:`TupletMarginLoss`) of ``embeddings`` ``(b, d)``, L2-normalised here, on
    ``pairs`` (:class:`~tfdml.mining.multi_similarity.PairMasks`): per positive pair ``(a, p)``,
    ``softplus(logsumexp_{n ∈ N_a} s·S_an − s·cos(θ_ap − β))``, averaged over the positive pairs."""
    similarity = cosine_similarity(embeddings)
    negatives, has_negative = masked_logsumexp(scale * similarity, pairs.negatives)
    terms = tf.nn.softplus(negatives[:, tf.newaxis] - scale * shifted_cosine(similarity, margin))
    return mean_over_positive_pairs(terms, pairs.positives, has_negative)


def tuplet_margin_all_pairs(labels, embeddings, margin=0.1, scale=64.0):
    """Tuplet margin loss (Yu & Tao 2019; see :class:`TupletMarginLoss`) with every positive pair of the batch
    against every negative of its anchor, on the ``b × b`` cosine similarity.

    Example:

    >>> tuplet_margin_all_pairs(tf.constant([0, 0, 1, 1]), tf.random.normal((4, 16)))
    """
    embeddings = tf.convert_to_tensor(embeddings)
    loss = tuplet_margin_loss(PairMasks(*pair_masks(labels)), embeddings, margin, scale)
    return nan_unless_finite(loss, embeddings)


@keras.saving.register_keras_serializable(package="tfdml")
class TupletMarginLoss(DMLLoss):
    """Tuplet margin loss: each positive pair against all its anchor's negatives, with a slack margin on the
    positive angle, on scaled cosine similarities.

    When to use: fine-grained retrieval with P×K batches; add IntraPairVarianceLoss, as Yu & Tao do.

    With ``θ_ij`` the angle between the L2-normalised embeddings ``φ̂_i`` and ``φ̂_j``, ``P`` the positive pairs
    and ``N_a`` the negatives of anchor ``a``:

    ```
    L = 1/|P| Σ_{(a,p) ∈ P} log(1 + Σ_{n ∈ N_a} exp(s (cos θ_an − cos(θ_ap − β))))
    ```

    Yu & Tao, "Deep Metric Learning with Tuplet Margin Loss", ICCV 2019 (the tuplet margin loss: the
    normalised N-pair/tuplet loss with the slack margin ``β``, for the tuplet ``(a, p, n_1 … n_{k−1})``).
    The slack margin ``β > 0`` rewards a positive angle near ``β`` rather than ``0``, so hard positive
    pairs are not pulled together too aggressively. It is paired in the paper with
    :class:`IntraPairVarianceLoss`: ``TupletMarginLoss + λ·IntraPairVarianceLoss``.

    Each term is ``softplus(logsumexp_n s·cos θ_an − s·cos(θ_ap − β))``: one log-sum-exp per anchor over the
    ``b × b`` similarity, so memory is ``O(b²)`` (never positives × negatives) and ``s = 64`` cannot overflow.
    A positive pair whose anchor has no negative adds 0 and still counts in the mean; no positive pair gives 0.
    ``cos(θ − β)`` is computed without ``acos`` (:func:`shifted_cosine`): identical positives get a finite
    gradient. ``y_pred`` may be normalised or not: the loss normalises.

    Defaults ``β = 0.1`` rad, ``s = 64``: pytorch-metric-learning's (PML) ``TupletMarginLoss(margin=5.73,
    scale=64)``. PML takes ``β`` in degrees, this class in radians (as :class:`ArcFaceLoss`):
    ``margin=β`` here is ``margin=math.degrees(β)`` there. Without a miner both use every positive pair
    against every negative of its anchor and average over the positive pairs (PML's ``MeanReducer``), so
    PML's ``TupletMarginLoss(margin=math.degrees(β), scale=s)`` reproduces this loss. With a miner this loss
    takes the mined pairs as sets; PML keeps a triplet miner's ``(a, p)`` and ``(a, n)`` once per triplet,
    so the two agree with a pair miner (``MultiSimilarityMiner``, ``PairMarginMiner``), not with a triplet
    miner that repeats pairs.

    Args:
        margin: the slack margin ``β`` in radians, in ``[0, π/2)`` (default 0.1; 0 gives the normalised tuplet loss).
        scale: the scale ``s > 0`` (default 64).
        miner: ``None`` (default: every pair of the batch, as the paper and PML) or a
            :class:`~tfdml.mining.base.Miner` whose pairs (``PairMasks``) or triplets' pairs enter the sums.
        name: name of the loss instance.

    Example:

    >>> loss = tfdml.losses.TupletMarginLoss()
    >>> loss(tf.constant([0, 0, 1, 1]), tf.random.normal((4, 16)))
    """

    data_arguments = ("miner",)

    def __init__(self, margin=0.1, scale=64.0, miner=None, name="tuplet_margin_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.margin = check_argument("TupletMarginLoss", "margin", margin, low=0.0, high=math.pi / 2, high_open=True)
        self.scale = check_argument("TupletMarginLoss", "scale", scale, low=0.0, low_open=True)
        self.miner = None if miner is None else resolve_miner(miner, None)

    def compute(self, labels, embeddings):
        pairs = mine_pairs("TupletMarginLoss", self.miner, embeddings, labels)
        return tuplet_margin_loss(pairs, embeddings, self.margin, self.scale)


def intra_pair_variance_loss(pairs, embeddings, pos_eps=0.01, neg_eps=0.01):
    """Intra-pair variance loss (see :class:`IntraPairVarianceLoss`) of ``embeddings`` ``(b, d)``, L2-normalised
    here, on ``pairs`` (:class:`~tfdml.mining.multi_similarity.PairMasks`)."""
    similarity = cosine_similarity(embeddings)
    positive_mean = masked_mean(similarity, pairs.positives)
    negative_mean = masked_mean(similarity, pairs.negatives)
    positive_terms = tf.square(tf.nn.relu((1.0 - pos_eps) * positive_mean - similarity))
    negative_terms = tf.square(tf.nn.relu(similarity - (1.0 + neg_eps) * negative_mean))
    return masked_mean(positive_terms, pairs.positives) + masked_mean(negative_terms, pairs.negatives)


def intra_pair_variance_all_pairs(labels, embeddings, pos_eps=0.01, neg_eps=0.01):
    """Intra-pair variance loss (Yu & Tao 2019; see :class:`IntraPairVarianceLoss`) on every positive and
    negative pair of the batch.

    Example:

    >>> intra_pair_variance_all_pairs(tf.constant([0, 0, 1, 1]), tf.random.normal((4, 16)))
    """
    embeddings = tf.convert_to_tensor(embeddings)
    loss = intra_pair_variance_loss(PairMasks(*pair_masks(labels)), embeddings, pos_eps, neg_eps)
    return nan_unless_finite(loss, embeddings)


@keras.saving.register_keras_serializable(package="tfdml")
class IntraPairVarianceLoss(DMLLoss):
    """Intra-pair variance loss: penalises positive pairs less similar, and negative pairs more similar, than
    their batch's mean by a relative margin.

    When to use: beside TupletMarginLoss (Yu & Tao add the two), to tighten the spread of the positive and the negative
    similarities.

    With cosine similarities ``S_ij`` of the L2-normalised embeddings, the positive pairs ``P`` and negative
    pairs ``N`` (ordered, ``i ≠ j``), and their means ``μ_P = E_P[S]`` and ``μ_N = E_N[S]``:

    ```
    L = 1/|P| Σ_{(i,j) ∈ P} [(1 − ε⁺) μ_P − S_ij]_+² + 1/|N| Σ_{(i,j) ∈ N} [S_ij − (1 + ε⁻) μ_N]_+²
    ```

    Yu & Tao, "Deep Metric Learning with Tuplet Margin Loss", ICCV 2019 (the intra-pair variance loss,
    ``E[[(1 − ε) E[cos θ_ap] − cos θ_ap]_+²] + E[[cos θ_an − (1 + ε) E[cos θ_an]]_+²]``), a regulariser
    added to :class:`TupletMarginLoss` with a weight ``λ``. The means are part of the loss (gradients flow through
    them). A side without pairs adds 0. ``y_pred`` may be normalised or not: the loss normalises.

    Defaults ``ε⁺ = ε⁻ = 0.01``: pytorch-metric-learning's (PML) ``IntraPairVarianceLoss(pos_eps=0.01,
    neg_eps=0.01)``, whose default (cosine similarity, ``MeanReducer`` per side, no miner: every pair)
    is this loss with the same arguments. With a miner this loss takes the mined pairs as sets; PML keeps a
    triplet miner's ``(a, p)`` and ``(a, n)`` once per triplet (the two agree with a pair miner), and returns
    0 when at most one pair of each kind is mined.

    Args:
        pos_eps: ``ε⁺ ∈ [0, 1]``, the relative margin below the positive mean (default 0.01).
        neg_eps: ``ε⁻ ∈ [0, 1]``, the relative margin above the negative mean (default 0.01).
        miner: ``None`` (default: every pair of the batch) or a :class:`~tfdml.mining.base.Miner` whose
            pairs (``PairMasks``) or triplets' pairs enter the means.
        name: name of the loss instance.

    Example:

    >>> loss = tfdml.losses.IntraPairVarianceLoss()
    >>> labels, embeddings = tf.constant([0, 0, 1, 1]), tf.random.normal((4, 16))
    >>> total = tfdml.losses.TupletMarginLoss()(labels, embeddings) + 0.5 * loss(labels, embeddings)
    """

    data_arguments = ("miner",)

    def __init__(self, pos_eps=0.01, neg_eps=0.01, miner=None, name="intra_pair_variance_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.pos_eps = check_argument("IntraPairVarianceLoss", "pos_eps", pos_eps, low=0.0, high=1.0)
        self.neg_eps = check_argument("IntraPairVarianceLoss", "neg_eps", neg_eps, low=0.0, high=1.0)
        self.miner = None if miner is None else resolve_miner(miner, None)

    def compute(self, labels, embeddings):
        pairs = mine_pairs("IntraPairVarianceLoss", self.miner, embeddings, labels)
        return intra_pair_variance_loss(pairs, embeddings, self.pos_eps, self.neg_eps)
