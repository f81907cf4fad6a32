"""Keras callback that evaluates retrieval metrics on a validation split during ``fit``."""

import keras
import numpy as np
import tensorflow as tf

from tfdml.checks import is_multi_hot, label_array
from tfdml.evaluation.report import evaluate
from tfdml.models.embedding import inference_function
from tfdml.serialization import constructor_config


class RetrievalEvaluation(keras.callbacks.Callback):
    """Embeds a validation split every ``every_n_epochs`` epochs and logs :func:`tfdml.evaluation.evaluate`.

    The scores go into the epoch ``logs`` as ``{prefix}{key}`` (``val_recall_at_1``,
    ``val_map_at_r``, ``val_nmi``, ...), so ``EarlyStopping``, ``ModelCheckpoint``,
    ``TensorBoard``, the ``History`` and keras-tuner objectives see them like any
    other validation metric. Place it *before* those callbacks in the list, since
    Keras calls callbacks in order. Epochs that are skipped log nothing.

    The embedding model is ``embedding_model`` if given, else ``self.model.embedding_model``
    when the trained model has one (``tfdml.training.MetricLearningModel``), else ``self.model``.

    Args:
        validation_data: a ``tf.data.Dataset`` of ``(images, labels)`` or ``(images, labels,
            categories)`` batches (e.g. ``LabelledImages.dataset(with_categories=True)``), or an
            ``(images, labels)`` pair of arrays (batched with ``batch_size``).
        every_n_epochs: evaluate after epochs ``n, 2n, ...`` and after the last epoch of ``fit``, so that
            a run shorter than ``n`` epochs is evaluated too (default 1).
        metrics, k, metric: passed to :func:`tfdml.evaluation.evaluate`; defaults
            ``("recall_at_k", "map_at_r", "r_precision", "nmi")`` and ``k=(1, 2, 4, 8)``.
        prefix: key prefix in the logs (default ``"val_"``).
        embedding_model: optional model mapping images to embeddings.
        batch_size: batch size for array input (default 256).
        categories: optional ``(n,)`` category of each validation image, in dataset order, for
            ``fewshot_20way_1shot_within``; a third dataset component, if any, is used otherwise.
        evaluate_kwargs: further keyword arguments for ``evaluate`` (e.g. ``chunk_size``).

    Example:

    >>> model.fit(train, epochs=20, callbacks=[
    ...     RetrievalEvaluation(val_ds, every_n_epochs=2),
    ...     keras.callbacks.EarlyStopping("val_recall_at_1", mode="max", patience=3),
    ... ])
    """

    def __init__(
        self,
        validation_data,
        *,
        every_n_epochs=1,
        metrics=("recall_at_k", "map_at_r", "r_precision", "nmi"),
        k=(1, 2, 4, 8),
        metric="euclidean",
        prefix="val_",
        embedding_model=None,
        batch_size=256,
        categories=None,
        **evaluate_kwargs,
    ):
        super().__init__()
        if int(every_n_epochs) < 1:
            raise ValueError(f"every_n_epochs must be >= 1; got {every_n_epochs}.")
        if isinstance(validation_data, tf.data.Dataset):
            self.validation_data = validation_data
        elif isinstance(validation_data, (tuple, list)) and len(validation_data) == 2:
            self.validation_data = tf.data.Dataset.from_tensor_slices(tuple(validation_data)).batch(batch_size)
        else:
            raise ValueError("validation_data must be a tf.data.Dataset of (images, labels) or an (images, labels) pair.")
        self.every_n_epochs = int(every_n_epochs)
        self.metrics = tuple(metrics)
        self.k = tuple(k)
        self.metric = metric
        self.prefix = prefix
        self.embedding_model = embedding_model
        self.batch_size = batch_size
        self.categories = None if categories is None else label_array(categories, "categories", who="RetrievalEvaluation")
        self.evaluate_kwargs = evaluate_kwargs

    def _embedder(self):
        if self.embedding_model is not None:
            return self.embedding_model
        return getattr(self.model, "embedding_model", self.model)

    def embed(self):
        """``(embeddings, labels)`` of the whole validation split, in one pass over it."""
        embeddings, labels, _ = self._embed_with_categories()
        return embeddings, labels

    def _embed_with_categories(self):
        """Embeddings, labels and categories (``self.categories``, the dataset's third component, or ``None``)."""
        embedder = self._embedder()
        if getattr(self, "_traced_for", None) is not embedder:  # traced once, not run eagerly at every validation
            self._traced_for, self._traced = embedder, inference_function(embedder)
        embeddings, labels, categories = [], [], []
        for images, batch_labels, *batch_categories in self.validation_data:
            embeddings.append(keras.ops.convert_to_numpy(self._traced(images)))
            batch_labels = np.asarray(batch_labels)
            labels.append(batch_labels if is_multi_hot(batch_labels) else batch_labels.reshape(-1))
            categories.extend(np.asarray(c).reshape(-1) for c in batch_categories)
        if self.categories is not None:
            return np.concatenate(embeddings), np.concatenate(labels), self.categories
        return np.concatenate(embeddings), np.concatenate(labels), np.concatenate(categories) if categories else None

    def on_epoch_end(self, epoch, logs=None):
        last = epoch + 1 == (self.params or {}).get("epochs")
        if (epoch + 1) % self.every_n_epochs and not last:
            return
        embeddings, labels, categories = self._embed_with_categories()
        scores = evaluate(
            embeddings, labels, metrics=self.metrics, k=self.k, metric=self.metric, categories=categories,
            **self.evaluate_kwargs,
        )
        if logs is not None:
            logs.update({f"{self.prefix}{key}": value for key, value in scores.items()})

    def get_config(self):
        """The evaluation settings, read from the constructor's arguments (the validation data and the
        model are not serialised)."""
        return {**constructor_config(self, exclude=("validation_data", "embedding_model")), **self.evaluate_kwargs}
