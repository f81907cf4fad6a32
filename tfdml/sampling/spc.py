"""SPC-n ("samples per class", m-per-class) batches: b/m distinct classes, m samples each."""

import keras
import numpy as np

from tfdml.sampling.base import BatchSampler, occurrence_rank

SMALL_CLASS_POLICIES = ("repeat", "exclude")


@keras.saving.register_keras_serializable(package="tfdml")
class SPCSampler(BatchSampler):
    """Batches of ``batch_size / samples_per_class`` distinct classes × ``samples_per_class`` samples.

    When to use: the default P×K batches for pair, triplet and proxy losses (2 per class in Roth et al., 5 in Wu et
    al.).

    Roth et al. 2020 (§3.2, SPC-2/4/8): "given batch-size b, we randomly select b/n
    unique classes from which we select n samples randomly"; Wu et al. 2017 use m = 5
    (14 classes × 5 = 70).

    Classes are drawn uniformly: each epoch deals out shuffled copies of the class list,
    ``batch_size / samples_per_class`` classes per batch (a copy's leftover classes that
    cannot fill a batch are skipped), so no class repeats within a batch and every class
    appears about equally often. A class's images are taken in a per-epoch shuffled
    order, cycling, so its successive appearances show new images before any repeat.

    Classes with fewer than ``samples_per_class`` samples (e.g. many Stanford Online
    Products classes have 2–3) follow ``small_classes``:

    - ``"repeat"`` (default): the batch holds all of the class's samples, then repeats
      them (cycling) to fill its ``samples_per_class`` slots.
    - ``"exclude"``: such classes are never drawn.

    Epoch length: ``batches_per_epoch``, by default ``max(1, n // batch_size)`` (as in
    Roth et al.'s code); an epoch does not promise to visit every sample.

    Args:
        labels: int ``(n,)`` class label of each sample.
        batch_size: b, a multiple of ``samples_per_class``.
        samples_per_class: n (SPC-n) or m. Default 2 (SPC-2, Roth et al.'s choice).
        small_classes: ``"repeat"`` or ``"exclude"`` (see above).
        batches_per_epoch: batches per epoch (default ``max(1, n // batch_size)``).
        seed: integer seed.

    Example:

    >>> sampler = SPCSampler(labels, batch_size=32, samples_per_class=4, seed=0)
    >>> indices = next(iter(sampler.index_dataset()))  # int64 (32,): 8 classes × 4
    """

    data_arguments = ("samples_per_class",)

    def __init__(
        self,
        labels,
        *,
        batch_size,
        samples_per_class=2,
        small_classes="repeat",
        batches_per_epoch=None,
        seed=0,
    ):
        super().__init__(labels, batch_size=batch_size, seed=seed)
        if int(samples_per_class) != samples_per_class or samples_per_class < 1:
            raise ValueError(f"SPCSampler: samples_per_class must be a positive integer; got {samples_per_class}.")
        if self.batch_size % samples_per_class:
            raise ValueError(
                f"SPCSampler: batch_size={self.batch_size} is not divisible by samples_per_class={samples_per_class}."
            )
        if small_classes not in SMALL_CLASS_POLICIES:
            raise ValueError(f"SPCSampler: small_classes must be one of {SMALL_CLASS_POLICIES}; got {small_classes!r}.")
        self.samples_per_class = int(samples_per_class)
        self.small_classes = small_classes
        self.classes_per_batch = self.batch_size // self.samples_per_class
        counts = self.classes.counts
        self.drawable_classes = np.arange(len(self.classes))
        if small_classes == "exclude":
            self.drawable_classes = np.flatnonzero(counts >= self.samples_per_class)
        if self.drawable_classes.size < self.classes_per_batch:
            qualifier = f" with at least {self.samples_per_class} samples" if small_classes == "exclude" else ""
            raise ValueError(
                f"SPCSampler: a batch needs batch_size/samples_per_class = {self.batch_size}/{self.samples_per_class}"
                f" = {self.classes_per_batch} distinct classes, but labels have {self.drawable_classes.size}"
                f" classes{qualifier}."
            )
        self.batches_per_epoch = self.checked_epoch_length(batches_per_epoch)

    def plan_epoch(self, epoch):
        rng = self.epoch_rng(epoch)
        k, m = self.classes_per_batch, self.samples_per_class
        batches_per_copy = self.drawable_classes.size // k
        copies = -(-self.batches_per_epoch // batches_per_copy)
        dealt = rng.permuted(np.tile(self.drawable_classes, (copies, 1)), axis=1)
        batch_classes = dealt[:, : batches_per_copy * k].reshape(-1, k)[: self.batches_per_epoch].ravel()
        # The t-th appearance of a class in this epoch takes its images t·m … t·m + m − 1
        # (mod class size) of a shuffled order, so repeats only come after a full cycle.
        offsets = occurrence_rank(batch_classes)[:, None] * m + np.arange(m)
        positions = offsets % self.classes.counts[batch_classes][:, None]
        members = self.classes.shuffled_members(rng)
        indices = members[self.classes.starts[batch_classes][:, None] + positions]
        return indices.reshape(self.batches_per_epoch, self.batch_size)
