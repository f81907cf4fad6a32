"""The Keras callbacks of a recipe run: per-epoch JSON records, an atomic resumable backup that
also holds the miners' random state, the divergence stop, and the end of ``fit`` (the selected
epoch's weights saved as the final weights, then the ``done`` marker). They write into a
:class:`~tfdml.training.run_folder.RunFolder`; :meth:`tfdml.experiment.Experiment.fit` puts them
together."""

import json
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf

from tfdml.io import link_file_atomically, save_file_atomically, write_file_atomically
from tfdml.training.config import ConfigError
from tfdml.training.run_folder import read_records


class EpochJSONLogger(keras.callbacks.Callback):
    """Keeps ``{"epoch": e, **logs}`` per finished epoch in a JSON-lines file.

    Non-finite numbers (a NaN loss, a score undefined on the validation data) are written as
    ``null``, since strict JSON has no NaN or Infinity. The file is rewritten atomically after
    every epoch, replacing any record of this or a later epoch: a resumed run that repeats an
    epoch (it was killed before the epoch's backup was committed) leaves one record per epoch,
    never a half-written line.
    """

    def __init__(self, path):
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        records = [r for r in read_records(self.path) if r["epoch"] < epoch + 1]
        records.append({"epoch": epoch + 1, **{key: float(value) for key, value in (logs or {}).items()}})
        # All records, as an older file's may hold NaN.
        strict = [
            {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in r.items()} for r in records
        ]
        write_file_atomically(self.path, "".join(json.dumps(r) + "\n" for r in strict))


def save_weights_atomically(model, path):
    """``model.save_weights(path)`` through a file beside it and a rename (Keras writes in place)."""
    return save_file_atomically(path, lambda tmp: model.save_weights(tmp, overwrite=True))


def external_state(loss):
    """Variables of ``loss`` (and its miners) that ``save_weights`` does not save, by attribute path.

    The miners' random counters are plain variables of tfdml objects, not Keras weights; a
    resumed run needs them to draw the tuples the uninterrupted run would have drawn. Keras
    layers are not searched: their variables are saved with the model's weights.
    """
    found = {}

    def visit(value, path, seen):
        if id(value) in seen or isinstance(value, keras.layers.Layer):
            return
        seen.add(id(value))
        if isinstance(value, (tf.Variable, keras.Variable)):
            found[path] = value
        elif isinstance(value, tf.random.Generator):
            found[f"{path}.state"] = value.state
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                visit(item, f"{path}.{i}", seen)
        elif isinstance(value, dict):
            for key, item in value.items():
                visit(item, f"{path}.{key}", seen)
        elif type(value).__module__.startswith("tfdml.") and hasattr(value, "__dict__"):
            for key, item in vars(value).items():
                visit(item, f"{path}.{key}", seen)

    visit(loss, "loss", set())
    return found


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras ``BackupAndRestore`` whose backup of an epoch is one atomic unit, and which also
    backs up ``state``: variables outside the model's weights (see :func:`external_state`).

    Keras overwrites its weights file and then its metadata file in place, so a ``kill -9``
    leaves a corrupt file, or new weights beside the previous epoch's number (the rerun then
    trains that epoch again on top of its own end state). Here each backup's weights go to a
    new file, then ``training_metadata.json``, which names that file and holds the epoch and
    ``state``, is replaced atomically: that rename commits the backup, and only then is the
    previous weights file removed. Whenever a kill strikes, the committed backup is one
    epoch's weights, number and state together, and the rerun resumes from it.

    With ``checkpoint``, each epoch's backup weights are also kept as that epoch's checkpoint (what
    ``keras.callbacks.ModelCheckpoint(save_weights_only=True)`` would write: the same model's weights at the
    same moment), as a hard link to the backup's file: one write an epoch instead of two. A kill between the
    commit and the link is repaired on restore, which links the restored epoch's checkpoint when it is missing.

    Args:
        backup_dir: the backup folder.
        state: ``{name: variable}`` saved in the metadata after each epoch and restored with the weights.
        checkpoint: optional function, 1-based epoch → the path where that epoch's weights are kept;
            needs ``save_freq="epoch"``.
    """

    def __init__(self, backup_dir, state=None, checkpoint=None, **kwargs):
        super().__init__(backup_dir, **kwargs)
        if checkpoint is not None and self.save_freq != "epoch":
            raise ValueError(f"checkpoint needs save_freq='epoch' (a backup at each epoch's end); got {self.save_freq!r}.")
        self.state = dict(state or {})
        self.checkpoint = checkpoint

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        if self.checkpoint is not None:
            link_file_atomically(self._weights_path, self.checkpoint(epoch + 1))

    # _save_model/_load_model are private Keras hooks; tests/training/test_training_callbacks.py fails if Keras changes them.
    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        weights = f"epoch{self._current_epoch:03d}-batch{self._last_batch_seen}.weights.h5"
        save_weights_atomically(self.model, os.path.join(self.backup_dir, weights))
        metadata = {
            "epoch": self._current_epoch,
            "batch": self._last_batch_seen,
            "weights": weights,
            "state": {name: np.asarray(variable.numpy()).tolist() for name, variable in self.state.items()},
        }
        write_file_atomically(self._training_metadata_path, json.dumps(metadata))
        self._weights_path = os.path.join(self.backup_dir, weights)
        for name in os.listdir(self.backup_dir):
            if name.endswith(".weights.h5") and name != weights:  # earlier backups and temporary files
                os.remove(os.path.join(self.backup_dir, name))

    def _load_model(self):
        if not os.path.exists(self._training_metadata_path):
            return  # weights without metadata are of an epoch whose backup was never committed
        with open(self._training_metadata_path) as f:
            metadata = json.load(f)
        # Backups of tfdml before the weights file was named in the metadata used Keras's name.
        self._weights_path = os.path.join(self.backup_dir, metadata.get("weights", "latest.weights.h5"))
        if not os.path.exists(self._weights_path):
            raise ConfigError(
                f"The backup in {self.backup_dir} lacks its weights file {self._weights_path}; delete the backup "
                "folder to train the run afresh."
            )
        super()._load_model()
        saved = metadata.get("state", {})
        unknown = sorted(set(saved) - set(self.state))
        if unknown:
            raise ConfigError(f"The backup in {self.backup_dir} holds state this run does not have: {unknown}.")
        for name, value in saved.items():
            variable = self.state[name]
            variable.assign(np.asarray(value, variable.dtype.as_numpy_dtype))
        if self.checkpoint is not None and metadata["batch"] == 0 and not os.path.exists(self.checkpoint(metadata["epoch"])):
            link_file_atomically(self._weights_path, self.checkpoint(metadata["epoch"]))


class TrainingDiverged(ConfigError):
    """Training reached a non-finite loss or non-finite embeddings. A :class:`ConfigError`, since its
    cure is a setting (most often a lower learning rate)."""


class StopOnDivergence(keras.callbacks.Callback):
    """Stops ``fit`` with :class:`TrainingDiverged` at the first non-finite loss, or at the end of an
    epoch after which the model's embeddings of ``probe`` are no longer finite.

    Like ``keras.callbacks.TerminateOnNaN(raise_error=True)`` it raises rather than stopping
    gracefully, so the callbacks after it never evaluate, record, back up or finish a diverged
    epoch. The probe catches what the training loss can hide: the last step's update, or
    BatchNorm, whose training loss uses batch statistics while inference overflows. Before
    raising, it writes ``marker``, by which :meth:`tfdml.training.run_folder.RunFolder.prepare`
    lets a corrected config take a diverged run's folder over.

    Args:
        marker: the JSON file written on divergence.
        probe: a batch of model inputs, embedded in inference mode at the end of each epoch.
        advice: the error message's last sentence (e.g. which setting to change).
        embed: optional function, inputs → embeddings in inference mode (e.g. a traced
            :func:`tfdml.models.embedding.inference_function`); default: the trained model called eagerly.
    """

    def __init__(self, marker, probe, advice="", embed=None):
        super().__init__()
        self.marker = marker
        self.probe = probe
        self.advice = advice
        self.embed = embed
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            self.diverged(f"the loss is {float(loss)} at step {batch + 1} of epoch {self.epoch + 1}")

    def on_epoch_end(self, epoch, logs=None):
        embeddings = self.model(self.probe, training=False) if self.embed is None else self.embed(self.probe)
        if not np.isfinite(keras.ops.convert_to_numpy(embeddings)).all():
            self.diverged(f"the embeddings are no longer finite at the end of epoch {epoch + 1}")

    def diverged(self, what):
        write_file_atomically(self.marker, json.dumps({"epoch": self.epoch + 1, "diverged": what}))
        raise TrainingDiverged(f"Training diverged: {what}. {self.advice}".strip())


class FinishTraining(keras.callbacks.Callback):
    """At the end of ``fit``: the selected epoch's weights become the final weights, then the ``done`` marker.

    The one model-selection mechanism of tfdml: with ``select_by`` (a logged validation key) the
    model is restored from the per-epoch checkpoint of the epoch with the highest ``select_by`` in
    the folder's records (the first on ties); without it the last epoch's weights are kept. Runs
    before :class:`AtomicBackupAndRestore` removes its backup, so at every moment either the backup
    or the marker (with the final weights) exists: a run killed after its last epoch resumes
    straight to evaluation and export instead of training again.

    Args:
        folder: the :class:`~tfdml.training.run_folder.RunFolder` (records, checkpoints, final weights, marker).
        embedder: the model whose weights are the final weights.
        select_by: ``None`` (keep the last epoch) or the logged key whose best epoch is kept.
    """

    def __init__(self, folder, embedder, select_by=None):
        super().__init__()
        self.folder = folder
        self.embedder = embedder
        self.select_by = select_by

    def on_train_end(self, logs=None):
        done = {"finished": time.time()}
        if self.select_by:
            epoch = self.folder.best_epoch(self.select_by)
            self.model.load_weights(self.folder.checkpoint(epoch))
            done.update(best_epoch=epoch, select_by=self.select_by)
        save_weights_atomically(self.embedder, self.folder.final_weights)
        write_file_atomically(self.folder.done_file, json.dumps(done))
