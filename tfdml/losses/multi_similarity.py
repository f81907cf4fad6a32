"""Multi-similarity loss (Wang et al., 2019) with soft pair weighting on cosine similarity (or another distance)."""

import keras
import tensorflow as tf

from tfdml.losses.base import DMLLoss
from tfdml.distances import check_distance, pairwise_comparison
from tfdml.losses.math import log1p_sum_exp
from tfdml.losses.pairs import check_pairs, nan_unless_finite, pair_masks
from tfdml.losses.tuples import mine_pairs, resolve_miner
from tfdml.mining.base import check_argument
from tfdml.mining.multi_similarity import MultiSimilarityMiner, PairMasks


def multi_similarity_terms(similarity, positives, negatives, alpha=2.0, beta=40.0, threshold=0.5, sign=-1.0):
    """Per-anchor multi-similarity terms (Wang et al. 2019, eq. 12) on the pairs in the masks:

        (1/α) log(1 + Σ_{j ∈ P_i} exp(−α (S_ij − λ))) + (1/β) log(1 + Σ_{k ∈ N_i} exp(β (S_ik − λ)))

    ``similarity`` is the ``(b, b)`` cosine similarity; ``positives``/``negatives`` boolean
    ``(b, b)`` masks. Empty sums add ``log 1 = 0``; both are log-sum-exps, so large ``β`` cannot overflow.
    With ``sign = +1`` ``similarity`` is a distance ``D`` and the exponents flip to ``α (D − λ)`` and
    ``−β (D − λ)`` (:class:`~tfdml.distances.Comparison`).
    """
    positive_terms = log1p_sum_exp(alpha * sign * (similarity - threshold), positives) / alpha
    negative_terms = log1p_sum_exp(-beta * sign * (similarity - threshold), negatives) / beta
    return positive_terms + negative_terms


def multi_similarity_loss(pairs, embeddings, alpha=2.0, beta=40.0, threshold=0.5, distance="cosine", keys=None):
    """Multi-similarity loss (see :class:`MultiSimilarityLoss`) of ``embeddings`` ``(b, d)`` on the mined
    ``pairs`` (:class:`~tfdml.mining.multi_similarity.PairMasks`): the mean over anchors of
    :func:`multi_similarity_terms` on their ``distance`` (default the cosine similarity, L2-normalised here).
    With :class:`~tfdml.masks.Keys` the anchors are the queries and ``pairs`` the ``(b, m)`` query–key pairs."""
    similarity, sign = pairwise_comparison(embeddings, None if keys is None else keys.embeddings, distance=distance)
    terms = multi_similarity_terms(similarity, pairs.positives, pairs.negatives, alpha, beta, threshold, sign)
    return tf.reduce_mean(terms)


def multi_similarity_all_pairs(labels, embeddings, alpha=2.0, beta=40.0, threshold=0.5, distance="cosine", keys=None):
    """Multi-similarity loss (Wang et al. 2019) without pair mining: the mean over anchors of
    :func:`multi_similarity_terms` with every positive and every negative pair of the batch,
    on the cosine similarity of the L2-normalised embeddings. Defaults are Roth et al.'s
    (``α = 2``, ``β = 40``, ``λ = 0.5``). With :class:`~tfdml.masks.Keys` (a cross-batch memory) the
    pairs are every query with every valid key but its own copy.

    Example:

    >>> multi_similarity_all_pairs(tf.constant([0, 0, 1, 1]), tf.random.normal((4, 16)))
    """
    embeddings = tf.convert_to_tensor(embeddings)
    pairs = PairMasks(*pair_masks(labels, keys))
    loss = multi_similarity_loss(pairs, embeddings, alpha, beta, threshold, distance, keys)
    return nan_unless_finite(loss, embeddings)


@keras.saving.register_keras_serializable(package="tfdml")
class MultiSimilarityLoss(DMLLoss):
    """Multi-similarity loss: softly weighted positive and negative pairs per anchor.

    When to use: a strong pair baseline on CUB/CARS/SOP; pair it with MultiSimilarityMiner and P×K batches.

    With cosine similarities ``S_ij = φ̂_iᵀφ̂_j`` of the L2-normalised embeddings and the
    mined positive/negative partners ``P_i``/``N_i`` of anchor ``i``:

    ```
    L = (1/b) Σ_i [ (1/α) log(1 + Σ_{j ∈ P_i} exp(−α (S_ij − λ)))
                  + (1/β) log(1 + Σ_{k ∈ N_i} exp( β (S_ik − λ))) ]
    ```

    Wang et al., "Multi-Similarity Loss with General Pair Weighting for Deep Metric
    Learning", CVPR 2019; Roth et al. 2020, supplementary A.1, Eq. 12. Unmined pairs are
    left out of the sums (Eq. 11's "0 otherwise" means "not selected"); an empty sum adds
    ``log 1 = 0``. Both sums are log-sum-exps, so ``β = 40`` cannot overflow. ``y_pred`` may
    be normalised or not: the loss normalises.

    With a distance ``D`` instead of ``S`` (``distance="euclidean"`` or ``"squared_euclidean"``) the
    exponents flip as in pytorch-metric-learning (PML): ``exp(α (D_ij − λ))`` for positives and
    ``exp(−β (D_ik − λ))`` for negatives, ``λ`` then a distance. PML's ``MultiSimilarityLoss(alpha, beta,
    base=λ)`` without a miner is ``pairs="all"`` (its distance ``CosineSimilarity()`` is ``"cosine"``,
    ``LpDistance(normalize_embeddings=False)`` ``"euclidean"``); PML's default ``β`` is 50.

    Args:
        alpha: positive-pair scale ``α`` (Roth et al.: 2).
        beta: negative-pair scale ``β`` (Roth et al.: 40).
        threshold: similarity offset ``λ`` (Roth et al.: 0.5), a distance under a distance.
        distance: ``"cosine"`` (default, the paper's), ``"dot"``, ``"euclidean"`` or
            ``"squared_euclidean"`` (:data:`tfdml.distances.DISTANCES`); the miner keeps its own.
        miner: default ``MultiSimilarityMiner(epsilon=0.1)`` (Roth et al.); with
            ``epsilon=float("inf")`` every pair of an anchor that has both a positive and a
            negative is kept. Any miner works: one returning
            :class:`~tfdml.mining.multi_similarity.PairMasks` is used as is, one returning
            ``Triplets`` contributes its ``(anchor, positive)``/``(anchor, negative)`` pairs.
        pairs: ``"mined"`` (default: the miner's pairs) or ``"all"``: every positive and
            negative pair of the batch, no miner
            (:func:`multi_similarity_all_pairs`).
        name: name of the loss instance.

    Example:

    >>> loss = tfdml.losses.MultiSimilarityLoss()
    >>> loss(tf.constant([0, 0, 1, 1]), tf.random.normal((4, 16)))
    """

    data_arguments = ("miner",)

    def __init__(
        self,
        alpha=2.0,
        beta=40.0,
        threshold=0.5,
        distance="cosine",
        miner=None,
        pairs="mined",
        name="multi_similarity_loss",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.alpha = check_argument("MultiSimilarityLoss", "alpha", alpha, low=0.0, low_open=True)
        self.beta = check_argument("MultiSimilarityLoss", "beta", beta, low=0.0, low_open=True)
        self.threshold = check_argument("MultiSimilarityLoss", "threshold", threshold)
        self.distance = check_distance("MultiSimilarityLoss", distance)
        self.pairs = check_pairs(pairs, miner)
        self.miner = None if self.pairs == "all" else resolve_miner(miner, MultiSimilarityMiner)

    def compute(self, labels, embeddings, keys=None):
        hyperparameters = (self.alpha, self.beta, self.threshold, self.distance)
        if self.pairs == "all":
            return multi_similarity_all_pairs(labels, embeddings, *hyperparameters, keys=keys)
        pairs = mine_pairs("MultiSimilarityLoss", self.miner, embeddings, labels, keys)
        return multi_similarity_loss(pairs, embeddings, *hyperparameters, keys=keys)
