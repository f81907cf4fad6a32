"""FastAP "random" batches: whole classes, drawn at random until the batch is full."""

import keras
import numpy as np

from tfdml.sampling.base import BatchSampler


@keras.saving.register_keras_serializable(package="tfdml")
class RandomClassSampler(BatchSampler):
    """Batches of whole classes in random order (few-shot setting).

    When to use: listwise losses such as FastAP and few-shot episodes: batches of whole classes.

    Cakir et al. 2019 (FastAP, supplementary §A, "Random"): "randomly sample classes
    from the entire training set, until M images are obtained"; once a class is
    sampled, all of its images enter the batch.

    Each epoch shuffles the classes (and the images within each class), lays their
    images end to end and cuts the sequence into batches of exactly ``batch_size``; the
    last batch wraps around to the start. So **every sample is visited** each epoch and
    every batch is a run of whole classes, except that the first and last class of a
    batch may be split with the neighbouring batch (fixed-size batches keep
    ``tf.function`` from retracing and work with ``tf.distribute``).

    Epoch length: ``batches_per_epoch = ceil(n / batch_size)``.

    Args:
        labels: int ``(n,)`` class label of each sample; at least two classes.
        batch_size: M ≥ 2, at most n.
        seed: integer seed.

    Example:

    >>> sampler = RandomClassSampler(labels, batch_size=256, seed=0)
    >>> indices = next(iter(sampler.index_dataset()))  # int64 (256,)
    """

    def __init__(self, labels, *, batch_size, seed=0):
        super().__init__(labels, batch_size=batch_size, seed=seed)
        if len(self.classes) < 2:
            raise ValueError(f"RandomClassSampler: labels must hold at least two classes; got {len(self.classes)}.")
        if not 2 <= self.batch_size <= self.num_samples:
            raise ValueError(
                f"RandomClassSampler: batch_size must be between 2 and the number of samples ({self.num_samples});"
                f" got {self.batch_size}."
            )
        self.batches_per_epoch = -(-self.num_samples // self.batch_size)

    def plan_epoch(self, epoch):
        rng = self.epoch_rng(epoch)
        sequence = self.classes.shuffled_members(rng, group_order=rng.permutation(len(self.classes)))
        return np.resize(sequence, (self.batches_per_epoch, self.batch_size))
