"""FastAP "hard" batches: half the batch from each of two categories, whole classes at a time.

Both samplers lay each category's images out per epoch as a stream of whole classes
(classes shuffled, images shuffled within each class) and give each category a cursor
that advances by ``batch_size / 2`` every time the category fills a half batch,
wrapping around its stream, as in the authors' Matlab ``train_hard.m``. A half batch is
therefore a run of whole classes, except that its first and last class may be split
with the category's neighbouring half batches.
"""

import itertools

import keras
import numpy as np

from tfdml.checks import label_array
from tfdml.sampling.base import BatchSampler, LabelGroups, occurrence_rank


class _CategoryStreams:
    """Per-epoch streams of whole classes, one per category, read half a batch at a time."""

    def __init__(self, samples, classes, categories):
        self.samples = samples
        self.classes = classes
        self.groups = LabelGroups(categories[samples])

    def halves(self, rng, half_categories, half_size):
        """Sample indices ``(len(half_categories), half_size)`` of successive half batches."""
        class_rank = np.argsort(rng.permutation(len(self.classes)))[self.classes.ids[self.samples]]
        keys = (rng.random(self.samples.size), class_rank, self.groups.ids)
        stream = self.samples[np.lexsort(keys)]
        offsets = occurrence_rank(half_categories)[:, None] * half_size + np.arange(half_size)
        positions = offsets % self.groups.counts[half_categories][:, None]
        return stream[self.groups.starts[half_categories][:, None] + positions]


class _CategorySampler(BatchSampler):
    """A sampler that reads each sample's category besides its label: ``categories`` is its data argument."""

    data_arguments = ("categories",)

    def __init__(self, labels, categories, *, batch_size, seed=0):
        super().__init__(labels, batch_size=batch_size, seed=seed)
        name = type(self).__name__
        if categories is None:
            raise ValueError(f"{name}: categories are required.")
        self.categories = label_array(categories, "categories", who=name, integral_floats=False)
        if self.categories.shape != self.labels.shape:
            raise ValueError(
                f"{name}: categories has {self.categories.size} entries but labels has {self.labels.size}."
            )


def _check_half_batches(sampler, batch_size, groups, what):
    if batch_size % 2:
        raise ValueError(f"{sampler}: batch_size must be even (two halves); got {batch_size}.")
    small = groups.counts < batch_size // 2
    if small.any():
        listed = ", ".join(f"{v} ({c} samples)" for v, c in zip(groups.values[small], groups.counts[small]))
        raise ValueError(f"{sampler}: {what} too small to fill batch_size/2 = {batch_size // 2} samples: {listed}.")


@keras.saving.register_keras_serializable(package="tfdml")
class CategoryHardSampler(_CategorySampler):
    """Batches from two categories, ``batch_size / 2`` images of whole classes from each.

    When to use: data with a category hierarchy (SOP, In-Shop) and ranking losses such as FastAP: hard negatives in
    every batch.

    Cakir et al. 2019 (FastAP, supplementary §A, "Hard"): "first sample two categories.
    From each category, randomly sample classes until M/2 images are obtained." Every
    in-batch query then sees hard negatives (other classes of its category) and easy
    ones (the other category). Each epoch visits every unordered pair of distinct
    categories ``batches_per_pair`` times, in random order; which category fills the
    first half is random.

    Epoch length: ``batches_per_epoch = C(K, 2) × batches_per_pair`` for K categories
    (Stanford Online Products: C(12, 2) × 5 = 330; In-Shop: C(23, 2) × 2 = 506). An epoch
    visits every sample only when a category's ``(K − 1) × batches_per_pair`` half
    batches cover it. Samples of unknown category (``-1``) are never drawn; see
    :class:`CategoryVersusUncategorisedSampler` for datasets where many are unknown.

    Args:
        labels: int ``(n,)`` class label of each sample.
        categories: int ``(n,)`` category of each sample; at least two categories, each
            with at least ``batch_size / 2`` samples.
        batch_size: M, even.
        batches_per_pair: batches per category pair per epoch (default 5, the paper's SOP value).
        seed: integer seed.

    Example:

    >>> sampler = CategoryHardSampler(labels, categories, batch_size=256, seed=0)
    >>> indices = next(iter(sampler.index_dataset()))  # 128 from one category, 128 from another
    """

    def __init__(self, labels, categories, *, batch_size, batches_per_pair=5, seed=0):
        super().__init__(labels, categories, batch_size=batch_size, seed=seed)
        if int(batches_per_pair) != batches_per_pair or batches_per_pair < 1:
            raise ValueError(
                f"CategoryHardSampler: batches_per_pair must be a positive integer; got {batches_per_pair}."
            )
        self.batches_per_pair = int(batches_per_pair)
        self.streams = _CategoryStreams(np.flatnonzero(self.categories >= 0), self.classes, self.categories)
        num_categories = len(self.streams.groups)
        if num_categories < 2:
            raise ValueError(
                f"CategoryHardSampler: needs at least two categories (ignoring -1 = unknown); got {num_categories}."
            )
        _check_half_batches("CategoryHardSampler", self.batch_size, self.streams.groups, "categories")
        self.pairs = np.array(list(itertools.combinations(range(num_categories), 2)), dtype=np.int64)
        self.batches_per_epoch = len(self.pairs) * self.batches_per_pair

    def plan_epoch(self, epoch):
        rng = self.epoch_rng(epoch)
        pairs = rng.permutation(np.repeat(self.pairs, self.batches_per_pair, axis=0))
        pairs = rng.permuted(pairs, axis=1)
        halves = self.streams.halves(rng, pairs.ravel(), self.batch_size // 2)
        return halves.reshape(self.batches_per_epoch, self.batch_size)


@keras.saving.register_keras_serializable(package="tfdml")
class CategoryVersusUncategorisedSampler(_CategorySampler):
    """Batches of one known category (first half) and samples of unknown category (second half).

    When to use: datasets where only part of the training set has categories (PKU VehicleID).

    Cakir et al. 2019 (FastAP, supplementary §A, PKU VehicleID, where only about half
    the training set has a category): "in each minibatch, we first sample M/2 images
    from a labeled category. Then, to get the other M/2 images, we randomly sample
    classes that do not have category labels." The uncategorised samples
    (``categories == -1``) form one more stream of whole classes, read half a batch at
    a time.

    Epoch length: ``batches_per_epoch = Σ_c ceil(2 N_c / M)`` over known categories c
    with N_c samples, so every categorised sample is visited each epoch (a category's
    last half batch wraps around); the uncategorised half batches wrap around their
    stream as often as needed.

    Args:
        labels: int ``(n,)`` class label of each sample.
        categories: int ``(n,)`` category of each sample, ``-1`` where unknown; at least
            one known category, and the known categories and the unknown pool each with at
            least ``batch_size / 2`` samples.
        batch_size: M, even.
        seed: integer seed.

    Example:

    >>> sampler = CategoryVersusUncategorisedSampler(labels, categories, batch_size=96, seed=0)
    >>> indices = next(iter(sampler.index_dataset()))  # 48 of one category, 48 uncategorised
    """

    def __init__(self, labels, categories, *, batch_size, seed=0):
        super().__init__(labels, categories, batch_size=batch_size, seed=seed)
        name = "CategoryVersusUncategorisedSampler"
        known = self.categories >= 0
        if not known.any():
            raise ValueError(f"{name}: needs at least one known category; every sample has category -1.")
        self.streams = _CategoryStreams(np.flatnonzero(known), self.classes, self.categories)
        # Every unknown sample goes in the single stream of category -1.
        self.unknown = _CategoryStreams(np.flatnonzero(~known), self.classes, self.categories)
        _check_half_batches(name, self.batch_size, self.streams.groups, "categories")
        if self.unknown.samples.size < self.batch_size // 2:
            raise ValueError(
                f"{name}: {self.unknown.samples.size} samples have unknown category (-1); half a batch needs"
                f" batch_size/2 = {self.batch_size // 2}."
            )
        self.batches_per_category = -(-2 * self.streams.groups.counts // self.batch_size)
        self.batches_per_epoch = int(self.batches_per_category.sum())

    def plan_epoch(self, epoch):
        rng = self.epoch_rng(epoch)
        half = self.batch_size // 2
        categories = rng.permutation(np.repeat(np.arange(len(self.streams.groups)), self.batches_per_category))
        known = self.streams.halves(rng, categories, half)
        unknown = self.unknown.halves(rng, np.zeros_like(categories), half)
        return np.concatenate([known, unknown], axis=1)
