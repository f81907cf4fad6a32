import numpy as np
import pytest
import tensorflow as tf

from tfdml import distances


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
