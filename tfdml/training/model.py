"""``MetricLearningModel``: trains an embedding model with a batch-global DML loss under ``model.fit``.

Why a wrapper instead of ``embedding_model.compile(loss=...)``:

1. Loss parameters (margin β, proxies, class centres) are variables of the loss,
   which Keras' ``compile`` never trains. The wrapper optimises them with their
   own optimizer (Adam at ``loss.parameters.learning_rate``, no weight decay),
   checkpoints them with the model, and keeps them out of ``embedding_model``,
   which is what gets exported.
2. DML losses are batch-global. Under ``tf.distribute`` every replica all-gathers
   the embeddings and labels of the global batch, computes the loss on it, and
   gradients flow back to each replica's own embeddings through the gather.
   Every replica computes the same global loss ``L``; the gather's gradient (an
   all-reduce) sums the replicas' identical upstream gradients, so each replica's loss is scaled
   by ``1/num_replicas`` and the all-reduce of the weight gradients yields exactly
   ``dL/dw`` — the same step as one device on the global batch.

Example:

>>> embedder = tfdml.models.build_embedding_model("convnet", input_shape=(32, 32, 1))
>>> model = MetricLearningModel(embedder, tfdml.losses.MarginLoss(learn_beta=True))
>>> model.compile(optimizer=keras.optimizers.Adam(1e-3))
>>> model.fit(batches, epochs=5, steps_per_epoch=50)   # batches: (images, labels)
>>> embedder.predict(images)                           # β is not part of it
"""

import keras
import tensorflow as tf

from tfdml.losses.base import DMLLoss, ParametricDMLLoss
from tfdml.losses.cross_batch_memory import CrossBatchMemory

JIT_COMPILE_CHOICES = ("auto", True, False)


def resolve_jit_compile(value):
    """The ``jit_compile`` recipe key as Keras' ``compile`` takes it: ``"auto"``, ``True`` or ``False``.

    ``"auto"`` is Keras' rule (XLA on when a GPU is visible and no distribution strategy
    is active); every tfdml loss and miner compiles under XLA, so any choice is safe.
    The strings ``"true"``/``"false"`` (any case) are accepted for command-line overrides.
    """
    if isinstance(value, str) and value.lower() in ("auto", "true", "false"):
        return {"auto": "auto", "true": True, "false": False}[value.lower()]
    if isinstance(value, bool):
        return value
    raise ValueError(f"jit_compile must be one of auto, true, false; got {value!r}.")


def all_gather_by_sum(context, values):
    """Concatenate each replica's ``values`` (equal shapes) in replica order, by an all-reduce.

    Each replica writes its rows into a zero tensor of the global shape and the replicas sum
    them. Unlike ``ReplicaContext.all_gather``, this works under MultiWorkerMirroredStrategy in
    TF 2.21, and its gradient (an all-reduce of the upstream gradients) is dense.
    """
    num_replicas = context.num_replicas_in_sync
    rows = tf.shape(values)[0]
    before = context.replica_id_in_sync_group * rows
    padding = [[before, (num_replicas - 1) * rows - before]] + [[0, 0]] * (values.shape.rank - 1)
    return context.all_reduce(tf.distribute.ReduceOp.SUM, tf.pad(values, padding))


def gather_global_batch(labels, embeddings):
    """All-gather ``(labels, embeddings)`` over the replicas in sync (identity on one replica).

    Labels arrive exactly as given: integer ids as int64 (every id), float labels in their own
    dtype (so the loss still refuses fractional ones and those beyond the dtype's exact integers).
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return labels, embeddings
    labels = tf.convert_to_tensor(labels)
    labels = tf.reshape(labels, [tf.shape(labels)[0], -1])
    # The gather is a float64 sum, which holds every float32 value and every integer below 2**53: integer ids
    # travel as their high and low 32 bits.
    if labels.dtype.is_floating:
        global_labels = tf.cast(all_gather_by_sum(context, tf.cast(labels, tf.float64)), labels.dtype)
    else:
        labels = tf.cast(labels, tf.int64)
        high = tf.math.floordiv(labels, 2**32)
        halves = tf.cast(tf.concat([high, labels - high * 2**32], axis=1), tf.float64)
        high, low = tf.split(tf.cast(all_gather_by_sum(context, halves), tf.int64), 2, axis=1)
        global_labels = high * 2**32 + low
    return global_labels, all_gather_by_sum(context, embeddings)


@keras.saving.register_keras_serializable(package="tfdml")
class MetricLearningModel(keras.Model):
    """Wraps ``embedding_model`` (images → embeddings) and a :class:`~tfdml.losses.base.DMLLoss`.

    ``fit``/``evaluate`` take datasets of ``(images, labels)``; ``predict`` and
    ``__call__`` return embeddings. Args:
        embedding_model: a Keras model mapping images to embeddings.
        loss: the DML loss; trainable loss parameters are optimised by ``loss_optimizer``.
    """

    def __init__(self, embedding_model, loss, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(loss, DMLLoss):
            raise TypeError(f"loss must be a tfdml DMLLoss (e.g. tfdml.losses.MarginLoss()); got {loss!r}.")
        self.embedding_model = embedding_model
        self.dml_loss = loss
        self.loss_parameters = loss.parameters if isinstance(loss, ParametricDMLLoss) else None
        self.loss_optimizer = None
        self.loss_tracker = keras.metrics.Mean(name="loss")
        # Both parts are built already (a functional model, eagerly created loss variables);
        # BackupAndRestore needs a built model before fit.
        self.built = True

    def build(self, input_shape=None):
        self.built = True

    def call(self, inputs, training=False):
        return self.embedding_model(inputs, training=training)

    def compile(self, optimizer="adam", loss_optimizer=None, **kwargs):
        """``optimizer`` trains the embedding model; ``loss_optimizer`` (default: Adam at the loss's
        own learning rate, no weight decay) trains the loss parameters. Other arguments go to
        ``keras.Model.compile``; ``jit_compile`` (default ``"auto"``: XLA on a single GPU)
        works with every tfdml loss and miner."""
        if "loss" in kwargs:
            raise ValueError("MetricLearningModel takes its loss in the constructor, not in compile().")
        super().compile(optimizer=optimizer, **kwargs)
        if self.loss_parameters is not None:
            self.loss_optimizer = loss_optimizer or keras.optimizers.Adam(
                learning_rate=self.loss_parameters.learning_rate
            )
            self.loss_optimizer.build(self.loss_parameters.trainable_variables)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras builds a model from its first data batch, all-reducing that batch across replicas,
        # which fails for per-replica batches under MultiWorkerMirroredStrategy. Both parts of this
        # model are built at construction, so only the optimizer is left to build.
        if self.optimizer is not None and not self.optimizer.built:
            with self.distribute_strategy.scope():
                self.optimizer.build(self.trainable_variables)

    @property
    def metrics(self):
        return [self.loss_tracker]

    def _global_loss(self, x, y, sample_weight, training):
        embeddings = self(x, training=training)
        labels, embeddings = gather_global_batch(y, embeddings)
        # value(), not a call: this model trains the loss parameters that a plain call refuses. A cross-batch
        # memory is read and written in training steps only.
        memory = {"training": training} if isinstance(self.dml_loss, CrossBatchMemory) else {}
        loss = self.dml_loss.value(labels, embeddings, sample_weight, **memory)
        regularization = self.embedding_model.losses
        if regularization:
            loss = loss + tf.add_n([tf.cast(r, loss.dtype) for r in regularization])
        return loss

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        model_variables = self.embedding_model.trainable_variables
        loss_variables = [] if self.loss_parameters is None else self.loss_parameters.trainable_variables
        num_replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape(persistent=bool(loss_variables)) as tape:
            loss = self._global_loss(x, y, sample_weight, training=True)
            replica_loss = loss / num_replicas
            # scale_loss multiplies by the mixed-precision loss scale, which only `optimizer` undoes.
            scaled_loss = self.optimizer.scale_loss(replica_loss)
        self.optimizer.apply_gradients(zip(tape.gradient(scaled_loss, model_variables), model_variables))
        if loss_variables:
            self.loss_optimizer.apply_gradients(zip(tape.gradient(replica_loss, loss_variables), loss_variables))
        self.loss_tracker.update_state(loss)
        return self._logs()

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        self.loss_tracker.update_state(self._global_loss(x, y, sample_weight, training=False))
        return self._logs()

    def _logs(self):
        result = self.loss_tracker.result()
        if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
            # Keras reduces multi-worker logs with a mean over axis 0, which a scalar lacks.
            result = tf.reshape(result, [1])
        return {"loss": result}

    def get_config(self):
        return {
            **super().get_config(),
            "embedding_model": keras.saving.serialize_keras_object(self.embedding_model),
            "loss": keras.saving.serialize_keras_object(self.dml_loss),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        embedding_model = keras.saving.deserialize_keras_object(config.pop("embedding_model"))
        loss = keras.saving.deserialize_keras_object(config.pop("loss"))
        return cls(embedding_model, loss, **config)
