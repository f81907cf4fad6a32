"""Base classes shared by every tfdml loss.

A DML loss is batch-global: it maps integer labels ``y_true`` of shape ``(b,)``
or ``(b, 1)`` and embeddings ``y_pred`` of shape ``(b, d)`` to one scalar. The
Keras ``Loss`` wrapper casts embeddings to float32 (so ``mixed_float16`` models
keep the loss math in float32) and hands the work to :meth:`DMLLoss.compute`.

Losses with trainable parameters (margin β, proxies, class centres) keep them in
a :class:`LossParameters` layer. ``keras.Model.compile`` does not train variables
that live in a loss, so such losses are trained through
``tfdml.training.MetricLearningModel``, which optimises them with their own
learning rate and no weight decay and keeps them out of the exported model.
"""

import keras
import tensorflow as tf

from tfdml.masks import flatten_labels


class DMLLoss(keras.losses.Loss):
    """Scalar loss over a batch of ``(labels, embeddings)``; subclasses implement ``compute``."""

    def __init__(self, name=None, reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        labels = flatten_labels(y_true)
        embeddings = tf.cast(y_pred, tf.float32)
        if embeddings.shape.rank != 2:
            raise ValueError(f"{type(self).__name__}: y_pred must be embeddings of shape (batch, dim); got {embeddings.shape}.")
        tf.debugging.assert_equal(
            tf.shape(labels)[0],
            tf.shape(embeddings)[0],
            message=f"{type(self).__name__}: y_true and y_pred have different batch sizes",
        )
        return self.compute(labels, embeddings)

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
