"""Pair margin mining: the positive pairs too far apart and the negative pairs too close (pytorch-metric-learning's
``PairMarginMiner``)."""

import keras
import tensorflow as tf

from tfdml.distances import euclidean
from tfdml.masks import key_masks, negative_mask, positive_mask
from tfdml.mining.base import Miner, check_argument
from tfdml.mining.multi_similarity import PairMasks


@keras.saving.register_keras_serializable(package="tfdml")
class PairMarginMiner(Miner):
    """Keeps the positive pairs farther apart than ``pos_margin`` and the negative pairs closer than
    ``neg_margin``:

    ```
    positive (a, p) kept  ⇔  y_p = y_a, p ≠ a, D_ap > pos_margin
    negative (a, n) kept  ⇔  y_n ≠ y_a,        D_an < neg_margin
    ```

    pytorch-metric-learning's ``PairMarginMiner`` (Musgrave et al. 2020, "PyTorch Metric
    Learning"): the pairs a contrastive loss with these margins would not leave at zero. ``D`` is
    the Euclidean distance of the L2-normalised embeddings, as PML's default
    ``LpDistance(normalize_embeddings=True)``. Every ordered pair is considered, so the kept pairs
    are exactly PML's (``a1, p, a2, n`` there: ``positives[a1, p]`` and ``negatives[a2, n]``
    here). Deterministic: ``seed`` is unused and kept only for the miner interface.

    When to use: with ContrastiveLoss, to drop the pairs that already satisfy its margins.

    Returns :class:`~tfdml.mining.multi_similarity.PairMasks` (boolean ``(b, b)``: static shapes,
    it compiles under XLA), which :class:`tfdml.losses.MultiSimilarityLoss` consumes; the positive
    and negative pairs are independent sets, not triplets, so ρ-regularisation (``p_switch``) does
    not apply and the triplet losses refuse them.

    Args:
        pos_margin: distance ``>= 0`` beyond which a positive pair is kept (default 0.2, PML's).
        neg_margin: distance ``>= 0`` below which a negative pair is kept (default 0.8, PML's).
        seed: unused (the miner interface).

    Example:

    >>> miner = PairMarginMiner(pos_margin=0.2, neg_margin=0.8)
    >>> masks = miner(tf.random.normal((8, 16)), tf.constant([0, 0, 1, 1, 2, 2, 3, 3]))
    >>> loss = tfdml.losses.MultiSimilarityLoss(miner=miner)
    """

    def __init__(self, pos_margin=0.2, neg_margin=0.8, seed=None):
        super().__init__(seed=seed)
        owner = type(self).__name__
        self.pos_margin = check_argument(owner, "pos_margin", pos_margin, low=0.0)
        self.neg_margin = check_argument(owner, "neg_margin", neg_margin, low=0.0)

    def mine(self, embeddings, labels, keys=None):
        queries = tf.math.l2_normalize(tf.stop_gradient(embeddings), axis=1)
        if keys is None:
            distances, (positives, negatives) = euclidean(queries), (positive_mask(labels), negative_mask(labels))
        else:
            key_embeddings = tf.math.l2_normalize(tf.stop_gradient(tf.cast(keys.embeddings, tf.float32)), axis=1)
            distances, (positives, negatives) = euclidean(queries, key_embeddings), key_masks(labels, keys)
        return PairMasks(
            positives=positives & (distances > self.pos_margin),
            negatives=negatives & (distances < self.neg_margin),
        )
