"""The Keras callbacks of a recipe run: per-epoch JSON records, an atomic resumable backup that
also holds the miners' random state, and the final-weights/``done`` marker at the end of ``fit``."""

import json
import os
import time

import keras
import numpy as np
import tensorflow as tf

from tfdml.io import save_file_atomically, write_file_atomically
from tfdml.training.config import ConfigError
from tfdml.training.run_directory import CHECKPOINTS, DONE_FILE, FINAL_WEIGHTS, best_epoch


class EpochJSONLogger(keras.callbacks.Callback):
    """Keeps ``{"epoch": e, **logs}`` per finished epoch in a JSON-lines file.

    The file is rewritten atomically after every epoch, replacing any record of this or a
    later epoch: a resumed run that repeats an epoch (its backup was lost to a kill during
    the write) leaves one record per epoch, never a half-written line.
    """

    def __init__(self, path):
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        records = []
        if os.path.exists(self.path):
            with open(self.path) as f:
                records = [json.loads(line) for line in f if line.strip()]
        records = [r for r in records if r["epoch"] < epoch + 1]
        records.append({"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}})
        write_file_atomically(self.path, "".join(json.dumps(r) + "\n" for r in records))


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
    """Keras ``BackupAndRestore`` whose backup files are replaced atomically and which also
    backs up ``state``: variables outside the model's weights (see :func:`external_state`).

    Keras writes the backup in place, so a ``kill -9`` during the write leaves a corrupt file
    and the rerun cannot resume. Here each file is written beside its target and renamed
    over it. A kill between the two renames pairs the new weights with the previous epoch
    number: the rerun repeats that epoch from its end state, losing nothing.

    Args:
        backup_dir: the backup folder.
        state: ``{name: variable}`` saved in the metadata after each epoch and restored with the weights.
    """

    def __init__(self, backup_dir, state=None, **kwargs):
        super().__init__(backup_dir, **kwargs)
        self.state = dict(state or {})

    @staticmethod
    def finished_epochs(backup_dir):
        """Epochs the backup in ``backup_dir`` holds (0 without one): where a rerun resumes."""
        path = os.path.join(backup_dir, "training_metadata.json")
        if not os.path.exists(path):
            return 0
        with open(path) as f:
            return int(json.load(f)["epoch"])

    # _save_model/_load_model are private Keras hooks; tests/test_training_callbacks.py fails if Keras changes them.
    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        save_weights_atomically(self.model, self._weights_path)
        metadata = {
            "epoch": self._current_epoch,
            "batch": self._last_batch_seen,
            "state": {name: np.asarray(variable.numpy()).tolist() for name, variable in self.state.items()},
        }
        write_file_atomically(self._training_metadata_path, json.dumps(metadata))

    def _load_model(self):
        super()._load_model()
        if not os.path.exists(self._training_metadata_path):
            return
        with open(self._training_metadata_path) as f:
            saved = json.load(f).get("state", {})
        unknown = sorted(set(saved) - set(self.state))
        if unknown:
            raise ConfigError(f"The backup in {self.backup_dir} holds state this run does not have: {unknown}.")
        for name, value in saved.items():
            variable = self.state[name]
            variable.assign(np.asarray(value, variable.dtype.as_numpy_dtype))


class FinishTraining(keras.callbacks.Callback):
    """At the end of ``fit``: save the embedder's final weights, then write the ``done`` marker.

    Runs before :class:`AtomicBackupAndRestore` removes its backup, so at every moment either
    the backup or the marker (with the final weights) exists: a run killed after its last
    epoch resumes straight to evaluation and export instead of training again.
    """

    def __init__(self, run_dir, embedder, select_by=None):
        """``select_by``: a logged validation key; the final weights are then those of its best epoch."""
        super().__init__()
        self.run_dir = run_dir
        self.embedder = embedder
        self.select_by = select_by

    def on_train_end(self, logs=None):
        done = {"finished": time.time()}
        if self.select_by:
            epoch = best_epoch(os.path.join(self.run_dir, "metrics.jsonl"), self.select_by)
            self.model.load_weights(os.path.join(self.run_dir, CHECKPOINTS.format(epoch=epoch)))
            done.update(best_epoch=epoch, select_by=self.select_by)
        save_weights_atomically(self.embedder, os.path.join(self.run_dir, FINAL_WEIGHTS))
        write_file_atomically(os.path.join(self.run_dir, DONE_FILE), json.dumps(done))
