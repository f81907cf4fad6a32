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
import pytest
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


def fit_recorded(model, callbacks, epochs):
    """``fit`` on a learnable target with ``callbacks``; the weights after each epoch."""
    x = np.arange(8, dtype=np.float32).reshape(4, 2)
    y = x.sum(axis=1, keepdims=True)
    after = []
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: after.append(model.get_weights()))
    model.fit(x, y, batch_size=2, epochs=epochs, callbacks=[record, *callbacks], verbose=0, shuffle=False)
    return after


def test_each_epochs_checkpoint_is_the_backups_weights_linked_not_written_again(tmp_path):
    folder = RunFolder(tmp_path)
    keras.utils.set_random_seed(0)
    model = tiny_model()
    callback = AtomicBackupAndRestore(folder.backup_dir, checkpoint=folder.checkpoint, delete_checkpoint=False)
    after = fit_recorded(model, [callback], epochs=3)
    assert os.path.samefile(folder.checkpoint(3), callback._weights_path)  # one file, two names
    for epoch in (1, 2, 3):
        restored = tiny_model()
        restored.load_weights(folder.checkpoint(epoch))
        for saved, expected in zip(restored.get_weights(), after[epoch - 1]):
            np.testing.assert_array_equal(saved, expected)
    assert not os.path.samefile(folder.checkpoint(2), folder.checkpoint(3))  # the next backup is a new file
    assert sorted(os.listdir(os.path.dirname(folder.checkpoint(1)))) == [
        os.path.basename(folder.checkpoint(e)) for e in (1, 2, 3)
    ]  # no temporary files


def test_a_restore_links_the_checkpoint_a_kill_before_the_link_left_missing(tmp_path):
    folder = RunFolder(tmp_path)
    # A backup committed without its checkpoint: what a kill between the commit and the link leaves.
    fit(tiny_model(), AtomicBackupAndRestore(folder.backup_dir, delete_checkpoint=False), epochs=2)
    assert not os.path.exists(folder.checkpoint(2))
    resumed = AtomicBackupAndRestore(folder.backup_dir, checkpoint=folder.checkpoint, delete_checkpoint=False)
    fit(tiny_model(), resumed, epochs=2)  # nothing left to train: the restore alone
    assert os.path.samefile(folder.checkpoint(2), resumed._weights_path)
    assert not os.path.exists(folder.checkpoint(1))  # an epoch before the backup is not invented


def test_checkpoints_need_a_backup_at_each_epochs_end(tmp_path):
    folder = RunFolder(tmp_path)
    with pytest.raises(ValueError, match="save_freq='epoch'"):
        AtomicBackupAndRestore(folder.backup_dir, checkpoint=folder.checkpoint, save_freq=10)
