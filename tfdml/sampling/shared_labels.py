"""Batches of multi-label data in which every sample shares a label with others: labels first, then images
carrying them."""

import keras
import numpy as np

from tfdml.sampling.base import BatchSampler, LabelGroups, occurrence_rank


@keras.saving.register_keras_serializable(package="tfdml")
class SharedLabelSampler(BatchSampler):
    """Multi-label batches: ``batch_size / samples_per_label`` distinct labels, each with ``samples_per_label``
    images carrying it.

    When to use: multi-label data (multi-hot labels) with a multi-label loss such as ``MultiSupConLoss``, which
    needs several images per label in a batch.

    The multi-label counterpart of SPC-n (m-per-class) sampling: each batch draws ``L = batch_size /
    samples_per_label`` distinct labels uniformly among those carried by at least two images, then
    ``samples_per_label`` images carrying each. A label's images are taken in a random order that is new
    every epoch and cycled through, so within a label no image repeats before every other one has come;
    an image carrying two drawn labels may come twice in a batch. Every image shares at least its drawn
    label with ``samples_per_label − 1`` others of the batch (and possibly more labels, by co-occurrence).

    Epoch length: ``ceil(n / batch_size)`` batches, so an epoch holds about as many images as the data.

    Args:
        labels: multi-hot label sets ``(n, C)`` (0/1, ``C >= 2``) of the images, or class ids ``(n,)`` (one
            label per image: SPC-n sampling).
        batch_size: images per batch, a multiple of ``samples_per_label``.
        samples_per_label: images per drawn label, ``m >= 2`` (default 4).
        seed: integer seed; the same seed gives the same batches, epoch by epoch.

    Example:

    >>> sampler = SharedLabelSampler(label_sets, batch_size=32, samples_per_label=4, seed=0)
    >>> indices = next(iter(sampler.index_dataset()))  # int64 (32,): 8 labels × 4 images
    """

    multi_label = True

    def __init__(self, labels, *, batch_size, samples_per_label=4, seed=0):
        super().__init__(labels, batch_size=batch_size, seed=seed)
        if int(samples_per_label) != samples_per_label or samples_per_label < 2:
            raise ValueError(f"SharedLabelSampler: samples_per_label must be an integer >= 2; got {samples_per_label}.")
        self.samples_per_label = int(samples_per_label)
        if self.batch_size % self.samples_per_label:
            raise ValueError(
                f"SharedLabelSampler: batch_size ({self.batch_size}) must be a multiple of samples_per_label "
                f"({self.samples_per_label})."
            )
        # (image, label) incidences: class ids are one label per image.
        images, carried = np.nonzero(self.labels) if self.labels.ndim == 2 else (np.arange(self.num_samples), self.labels)
        kept = np.bincount(carried)[carried] >= 2
        self._images = images[kept]
        # One member per (image, label) incidence of a label at least two images carry.
        self._carriers = LabelGroups(carried[kept])
        self.labels_per_batch = self.batch_size // self.samples_per_label
        if len(self._carriers) < self.labels_per_batch:
            raise ValueError(
                f"SharedLabelSampler: a batch of {self.batch_size} with samples_per_label={self.samples_per_label} "
                f"draws {self.labels_per_batch} distinct labels, but only {len(self._carriers)} labels are carried by "
                "two images or more; lower batch_size or raise samples_per_label."
            )
        self.batches_per_epoch = -(-self.num_samples // self.batch_size)

    def plan_epoch(self, epoch):
        rng = self.epoch_rng(epoch)
        groups = self._carriers
        drawn = np.argsort(rng.random((self.batches_per_epoch, len(groups))), axis=1)[:, : self.labels_per_batch]
        drawn = drawn.reshape(-1)
        # The t-th draw of a label takes the next samples_per_label images of its shuffled carriers.
        order = groups.shuffled_members(rng)
        slots = occurrence_rank(drawn)[:, np.newaxis] * self.samples_per_label + np.arange(self.samples_per_label)
        members = order[groups.starts[drawn][:, np.newaxis] + slots % groups.counts[drawn][:, np.newaxis]]
        return self._images[members].reshape(self.batches_per_epoch, self.batch_size)
