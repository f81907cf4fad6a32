"""In-graph tuple miners: ``miner.mine_masked(embeddings, labels) -> MaskedTriplets`` (fixed size,
with a validity mask: what losses use, XLA-compilable), ``miner(embeddings, labels) -> Triplets``
(the valid tuples only); ``PairMasks`` for the pair miners (multi-similarity, pair margin). Every
tuple miner takes ``p_switch`` for Roth et al.'s ρ-regularisation."""

from tfdml.mining.angular import AngularMiner
from tfdml.mining.base import MaskedTriplets, Miner, ReplicaConsistentRandom, Triplets, TupleMiner, switch_negatives
from tfdml.mining.batch_hard import BatchHardMiner
from tfdml.mining.distance_weighted import DistanceWeightedMiner
from tfdml.mining.easy_hard import BatchEasyHardMiner
from tfdml.mining.hdc import HDCMiner
from tfdml.mining.multi_similarity import MultiSimilarityMiner, PairMasks
from tfdml.mining.pair_margin import PairMarginMiner
from tfdml.mining.random import RandomMiner
from tfdml.mining.rho import RhoRegularizedMiner
from tfdml.mining.semi_hard import SemiHardMiner
from tfdml.mining.soft_hard import SoftHardMiner
from tfdml.mining.triplet_margin import TripletMarginMiner
from tfdml.mining.uniform_histogram import UniformHistogramMiner

__all__ = [
    "AngularMiner",
    "BatchEasyHardMiner",
    "BatchHardMiner",
    "DistanceWeightedMiner",
    "HDCMiner",
    "MaskedTriplets",
    "Miner",
    "MultiSimilarityMiner",
    "PairMarginMiner",
    "PairMasks",
    "RandomMiner",
    "ReplicaConsistentRandom",
    "RhoRegularizedMiner",
    "SemiHardMiner",
    "SoftHardMiner",
    "TripletMarginMiner",
    "Triplets",
    "TupleMiner",
    "UniformHistogramMiner",
    "switch_negatives",
]
