import numpy as np
import pytest
import tensorflow as tf

from tfdml import distances, masks


def numpy_pairwise(x, y, metric):
    out = np.zeros((len(x), len(y)))
    for i in range(len(x)):
        for j in range(len(y)):
            diff = x[i] - y[j]
            if metric == "euclidean":
                out[i, j] = np.sqrt(diff @ diff)
            elif metric == "squared_euclidean":
                out[i, j] = diff @ diff
            else:
                out[i, j] = 1 - x[i] @ y[j] / (np.linalg.norm(x[i]) * np.linalg.norm(y[j]))
    return out


@pytest.mark.parametrize("metric", distances.METRICS)
def test_matches_numpy(metric, rng):
    x, y = rng.normal(size=(7, 5)), rng.normal(size=(4, 5))
    np.testing.assert_allclose(distances.pairwise_distance(x, y, metric).numpy(), numpy_pairwise(x, y, metric), atol=1e-10)
    np.testing.assert_allclose(distances.pairwise_distance(x, metric=metric).numpy(), numpy_pairwise(x, x, metric), atol=1e-7)


def test_same_set_diagonal_is_exactly_zero(rng):
    x = tf.constant(rng.normal(size=(6, 3)) * 1e3, tf.float32)
    assert np.all(np.diag(distances.euclidean(x).numpy()) == 0)


def test_unknown_metric_names_it():
    with pytest.raises(ValueError, match="manhattan"):
        distances.pairwise_distance(np.zeros((2, 2)), metric="manhattan")


@pytest.mark.parametrize("metric", distances.METRICS)
def test_gradient_float64_matches_finite_differences(metric, rng):
    x = tf.constant(rng.normal(size=(5, 3)))
    weights = tf.constant(rng.normal(size=(5, 5)))

    def f(x):
        return tf.reduce_sum(weights * distances.pairwise_distance(x, metric=metric))

    theoretical, numerical = tf.test.compute_gradient(f, [x])
    np.testing.assert_allclose(theoretical[0], numerical[0], rtol=1e-5, atol=1e-6)


def test_euclidean_gradient_finite_for_identical_embeddings():
    x = tf.constant([[0.6, 0.8], [0.6, 0.8], [0.6, 0.8]], tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        d = distances.euclidean(x)
        total = tf.reduce_sum(d)
    grad = tape.gradient(total, x).numpy()
    assert np.all(np.isfinite(grad))
    np.testing.assert_array_equal(d.numpy(), np.zeros((3, 3)))


def test_masks_exclude_self_and_accept_column_labels():
    labels = np.array([[3], [3], [5], [3]])
    pos = masks.positive_mask(labels).numpy()
    neg = masks.negative_mask(labels).numpy()
    expected_pos = np.array([[a == b and i != j for j, b in enumerate([3, 3, 5, 3])] for i, a in enumerate([3, 3, 5, 3])])
    np.testing.assert_array_equal(pos, expected_pos)
    np.testing.assert_array_equal(neg, np.array([[a != b for b in [3, 3, 5, 3]] for a in [3, 3, 5, 3]]))
    assert not np.any(np.diag(pos)) and not np.any(np.diag(neg))


def test_masks_against_separate_keys_with_self_index():
    query = np.array([0, 1])
    keys = np.array([1, 0, 0, 1])
    pos = masks.positive_mask(query, keys, self_index=[1, -1]).numpy()
    np.testing.assert_array_equal(pos, [[False, False, True, False], [True, False, False, True]])
    np.testing.assert_array_equal(masks.positive_mask(query, keys).numpy(), [[False, True, True, False], [True, False, False, True]])


def test_flatten_labels_rejects_wide_labels():
    with pytest.raises(ValueError, match=r"\(b,\) or \(b, 1\)"):
        masks.flatten_labels(np.zeros((4, 2)))
