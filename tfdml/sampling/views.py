"""SimCLR-style batches of views: each drawn image repeated ``views`` times, to be augmented independently."""

import keras
import numpy as np

from tfdml.sampling.base import BatchSampler


@keras.saving.register_keras_serializable(package="tfdml")
class ViewsSampler(BatchSampler):
    """Batches of ``batch_size / views`` distinct images, each present ``views`` times (its augmented views).

    When to use: self-supervised training (SimCLR, VICReg) from unlabelled images, or SupCon over views with labels.

    Chen et al. 2020 (SimCLR, §2.1 and Algorithm 1): a minibatch of ``N`` images becomes ``2N``
    augmented views, and "the other 2(N − 1) augmented examples within a minibatch" are each
    pair's negatives. The sampler plans the indices; the random augmentation of the recipe
    (``tfdml.data.Augmentation``: one stateless seed per position of the stream) makes each
    repetition a different view, so a batch is reproducible from the seeds and a resumed run
    reads the views the uninterrupted one would have.

    Layout, view-major: row ``j`` of the ``(views, batch_size / views)`` grid ``[x_1 … x_k | x_1 … x_k | …]``
    is the ``j``-th view of the batch's ``k`` images, as SimCLR concatenates its two views.
    The labels that come with a view are its image's labels:

    - an unlabelled image (``tfdml.data.unlabelled_folder``) or a labelled one read with
      ``data.labels: false`` is its own class (its index), so the pseudo-class of a view is its
      image: ``NTXentLoss``, ``DecoupledContrastiveLoss`` and ``SupConLoss`` contrast an image's
      views with every other image's, and ``VICRegLoss`` pairs view 1 with view 2 of each image
      (its stable sort of the labels keeps the first view first);
    - with ``data.labels: true`` the views keep their class labels: ``SupConLoss`` then takes the
      views of every image of a class as positives (Khosla et al. 2020, §3.2).

    The images of an epoch are a fresh permutation of the data, ``batch_size / views`` per batch, so
    no image repeats within a batch (at most ``views`` views of an image share a batch) and every
    image is seen once per epoch when ``batches_per_epoch`` keeps its default ``n // (batch_size /
    views)``; more batches deal out further permutations, whose leftover images that cannot fill a
    batch are skipped.

    Args:
        labels: int ``(n,)`` label of each image (read only for the image count; the pipeline yields them).
        batch_size: views per batch, a multiple of ``views``; ``batch_size / views`` ≤ n.
        views: augmented views of each image, ≥ 2. Default 2 (SimCLR's, and VICReg's two branches).
        batches_per_epoch: batches per epoch (default ``max(1, n // (batch_size / views))``).
        seed: integer seed.

    Example:

    >>> sampler = ViewsSampler(np.arange(100), batch_size=8, views=2, seed=0)
    >>> sampler.plan_epoch(0)[0]  # 4 images, then their second views: [a b c d a b c d]
    """

    def __init__(self, labels, *, batch_size, views=2, batches_per_epoch=None, seed=0):
        super().__init__(labels, batch_size=batch_size, seed=seed)
        if int(views) != views or views < 2:
            raise ValueError(f"ViewsSampler: views must be an integer >= 2; got {views}.")
        if self.batch_size % views:
            raise ValueError(f"ViewsSampler: batch_size={self.batch_size} is not divisible by views={views}.")
        self.views = int(views)
        self.images_per_batch = self.batch_size // self.views
        if self.images_per_batch > self.num_samples:
            raise ValueError(
                f"ViewsSampler: a batch needs batch_size/views = {self.batch_size}/{self.views} = "
                f"{self.images_per_batch} distinct images, but labels have {self.num_samples}."
            )
        self.batches_per_epoch = self.checked_epoch_length(batches_per_epoch, self.images_per_batch)

    def plan_epoch(self, epoch):
        rng = self.epoch_rng(epoch)
        k = self.images_per_batch
        batches_per_copy = self.num_samples // k
        copies = -(-self.batches_per_epoch // batches_per_copy)
        dealt = rng.permuted(np.tile(np.arange(self.num_samples, dtype=np.int64), (copies, 1)), axis=1)
        images = dealt[:, : batches_per_copy * k].reshape(-1, k)[: self.batches_per_epoch]
        return np.tile(images, (1, self.views))
