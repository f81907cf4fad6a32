"""Batch-global losses under tf.distribute: all-gathered loss and gradients equal one device's."""

import json
import os
import socket
import subprocess
import sys

import h5py
import keras
import numpy as np
import pytest

import tfdml
from tfdml.training import MetricLearningModel

import paths

REPO = str(paths.REPO)

LOSSES = {
    "margin+distance_weighted": lambda: tfdml.losses.MarginLoss(miner=tfdml.mining.DistanceWeightedMiner(seed=1)),
    "learned_beta_margin": lambda: tfdml.losses.MarginLoss(learn_beta=True, miner=tfdml.mining.DistanceWeightedMiner(seed=1)),
    "contrastive+random": lambda: tfdml.losses.ContrastiveLoss(miner=tfdml.mining.RandomMiner(seed=3)),
    "triplet+semi_hard": lambda: tfdml.losses.TripletLoss(miner=tfdml.mining.SemiHardMiner(seed=2)),
    "multi_similarity": lambda: tfdml.losses.MultiSimilarityLoss(),
    "fastap": lambda: tfdml.losses.FastAPLoss(),
}
# FastAP's gradients are small: a larger step makes the weight comparison meaningful.
LEARNING_RATES = {"fastap": 50.0, "multi_similarity": 5.0}


def embedder():
    # No BatchNorm: per-replica batch statistics would differ from the global batch's by design.
    inputs = keras.Input((8, 8, 1))
    features = keras.layers.Conv2D(4, 3, activation="tanh")(keras.layers.Rescaling(1 / 255)(inputs))
    return tfdml.models.build_embedding_model(keras.Model(inputs, features), embedding_dim=8)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_two_replicas_take_the_same_step_as_one_device_on_the_global_batch(name, rng, mirrored_strategy):
    images = rng.uniform(0, 255, (32, 8, 8, 1)).astype("float32")
    labels = np.repeat(np.arange(8), 4)
    keras.utils.set_random_seed(1)
    single = MetricLearningModel(embedder(), LOSSES[name]())
    learning_rate = LEARNING_RATES.get(name, 0.5)
    single.compile(optimizer=keras.optimizers.SGD(learning_rate))
    initial = single.embedding_model.get_weights()
    single_loss = single.fit(images, labels, batch_size=32, epochs=1, shuffle=False, verbose=0).history["loss"][0]

    with mirrored_strategy.scope():
        mirrored = MetricLearningModel(embedder(), LOSSES[name]())
        mirrored.embedding_model.set_weights(initial)
        mirrored.compile(optimizer=keras.optimizers.SGD(learning_rate))
    mirrored_loss = mirrored.fit(images, labels, batch_size=32, epochs=1, shuffle=False, verbose=0).history["loss"][0]

    assert mirrored_loss == pytest.approx(single_loss, rel=1e-5, abs=1e-6)
    moved = max(np.abs(a - b).max() for a, b in zip(initial, single.embedding_model.get_weights()))
    assert moved > 1e-3, "the step did not change the weights, so the comparison says nothing"
    for a, b in zip(single.embedding_model.get_weights(), mirrored.embedding_model.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_worker_processes_train_the_digits_recipe_to_identical_weights(tmp_path):
    workers = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    args = [
        sys.executable, os.path.join(REPO, "train.py"), os.path.join(REPO, "pipelines", "digits_margin.yaml"),
        "--quiet", "--name", "mw", "--epochs", "1",
        "--set", "steps_per_epoch=3", "--set", "model.filters=8", "--set", "distribute.strategy=multi_worker",
        "--set", "evaluation.figures=false",  # the chief's pictures are not under test here
    ]
    processes = []
    for index in range(2):
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})}
        processes.append(subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=600)[0] for p in processes]
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-3000:]

    def weights(path):
        with h5py.File(path) as f:
            arrays = []
            f.visititems(lambda name, item: arrays.append((name, item[()])) if isinstance(item, h5py.Dataset) else None)
            return arrays

    chief = weights(tmp_path / "runs" / "mw" / "final.weights.h5")
    other = weights(tmp_path / "runs" / "mw" / "worker-1" / "final.weights.h5")
    assert [n for n, _ in chief] == [n for n, _ in other] and chief
    for (_, a), (_, b) in zip(chief, other):
        np.testing.assert_array_equal(a, b)
    assert os.path.exists(tmp_path / "models" / "mw" / "1" / "saved_model.pb")
    assert not os.path.exists(tmp_path / "models" / "mw" / "2")
