"""ρ-regularisation (Roth et al. 2020, §5.1): switch a tuple's negative for a same-class sample.

With probability ``p_switch`` each tuple ``(a, p, n)`` becomes ``(a, a, p)``: the
anchor is its own positive and the "negative" is the tuple's same-class positive
``p``. A ranking loss then pushes samples of one class apart, which keeps the
embedding from compressing every class to a point (a lower spectral decay ρ).
Losses read tuple roles, not labels, so R-Margin, R-Triplet, R-Contrastive and
R-Quadruplet need no change. Roth et al. report ``p_switch`` of 0.15–0.4 on the
benchmarks (Tables 4–6) and 0.001 in the 2D toy example.

Every tfdml miner takes ``p_switch=``; :class:`RhoRegularizedMiner` adds it to any
other miner.

Example:

>>> miner = tfdml.mining.DistanceWeightedMiner(p_switch=0.35, seed=0)
>>> miner = RhoRegularizedMiner(tfdml.mining.BatchHardMiner(), p_switch=0.35, seed=0)
"""

import keras

from tfdml.mining.base import Miner, TupleMiner, deserialize_miner


@keras.saving.register_keras_serializable(package="tfdml")
class RhoRegularizedMiner(TupleMiner):
    """Applies ρ-regularisation to the tuples of any ``miner``.

    When to use: to add ρ-regularisation (Roth et al. 2020) to any miner, for better generalisation of ranking losses.

    Args:
        miner: the wrapped :class:`~tfdml.mining.base.Miner`.
        p_switch: probability that a tuple's negative is switched (default 0.35,
            Roth et al.'s CUB200 value for the margin loss).
        seed: seed of the switching draws.
    """

    def __init__(self, miner, p_switch=0.35, seed=None):
        super().__init__(p_switch=p_switch, seed=seed)
        self.miner = deserialize_miner(miner)
        if not isinstance(self.miner, Miner):
            raise TypeError(f"miner must be a tfdml Miner; got {miner!r}.")

    def mine(self, embeddings, labels):
        return self.miner.mine_masked(embeddings, labels)
