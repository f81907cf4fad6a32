"""In-graph tuple miners: ``miner(embeddings, labels) -> Triplets`` (``PairMasks`` for the
multi-similarity miner). Every tuple miner takes ``p_switch`` for Roth et al.'s ρ-regularisation."""

from tfdml.mining.base import MaskedTriplets, Miner, ReplicaConsistentRandom, Triplets
from tfdml.mining.batch_hard import BatchHardMiner
from tfdml.mining.distance_weighted import DistanceWeightedMiner
from tfdml.mining.multi_similarity import MultiSimilarityMiner, PairMasks
from tfdml.mining.random import RandomMiner
from tfdml.mining.rho import RhoRegularizedMiner, switch_negatives
from tfdml.mining.semi_hard import SemiHardMiner
from tfdml.mining.soft_hard import SoftHardMiner

__all__ = [
    "BatchHardMiner",
    "DistanceWeightedMiner",
    "MaskedTriplets",
    "Miner",
    "MultiSimilarityMiner",
    "PairMasks",
    "RandomMiner",
    "ReplicaConsistentRandom",
    "RhoRegularizedMiner",
    "SemiHardMiner",
    "SoftHardMiner",
    "Triplets",
    "switch_negatives",
]
