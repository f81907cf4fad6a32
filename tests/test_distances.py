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


def reference_comparison(x, distance):
    """The ``(b, b)`` matrix of ``distance`` over the rows of ``x``, one entry at a time, and its sign (+1 for a
    distance, −1 for a similarity)."""
    x = np.asarray(x, np.float64)
    out = np.zeros((len(x), len(x)))
    for i in range(len(x)):
        for j in range(len(x)):
            diff = x[i] - x[j]
            out[i, j] = {
                "euclidean": lambda: np.sqrt(diff @ diff),
                "squared_euclidean": lambda: diff @ diff,
                "cosine": lambda: x[i] @ x[j] / (np.linalg.norm(x[i]) * np.linalg.norm(x[j])),
                "dot": lambda: x[i] @ x[j],
            }[distance]()
    return out, (-1.0 if distance in ("cosine", "dot") else 1.0)


@pytest.mark.parametrize("distance", distances.DISTANCES)
def test_pairwise_comparison_values_and_direction(distance, rng):
    x, y = rng.normal(size=(6, 4)), rng.normal(size=(3, 4))
    matrix, sign = distances.pairwise_comparison(x, distance=distance)
    expected, expected_sign = reference_comparison(x, distance)
    np.testing.assert_allclose(matrix.numpy(), expected, atol=1e-10)
    assert sign == expected_sign
    # The sign orders pairs: sign · (M_ij − M_ik) > 0 ⇔ j is farther from i than k, by the Euclidean distance of
    # unit vectors (for which all four distances agree on the order).
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    matrix, sign = distances.pairwise_comparison(unit, distance=distance)
    farther = sign * (matrix.numpy()[:, :, None] - matrix.numpy()[:, None, :]) > 1e-9
    euclidean = reference_comparison(unit, "euclidean")[0]
    np.testing.assert_array_equal(farther, euclidean[:, :, None] - euclidean[:, None, :] > 1e-9)
    across = distances.pairwise_comparison(x, y, distance).matrix.numpy()
    np.testing.assert_allclose(across, reference_comparison(np.concatenate([x, y]), distance)[0][:6, 6:], atol=1e-10)


@pytest.mark.parametrize("distance", ["manhattan", "Cosine", None, 2])
def test_check_distance_names_the_owner_the_argument_and_the_choices(distance):
    with pytest.raises(ValueError, match=r"TripletLoss: distance must be one of \('euclidean', .*'dot'\); got"):
        distances.check_distance("TripletLoss", distance)
    with pytest.raises(ValueError, match="pairwise_comparison: distance"):
        distances.pairwise_comparison(np.ones((2, 2)), distance=distance)
    assert distances.check_distance("CircleLoss", "dot", distances.SIMILARITIES) == "dot"
    with pytest.raises(ValueError, match=r"CircleLoss: distance must be one of \('cosine', 'dot'\)"):
        distances.check_distance("CircleLoss", "euclidean", distances.SIMILARITIES)


def test_every_loss_taking_a_distance_keeps_it_through_its_config():
    import keras

    from tfdml import losses

    made = [
        losses.ContrastiveLoss(distance="cosine", margin=0.0, positive_margin=1.0),
        losses.TripletLoss(distance="dot"),
        losses.MultiSimilarityLoss(distance="squared_euclidean", threshold=1.0),
        losses.CircleLoss(distance="dot"),
        losses.NTXentLoss(distance="euclidean"),
        losses.SupConLoss(distance="dot"),
    ]
    for loss in made:
        config = loss.get_config()
        assert config["distance"] == loss.distance != type(loss)().distance, type(loss).__name__
        assert type(loss).from_config(config).distance == loss.distance
        with pytest.raises(ValueError, match=f"{type(loss).__name__}: distance must be one of"):
            type(loss)(distance="manhattan")
    # TripletLoss's former flag: a saved config with squared still loads, as the distance it meant.
    old = {key: value for key, value in losses.TripletLoss().get_config().items() if key != "distance"}
    assert losses.TripletLoss.from_config({**old, "squared": True}).distance == "squared_euclidean"
    assert keras.saving.deserialize_keras_object(
        {"class_name": "tfdml>TripletLoss", "config": {**old, "squared": False}}
    ).distance == "euclidean"
    with pytest.raises(ValueError, match="give distance only"):
        losses.TripletLoss(squared=True, distance="cosine")
