"""SPC-R batches: b − 1 random samples plus one sample sharing a label with one of them."""

import keras
import numpy as np

from tfdml.sampling.base import BatchSampler


@keras.saving.register_keras_serializable(package="tfdml")
class SPCRandomSampler(BatchSampler):
    """Batches of ``batch_size − 1`` random samples plus one same-label partner.

    When to use: classes with few images: many classes per batch, with at least one triplet guaranteed.

    Roth et al. 2020 (§3.2, SPC-R): "we randomly select b − 1 samples from the dataset
    and choose the last sample to have the same label as one of the other b − 1
    samples to ensure that at least one triplet can be mined", so the number of
    classes per batch varies freely.

    Each epoch shuffles the dataset and cuts it into runs of ``batch_size − 1``; the
    last run wraps around to the start, so **every sample is visited** each epoch. The
    final sample of a batch is a uniformly chosen different image of the class of a
    uniformly chosen batch member whose class has at least two samples, preferring images
    not already in the batch (a duplicate only when the whole class is). If no member
    of a run has a class-mate (possible only with many singleton classes), the run's
    last sample is replaced by a random sample of a class with at least two samples,
    which then gets the partner.

    Epoch length: ``batches_per_epoch = ceil(n / (batch_size − 1))``.

    Args:
        labels: int ``(n,)`` class label of each sample; at least one class needs two samples.
        batch_size: b ≥ 2, at most n + 1.
        seed: integer seed.

    Example:

    >>> sampler = SPCRandomSampler(labels, batch_size=64, seed=0)
    >>> indices = next(iter(sampler.index_dataset()))  # int64 (64,)
    """

    def __init__(self, labels, *, batch_size, seed=0):
        super().__init__(labels, batch_size=batch_size, seed=seed)
        if self.batch_size < 2:
            raise ValueError(f"SPCRandomSampler: batch_size must be at least 2; got {self.batch_size}.")
        if self.num_samples < self.batch_size - 1:
            raise ValueError(
                f"SPCRandomSampler: batch_size - 1 = {self.batch_size - 1} random samples need at least that many"
                f" samples; labels have {self.num_samples}."
            )
        self.pairable = np.flatnonzero(self.classes.counts[self.classes.ids] >= 2)
        if self.pairable.size == 0:
            raise ValueError(
                f"SPCRandomSampler: every one of the {len(self.classes)} classes has a single sample, so no"
                " batch can hold a same-label pair."
            )
        self.batches_per_epoch = -(-self.num_samples // (self.batch_size - 1))

    def plan_epoch(self, epoch):
        rng = self.epoch_rng(epoch)
        runs = np.resize(rng.permutation(self.num_samples), (self.batches_per_epoch, self.batch_size - 1))
        has_mate = self.classes.counts[self.classes.ids[runs]] >= 2
        lonely = ~has_mate.any(axis=1)
        runs[lonely, -1] = rng.choice(self.pairable, size=int(lonely.sum()))
        has_mate[lonely, -1] = True
        # A uniform choice among the members with a class-mate: the largest random key among them.
        anchors = np.argmax(np.where(has_mate, rng.random(runs.shape), -1.0), axis=1)
        anchor_samples = runs[np.arange(runs.shape[0]), anchors]
        partners = self.classes.companions(anchor_samples, 1, rng, avoid=runs)
        return np.concatenate([runs, partners], axis=1)
