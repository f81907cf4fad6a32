"""Base class and output type shared by every tuple miner.

A miner maps ``(embeddings, labels)`` of a batch to index tuples into that batch,
in-graph and vectorised (it runs inside the loss's ``tf.function``). Tuples are
returned as :class:`Triplets`: three int32 index vectors of equal length; pair
losses read ``(anchor, positive)`` as positive pairs and ``(anchor, negative)``
as negative pairs. Random choices come from the miner's own
``tf.random.Generator`` seeded with ``seed``, so mining is reproducible.
"""

from typing import NamedTuple

import keras
import tensorflow as tf


class Triplets(NamedTuple):
    """Index tuples ``(anchors[k], positives[k], negatives[k])`` into the batch."""

    anchors: tf.Tensor
    positives: tf.Tensor
    negatives: tf.Tensor


class Miner:
    """Base tuple miner: ``miner(embeddings, labels) -> Triplets``.

    Args:
        seed: seed of the miner's random generator (``None``: nondeterministic).
    """

    def __init__(self, seed=None):
        self.seed = seed
        self._generator = None

    @property
    def generator(self):
        # Created lazily so the generator's state variable lives in the strategy scope of first use.
        if self._generator is None:
            self._generator = (
                tf.random.Generator.from_non_deterministic_state()
                if self.seed is None
                else tf.random.Generator.from_seed(self.seed)
            )
        return self._generator

    def __call__(self, embeddings, labels):
        return self.mine(tf.cast(embeddings, tf.float32), tf.reshape(tf.cast(labels, tf.int32), [-1]))

    def mine(self, embeddings, labels):
        raise NotImplementedError

    def get_config(self):
        return {"seed": self.seed}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def serialize_miner(miner):
    return None if miner is None else keras.saving.serialize_keras_object(miner)


def deserialize_miner(config):
    if config is None or isinstance(config, Miner):
        return config
    return keras.saving.deserialize_keras_object(config)
