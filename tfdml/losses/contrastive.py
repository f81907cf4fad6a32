"""Contrastive loss (Hadsell, Chopra & LeCun 2006) on mined pairs or on every pair of the batch."""

import keras
import tensorflow as tf

from tfdml.losses.base import DMLLoss
from tfdml.distances import SIMILARITIES, check_distance
from tfdml.losses.pairs import (
    AVERAGES,
    batch_comparison,
    check_pairs,
    count_active,
    nan_unless_finite,
    pair_masks,
    query_key_comparison,
    without_diagonal,
)
from tfdml.losses.math import masked_mean
from tfdml.losses.tuples import anchor_distances, resolve_miner, tuple_comparison
from tfdml.masks import same_label_mask
from tfdml.mining.base import MaskedTriplets, check_argument
from tfdml.mining.distance_weighted import DistanceWeightedMiner
from tfdml.mining.multi_similarity import PairMasks


def contrastive_terms(matrix, sign, margin, positive_margin):
    """``(positive, negative)`` pair terms ``(sign (M − m⁺))_+`` and ``(sign (γ − M))_+`` of the comparison
    ``matrix`` (``sign`` +1 for a distance, −1 for a similarity: :class:`~tfdml.distances.Comparison`)."""
    if sign > 0:  # a static Python branch: no b × b multiplication by the sign
        return tf.nn.relu(matrix - positive_margin), tf.nn.relu(margin - matrix)
    return tf.nn.relu(positive_margin - matrix), tf.nn.relu(matrix - margin)


def contrastive_loss(triplets, embeddings, margin=1.0, positive_margin=0.0, distance="euclidean", keys=None):
    """Contrastive loss (see :class:`ContrastiveLoss`) of the ``(anchor, positive)`` and
    ``(anchor, negative)`` pairs of the mined ``triplets`` (:class:`~tfdml.mining.base.MaskedTriplets`;
    with :class:`~tfdml.masks.Keys`, positives and negatives index the keys)."""
    matrix, sign = tuple_comparison(embeddings, keys, distance)
    anchor_positive, anchor_negative = anchor_distances(matrix, triplets)
    positive_terms, _ = contrastive_terms(anchor_positive, sign, margin, positive_margin)
    _, negative_terms = contrastive_terms(anchor_negative, sign, margin, positive_margin)
    # Each valid tuple holds one positive and one negative pair.
    return masked_mean(positive_terms + negative_terms, triplets.valid) / 2.0


def masked_contrastive(comparison, positives, negatives, margin, positive_margin, average):
    """Contrastive loss of the pairs in the boolean ``(b, b)`` masks: the mean over them (``average="pairs"``),
    or the mean of the non-zero positive terms plus that of the non-zero negative terms (``"nonzero"``)."""
    positive_terms, negative_terms = contrastive_terms(*comparison, margin, positive_margin)
    zero = tf.zeros_like(comparison.matrix)
    positive_terms = tf.where(positives, positive_terms, zero)
    negative_terms = tf.where(negatives, negative_terms, zero)
    if average == "pairs":
        num_pairs = tf.reduce_sum(tf.cast(positives, zero.dtype)) + tf.reduce_sum(tf.cast(negatives, zero.dtype))
        return tf.math.divide_no_nan(tf.reduce_sum(positive_terms) + tf.reduce_sum(negative_terms), num_pairs)
    return average_nonzero(positive_terms, negative_terms)


def average_nonzero(positive_terms, negative_terms):
    """PML's ``AvgNonZeroReducer``: the mean of the non-zero positive terms plus that of the non-zero negative terms."""
    return tf.math.divide_no_nan(tf.reduce_sum(positive_terms), count_active(positive_terms)) + (
        tf.math.divide_no_nan(tf.reduce_sum(negative_terms), count_active(negative_terms))
    )


def check_average(owner, average):
    if average not in AVERAGES:
        raise ValueError(f"{owner}: average must be one of {AVERAGES}; got {average!r}.")
    return average


def contrastive_pair_loss(
    pairs, embeddings, margin=1.0, positive_margin=0.0, distance="euclidean", average="pairs", keys=None
):
    """Contrastive loss (see :class:`ContrastiveLoss`) of the mined ``pairs``
    (:class:`~tfdml.mining.multi_similarity.PairMasks`, e.g. from :class:`~tfdml.mining.PairMarginMiner`):
    ``average`` as in :func:`contrastive_all_pairs` (``"nonzero"`` is PML's default reducer). With
    :class:`~tfdml.masks.Keys` the pairs are ``(b, m)`` query–key pairs."""
    check_average("contrastive_pair_loss", average)
    embeddings = tf.convert_to_tensor(embeddings)
    comparison = query_key_comparison(embeddings, keys, distance)
    return masked_contrastive(comparison, pairs.positives, pairs.negatives, margin, positive_margin, average)


def contrastive_all_pairs(
    labels, embeddings, margin=1.0, positive_margin=0.0, average="pairs", distance="euclidean", keys=None
):
    """Contrastive loss (Hadsell et al. 2006; Roth et al. 2020, eq. 1) on every ordered pair:

        ℓ_ij = 1[y_i = y_j] (D_ij − m⁺)_+ + 1[y_i ≠ y_j] (γ − D_ij)_+,   i ≠ j,

    with ``D`` given by ``distance`` (default Euclidean; under a similarity the terms are
    ``(m⁺ − S_ij)_+`` and ``(S_ij − γ)_+``, see :class:`ContrastiveLoss`). ``average="pairs"``
    (default, as :class:`ContrastiveLoss` documents) is the mean of ``ℓ`` over all ``b (b − 1)``
    ordered pairs; ``average="nonzero"`` is pytorch-metric-learning's ``AvgNonZeroReducer``: the
    mean of the non-zero positive terms plus the mean of the non-zero negative terms (a side
    without a non-zero term adds 0). Defaults ``γ = 1``, ``m⁺ = 0`` (Roth et al., PML). With
    :class:`~tfdml.masks.Keys` (a cross-batch memory) the pairs are every query with every valid key
    but its own copy, on the ``(b, m)`` rectangle.

    Example:

    >>> contrastive_all_pairs(tf.constant([0, 0, 1]), tf.eye(3), average="nonzero")
    """
    check_average("contrastive_all_pairs", average)
    embeddings = tf.convert_to_tensor(embeddings)
    if keys is not None:
        positives, negatives = pair_masks(labels, keys)
        comparison = query_key_comparison(embeddings, keys, distance)
        loss = masked_contrastive(comparison, positives, negatives, margin, positive_margin, average)
        return nan_unless_finite(loss, embeddings)
    comparison = batch_comparison(embeddings, distance, symmetric=True)
    same = same_label_mask(labels)
    positive_terms, negative_terms = contrastive_terms(*comparison, margin, positive_margin)
    # One mask, not masked_contrastive's two: this path is benchmarked at b = 4096.
    if average == "pairs":
        terms = without_diagonal(tf.where(same, positive_terms, negative_terms))
        num_pairs = tf.cast(tf.size(terms) - tf.shape(terms)[0], terms.dtype)
        loss = tf.math.divide_no_nan(tf.reduce_sum(terms), num_pairs)
    else:
        zero = tf.zeros_like(positive_terms)
        positive_terms = without_diagonal(tf.where(same, positive_terms, zero))
        loss = average_nonzero(positive_terms, tf.where(same, zero, negative_terms))
    return nan_unless_finite(loss, embeddings)


@keras.saving.register_keras_serializable(package="tfdml")
class ContrastiveLoss(DMLLoss):
    """Pulls positive pairs together and pushes negative pairs beyond a margin:

        L = 1/|P| Σ_{(i,j) ∈ P} 1[y_i = y_j] (D_ij − m⁺)_+ + 1[y_i ≠ y_j] (γ − D_ij)_+

    with Euclidean ``D`` by default (Roth et al. 2020, eq. 1). The pairs ``P`` come from the
    miner: a triplet miner's ``(anchor, positive)`` is a positive pair and ``(anchor, negative)``
    a negative pair (by role, so ρ-regularised tuples work); a pair miner's
    :class:`~tfdml.mining.multi_similarity.PairMasks` (e.g. :class:`~tfdml.mining.PairMarginMiner`)
    give the pairs directly. The mean is over all mined pairs; no pair gives 0.

    When to use: the simplest pair baseline; competitive with a distance-weighted or pair-margin miner (Roth et al.
    2020), and it accepts pair miners.

    Under a similarity ``S`` (``distance="cosine"`` or ``"dot"``) the directions flip, as in
    pytorch-metric-learning (PML): ``ℓ = 1[y_i = y_j] (m⁺ − S_ij)_+ + 1[y_i ≠ y_j] (S_ij − γ)_+``, so
    ``m⁺`` is the similarity above which positives cost nothing and ``γ`` the one below which
    negatives cost nothing (e.g. ``positive_margin=1.0, margin=0.0`` with cosine, PML's setting for
    ``CosineSimilarity``).

    PML's ``ContrastiveLoss(pos_margin=m⁺, neg_margin=γ)`` averages with its ``AvgNonZeroReducer``
    (non-zero positive terms and non-zero negative terms apart), which this loss's functions take as
    ``average="nonzero"`` (:func:`contrastive_all_pairs`, :func:`contrastive_pair_loss`); PML's default
    distance ``LpDistance()`` normalises the embeddings, ``LpDistance(normalize_embeddings=False)`` (and
    ``power=2`` for ``"squared_euclidean"``, ``DotProductSimilarity(normalize_embeddings=False)`` for
    ``"dot"``) is tfdml's.

    Args:
        margin: ``γ``, the distance beyond which negatives cost nothing (default 1.0; ``γ > 0`` for a
            distance: with ``γ = 0`` no negative pair would ever cost anything; any real under a similarity).
        positive_margin: ``m⁺``, the distance below which positives cost nothing (default 0.0, as in
            Roth et al.; ``>= 0`` for a distance, any real under a similarity).
        distance: ``"euclidean"`` (default), ``"squared_euclidean"``, ``"cosine"`` (similarity of the
            L2-normalised embeddings) or ``"dot"`` (similarity of the embeddings as given)
            (:data:`tfdml.distances.DISTANCES`).
        miner: a :class:`~tfdml.mining.base.Miner` (default: ``DistanceWeightedMiner()``,
            Roth et al.'s choice; Wu et al. also use random and semi-hard pairs, e.g.
            ``SemiHardMiner(lower_bound=0.5)``), of triplets or of pairs.
        pairs: ``"mined"`` (default: the miner's tuples) or ``"all"``: every ordered pair of
            the batch, no miner (Roth et al.'s and PML's all-pairs definition), on the
            ``b × b`` distance matrix (:func:`contrastive_all_pairs`).

    Example:

    >>> loss = ContrastiveLoss(miner=tfdml.mining.RandomMiner(seed=0))
    >>> model.compile(optimizer="adam", loss=loss)   # y_true: int labels, y_pred: embeddings
    >>> ContrastiveLoss(distance="cosine", positive_margin=1.0, margin=0.0, miner=tfdml.mining.PairMarginMiner())
    """

    data_arguments = ("miner",)

    def __init__(
        self,
        margin=1.0,
        positive_margin=0.0,
        distance="euclidean",
        miner=None,
        pairs="mined",
        name="contrastive_loss",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.distance = check_distance("ContrastiveLoss", distance)
        if self.distance in SIMILARITIES:
            self.margin = check_argument("ContrastiveLoss", "margin", margin)
            self.positive_margin = check_argument("ContrastiveLoss", "positive_margin", positive_margin)
        else:
            self.margin = check_argument("ContrastiveLoss", "margin", margin, low=0.0, low_open=True)
            self.positive_margin = check_argument("ContrastiveLoss", "positive_margin", positive_margin, low=0.0)
        self.pairs = check_pairs(pairs, miner)
        self.miner = None if self.pairs == "all" else resolve_miner(miner, DistanceWeightedMiner)

    def compute(self, labels, embeddings, keys=None):
        hyperparameters = (self.margin, self.positive_margin)
        if self.pairs == "all":
            return contrastive_all_pairs(labels, embeddings, *hyperparameters, distance=self.distance, keys=keys)
        with_keys = {} if keys is None else {"keys": keys}
        mined = self.miner.mine_masked(embeddings, labels, **with_keys)
        if isinstance(mined, PairMasks):
            return contrastive_pair_loss(mined, embeddings, *hyperparameters, distance=self.distance, keys=keys)
        if isinstance(mined, MaskedTriplets):
            return contrastive_loss(mined, embeddings, *hyperparameters, distance=self.distance, keys=keys)
        raise TypeError(
            f"ContrastiveLoss: miner {type(self.miner).__name__} returned {type(mined).__name__}; "
            "expected PairMasks or Triplets."
        )
