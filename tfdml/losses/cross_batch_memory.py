"""Cross-batch memory (Wang et al. 2020): a pair loss's queries, the batch, compared with the batch and the last
``M`` embeddings of earlier batches."""

import keras
import tensorflow as tf

from tfdml.losses.base import DMLLoss
from tfdml.masks import Keys
from tfdml.mining.base import check_argument, takes_keys


def memory_variable(name, initial):
    """A non-trainable memory variable that every replica updates alike.

    Every replica computes the loss on the all-gathered global batch, so every replica computes the same
    new memory; ``ONLY_FIRST_REPLICA`` (as the optimizer's step count and the miners' counters) assigns the
    first replica's value to every copy, under ``MirroredStrategy`` and ``MultiWorkerMirroredStrategy`` alike,
    without a reduction (which would sum or average float memories, and refuses int ones).
    """
    return tf.Variable(
        initial, trainable=False, name=name, aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA
    )


@keras.saving.register_keras_serializable(package="tfdml")
class CrossBatchMemory(DMLLoss):
    """Cross-batch memory (XBM): the wrapped loss compares the batch with the batch and the last ``M`` embeddings.

    When to use: more pairs than a batch holds, at the cost of one ``b × (b + M)`` similarity matrix: a pair loss on
    large data sets (Wang et al.: +12 R@1 points with a contrastive loss on SOP) once embeddings drift slowly.

    Wang et al., "Cross-Batch Memory for Embedding Learning", CVPR 2020: embeddings drift slowly once
    training has warmed up (their §3, "slow drift"), so the embeddings of the last few batches are still
    good negatives and positives. With the batch ``B`` (queries ``x_i``, labels ``y_i``) and the memory
    ``𝓜`` of the last ``M`` training embeddings and labels (no gradient), the wrapped pair loss ``ℓ`` is
    evaluated with the batch as queries and ``K = B ∪ 𝓜`` as keys (their Eq. 5 for the contrastive loss):

    ```
    L = ℓ({(x_i, y_i)}_{i ∈ B} ; {(k_j, y_j)}_{j ∈ K}),   pairs (i, j), j ≠ i's own copy,
    ```

    then the batch is enqueued (first in, first out). Only the ``b × (b + M)`` query–key rectangle is
    computed; slots not yet filled are no key (neither positive nor negative); the memory has a static shape
    (``(M, embedding_dim)``), so a step compiles under XLA. ``start_step`` delays the memory (used and filled)
    by that many training steps, Wang et al.'s warm-up (1k iterations on SOP, 3k on In-Shop); before it the
    wrapped loss sees the batch alone. In evaluation (``MetricLearningModel.evaluate``) the memory is
    neither read nor written.

    The memory lives in non-trainable variables aggregated ``ONLY_FIRST_REPLICA``: under ``tf.distribute``
    every replica enqueues the all-gathered global batch in replica order (``MetricLearningModel``), so every
    replica holds the same memory and a run on several replicas equals a run on one device with the same
    global batch. A recipe run backs the variables up with the miners' counters
    (:func:`tfdml.training.callbacks.external_state`), so a resumed run equals the uninterrupted one.

    Losses whose function takes separate keys (``compute(..., keys=)``) are accepted: ``ContrastiveLoss``,
    ``MultiSimilarityLoss``, ``CircleLoss``, ``SupConLoss``, ``NTXentLoss``, ``TripletLoss``, ``MarginLoss``
    (not ``beta_image``: the memory keeps no image indices), with no miner (``pairs="all"``) or a miner whose
    ``mine`` takes keys: the pair miners ``MultiSimilarityMiner``, ``PairMarginMiner`` and the triplet miners
    ``DistanceWeightedMiner``, ``SemiHardMiner``, ``BatchHardMiner``, ``RandomMiner`` (anchors from the batch,
    positives and negatives among the valid keys, never the anchor's own copy); others (the proxy losses,
    other miners) are refused by name.

    Unlike pytorch-metric-learning's (PML) ``CrossBatchMemory(loss, embedding_size, memory_size, miner)``,
    whose memory includes the current batch (PML's ``memory_size`` is this ``M`` plus ``b``), ``M`` counts
    earlier samples only; PML's memory is per process, so under DDP its ranks' memories differ (PML issues
    #639, #748), and it has no warm-up.

    Args:
        loss: the wrapped :class:`~tfdml.losses.base.DMLLoss` (or its serialisation).
        memory_size: ``M``, the number of earlier embeddings kept (Wang et al.: 55k on SOP, i.e. the whole
            training set; a few thousand on CUB/Cars).
        embedding_dim: the embeddings' dimension (a recipe run passes ``model.embedding_dim``).
        start_step: training steps before the memory is used and filled (default 0).
        name: name of the loss instance.

    Example:

    >>> loss = CrossBatchMemory(tfdml.losses.ContrastiveLoss(pairs="all", miner=None), memory_size=1024,
    ...                         embedding_dim=64, start_step=1000)
    >>> model = tfdml.training.MetricLearningModel(embedder, loss)
    """

    data_arguments = ("embedding_dim",)

    def __init__(self, loss, memory_size, embedding_dim, start_step=0, name="cross_batch_memory", **kwargs):
        super().__init__(name=name, **kwargs)
        if isinstance(loss, dict):
            loss = keras.saving.deserialize_keras_object(loss)
        self.loss = check_takes_keys(loss)
        self.memory_size = check_argument("CrossBatchMemory", "memory_size", memory_size, int, low=1)
        self.embedding_dim = check_argument("CrossBatchMemory", "embedding_dim", embedding_dim, int, low=1)
        self.start_step = check_argument("CrossBatchMemory", "start_step", start_step, int, low=0)
        size, dim = self.memory_size, self.embedding_dim
        # Oldest first: the batch is appended at the end and the oldest rows drop out.
        self.memory_embeddings = memory_variable("memory_embeddings", tf.zeros([size, dim], tf.float32))
        self.memory_labels = memory_variable("memory_labels", tf.fill([size], tf.constant(-1, tf.int64)))
        self.memory_filled = memory_variable("memory_filled", tf.constant(0, tf.int64))
        self.step = memory_variable("memory_step", tf.constant(0, tf.int64))

    def value(self, y_true, y_pred, sample_weight=None, training=True):
        """The loss with the memory (``training``: read, then the batch enqueued) or the wrapped loss alone."""
        if not training:
            return self.loss.value(y_true, y_pred, sample_weight)
        return super().value(y_true, y_pred, sample_weight)

    def keys(self, labels, embeddings):
        """:class:`~tfdml.masks.Keys` of the batch ``(b, d)`` followed by the memory: query ``i`` is key ``i``."""
        size = self.memory_size
        filled = tf.range(size, dtype=tf.int64) >= size - tf.convert_to_tensor(self.memory_filled)
        return Keys(
            embeddings=tf.concat([embeddings, tf.stop_gradient(tf.convert_to_tensor(self.memory_embeddings))], 0),
            labels=tf.concat([labels, tf.convert_to_tensor(self.memory_labels)], 0),
            valid=tf.concat([tf.ones_like(labels, tf.bool), filled], 0),
            self_index=tf.range(tf.shape(labels)[0]),
        )

    def compute(self, labels, embeddings):
        def with_memory():
            return self.loss.compute(labels, embeddings, keys=self.keys(labels, embeddings))

        if self.start_step == 0:
            active, loss = tf.constant(True), with_memory()
        else:
            active = tf.convert_to_tensor(self.step) >= self.start_step
            loss = tf.cond(active, with_memory, lambda: self.loss.compute(labels, embeddings))
        with tf.control_dependencies([loss]):
            self.enqueue(labels, embeddings, active)
        return tf.identity(loss)

    def enqueue(self, labels, embeddings, active):
        """Appends the batch to the memory where ``active`` (its last ``M`` rows when ``b > M``); counts the step."""
        size, dim = self.memory_size, self.embedding_dim
        old = (tf.convert_to_tensor(self.memory_embeddings), tf.convert_to_tensor(self.memory_labels))
        appended = (tf.concat([old[0], tf.stop_gradient(embeddings)], 0), tf.concat([old[1], labels], 0))
        start = tf.shape(appended[1])[0] - size
        new_embeddings = tf.slice(appended[0], [start, 0], [size, dim])
        new_labels = tf.slice(appended[1], [start], [size])
        filled = tf.minimum(tf.convert_to_tensor(self.memory_filled) + tf.shape(labels, tf.int64)[0], size)
        self.memory_embeddings.assign(tf.where(active, new_embeddings, old[0]))
        self.memory_labels.assign(tf.where(active, new_labels, old[1]))
        self.memory_filled.assign(tf.where(active, filled, tf.convert_to_tensor(self.memory_filled)))
        self.step.assign_add(1)


def check_takes_keys(loss):
    """``loss`` if it and its miner take separate queries and keys (:func:`~tfdml.mining.base.takes_keys`: a
    ``keys=`` argument of ``compute`` and ``mine``), else a ``TypeError`` naming what does not."""
    if not isinstance(loss, DMLLoss):
        raise TypeError(f"CrossBatchMemory: loss must be a tfdml DMLLoss (e.g. ContrastiveLoss()); got {loss!r}.")
    name = type(loss).__name__
    if not takes_keys(loss.compute):
        raise TypeError(
            f"CrossBatchMemory: {name} cannot compare a batch with separate keys (a memory). Wrap a loss that "
            "can: ContrastiveLoss, MultiSimilarityLoss, CircleLoss, SupConLoss, NTXentLoss, TripletLoss or MarginLoss."
        )
    if getattr(loss, "beta_image", False):
        raise TypeError(
            f"CrossBatchMemory: {name}(beta_image=True) needs each sample's image index, which the memory does not "
            "keep; use beta_class or a global beta."
        )
    miner = getattr(loss, "miner", None)
    if miner is not None and not takes_keys(miner.mine):
        raise TypeError(
            f"CrossBatchMemory: {name}'s miner {type(miner).__name__} cannot mine among separate keys (a memory). "
            "Use pairs='all' (no miner) or a miner that can: MultiSimilarityMiner, PairMarginMiner, "
            "DistanceWeightedMiner, SemiHardMiner, BatchHardMiner or RandomMiner."
        )
    return loss
