"""Base class and output type shared by every tuple miner.

A miner maps ``(embeddings, labels)`` of a batch to index tuples into that batch,
in-graph and vectorised (it runs inside the loss's ``tf.function``). Pair losses
read ``(anchor, positive)`` as positive pairs and ``(anchor, negative)`` as
negative pairs. Random choices come from the miner's :class:`ReplicaConsistentRandom`,
seeded with ``seed``, so mining is reproducible.

Two views of the same tuples:

- :meth:`Miner.mine_masked` (what losses use) returns :class:`MaskedTriplets`: a
  fixed number of tuples, known from the batch size alone, and a validity mask.
  Every shape is a compile-time constant, so mining compiles under XLA
  (``jit_compile=True``).
- ``miner(embeddings, labels)`` returns the valid tuples only, as :class:`Triplets`
  (a data-dependent length: for inspection and tests, not for XLA).
"""

import inspect
import math
import numbers
import random
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from tfdml.distances import euclidean
from tfdml.masks import flatten_labels, key_masks, negative_mask, positive_mask
from tfdml.serialization import constructor_config, from_constructor_config


class Triplets(NamedTuple):
    """Index tuples ``(anchors[k], positives[k], negatives[k])`` into the batch."""

    anchors: tf.Tensor
    positives: tf.Tensor
    negatives: tf.Tensor


class MaskedTriplets(NamedTuple):
    """A fixed-size set of index tuples; only those with ``valid[k]`` are tuples of the batch.

    Invalid entries hold in-range indices, so gathers never fail; losses must drop them.
    """

    anchors: tf.Tensor
    positives: tf.Tensor
    negatives: tf.Tensor
    valid: tf.Tensor

    def compact(self):
        """The valid tuples as :class:`Triplets` (a data-dependent shape, not for XLA)."""
        return Triplets(*(tf.boolean_mask(t, self.valid) for t in (self.anchors, self.positives, self.negatives)))


def as_masked(triplets):
    """:class:`MaskedTriplets` from :class:`Triplets` (all valid) or from :class:`MaskedTriplets` (as is)."""
    if isinstance(triplets, MaskedTriplets):
        return triplets
    return MaskedTriplets(*triplets, tf.ones(tf.shape(triplets.anchors), tf.bool))


def stateless_uniform(shape, seed, **kwargs):
    """``tf.random.stateless_uniform`` with Philox, the one random algorithm of the miners."""
    # Named: "auto_select" means ThreeFry inside XLA on CPU, ~40x slower for large draws; Philox is what
    # "auto_select" picks without XLA, so graph-mode draws are unchanged.
    return tf.random.stateless_uniform(shape, seed, alg="philox", **kwargs)


def check_argument(
    owner, name, value, kind=float, low=None, high=None, low_open=False, high_open=False, finite=True, optional=False
):
    """``value`` as ``kind`` (``float``, ``int`` or ``bool``), or a ``ValueError`` naming ``owner``, ``name``,
    the domain and ``value``: the one check of every loss's and miner's constructor arguments.

    A NaN or negative margin would otherwise train on a constant loss without a word, and ``int(2.5)``
    or ``bool("false")`` would silently become another value. Numbers must be real (never ``bool``
    or ``str``) and never NaN; ``finite=False`` admits ±inf within the bounds; ``low``/``high`` are
    inclusive unless ``low_open``/``high_open``; ``int`` takes integral floats (``10.0``);
    ``optional`` lets ``None`` through.

    >>> check_argument("TripletLoss", "margin", 0.2, low=0.0)
    0.2
    """
    if optional and value is None:
        return None
    if kind is bool:
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        raise ValueError(f"{owner}: {name} must be True or False{' or None' if optional else ''}; got {value!r}.")
    is_real = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
    number = float(value) if is_real else math.nan
    valid = (
        not math.isnan(number)
        and (math.isfinite(number) or not (finite or kind is int))
        and (kind is not int or number == math.floor(number))
        and (low is None or (number > low if low_open else number >= low))
        and (high is None or (number < high if high_open else number <= high))
    )
    if not valid:
        domain = "an integer" if kind is int else "a finite number" if finite else "a number"
        if low is not None and high is not None:
            domain += f" in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        elif low is not None:
            domain += f" {'>' if low_open else '>='} {low:g}"
        elif high is not None:
            domain += f" {'<' if high_open else '<='} {high:g}"
        raise ValueError(f"{owner}: {name} must be {domain}{' or None' if optional else ''}; got {value!r}.")
    if kind is int:
        return int(value) if isinstance(value, numbers.Integral) else int(number)  # no float round trip
    return number


class ReplicaConsistentRandom:
    """Stateless random numbers from ``(seed, counter)``, identical on every replica.

    Under ``tf.distribute`` each replica mines the same all-gathered global batch, so
    all replicas must draw the same random numbers (a ``tf.random.Generator`` would give
    each replica its own stream, and the replicas would then disagree on the tuples).
    The counter is a variable aggregated ``ONLY_FIRST_REPLICA`` (like an optimizer's
    step count): create the miner inside ``strategy.scope()``, as Keras objects are.
    It is reachable as ``miner.generator.counter`` (restore it to replay a run's draws).
    """

    def __init__(self, seed=None):
        self.seed = random.randrange(2**31) if seed is None else int(seed)
        self.counter = tf.Variable(
            0,
            dtype=tf.int64,
            trainable=False,
            name="miner_random_counter",
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
        )

    def next_seed(self):
        count = self.counter.assign_add(1)
        return tf.stack([tf.constant(self.seed, tf.int64), tf.convert_to_tensor(count)])

    def make_seeds(self, count=1):
        """``(2, count)`` int64 seeds for ``tf.random.stateless_*`` ops (as ``tf.random.Generator.make_seeds``)."""
        return stateless_uniform([2, count], self.next_seed(), minval=None, maxval=None, dtype=tf.int64)

    def uniform(self, shape, minval=0.0, maxval=1.0, dtype=tf.float32):
        return stateless_uniform(shape, self.next_seed(), minval=minval, maxval=maxval, dtype=dtype)


class Miner:
    """Base tuple miner: ``miner.mine_masked(embeddings, labels) -> MaskedTriplets``.

    Subclasses implement :meth:`mine`, which may return :class:`MaskedTriplets`,
    :class:`Triplets` (all valid; a data-dependent length does not compile under XLA)
    or another structure its losses understand (``PairMasks``).

    Args:
        seed: seed of the miner's random numbers (``None``: a random seed).

    No miner takes arguments derived from a recipe's data (``data_arguments``, as for samplers):
    a recipe run gives it only its ``seed``.
    """

    data_arguments = ()

    def __init__(self, seed=None):
        self.seed = check_argument(type(self).__name__, "seed", seed, int, optional=True)
        self.generator = ReplicaConsistentRandom(self.seed)

    def __call__(self, embeddings, labels):
        """The valid tuples as :class:`Triplets` (or the miner's own structure, e.g. ``PairMasks``)."""
        mined = self.mine_masked(embeddings, labels)
        return mined.compact() if isinstance(mined, MaskedTriplets) else mined

    def mine_masked(self, embeddings, labels, keys=None):
        """Fixed-size tuples with a validity mask, for losses and XLA.

        ``keys`` (:class:`~tfdml.masks.Keys`, e.g. a cross-batch memory) mines the queries' pairs among the
        keys instead of the batch, for a miner whose :meth:`mine` takes ``keys`` (:func:`takes_keys`).
        """
        with_keys = {} if keys is None else {"keys": keys}
        mined = self.mine(tf.cast(embeddings, tf.float32), flatten_labels(labels, type(self).__name__), **with_keys)
        return as_masked(mined) if isinstance(mined, Triplets) else mined

    def mine(self, embeddings, labels):
        raise NotImplementedError

    def get_config(self):
        """Each constructor argument, read from the attribute of the same name (:mod:`tfdml.serialization`)."""
        return constructor_config(self)

    @classmethod
    def from_config(cls, config):
        return from_constructor_config(cls, config)


def switch_negatives(triplets, p_switch, generator, anchor_keys=None):
    """``(a, p, n) → (a, a, p)`` for each tuple independently with probability ``p_switch``
    (:class:`Triplets` or :class:`MaskedTriplets`; the validity mask is kept).

    ``anchor_keys``: tuples whose positives and negatives index :class:`~tfdml.masks.Keys`, the key position
    of each tuple's anchor (its own copy, the switched positive); a tuple whose anchor has none (``-1``) is kept.
    """
    if p_switch == 0.0:
        return triplets
    switch = generator.uniform(tf.shape(triplets.anchors)) < p_switch
    if anchor_keys is None:
        anchor_keys = triplets.anchors
    else:
        switch = tf.logical_and(switch, anchor_keys >= 0)
    return triplets._replace(
        positives=tf.where(switch, anchor_keys, triplets.positives),
        negatives=tf.where(switch, triplets.positives, triplets.negatives),
    )


class TupleMiner(Miner):
    """Base of the triplet miners: ``mine`` returns :class:`MaskedTriplets`, and ``mine_masked``
    applies ρ-regularisation (:mod:`tfdml.mining.rho`) to them with probability ``p_switch``
    (0 disables it).

    With :class:`~tfdml.masks.Keys` (a miner whose ``mine`` takes ``keys``) the anchors are the queries (rows
    of the batch) and the positives and negatives index the keys; a switched tuple's positive is the
    anchor's own key copy, as in-batch it is the anchor itself."""

    def __init__(self, p_switch=0.0, seed=None):
        super().__init__(seed=seed)
        self.p_switch = check_argument(type(self).__name__, "p_switch", p_switch, low=0.0, high=1.0)

    def mine_masked(self, embeddings, labels, keys=None):
        if keys is None:
            return switch_negatives(super().mine_masked(embeddings, labels), self.p_switch, self.generator)
        triplets = super().mine_masked(embeddings, labels, keys=keys)
        anchor_keys = tf.gather(tf.cast(keys.self_index, tf.int32), triplets.anchors)
        return switch_negatives(triplets, self.p_switch, self.generator, anchor_keys)


def triplet_candidates(embeddings, labels, keys=None, distance=euclidean):
    """``(distances, positives, negatives)`` of a triplet miner: ``distance`` and the positive and negative
    masks of the batch with itself ``(b, b)``, or with :class:`~tfdml.masks.Keys` ``(b, m)``
    (:func:`tfdml.masks.key_masks`: valid keys only, never the query's own copy). ``embeddings`` are the
    miner's (without gradient); the keys' embeddings are taken without gradient too."""
    if keys is None:
        return distance(embeddings), positive_mask(labels), negative_mask(labels)
    key_embeddings = tf.stop_gradient(tf.cast(keys.embeddings, embeddings.dtype))
    return (distance(embeddings, key_embeddings), *key_masks(labels, keys))


def takes_keys(method):
    """Whether a loss's ``compute`` or a miner's ``mine`` takes separate keys (a ``keys=`` argument)."""
    return "keys" in inspect.signature(method).parameters


def deserialize_miner(config):
    if config is None or isinstance(config, Miner):
        return config
    return keras.saving.deserialize_keras_object(config)
