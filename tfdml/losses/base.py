"""Base classes shared by every tfdml loss.

A DML loss is batch-global: it maps integer labels ``y_true`` of shape ``(b,)``
or ``(b, 1)`` and embeddings ``y_pred`` of shape ``(b, d)`` to one scalar. The
embeddings are cast to float32 (so ``mixed_float16`` models keep the loss math in
float32); the labels keep their dtype (Keras' ``Loss.__call__`` would cast them
to float32, which merges class ids above 2**24) and reach :meth:`DMLLoss.compute`
as int64.

Every loss compiles under XLA (``compile(..., jit_compile=True)``, or Keras'
default ``"auto"``, which turns XLA on for a single GPU): shapes inside the loss
follow from the batch size alone (miners return fixed-size tuple sets with a
validity mask).

Losses with trainable parameters (margin β, proxies, class centres) keep them in
a :class:`LossParameters` layer. ``keras.Model.compile`` does not train variables
that live in a loss, so such losses are trained through
``tfdml.training.MetricLearningModel``, which optimises them with their own
learning rate and no weight decay and keeps them out of the exported model.
Calling such a loss (what ``compile(loss=...)`` does) is refused while it has
trainable parameters; :meth:`DMLLoss.value` is the explicit entry point for a
caller that trains them itself or only reads the loss.

There is no ``reduction`` and no ``sample_weight``: a DML loss's terms are pairs,
tuples or anchors drawn from several samples of the batch and normalised by
batch-wide counts (active pairs, valid tuples, queries with positives), so a
per-sample weight has no defined meaning and there is no per-sample vector for
Keras to reduce. A ``sample_weight`` (a third element in the dataset) raises an error.

Every loss is a function of explicit inputs (labels or mined tuples, embeddings,
parameters, hyperparameters, in that order: see :mod:`tfdml.losses`), e.g.
``margin_loss(triplets, embeddings, anchor_betas, margin=0.2, nu=0.0)``, next to a thin
serialisable class that mines, gathers per-anchor parameters, calls the function and
documents the formula. The classes
store each constructor argument under its own name, from which
:meth:`DMLLoss.get_config` builds the config (:mod:`tfdml.serialization`).
"""

import keras
import tensorflow as tf

from tfdml.checks import (
    check_label_dtype, inexact_message, is_multi_hot, labels_are_binary, labels_are_exact, labels_are_integral,
)
from tfdml.distances import squared_distances_are_finite
from tfdml.losses.math import nan_unless
from tfdml.masks import flatten_labels, label_sets
from tfdml.serialization import constructor_config

# Constructor arguments that are not part of a loss's config: Keras' own dtype (losses compute in float32).
_NOT_IN_CONFIG = ("name", "dtype")


class DMLLoss(keras.losses.Loss):
    """Scalar loss over a batch of ``(labels, embeddings)``; subclasses implement ``compute``.

    Input checks and the NaN policy, shared by every tfdml loss:

    - **NaN policy**: if any embedding is NaN or ±Inf, or so large that squared distances
      overflow float32 (``‖x‖ ≳ 9e18``, :func:`tfdml.distances.squared_distances_are_finite`),
      the loss is NaN (never a finite value with non-finite or zero gradients), so
      ``keras.callbacks.TerminateOnNaN`` stops training at that step.
    - **Labels** must be integer class ids of shape ``(b,)`` or ``(b, 1)``. Integer labels
      are compared as int64, so every id is exact (the loss does not let Keras cast ``y_true``
      to float32). Integral float labels are accepted below the magnitude where their dtype
      stops telling integers apart (``2**24`` for float32, ``2**53`` for float64); fractional
      ones (``0.4``, ``2.5``) and larger ones are an error: a ``ValueError`` when the labels are
      known eagerly, an ``InvalidArgumentError`` from an in-graph assertion in a ``tf.function``.
      XLA (``jit_compile=True``) drops assertions, so a compiled step with such labels
      returns a NaN loss instead (``TerminateOnNaN`` stops there too). String labels raise a
      ``TypeError``.
    - **Batch sizes** of ``y_true`` and ``y_pred`` must match: checked statically (a
      ``ValueError`` naming both sizes) where the shapes are known, at run time otherwise.
    - **Multi-label losses** (``multi_label = True``, e.g. ``MultiSupConLoss``) also take multi-hot
      label sets ``(b, C)``, ``C >= 2``, of 0s and 1s (other values: a ``ValueError`` eagerly, an
      in-graph assertion in a ``tf.function``, a NaN loss under XLA); class ids ``(b,)``/``(b, 1)`` are
      one label per sample. :meth:`compute` then receives float32 label sets ``(b, C)``
      (:func:`tfdml.masks.label_sets`; ids as the one-hot sets ``(b, b)`` of the batch's classes).

    ``data_arguments`` names the constructor arguments a recipe run derives from its data or
    other recipe keys (``miner``, ``num_classes``, ``num_images``, ``embedding_dim``); the
    runner passes only the ones a class declares (:mod:`tfdml.training.factory`).
    """

    data_arguments = ()
    #: Whether ``y_true`` may hold multi-hot label sets ``(b, C)`` (see above); ``compute`` then gets label sets.
    multi_label = False

    def __init__(self, name=None, dtype=None):
        # The loss is already the batch's scalar: nothing is left for Keras to reduce.
        super().__init__(name=name, reduction=None, dtype=dtype)

    def __call__(self, y_true, y_pred, sample_weight=None):
        """What ``compile(loss=...)`` calls: :meth:`value`."""
        return self.value(y_true, y_pred, sample_weight)

    def value(self, y_true, y_pred, sample_weight=None):
        """The batch's scalar loss; ``sample_weight`` must be ``None`` (DML losses are batch-global).

        Unlike calling a :class:`ParametricDMLLoss`, this accepts trainable loss
        parameters: the caller trains them itself (``MetricLearningModel``) or only reads the loss.
        """
        if sample_weight is not None:
            raise ValueError(
                f"{type(self).__name__}: sample_weight is not supported. A DML loss is batch-global: its terms "
                "are pairs or tuples of several samples normalised by batch-wide counts, so a per-sample weight "
                "has no defined meaning. Drop the weights from the dataset, or sample the batch accordingly."
            )
        check_label_dtype(y_true, f"{type(self).__name__}: y_true")
        # Not keras.losses.Loss.__call__: it casts y_true to float32, where class ids above 2**24 merge.
        with keras.name_scope(self.name):
            loss = self.call(tf.convert_to_tensor(y_true), keras.ops.convert_to_tensor(y_pred, dtype=self.dtype))
            return tf.cast(loss, self.dtype)

    def call(self, y_true, y_pred):
        return self.checked_compute(y_true, y_pred)

    def checked_compute(self, y_true, y_pred, **inputs):
        """:meth:`compute` behind the input checks and the NaN policy.

        ``inputs`` are further per-sample integer ids that a loss reads from ``y_true`` besides the
        class labels (``MarginLoss(beta_image=True)``'s image ids); they are checked as the labels
        are and go to :meth:`compute` as int64 ``(b,)``.
        """
        loss_name = type(self).__name__
        ids = {"y_true": y_true, **inputs}
        inputs = {name: flatten_labels(value, f"{loss_name}: {name}") for name, value in inputs.items()}
        labels = (label_sets if self.multi_label else flatten_labels)(y_true, f"{loss_name}: y_true")
        embeddings = tf.cast(y_pred, tf.float32)
        if embeddings.shape.rank != 2:
            raise ValueError(f"{loss_name}: y_pred must be embeddings of shape (batch, dim); got {embeddings.shape}.")
        num_labels, num_embeddings = labels.shape[0], embeddings.shape[0]
        if num_labels is not None and num_embeddings is not None and num_labels != num_embeddings:
            raise ValueError(
                f"{loss_name}: y_true has {num_labels} labels but y_pred has {num_embeddings} embeddings; "
                "the batch sizes must match."
            )
        checks = [
            tf.debugging.assert_equal(
                tf.shape(labels)[0],
                tf.shape(embeddings)[0],
                message=f"{loss_name}: y_true and y_pred have different batch sizes",
            )
        ]
        valid = [squared_distances_are_finite(embeddings)]
        for name, value in ids.items():
            value = tf.convert_to_tensor(value)
            integral, exact = labels_are_integral(value), labels_are_exact(value)
            fractional = f"{loss_name}: {name} must hold integer class ids; got fractional labels"
            checks.append(tf.debugging.Assert(integral, [fractional]))
            if value.dtype.is_floating:
                message = f"{loss_name}: {name}: {inexact_message(value.dtype)}; largest label:"
                checks.append(tf.debugging.Assert(exact, [message, tf.reduce_max(tf.abs(value))]))
            valid += [integral, exact]
        if self.multi_label and is_multi_hot(y_true):
            binary = labels_are_binary(y_true)
            checks.append(tf.debugging.Assert(binary, [f"{loss_name}: y_true: multi-hot labels must be 0 or 1"]))
            valid.append(binary)
        with tf.control_dependencies(checks):
            labels = tf.identity(labels)
        loss = self.compute(labels, embeddings, **inputs)
        return nan_unless(tf.reduce_all(tf.stack(valid)), loss)

    def compute(self, labels, embeddings):
        """Scalar float32 loss from int64 labels ``(b,)`` and float32 embeddings ``(b, d)``."""
        raise NotImplementedError

    def get_config(self):
        """``name`` and each constructor argument, read from the attribute of the same name (miners serialised).

        Losses store their arguments normalised (``float(margin)``, the resolved default miner), so
        ``type(loss).from_config(loss.get_config())`` rebuilds an equal loss.
        """
        return {"name": self.name, **constructor_config(self, exclude=_NOT_IN_CONFIG)}


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

    Calling the loss (``compile(loss=...)``'s path) raises while it has trainable
    parameters, since nothing would train them; ``MetricLearningModel`` trains them
    and computes the loss with :meth:`DMLLoss.value`, as does a caller that only reads it.
    """

    parameters: LossParameters

    @property
    def trainable_variables(self):
        return self.parameters.trainable_variables

    def __call__(self, y_true, y_pred, sample_weight=None):
        if self.parameters.trainable_variables:
            raise ValueError(
                f"{type(self).__name__} has trainable parameters, which model.compile(loss=...) alone "
                "does not train. Wrap the embedding model: "
                "tfdml.training.MetricLearningModel(embedding_model, loss=...).compile(optimizer); model.fit(...)."
            )
        return super().__call__(y_true, y_pred, sample_weight)
