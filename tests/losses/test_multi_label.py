"""MultiSupConLoss against a slow NumPy reference written from Zhang & Wu (AAAI 2024), float64 gradients,
degenerate label sets, the multi-hot input policy, XLA, and two replicas equal to one device."""

import math

import numpy as np
import pytest
import tensorflow as tf

from finite_differences import central_differences, tape_gradient
from tfdml.losses import MultiSupConLoss, SupConLoss, multi_supcon_loss, supcon_loss
from tfdml.training.model import gather_global_batch

# ---------------------------------------------------------------- slow NumPy reference, one loop per sum


def reference_multi_supcon(x, label_sets, temperature=0.1):
    """MulSupCon: one anchor per (sample i, label k ∈ y_i), positives the other samples carrying k, SupCon's
    softmax over every other sample; the mean over the anchors with a positive."""
    x = np.asarray(x, np.float64)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    s = unit @ unit.T / temperature
    n = len(label_sets)
    terms = []
    for i in range(n):
        others = [a for a in range(n) if a != i]
        denominator = sum(math.exp(s[i, a]) for a in others)
        for k in np.flatnonzero(label_sets[i]):
            positives = [p for p in others if label_sets[p][k]]
            if positives:
                terms.append(-sum(math.log(math.exp(s[i, p]) / denominator) for p in positives) / len(positives))
    return sum(terms) / len(terms) if terms else 0.0


# Two labels shared in pairs, a triple, a label nobody else carries (anchor without positive), an empty row.
LABEL_SETS = np.array(
    [[1, 1, 0, 0, 0], [1, 0, 0, 0, 0], [0, 1, 1, 0, 0], [0, 0, 1, 0, 0], [1, 1, 1, 0, 0], [0, 0, 0, 1, 0],
     [0, 0, 0, 0, 0], [0, 1, 0, 0, 1]]
)


@pytest.fixture
def x(rng):
    return 3.0 * rng.normal(size=(len(LABEL_SETS), 4))


@pytest.mark.reference("MultiSupConLoss")
@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_function_and_class_match_the_reference(x, temperature):
    expected = reference_multi_supcon(x, LABEL_SETS, temperature)
    assert expected > 0.0
    value = multi_supcon_loss(tf.constant(LABEL_SETS), tf.constant(x), temperature)
    np.testing.assert_allclose(value, expected, rtol=1e-10)
    for labels in (LABEL_SETS, LABEL_SETS.astype(np.float32), LABEL_SETS.astype(bool)):
        as_class = MultiSupConLoss(temperature=temperature)(tf.constant(labels), tf.constant(x, tf.float32))
        np.testing.assert_allclose(as_class.numpy(), expected, rtol=2e-5)


def test_float64_gradient_matches_finite_differences(x):
    gradient = tape_gradient(lambda e: multi_supcon_loss(tf.constant(LABEL_SETS), e, 0.5), x)
    numerical = central_differences(lambda e: reference_multi_supcon(e, LABEL_SETS, 0.5), x)
    np.testing.assert_allclose(gradient, numerical, rtol=1e-5, atol=1e-7)
    assert np.abs(gradient).max() > 0.0


def test_one_label_per_sample_is_supcon_as_ids_or_one_hot(x):
    ids = np.array([0, 0, 1, 1, 1, 2, 3, 3])
    expected = supcon_loss(tf.constant(ids), tf.constant(x)).numpy()
    np.testing.assert_allclose(reference_multi_supcon(x, np.eye(4)[ids]), expected, rtol=1e-10)
    loss = MultiSupConLoss()
    for labels in (ids, ids[:, None], np.eye(4, dtype=np.int32)[ids]):
        np.testing.assert_allclose(loss(tf.constant(labels), tf.constant(x, tf.float32)), expected, rtol=2e-5)
    np.testing.assert_allclose(SupConLoss()(tf.constant(ids), tf.constant(x, tf.float32)), expected, rtol=2e-5)


@pytest.mark.parametrize(
    "label_sets",
    [np.eye(8, dtype=int), np.zeros((8, 3), int), np.concatenate([np.eye(4, dtype=int), np.zeros((4, 4), int)])],
    ids=["no-shared-label", "all-zero-rows", "half-empty"],
)
def test_batches_without_shared_labels_give_zero_with_zero_gradients(label_sets, x):
    value, gradient = tape_gradient_and_value(label_sets, x)
    assert value == 0.0 and np.all(gradient == 0.0)


def tape_gradient_and_value(label_sets, x):
    embeddings = tf.constant(x, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(embeddings)
        value = MultiSupConLoss()(tf.constant(label_sets), embeddings)
    return value.numpy(), tape.gradient(value, embeddings).numpy()


def test_identical_embeddings_and_an_all_positive_batch_are_finite():
    # Every sample carries label 0: each anchor's positives are all others, log(b - 1) at equal similarities.
    label_sets = np.array([[1, 0], [1, 1], [1, 0], [1, 1]])
    same = tf.ones((4, 3))
    np.testing.assert_allclose(MultiSupConLoss()(tf.constant(label_sets), same), math.log(3.0), rtol=1e-6)


def test_values_other_than_0_and_1_are_refused_eagerly_in_a_graph_and_nan_under_xla(x):
    loss = MultiSupConLoss()
    bad = LABEL_SETS.astype(np.float32)
    bad[2, 1] = 2.0
    with pytest.raises(ValueError, match="MultiSupConLoss: y_true must be multi-hot .* got the value 2"):
        loss(tf.constant(bad), tf.constant(x, tf.float32))
    spec = (tf.TensorSpec(bad.shape, tf.float32), tf.TensorSpec(x.shape, tf.float32))
    graph = tf.function(loss.value, input_signature=spec)
    with pytest.raises(tf.errors.InvalidArgumentError, match="multi-hot labels must be 0 or 1"):
        graph(tf.constant(bad), tf.constant(x, tf.float32))
    xla = tf.function(loss.value, input_signature=spec, jit_compile=True)
    assert np.isnan(xla(tf.constant(bad), tf.constant(x, tf.float32)).numpy())
    good = xla(tf.constant(LABEL_SETS, tf.float32), tf.constant(x, tf.float32)).numpy()
    np.testing.assert_allclose(good, reference_multi_supcon(x, LABEL_SETS), rtol=2e-5)


def test_config_round_trip_and_bad_hyperparameters():
    loss = MultiSupConLoss(temperature=0.2, distance="dot")
    rebuilt = MultiSupConLoss.from_config(loss.get_config())
    assert (rebuilt.temperature, rebuilt.distance) == (0.2, "dot")
    with pytest.raises(ValueError, match="MultiSupConLoss: temperature"):
        MultiSupConLoss(temperature=0.0)


def test_two_replicas_gather_the_multi_hot_label_sets_in_replica_order(rng, mirrored_strategy):
    label_sets = (rng.random((8, 5)) < 0.35).astype(np.int64)
    embeddings = rng.normal(size=(8, 3)).astype(np.float32)
    batches = mirrored_strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensor_slices((label_sets, embeddings)).batch(8)
    )
    gathered = mirrored_strategy.run(tf.function(gather_global_batch), args=next(iter(batches)))
    for replica_labels, replica_embeddings in zip(*(mirrored_strategy.experimental_local_results(t) for t in gathered)):
        np.testing.assert_array_equal(replica_labels.numpy(), label_sets)
        np.testing.assert_array_equal(replica_embeddings.numpy(), embeddings)
