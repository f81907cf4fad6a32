"""Embedded (batch-matching) samplers of Roth et al. 2020, §3.2: greedy coreset, DDM and FRD.

Each batch is distilled from a random pool B* of ``pool_size`` samples (the paper's
b* = 1024) using their current embeddings in a :class:`~tfdml.sampling.MemoryBank`:

- :class:`CoresetSampler` picks seeds from B* by greedy coreset (max–min distance).
- :class:`DDMSampler` / :class:`FRDSampler` draw ``num_candidate_batches`` (m) random
  batches and keep the one whose embeddings are closest to B*, by the Wasserstein
  distance between distance histograms (DDM) or by the Fréchet distance (FRD).

A batch is ``batch_size / samples_per_class`` seeds, each followed by
``samples_per_class − 1`` other samples of its class (from the whole dataset), so the
batch has positives to mine (Roth et al.'s code does the same; ``samples_per_class=1``
gives the paper's plain b-sample batch). Two seeds may share a class, in which case a
sample can appear twice in a batch.

Because the choice depends on the embeddings at the time a batch is built,
:meth:`index_dataset` builds batches one at a time in a ``Dataset.from_generator``
that reads the bank (``plan_epoch`` gives the same batches for an unchanged bank). The
index dataset builds a batch only when asked for it (tf.data's automatic prefetch is
off), but a pipeline that prefetches, like :func:`~tfdml.sampling.batches`, chooses
each batch from the embeddings of as many steps earlier as it prefetches.
All distances are Euclidean.
"""

import itertools

import keras
import numpy as np
import scipy.spatial.distance
import scipy.stats
import sklearn.metrics.pairwise
import tensorflow as tf
import threadpoolctl

from tfdml.sampling.base import BatchSampler


def greedy_coreset(points, size, first=0):
    """Positions of ``size`` rows of ``points`` chosen by greedy k-centre (Agarwal et al. 2005).

    Starting from row ``first``, each step adds the row farthest from everything
    chosen so far: ``argmax_x min_{c ∈ chosen} ‖x − c‖``, the greedy solution of
    ``min_{B, |B| = size} max_{x ∈ points} min_{c ∈ B} ‖x − c‖``.

    Args:
        points: float ``(p, d)``.
        size: number of rows to choose, at most p.
        first: position of the first row.

    Returns:
        int64 ``(size,)`` positions into ``points``, in the order chosen.
    """
    points = np.asarray(points, dtype=np.float64)
    chosen = np.empty(size, dtype=np.int64)
    chosen[0] = first
    coverage = np.full(points.shape[0], np.inf)
    # Each pick depends on the previous ones, so the loop over picks is inherently sequential.
    for step in range(1, size):
        latest = points[chosen[step - 1]][None]
        coverage = np.minimum(coverage, scipy.spatial.distance.cdist(points, latest)[:, 0])
        chosen[step] = np.argmax(coverage)
    return chosen


def distance_histogram_wasserstein(batches, pool, num_bins=50):
    """Wasserstein-1 distance between the distance histograms of each batch and of the pool.

    DDM (Roth et al. 2020): the pairwise distances within a set, as a histogram over
    ``num_bins`` equal bins spanning ``[0, largest distance in the pool and all
    batches]``, normalised to unit mass; the score is the earth mover's distance
    between a batch's histogram and the pool's (bin mass placed at the bin centres).

    Args:
        batches: float ``(m, b, d)`` embeddings of m candidate batches.
        pool: float ``(p, d)`` embeddings of the pool B*.
        num_bins: histogram bins.

    Returns:
        float64 ``(m,)`` distances.
    """
    pool_distances = _distinct_pair_distances(pool)
    batch_distances = [_distinct_pair_distances(batch) for batch in batches]
    top = max(pool_distances.max(), *(d.max() for d in batch_distances))
    # Equal bins given as (count, range) take NumPy's linear-time binning, not a sort.
    bins = {"bins": num_bins, "range": (0.0, top if top > 0 else 1.0)}
    pool_histogram, edges = np.histogram(pool_distances, **bins)
    centres = (edges[:-1] + edges[1:]) / 2
    return np.array(
        [
            scipy.stats.wasserstein_distance(centres, centres, np.histogram(d, **bins)[0], pool_histogram)
            for d in batch_distances
        ]
    )


def _distinct_pair_distances(points):
    """Euclidean distance of every pair ``i < j`` of rows (one matrix product, unlike ``pdist``)."""
    points = np.asarray(points, dtype=np.float64)
    return sklearn.metrics.pairwise.euclidean_distances(points)[np.triu_indices(points.shape[0], k=1)]


def frechet_distance(batches, pool):
    """Fréchet distance between the Gaussian statistics of each batch and of the pool.

    FRD (Roth et al. 2020, after Heusel et al. 2017):
    ``‖μ_B − μ_B*‖² + Tr(Σ_B + Σ_B* − 2 (Σ_B Σ_B*)^{1/2})`` with unbiased covariances.
    ``Tr((Σ_B Σ_B*)^{1/2})`` is the sum of the square roots of the eigenvalues of
    ``Σ_B Σ_B*``, which are the nonzero eigenvalues of the symmetric ``Y Yᵀ`` (b×b) or
    ``Yᵀ Y`` (d×d) with ``Y = X_c Σ_B*^{1/2} / sqrt(b − 1)`` (``X_c`` the centred batch), so
    no general matrix square root is needed and each batch costs one small symmetric
    eigensolve.

    Args:
        batches: float ``(m, b, d)`` embeddings of m candidate batches (b ≥ 2).
        pool: float ``(p, d)`` embeddings of the pool B*.

    Returns:
        float64 ``(m,)`` distances.
    """
    batches = np.asarray(batches, dtype=np.float64)
    pool = np.asarray(pool, dtype=np.float64)
    pool_covariance = np.cov(pool, rowvar=False)
    values, vectors = np.linalg.eigh(pool_covariance)
    pool_root = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
    centred = (batches - batches.mean(axis=1, keepdims=True)) / np.sqrt(batches.shape[1] - 1)
    projected = centred @ pool_root
    transposed = projected.transpose(0, 2, 1)
    # Y Yᵀ (b×b) and Yᵀ Y (d×d) share their nonzero eigenvalues: solve the smaller one.
    gram = projected @ transposed if projected.shape[1] <= projected.shape[2] else transposed @ projected
    cross = np.linalg.eigvalsh(gram)
    trace_root = np.sqrt(np.clip(cross, 0.0, None)).sum(axis=1)
    batch_traces = np.sum(centred**2, axis=(1, 2))
    mean_gap = np.sum((batches.mean(axis=1) - pool.mean(axis=0)) ** 2, axis=1)
    return mean_gap + batch_traces + np.trace(pool_covariance) - 2.0 * trace_root


class BatchMatchingSampler(BatchSampler):
    """Base of the memory-bank samplers: seeds plus class-mates, chosen from bank embeddings.

    Args:
        labels: int ``(n,)`` class label of each sample.
        bank: the :class:`~tfdml.sampling.MemoryBank` of the n samples.
        batch_size: b, a multiple of ``samples_per_class``.
        samples_per_class: samples per seed (default 2, Roth et al.'s SPC-2 default).
        pool_size: b*, the size of the random pool B* (default ``None``: 1024, or all n samples when
            there are fewer), at most n.
        batches_per_epoch: default ``max(1, n // batch_size)``.
        seed: integer seed.
    """

    data_arguments = ("bank", "samples_per_class")

    def __init__(
        self,
        labels,
        *,
        bank,
        batch_size,
        samples_per_class=2,
        pool_size=None,
        batches_per_epoch=None,
        seed=0,
    ):
        super().__init__(labels, batch_size=batch_size, seed=seed)
        name = type(self).__name__
        if bank.num_samples != self.num_samples:
            raise ValueError(f"{name}: the bank holds {bank.num_samples} samples but labels has {self.num_samples}.")
        if int(samples_per_class) != samples_per_class or samples_per_class < 1:
            raise ValueError(f"{name}: samples_per_class must be a positive integer; got {samples_per_class}.")
        if self.batch_size % samples_per_class:
            raise ValueError(
                f"{name}: batch_size={self.batch_size} is not divisible by samples_per_class={samples_per_class}."
            )
        self.bank = bank
        self.samples_per_class = int(samples_per_class)
        self.seeds_per_batch = self.batch_size // self.samples_per_class
        if pool_size is None:
            pool_size = min(1024, self.num_samples)
        if not self.seeds_per_batch <= pool_size <= self.num_samples:
            raise ValueError(
                f"{name}: pool_size must lie between batch_size/samples_per_class = {self.seeds_per_batch} and the"
                f" number of samples ({self.num_samples}); got {pool_size}."
            )
        self.pool_size = int(pool_size)
        self.batches_per_epoch = self.checked_epoch_length(batches_per_epoch)

    def with_class_mates(self, seeds, rng):
        """The batch ``[seed, its samples_per_class − 1 class-mates]`` for each seed, flattened."""
        mates = self.classes.companions(seeds, self.samples_per_class - 1, rng)
        return np.concatenate([np.asarray(seeds, dtype=np.int64)[:, None], mates], axis=1).reshape(-1)

    def draw_pool(self, rng):
        """Sample indices of a random pool B* of ``pool_size`` distinct samples."""
        return rng.choice(self.num_samples, self.pool_size, replace=False)

    def choose_batch(self, rng):
        """int64 ``(batch_size,)`` indices of one batch, from the bank's current embeddings."""
        raise NotImplementedError

    def plan_epoch(self, epoch):
        rng = self.epoch_rng(epoch)
        return np.stack([self._choose_batch_single_threaded(rng) for _ in range(self.batches_per_epoch)])

    def _choose_batch_single_threaded(self, rng):
        # The matrices are small (b*, d ≈ 1024, 128) and the choice runs beside tf.data's
        # and the model's threads: threaded BLAS only oversubscribes the cores here.
        with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
            return self.choose_batch(rng)

    def index_dataset(self, epochs=None, initial_epoch=0):
        """Batches built one at a time from the bank as it is when each is requested (see module doc)."""

        def generate():
            if epochs is None:
                epoch_numbers = itertools.count(initial_epoch)
            else:
                epoch_numbers = range(initial_epoch, initial_epoch + epochs)
            for epoch in epoch_numbers:
                rng = self.epoch_rng(epoch)
                for _ in range(self.batches_per_epoch):
                    yield self._choose_batch_single_threaded(rng)

        options = tf.data.Options()
        options.experimental_optimization.inject_prefetch = False
        return tf.data.Dataset.from_generator(
            generate, output_signature=tf.TensorSpec((self.batch_size,), tf.int64)
        ).with_options(options)


@keras.saving.register_keras_serializable(package="tfdml")
class CoresetSampler(BatchMatchingSampler):
    """Greedy coreset distillation (GC), Roth et al. 2020 §3.2.

    When to use: batches that cover the embedding space (Roth et al. 2020's batch matching); needs a memory bank.

    Draws a pool B* of ``pool_size`` samples, picks ``batch_size / samples_per_class``
    of them by :func:`greedy_coreset` on their bank embeddings (first pick random), and
    adds class-mates to each pick. The picks are mapped back through the same pool they
    were chosen from (Roth et al.'s code maps them through a second random subset, so its
    batches do not match the coreset).

    Epoch length: ``batches_per_epoch`` (default ``max(1, n // batch_size)``).

    Args: see :class:`BatchMatchingSampler`.

    Example:

    >>> bank = MemoryBank(len(labels), dim=64)
    >>> sampler = CoresetSampler(labels, bank=bank, batch_size=32, seed=0)
    >>> indices = sampler.choose_batch(np.random.default_rng(0))  # 16 picks + 16 class-mates
    """

    def choose_batch(self, rng):
        pool = self.draw_pool(rng)
        picks = greedy_coreset(self.bank.embeddings[pool], self.seeds_per_batch, first=rng.integers(self.pool_size))
        return self.with_class_mates(pool[picks], rng)


class CandidateBatchSampler(BatchMatchingSampler):
    """Keeps the closest of ``num_candidate_batches`` random batches to the pool B*.

    Each candidate is ``batch_size / samples_per_class`` distinct random seeds plus their
    class-mates; subclasses define :meth:`batch_distance`.

    Args:
        num_candidate_batches: m, candidate batches per batch (default 10, Roth et al.'s ``ncomps``).
        other arguments: see :class:`BatchMatchingSampler`.
    """

    def __init__(self, labels, *, bank, batch_size, num_candidate_batches=10, **kwargs):
        super().__init__(labels, bank=bank, batch_size=batch_size, **kwargs)
        if self.batch_size < 2:
            raise ValueError(f"{type(self).__name__}: batch_size must be at least 2 to compare statistics; got 1.")
        if int(num_candidate_batches) != num_candidate_batches or num_candidate_batches < 1:
            raise ValueError(
                f"{type(self).__name__}: num_candidate_batches must be a positive integer; got {num_candidate_batches}."
            )
        self.num_candidate_batches = int(num_candidate_batches)

    def batch_distance(self, batch_embeddings, pool_embeddings):
        """float ``(m,)`` distance of each ``(m, b, d)`` candidate batch to the ``(p, d)`` pool."""
        raise NotImplementedError

    def select_batch(self, pool, candidate_batches):
        """The row of int ``(m, b)`` ``candidate_batches`` closest to the pool, by current bank embeddings."""
        candidate_batches = np.asarray(candidate_batches, dtype=np.int64)
        embeddings = self.bank.embeddings
        distances = self.batch_distance(embeddings[candidate_batches], embeddings[pool])
        return candidate_batches[np.argmin(distances)]

    def choose_batch(self, rng):
        pool = self.draw_pool(rng)
        candidates = np.stack(
            [
                self.with_class_mates(rng.choice(self.num_samples, self.seeds_per_batch, replace=False), rng)
                for _ in range(self.num_candidate_batches)
            ]
        )
        return self.select_batch(pool, candidates)


@keras.saving.register_keras_serializable(package="tfdml")
class DDMSampler(CandidateBatchSampler):
    """Distance-distribution matching (DDM), Roth et al. 2020 §3.2.

    When to use: batches whose distance distribution matches the data's (Roth et al. 2020); needs a memory bank.

    Of m random candidate batches, keeps the one whose normalised histogram of
    pairwise distances is closest to the pool's in Wasserstein distance
    (:func:`distance_histogram_wasserstein`).

    Epoch length: ``batches_per_epoch`` (default ``max(1, n // batch_size)``).

    Args:
        num_bins: histogram bins (default 50).
        other arguments: see :class:`CandidateBatchSampler`.

    Example:

    >>> sampler = DDMSampler(labels, bank=bank, batch_size=32, num_candidate_batches=10, seed=0)
    """

    def __init__(self, labels, *, bank, batch_size, num_bins=50, **kwargs):
        super().__init__(labels, bank=bank, batch_size=batch_size, **kwargs)
        if int(num_bins) != num_bins or num_bins < 1:
            raise ValueError(f"DDMSampler: num_bins must be a positive integer; got {num_bins}.")
        self.num_bins = int(num_bins)

    def batch_distance(self, batch_embeddings, pool_embeddings):
        return distance_histogram_wasserstein(batch_embeddings, pool_embeddings, self.num_bins)


@keras.saving.register_keras_serializable(package="tfdml")
class FRDSampler(CandidateBatchSampler):
    """Fréchet-distance matching (FRD), Roth et al. 2020 §3.2.

    When to use: batches whose embedding statistics match the data's (Roth et al. 2020); needs a memory bank.

    Of m random candidate batches, keeps the one with the smallest Fréchet distance
    between its embeddings' mean and covariance and the pool's (:func:`frechet_distance`).

    Epoch length: ``batches_per_epoch`` (default ``max(1, n // batch_size)``).

    Args: see :class:`CandidateBatchSampler`.

    Example:

    >>> sampler = FRDSampler(labels, bank=bank, batch_size=32, num_candidate_batches=10, seed=0)
    """

    def batch_distance(self, batch_embeddings, pool_embeddings):
        return frechet_distance(batch_embeddings, pool_embeddings)
