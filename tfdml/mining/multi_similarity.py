"""Multi-similarity pair mining (Wang et al., 2019): informative pairs by cosine similarity."""

from typing import NamedTuple

import keras
import tensorflow as tf

from tfdml.masks import key_masks, negative_mask, positive_mask
from tfdml.mining.base import Miner, check_argument


class PairMasks(NamedTuple):
    """Boolean ``(b, b)`` masks of mined pairs: row ``i`` holds anchor ``i``'s selected partners (``(b, m)``
    against :class:`~tfdml.masks.Keys`, column ``j`` key ``j``)."""

    positives: tf.Tensor
    negatives: tf.Tensor


@keras.saving.register_keras_serializable(package="tfdml")
class MultiSimilarityMiner(Miner):
    """Keeps the pairs that violate the multi-similarity margin ``ε``.

    When to use: with MultiSimilarityLoss (its paper's setting), or to feed any pair loss its informative pairs.

    With cosine similarities ``S_ij = φ̂_iᵀφ̂_j`` of the L2-normalised embeddings, for each
    anchor ``a``:

    ```
    negative (a, n) kept  ⇔  S_an + ε > min_{p: y_p = y_a, p ≠ a} S_ap
    positive (a, p) kept  ⇔  S_ap − ε < max_{n: y_n ≠ y_a} S_an
    ```

    Wang et al., "Multi-Similarity Loss with General Pair Weighting for Deep Metric
    Learning", CVPR 2019 (pair mining); Roth et al. 2020, supplementary A.1, Eq. 11.
    An anchor without positives keeps no negatives and one without negatives keeps no
    positives (the min/max over an empty set is ``+∞``/``−∞``). Deterministic: no random
    choice, so ``seed`` is unused and kept only for the miner interface.

    Unlike triplet miners this returns :class:`PairMasks` (``positives``, ``negatives``:
    boolean ``(b, b)``), which :class:`tfdml.losses.MultiSimilarityLoss` consumes.

    With ``keys`` (:class:`~tfdml.masks.Keys`, a cross-batch memory) the anchors are the batch and
    their partners the keys: the masks are ``(b, m)``.

    Args:
        epsilon: margin ``ε`` of the mining rule (Roth et al.: 0.1).

    Example:

    >>> miner = tfdml.mining.MultiSimilarityMiner(epsilon=0.1)
    >>> masks = miner(tf.random.normal((8, 16)), tf.constant([0, 0, 1, 1, 2, 2, 3, 3]))
    >>> masks.positives.shape, masks.negatives.shape
    (TensorShape([8, 8]), TensorShape([8, 8]))
    """

    def __init__(self, epsilon=0.1, seed=None):
        super().__init__(seed=seed)
        # +inf is documented: every pair of an anchor with a positive and a negative.
        self.epsilon = check_argument(type(self).__name__, "epsilon", epsilon, low=0.0, finite=False)

    def mine(self, embeddings, labels, keys=None):
        normalized = tf.math.l2_normalize(embeddings, axis=1)
        if keys is None:
            similarity = tf.stop_gradient(tf.matmul(normalized, normalized, transpose_b=True))
            positives, negatives = positive_mask(labels), negative_mask(labels)
        else:
            key_normalized = tf.math.l2_normalize(tf.cast(keys.embeddings, tf.float32), axis=1)
            similarity = tf.stop_gradient(tf.matmul(normalized, key_normalized, transpose_b=True))
            positives, negatives = key_masks(labels, keys)
        hardest_positive = tf.reduce_min(tf.where(positives, similarity, float("inf")), axis=1, keepdims=True)
        hardest_negative = tf.reduce_max(tf.where(negatives, similarity, float("-inf")), axis=1, keepdims=True)
        return PairMasks(
            positives=tf.logical_and(positives, similarity - self.epsilon < hardest_negative),
            negatives=tf.logical_and(negatives, similarity + self.epsilon > hardest_positive),
        )
