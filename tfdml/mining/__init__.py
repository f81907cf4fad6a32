"""In-graph tuple miners: ``miner(embeddings, labels) -> Triplets``."""

from tfdml.mining.base import Miner, Triplets
