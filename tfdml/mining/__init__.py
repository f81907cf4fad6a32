"""In-graph tuple miners: ``miner(embeddings, labels) -> Triplets``."""

from tfdml.mining.base import Miner, Triplets
from tfdml.mining.multi_similarity import MultiSimilarityMiner, PairMasks
from tfdml.mining.batch_hard import BatchHardMiner
from tfdml.mining.distance_weighted import DistanceWeightedMiner
from tfdml.mining.random import RandomMiner
from tfdml.mining.rho import RhoRegularizedMiner, switch_negatives
from tfdml.mining.semi_hard import SemiHardMiner
from tfdml.mining.soft_hard import SoftHardMiner
