"""AtomicBackupAndRestore's overrides of private Keras ``BackupAndRestore`` hooks.

It overrides ``_save_model`` and ``_load_model`` and reads ``_weights_path``,
``_training_metadata_path``, ``_current_epoch`` and ``_last_batch_seen``. These tests fail
loudly when a Keras release renames or stops calling them (resuming would then silently
lose the miners' random state or write backups non-atomically).
"""

import json
import os

import keras
import numpy as np
import tensorflow as tf

from tfdml.training.callbacks import AtomicBackupAndRestore
from tfdml.training.run_folder import RunFolder


def tiny_model():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    return model


def fit(model, callback, epochs):
    x, y = np.zeros((4, 2), np.float32), np.zeros((4, 1), np.float32)
    model.fit(x, y, batch_size=2, epochs=epochs, callbacks=[callback], verbose=0)


def test_keras_still_has_the_private_hooks_it_overrides(tmp_path):
    callback = keras.callbacks.BackupAndRestore(str(tmp_path))
    for method in ("_save_model", "_load_model"):
        assert callable(getattr(keras.callbacks.BackupAndRestore, method, None)), f"Keras lost BackupAndRestore.{method}"
    for attribute in ("_weights_path", "_training_metadata_path", "_current_epoch", "_last_batch_seen"):
        assert hasattr(callback, attribute), f"Keras lost BackupAndRestore.{attribute}"


def test_keras_calls_save_model_at_each_epoch_and_load_model_at_train_begin(tmp_path):
    backup_dir = RunFolder(tmp_path).backup_dir
    counter = tf.Variable(7, dtype=tf.int64)
    callback = AtomicBackupAndRestore(backup_dir, state={"counter": counter}, delete_checkpoint=False)
    fit(tiny_model(), callback, epochs=2)
    with open(os.path.join(backup_dir, "training_metadata.json")) as f:
        metadata = json.load(f)
    assert metadata["epoch"] == 2 and metadata["state"] == {"counter": 7}  # written by the _save_model override
    assert RunFolder(tmp_path).finished_epochs() == 2
    assert os.path.exists(callback._weights_path)
    assert sorted(os.listdir(backup_dir)) == [os.path.basename(callback._weights_path), "training_metadata.json"]  # no temporary files

    restored = tf.Variable(0, dtype=tf.int64)
    fit(tiny_model(), AtomicBackupAndRestore(backup_dir, state={"counter": restored}), epochs=3)
    assert int(restored.numpy()) == 7  # restored by the _load_model override
