"""Base classes shared by every tfdml loss.

A DML loss is batch-global: it maps integer labels ``y_true`` of shape ``(b,)``
or ``(b, 1)`` and embeddings ``y_pred`` of shape ``(b, d)`` to one scalar. The
Keras ``Loss`` wrapper casts embeddings to float32 (so ``mixed_float16`` models
keep the loss math in float32) and hands the work to :meth:`DMLLoss.compute`.

Every loss compiles under XLA (``compile(..., jit_compile=True)``, or Keras'
default ``"auto"``, which turns XLA on for a single GPU): shapes inside the loss
follow from the batch size alone (miners return fixed-size tuple sets with a
validity mask).

Losses with trainable parameters (margin β, proxies, class centres) keep them in
a :class:`LossParameters` layer. ``keras.Model.compile`` does not train variables
that live in a loss, so such losses are trained through
``tfdml.training.MetricLearningModel``, which optimises them with their own
learning rate and no weight decay and keeps them out of the exported model.
"""

import keras
import tensorflow as tf

from tfdml.masks import check_label_dtype, flatten_labels, labels_are_integral


class DMLLoss(keras.losses.Loss):
    """Scalar loss over a batch of ``(labels, embeddings)``; subclasses implement ``compute``.

    Input checks and the NaN policy, shared by every tfdml loss:

    - **NaN policy**: if any embedding is NaN or ±Inf, the loss is NaN (never a finite
      value with non-finite gradients), so ``keras.callbacks.TerminateOnNaN`` stops
      training at that step.
    - **Labels** must be integer class ids of shape ``(b,)`` or ``(b, 1)``. Keras hands
      ``y_true`` to losses as float32, so integral floats are accepted; fractional ones
      (``0.4``, ``2.5``) are an error: a ``ValueError`` when the labels are known eagerly,
      an ``InvalidArgumentError`` from an in-graph assertion in a ``tf.function``. XLA
      (``jit_compile=True``) drops assertions, so a compiled step with fractional
      labels returns a NaN loss instead (``TerminateOnNaN`` stops there too). String
      labels raise a ``TypeError``.
    - **Batch sizes** of ``y_true`` and ``y_pred`` must match: checked statically (a
      ``ValueError`` naming both sizes) where the shapes are known, at run time otherwise.
    """

    def __init__(self, name=None, reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def __call__(self, y_true, y_pred, sample_weight=None):
        # Keras casts y_true to float before call(); a string dtype must be caught first.
        check_label_dtype(y_true, f"{type(self).__name__}: y_true")
        return super().__call__(y_true, y_pred, sample_weight=sample_weight)

    def call(self, y_true, y_pred):
        loss_name = type(self).__name__
        labels = flatten_labels(y_true, f"{loss_name}: y_true")
        embeddings = tf.cast(y_pred, tf.float32)
        if embeddings.shape.rank != 2:
            raise ValueError(f"{loss_name}: y_pred must be embeddings of shape (batch, dim); got {embeddings.shape}.")
        num_labels, num_embeddings = labels.shape[0], embeddings.shape[0]
        if num_labels is not None and num_embeddings is not None and num_labels != num_embeddings:
            raise ValueError(
                f"{loss_name}: y_true has {num_labels} labels but y_pred has {num_embeddings} embeddings; "
                "the batch sizes must match."
            )
        integral = labels_are_integral(y_true)
        checks = [
            tf.debugging.assert_equal(
                tf.shape(labels)[0],
                tf.shape(embeddings)[0],
                message=f"{loss_name}: y_true and y_pred have different batch sizes",
            ),
            tf.debugging.Assert(integral, [f"{loss_name}: y_true must hold integer class ids; got fractional labels"]),
        ]
        with tf.control_dependencies(checks):
            labels = tf.identity(labels)
        loss = self.compute(labels, embeddings)
        valid = tf.logical_and(integral, tf.reduce_all(tf.math.is_finite(embeddings)))
        return tf.where(valid, loss, tf.constant(float("nan"), loss.dtype))

    def compute(self, labels, embeddings):
        """Scalar float32 loss from int32 labels ``(b,)`` and float32 embeddings ``(b, d)``."""
        raise NotImplementedError

    def get_config(self):
        config = super().get_config()
        config.pop("dtype", None)
        return config


class LossParameters(keras.layers.Layer):
    """Holds a loss's trainable variables so a training model can track, checkpoint and optimise them.

    ``learning_rate`` is the rate for these variables alone (Roth et al.: β 5e-4,
    proxies 1e-5); they are never weight-decayed.
    """

    def __init__(self, learning_rate, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.learning_rate = float(learning_rate)
        # Variables are added eagerly by the owning loss; there is nothing to build from an input shape.
        self.built = True

    def call(self, inputs):
        return inputs


class ParametricDMLLoss(DMLLoss):
    """A DML loss with trainable parameters held in ``self.parameters`` (a :class:`LossParameters`).

    Subclasses create ``self.parameters`` in ``__init__`` and add variables to it
    with ``self.parameters.add_weight`` (eagerly, or in :meth:`build_parameters`
    when a shape is only known from data).
    """

    parameters: LossParameters

    @property
    def trainable_variables(self):
        return self.parameters.trainable_variables

    def call(self, y_true, y_pred):
        if not getattr(self, "attached_to_model", False) and self.parameters.trainable_variables:
            raise ValueError(
                f"{type(self).__name__} has trainable parameters, which model.compile(loss=...) alone "
                "does not train. Wrap the embedding model: "
                "tfdml.training.MetricLearningModel(embedding_model, loss=...).compile(optimizer); model.fit(...)."
            )
        return super().call(y_true, y_pred)
