"""Distance-weighted negative sampling (Wu et al. 2017, "Sampling Matters in Deep Embedding Learning", §4)."""

import keras
import tensorflow as tf

from tfdml.masks import key_masks, positive_mask
from tfdml.mining.base import TupleMiner, check_argument, stateless_uniform, triplet_candidates
from tfdml.mining.tuples import check_construction, construct, fill_slots, grid_triplets, row_distributions

# 1 − d²/4 is clamped here so that d → 2 (antipodal points, or rounding) stays finite.
_MIN_ONE_MINUS_QUARTER_D2 = 1e-6


def log_inverse_sphere_density(distances, dim):
    """``−log q(d)`` up to a constant, for ``q(d) ∝ d^(D−2) (1 − d²/4)^((D−3)/2)``, the density of
    the distance between two uniform points on the unit sphere ``S^(D−1)``."""
    one_minus = tf.maximum(1.0 - 0.25 * tf.square(distances), _MIN_ONE_MINUS_QUARTER_D2)
    return (2.0 - dim) * tf.math.log(distances) - 0.5 * (dim - 3.0) * tf.math.log(one_minus)


@keras.saving.register_keras_serializable(package="tfdml")
class DistanceWeightedMiner(TupleMiner):
    """Samples negatives uniformly in distance rather than by the sphere's distance density.

    When to use: the default for margin, contrastive and triplet losses (Wu et al. 2017): informative negatives without
    batch-hard's noise sensitivity.

    For an anchor ``a`` a negative ``n`` is drawn with

        Pr(n | a) ∝ min(λ, q(D_an)⁻¹),   q(d) ∝ d^(D−2) (1 − d²/4)^((D−3)/2),

    for embedding dimension ``D``. The clip ``λ`` is applied as Wu et al. do, by
    clipping distances below at ``cutoff``; only negatives with
    ``D_an < nonzero_loss_cutoff`` (those a margin loss with ``β + α = 1.4`` can
    still learn from) are eligible. Weights are formed in log space and normalised
    per anchor row after masking positives and self, so every row is a valid
    distribution at any ``D`` (the reference code subtracts one global maximum and
    whole rows underflow to zero at ``D = 128``).

    Assumes L2-normalised embeddings (distances in ``[0, 2]``).

    Fallbacks: an anchor with no eligible negative draws uniformly among all its
    negatives; an anchor with no negative at all, or no positive, yields no tuple.

    With ``keys`` (:class:`~tfdml.masks.Keys`, a cross-batch memory) the anchors are the batch and the
    positives and negatives are drawn among the valid keys (never the anchor's own copy), on the
    ``b × m`` rectangle: ``"pairs"`` pairs each anchor with every positive key.

    Args:
        cutoff: lower clip of the distances (default 0.5, Wu et al. and Roth et al.).
        nonzero_loss_cutoff: upper bound of eligible negative distances (default 1.4);
            ``None`` disables it, as in Roth et al.'s code.
        construction: ``"pairs"`` (default, Wu et al.: every ordered positive pair
            ``(a, p)`` with its own negative for ``a``, balancing positive and negative
            pairs) or ``"anchors"`` (Roth et al.: one triplet per anchor, the
            positive uniform among the anchor's positives).
        p_switch: ρ-regularisation probability (see :mod:`tfdml.mining.rho`; default 0).
        seed: seed of the miner's random generator.

    Example:

    >>> miner = DistanceWeightedMiner(seed=0)
    >>> embeddings = tf.math.l2_normalize(tf.random.normal((32, 128)), axis=1)
    >>> triplets = miner(embeddings, tf.range(32) // 4)   # 32·3 triplets
    """

    def __init__(self, cutoff=0.5, nonzero_loss_cutoff=1.4, construction="pairs", p_switch=0.0, seed=None):
        super().__init__(p_switch=p_switch, seed=seed)
        owner = type(self).__name__
        self.cutoff = check_argument(owner, "cutoff", cutoff, low=0.0, low_open=True)
        self.nonzero_loss_cutoff = check_argument(
            owner, "nonzero_loss_cutoff", nonzero_loss_cutoff, low=self.cutoff, low_open=True, optional=True
        )
        self.construction = check_construction(construction)

    def negative_log_weights(self, embeddings, labels, keys=None):
        """Masked per-anchor log-weights ``(b, b)`` (``(b, m)`` with ``keys``) and candidate mask, fallbacks applied."""
        distances, _, negatives = triplet_candidates(embeddings, labels, keys)
        dim = tf.cast(tf.shape(embeddings)[1], tf.float32)
        log_weights = log_inverse_sphere_density(tf.maximum(distances, self.cutoff), dim)
        eligible = negatives
        if self.nonzero_loss_cutoff is not None:
            eligible = tf.logical_and(negatives, distances < self.nonzero_loss_cutoff)
        has_eligible = tf.reduce_any(eligible, axis=1, keepdims=True)
        candidates = tf.where(has_eligible, eligible, negatives)
        return tf.where(has_eligible, log_weights, 0.0), candidates

    def mine(self, embeddings, labels, keys=None):
        embeddings = tf.stop_gradient(embeddings)
        log_weights, candidates = self.negative_log_weights(embeddings, labels, keys)
        distributions = row_distributions(log_weights, candidates)
        positives = positive_mask(labels) if keys is None else key_masks(labels, keys)[0]
        tuples = construct(self.construction, self.generator, positives)
        batch_size = tf.shape(labels)[:1]

        def draw(slot, seed):
            thresholds = stateless_uniform(batch_size, seed) * distributions.totals
            return distributions.draw(thresholds[:, tf.newaxis])[:, 0]

        negatives = fill_slots(tuples, self.generator.next_seed(), draw)
        return grid_triplets(tuples, negatives, tf.reduce_any(candidates, axis=1))
