"""A memory bank of training-sample embeddings and the Keras callback that keeps it current.

Roth et al. 2020 (§3.2) choose each batch from a large candidate set B* drawn from "a
continuously updated memory bank M of embedded training samples"; the batch-matching
samplers (``tfdml.sampling.batch_matching``) read the bank each time they build a batch.

Roth et al. write each training batch's embeddings into the bank as they are computed.
``keras.Model.fit`` does not hand a batch's outputs to callbacks, so
:class:`MemoryBankRefresh` instead re-embeds the whole training set in inference mode
before training and every ``every_n_epochs`` epochs (one extra forward pass over the data
each time); code with its own training loop can call :meth:`MemoryBank.update` with
each batch's indices and embeddings instead.
"""

import keras
import numpy as np

from tfdml.checks import as_embeddings, label_array
from tfdml.serialization import constructor_config, from_constructor_config


@keras.saving.register_keras_serializable(package="tfdml")
class MemoryBank:
    """Latest embedding of every training sample, ``embeddings[i]`` for sample ``i``.

    Until a sample is first updated its row holds a random unit vector, so samplers
    reading a fresh bank build batches at random instead of from all-equal rows.

    Args:
        num_samples: number of training samples n.
        dim: embedding dimension d.
        seed: seed of the initial random rows.

    Example:

    >>> bank = MemoryBank(num_samples=4840, dim=64)
    >>> bank.update([0, 1], model(images[:2]))
    """

    def __init__(self, num_samples, dim, *, seed=0):
        for name, value in (("num_samples", num_samples), ("dim", dim)):
            if int(value) != value or value < 1:
                raise ValueError(f"MemoryBank: {name} must be a positive integer; got {value}.")
        self.num_samples, self.dim, self.seed = int(num_samples), int(dim), int(seed)
        initial = np.random.default_rng(seed).standard_normal((self.num_samples, self.dim))
        self.embeddings = (initial / np.linalg.norm(initial, axis=1, keepdims=True)).astype(np.float32)

    def update(self, indices, embeddings):
        """Stores ``embeddings`` (``(k, dim)``, array or tensor) as the rows of samples ``indices`` ``(k,)``."""
        count = np.size(indices)
        embeddings = as_embeddings(embeddings, "MemoryBank.update: embeddings", dim=self.dim, count=count, rows="indices")
        indices = label_array(indices, "indices", count=count, who="MemoryBank.update", integral_floats=False)
        if indices.size and (indices.min() < 0 or indices.max() >= self.num_samples):
            raise ValueError(
                f"MemoryBank.update: indices must lie in [0, {self.num_samples}); got range"
                f" [{indices.min()}, {indices.max()}]."
            )
        self.embeddings[indices] = embeddings

    def get_config(self):
        """The bank's shape and seed; the embeddings are not part of the config."""
        return constructor_config(self)

    @classmethod
    def from_config(cls, config):
        return from_constructor_config(cls, config)


class MemoryBankRefresh(keras.callbacks.Callback):
    """Re-embeds the training set into a :class:`MemoryBank` before training and every few epochs.

    ``indexed_images`` yields ``(images, indices)`` batches covering the training set
    (``tfdml.sampling.indexed_batches`` builds one); each batch is embedded by the
    model being trained (``training=False``), or by ``embed`` when the trained model's
    output is not the embedding.

    Args:
        bank: the :class:`MemoryBank` the batch-matching sampler reads.
        indexed_images: ``tf.data.Dataset`` of ``(images, indices)``.
        every_n_epochs: refresh after every this many epochs (default 1).
        embed: optional callable ``images -> embeddings`` (default: the model).

    Example:

    >>> bank = MemoryBank(len(data), dim=64)
    >>> refresh = MemoryBankRefresh(bank, tfdml.sampling.indexed_batches(data, 256))
    >>> model.fit(tfdml.sampling.batches(data, FRDSampler(data.labels, bank=bank, batch_size=32)),
    ...           steps_per_epoch=100, epochs=10, callbacks=[refresh])
    """

    def __init__(self, bank, indexed_images, *, every_n_epochs=1, embed=None):
        super().__init__()
        if int(every_n_epochs) != every_n_epochs or every_n_epochs < 1:
            raise ValueError(f"MemoryBankRefresh: every_n_epochs must be a positive integer; got {every_n_epochs}.")
        self.bank = bank
        self.indexed_images = indexed_images
        self.every_n_epochs = int(every_n_epochs)
        self.embed = embed

    def refresh(self):
        embed = self.embed or (lambda images: self.model(images, training=False))
        for images, indices in self.indexed_images:
            self.bank.update(indices.numpy(), keras.ops.convert_to_numpy(embed(images)))

    def on_train_begin(self, logs=None):
        self.refresh()

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_n_epochs == 0:
            self.refresh()
