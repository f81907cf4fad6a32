"""Batch easy/hard mining: one positive and one negative per anchor by strategy (Xuan et al. 2020, "Improved
Embeddings with Easy Positive Triplet Mining"; pytorch-metric-learning's ``BatchEasyHardMiner``)."""

import keras
import tensorflow as tf

from tfdml.distances import euclidean
from tfdml.masks import negative_mask, positive_mask
from tfdml.mining.base import MaskedTriplets, TupleMiner, check_argument

STRATEGIES = ("easy", "semihard", "hard", "all")


def check_range(owner, name, allowed):
    """``allowed`` as a ``(low, high)`` pair of distances with ``0 <= low <= high``, or ``None``."""
    if allowed is None:
        return None
    try:
        low, high = allowed
    except (TypeError, ValueError):
        raise ValueError(f"{owner}: {name} must be None or a (low, high) pair of distances; got {allowed!r}.") from None
    low = check_argument(owner, f"{name}[0]", low, low=0.0, finite=False)
    return low, check_argument(owner, f"{name}[1]", high, low=low, finite=False)


def in_range(distances, allowed):
    if allowed is None:
        return True
    return (distances >= allowed[0]) & (distances <= allowed[1])


def extreme(distances, candidates, farthest):
    """Per row, the farthest (or closest) candidate: int32 ``(b,)`` indices and bool ``(b,)`` "has one"."""
    if farthest:
        chosen = tf.argmax(tf.where(candidates, distances, -float("inf")), axis=1, output_type=tf.int32)
    else:
        chosen = tf.argmin(tf.where(candidates, distances, float("inf")), axis=1, output_type=tf.int32)
    return chosen, tf.reduce_any(candidates, axis=1)


def partner_distance(distances, partner):
    return tf.gather(distances, partner[:, tf.newaxis], batch_dims=1)


@keras.saving.register_keras_serializable(package="tfdml")
class BatchEasyHardMiner(TupleMiner):
    """Per anchor ``a``, the positive and the negative of a strategy each (Xuan et al., "Improved Embeddings
    with Easy Positive Triplet Mining", WACV 2020: by default the easy positive and the semi-hard negative):

    ```
    positive  "easy"      p = argmin_{p ∈ P(a)} D_ap    (Xuan et al.'s easy positive)
              "hard"      p = argmax_{p ∈ P(a)} D_ap    (batch hard, Hermans et al. 2017)
              "semihard"  p = argmax_{p ∈ P(a), D_ap < D_an} D_ap   (n: the anchor's mined negative)
              "all"       every p ∈ P(a)
    negative  "hard"      n = argmin_{n ∈ N(a)} D_an
              "easy"      n = argmax_{n ∈ N(a)} D_an
              "semihard"  n = argmin_{n ∈ N(a), D_an > D_ap} D_an   (p: the anchor's mined positive)
              "all"       every n ∈ N(a)
    ```

    When to use: classes with large intra-class variation: easy positives avoid pulling distant modes together (Xuan et
    al. 2020).

    ``P(a)``/``N(a)`` are the anchor's positives (``p ≠ a``) and negatives, restricted to distances in
    ``allowed_pos_range``/``allowed_neg_range`` (inclusive ``[low, high]``; not applied to ``"all"``).
    Xuan et al. pair the easy positive with the semi-hard negative, the closest negative farther than it:
    the defaults, PML's too. ``D`` is the Euclidean distance of the L2-normalised embeddings (PML's
    default ``LpDistance(normalize_embeddings=True)``); ties go to the lowest index. A semi-hard side
    has no candidate where all distances are equal (a collapsed batch): no tuple then, as in PML.

    The tuples are triplets ``(a, p, n)``: one per anchor with both partners (a grid of ``b``), or with
    ``"all"`` on one side, one per pair of that side, with the anchor's partner of the other side (a
    ``b × b`` grid). PML returns the pairs ``(a, p)`` and ``(a, n)`` as two lists, and with ``"all"``
    keeps the all-side pairs of anchors that have no partner on the other side; here a triplet needs
    both, so those pairs are left out (PML's triplet losses drop them too). ``"all"`` on both sides
    (every triplet, ``b³``) is refused: use a loss without a miner (``pairs="all"``). As in PML,
    ``"semihard"`` on both sides, or with ``"all"`` on the other, is refused.

    Args:
        pos_strategy: ``"easy"`` (default, Xuan et al.'s and PML's), ``"semihard"``, ``"hard"`` or ``"all"``.
        neg_strategy: ``"semihard"`` (default, Xuan et al.'s and PML's), ``"easy"``, ``"hard"`` or ``"all"``.
        allowed_pos_range: ``None`` (default) or ``(low, high)``: the distances a mined positive may have.
        allowed_neg_range: ``None`` (default) or ``(low, high)``: the distances a mined negative may have.
        p_switch: ρ-regularisation probability (default 0).
        seed: seed of the miner's random generator (the choice is deterministic; it drives ``p_switch``).

    Example:

    >>> miner = BatchEasyHardMiner(pos_strategy="easy", neg_strategy="semihard")
    >>> triplets = miner(tf.random.normal((32, 16)), tf.range(32) // 4)
    """

    def __init__(
        self,
        pos_strategy="easy",
        neg_strategy="semihard",
        allowed_pos_range=None,
        allowed_neg_range=None,
        p_switch=0.0,
        seed=None,
    ):
        super().__init__(p_switch=p_switch, seed=seed)
        owner = type(self).__name__
        for name, strategy in (("pos_strategy", pos_strategy), ("neg_strategy", neg_strategy)):
            if strategy not in STRATEGIES:
                raise ValueError(f"{owner}: {name} must be one of {STRATEGIES}; got {strategy!r}.")
        strategies = {pos_strategy, neg_strategy}
        if pos_strategy == neg_strategy == "semihard" or strategies == {"semihard", "all"}:
            raise ValueError(f"{owner}: pos_strategy and neg_strategy cannot be {pos_strategy!r} and {neg_strategy!r}.")
        if pos_strategy == neg_strategy == "all":
            raise ValueError(
                f"{owner}: pos_strategy and neg_strategy cannot both be 'all' (every triplet); "
                "use the loss without a miner (pairs='all')."
            )
        self.pos_strategy = pos_strategy
        self.neg_strategy = neg_strategy
        self.allowed_pos_range = check_range(owner, "allowed_pos_range", allowed_pos_range)
        self.allowed_neg_range = check_range(owner, "allowed_neg_range", allowed_neg_range)

    def mine(self, embeddings, labels):
        distances = euclidean(tf.math.l2_normalize(tf.stop_gradient(embeddings), axis=1))
        positives = positive_mask(labels)
        negatives = negative_mask(labels)
        positive_candidates = positives & in_range(distances, self.allowed_pos_range)
        negative_candidates = negatives & in_range(distances, self.allowed_neg_range)

        def positive(negative=None):
            candidates = positive_candidates
            if self.pos_strategy == "semihard":
                candidates &= distances < partner_distance(distances, negative)
            return extreme(distances, candidates, farthest=self.pos_strategy != "easy")

        def negative(positive=None):
            candidates = negative_candidates
            if self.neg_strategy == "semihard":
                candidates &= distances > partner_distance(distances, positive)
            return extreme(distances, candidates, farthest=self.neg_strategy == "easy")

        # A semi-hard side is mined relative to the other side's partner, so that side goes first.
        if self.pos_strategy == "semihard":
            negative_index, has_negative = negative()
            positive_index, has_positive = positive(negative_index)
        elif self.neg_strategy == "semihard":
            positive_index, has_positive = positive()
            negative_index, has_negative = negative(positive_index)
        elif self.pos_strategy == "all":
            negative_index, has_negative = negative()
        elif self.neg_strategy == "all":
            positive_index, has_positive = positive()
        else:
            (positive_index, has_positive), (negative_index, has_negative) = positive(), negative()

        size = tf.shape(distances)
        rows = tf.broadcast_to(tf.range(size[0])[:, tf.newaxis], size)
        columns = tf.broadcast_to(tf.range(size[1])[tf.newaxis, :], size)
        if self.pos_strategy == "all":
            grid = (rows, columns, tf.gather(negative_index, rows), positives & has_negative[:, tf.newaxis])
        elif self.neg_strategy == "all":
            grid = (rows, tf.gather(positive_index, rows), columns, negatives & has_positive[:, tf.newaxis])
        else:
            return MaskedTriplets(tf.range(size[0]), positive_index, negative_index, has_positive & has_negative)
        return MaskedTriplets(*(tf.reshape(t, [-1]) for t in grid))
