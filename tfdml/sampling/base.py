"""The contract every batch sampler follows, and the label bookkeeping they share.

A sampler only sees the label (and, for the category samplers, category) arrays of a dataset. For each epoch it
plans a NumPy matrix of sample indices, one row per batch, from a generator seeded
by ``(seed, epoch)``; :meth:`BatchSampler.index_dataset` turns the plans into a
``tf.data.Dataset`` of int64 index vectors. Planning a whole epoch at once keeps the
per-batch cost to a slice of a precomputed matrix (``Dataset.from_generator``, which
calls Python once per batch, is several times slower), and the epoch seed makes every
epoch reproducible on its own, so training can resume mid-run with ``initial_epoch``.
"""

import numpy as np
import tensorflow as tf

from tfdml.checks import is_multi_hot, label_array, multi_hot_array
from tfdml.serialization import constructor_arguments, constructor_config, from_constructor_config


class LabelGroups:
    """Sample indices grouped by a dense id: ``members[starts[g]:starts[g] + counts[g]]`` are group ``g``.

    Attributes:
        values: the original label of each group, sorted.
        ids: int64 ``(n,)`` dense group id of each sample.
        counts / starts: int64 ``(g,)`` size and offset of each group in ``members``.
        members: int64 ``(n,)`` sample indices sorted by group (stable).
        position: int64 ``(n,)`` where each sample sits within its group's run.
    """

    def __init__(self, labels):
        self.values, self.ids, self.counts = np.unique(labels, return_inverse=True, return_counts=True)
        self.ids = self.ids.astype(np.int64)
        self.counts = self.counts.astype(np.int64)
        self.starts = np.cumsum(self.counts) - self.counts
        self.members = np.argsort(self.ids, kind="stable").astype(np.int64)
        self.position = np.empty_like(self.members)
        self.position[self.members] = np.arange(self.members.size) - self.starts[self.ids[self.members]]

    def __len__(self):
        return int(self.counts.size)

    def shuffled_members(self, rng, group_order=None):
        """Samples sorted by group, in random order within each group.

        ``group_order`` (a permutation of group ids) puts the groups themselves in that order;
        by default they stay sorted, so ``starts``/``counts`` still index the result.
        """
        rank = self.ids if group_order is None else np.argsort(group_order)[self.ids]
        return np.lexsort((rng.random(self.ids.size), rank)).astype(np.int64)

    def companions(self, samples, count, rng, avoid=None):
        """``count`` other members of each sample's group, ``(len(samples), count)``.

        Drawn uniformly without replacement from the group minus the sample itself; a group
        too small for that cycles through its other members, and a singleton group repeats
        the sample (the only image of its class). ``avoid`` (int ``(len(samples), r)``) lists
        samples per row to take only once every other member is used (e.g. the rest of a batch).
        """
        samples = np.asarray(samples, dtype=np.int64)
        if count == 0:
            return np.zeros((samples.size, 0), np.int64)
        groups = self.ids[samples]
        sizes = self.counts[groups]
        own = self.position[samples]
        # Random keys over each group's slots; the sample's own slot and slots past the
        # group's end sort last, so the first ``sizes - 1`` ranks are a random permutation
        # of the other members (avoided ones after the rest).
        keys = rng.random((samples.size, int(sizes.max())))
        slots = np.arange(keys.shape[1])
        if avoid is not None:
            # Shift avoided members' keys past every other member's (keys are in [0, 1)).
            candidates = self.members[np.minimum(self.starts[groups][:, None] + slots, self.members.size - 1)]
            row = np.arange(samples.size)[:, None] * self.ids.size
            keys[np.isin(row + candidates, row + np.asarray(avoid, dtype=np.int64))] += 1.0
        keys[(slots >= sizes[:, None]) | (slots == own[:, None])] = np.inf
        ranked = np.argsort(keys, axis=1)
        others = np.maximum(sizes - 1, 1)
        picked = np.take_along_axis(ranked, np.arange(count) % others[:, None], axis=1)
        picked = np.where((sizes == 1)[:, None], own[:, None], picked)
        return self.members[self.starts[groups][:, None] + picked]


def occurrence_rank(groups):
    """For each entry of ``groups``, how many earlier entries hold the same value."""
    groups = np.asarray(groups)
    order = np.argsort(groups, kind="stable")
    sorted_groups = groups[order]
    first = np.searchsorted(sorted_groups, sorted_groups, side="left")
    rank = np.empty(groups.size, np.int64)
    rank[order] = np.arange(groups.size) - first
    return rank


class BatchSampler:
    """Base class: plans epochs of index batches from label arrays.

    Subclasses validate their arguments in ``__init__`` (raising ``ValueError`` with the
    numbers involved), set ``batches_per_epoch`` and implement :meth:`plan_epoch`.

    Args:
        labels: int ``(n,)`` class label of each sample.
        batch_size: samples per batch.
        seed: integer seed; the same seed gives the same batches, epoch by epoch.

    ``data_arguments`` names the further constructor arguments a recipe run supplies from its
    data or its ``sampler`` section (the data's ``categories``, ``samples_per_class``, the memory
    ``bank``), so the runner passes exactly those.

    Every constructor argument is stored under its own name, from which :meth:`get_config`
    builds the config (:mod:`tfdml.serialization`).
    """

    data_arguments = ()
    #: Whether ``labels`` may be multi-hot label sets ``(n, C)`` (:func:`tfdml.checks.multi_hot_array`) besides
    #: class ids (one label per sample); such a sampler has no ``classes`` grouping.
    multi_label = False

    def __init__(self, labels, *, batch_size, seed=0):
        name = type(self).__name__
        if self.multi_label and is_multi_hot(labels):
            self.labels = multi_hot_array(labels, "labels", who=name)
        else:
            self.labels = label_array(labels, "labels", who=name, integral_floats=False)
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"{name}: batch_size must be a positive integer; got {batch_size}.")
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.classes = None if self.multi_label else LabelGroups(self.labels)
        self.batches_per_epoch = None

    @property
    def num_samples(self):
        return int(self.labels.shape[0])

    def checked_epoch_length(self, batches_per_epoch, images_per_batch=None):
        """``batches_per_epoch`` as a positive int, or by default ``max(1, n // images_per_batch)`` (default
        ``batch_size``): about one pass over the samples."""
        if batches_per_epoch is None:
            batches_per_epoch = max(1, self.num_samples // (images_per_batch or self.batch_size))
        if int(batches_per_epoch) != batches_per_epoch or batches_per_epoch < 1:
            raise ValueError(
                f"{type(self).__name__}: batches_per_epoch must be a positive integer; got {batches_per_epoch}."
            )
        return int(batches_per_epoch)

    def epoch_rng(self, epoch):
        """The NumPy generator that plans ``epoch``: a pure function of ``(seed, epoch)``."""
        return np.random.default_rng([self.seed, int(epoch)])

    def plan_epoch(self, epoch):
        """int64 ``(batches_per_epoch, batch_size)`` sample indices of every batch in ``epoch``."""
        raise NotImplementedError

    def index_dataset(self, epochs=None, initial_epoch=0):
        """A ``tf.data.Dataset`` of int64 ``(batch_size,)`` index vectors, one per batch.

        Args:
            epochs: number of epochs to emit (``None``: repeat forever).
            initial_epoch: first epoch to plan, to resume a run with the same batches.
        """
        shape = (self.batches_per_epoch, self.batch_size)

        def plan(epoch):
            indices = tf.numpy_function(lambda e: self.plan_epoch(int(e)), [epoch], tf.int64, stateful=False)
            return tf.data.Dataset.from_tensor_slices(tf.ensure_shape(indices, shape))

        if epochs is None:
            epoch_numbers = tf.data.Dataset.counter(initial_epoch)
        else:
            epoch_numbers = tf.data.Dataset.range(initial_epoch, initial_epoch + epochs)
        return epoch_numbers.flat_map(plan)

    def get_config(self):
        return constructor_config(self)

    @classmethod
    def from_config(cls, config):
        """The sampler of ``config``; a memory ``bank`` is rebuilt fresh, of the same shape (embeddings are
        not serialised)."""
        if "categories" not in constructor_arguments(cls):
            # Configs saved while every sampler took categories hold them for samplers that never used them.
            config = {name: value for name, value in config.items() if name != "categories"}
        return from_constructor_config(cls, config)
