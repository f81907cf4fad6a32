"""Dynamic ArcFace (per-class margins from the class sizes) against a NumPy reference written from the paper's
formula, float64 gradients, and its construction from a recipe's training labels.

pytorch-metric-learning has no such loss (with equal class counts it is ArcFace, whose parity
tests/losses/test_proxy_losses.py holds). The registry-walking tests (tests/test_registry.py, the
per-class-vector tests of test_proxy_losses.py) cover serialization, degenerate batches, float16, label
checks and training under XLA.
"""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdml.losses import DynamicArcFaceLoss, arcface_loss, dynamic_arcface_loss, dynamic_arcface_margins
from tfdml.training.config import load_config
from tfdml.training.factory import build_loss

# ---------------------------------------------------------------- slow NumPy references, one loop per sum


def reference_margins(counts, exponent=0.25, margin_min=0.05, margin_max=0.5):
    """Ha et al. 2020: m_c = a·n_c^(−λ) + b, a and b solving a·max n^(−λ) + b = margin_max (the rarest class)
    and a·min n^(−λ) + b = margin_min (the most frequent); classes without images get margin_max."""
    seen = [n for n in counts if n > 0]
    rarest, most_frequent = min(seen) ** -exponent, max(seen) ** -exponent
    if rarest == most_frequent:
        return [margin_max] * len(counts)
    a = (margin_max - margin_min) / (rarest - most_frequent)
    b = margin_min - a * most_frequent
    return [a * n**-exponent + b if n > 0 else margin_max for n in counts]


def reference_dynamic_arcface(labels, x, centers, margins, scale=30.0):
    """Deng et al.'s ArcFace with the margin m_{y_i} of the sample's class: s·cos(θ_y + m_y) for the target
    (s·(cos θ − m_y sin m_y) past θ = π − m_y), s·cos θ otherwise."""
    total = 0.0
    for i, y in enumerate(labels):
        unit = x[i] / np.linalg.norm(x[i])
        cosines = [float(np.clip(unit @ (w / np.linalg.norm(w)), -1.0, 1.0)) for w in centers]
        theta, m = math.acos(cosines[y]), margins[y]
        target = math.cos(theta + m) if theta + m <= math.pi else cosines[y] - m * math.sin(m)
        logits = [scale * (target if c == y else cosines[c]) for c in range(len(centers))]
        top = max(logits)
        total += top + math.log(sum(math.exp(z - top) for z in logits)) - logits[y]
    return total / len(labels)


def _random_batch(rng, batch=7, dim=5, num_classes=4):
    labels = rng.integers(0, num_classes, size=batch).astype(np.int32)
    return labels, rng.normal(size=(batch, dim)), rng.normal(size=(num_classes, dim))


# ---------------------------------------------------------------- margins


@pytest.mark.parametrize("kwargs", [{}, {"exponent": 0.5, "margin_min": 0.1, "margin_max": 0.7}])
def test_margins_match_the_formula(kwargs, rng):
    counts = [int(n) for n in rng.integers(1, 1000, size=12)]
    margins = dynamic_arcface_margins(counts, **kwargs)
    np.testing.assert_allclose(margins, reference_margins(counts, **kwargs), rtol=1e-12)
    assert margins.min() == pytest.approx(kwargs.get("margin_min", 0.05))
    assert margins.max() == pytest.approx(kwargs.get("margin_max", 0.5))
    assert np.all(np.diff(margins[np.argsort(counts)]) <= 0.0)  # rarer class, larger margin


def test_margins_of_equal_and_empty_classes():
    np.testing.assert_allclose(dynamic_arcface_margins([7, 7, 7]), [0.5, 0.5, 0.5])
    np.testing.assert_allclose(dynamic_arcface_margins([1, 0, 16, 256]), [0.5, 0.5, 0.2, 0.05])
    np.testing.assert_allclose(dynamic_arcface_margins([0, 3]), [0.5, 0.5])


# ---------------------------------------------------------------- values and gradients


def test_function_matches_reference_on_random_batches(rng):
    for scale in (30.0, 4.0):
        labels, x, w = _random_batch(rng)
        margins = rng.uniform(0.05, 1.4, size=len(w))
        value = dynamic_arcface_loss(tf.constant(labels), tf.constant(x), tf.constant(w), tf.constant(margins), scale)
        expected = reference_dynamic_arcface(labels, x, w, margins, scale)
        np.testing.assert_allclose(value.numpy(), expected, rtol=1e-10, atol=1e-10)


def test_target_past_pi_minus_margin_continues_linearly():
    # The sample opposite its centre (θ = π > π − m): target logit s·(cos θ − m sin m) = −s(1 + m sin m).
    x, centers, margins = tf.constant([[-1.0, 0.0]], tf.float64), tf.constant(np.eye(2)), tf.constant([0.3, 0.1], tf.float64)
    value = dynamic_arcface_loss(tf.constant([0]), x, centers, margins, scale=2.0)
    target = -2.0 * (1.0 + 0.3 * math.sin(0.3))
    np.testing.assert_allclose(value.numpy(), math.log1p(math.exp(0.0 - target)), rtol=1e-12)


@pytest.mark.reference("DynamicArcFaceLoss")
def test_loss_object_uses_its_counts_and_variables_in_float32(rng):
    counts = [3, 40, 500, 7]
    loss = DynamicArcFaceLoss(num_classes=4, embedding_dim=5, class_counts=counts, scale=16.0, seed=3)
    labels, x, _ = _random_batch(rng)
    assert loss.centers.dtype == "float32" and loss.trainable_variables == [loss.centers]
    value = loss.compute(tf.constant(labels), tf.constant(x, tf.float32))
    expected = reference_dynamic_arcface(
        labels, x.astype(np.float32), loss.centers.numpy(), reference_margins(counts), scale=16.0
    )
    assert value.dtype == tf.float32
    np.testing.assert_allclose(value.numpy(), expected, rtol=2e-5, atol=2e-5)


def test_equal_counts_give_arcface_with_the_largest_margin(rng):
    labels, x, _ = _random_batch(rng)
    loss = DynamicArcFaceLoss(num_classes=4, embedding_dim=5, class_counts=[9] * 4, margin_max=0.4, scale=8.0, seed=1)
    without_counts = DynamicArcFaceLoss(num_classes=4, embedding_dim=5, margin_max=0.4, scale=8.0, seed=1)
    expected = arcface_loss(tf.constant(labels), tf.constant(x, tf.float32), loss.centers, margin=0.4, scale=8.0)
    for made in (loss, without_counts):
        np.testing.assert_allclose(made.value(tf.constant(labels), tf.constant(x, tf.float32)), expected, rtol=1e-6)


def test_gradients_match_finite_differences_of_the_reference(rng):
    # Directional derivatives along random directions of (embeddings, centres), central differences in float64.
    labels, x, w = _random_batch(rng, batch=6)
    margins = [0.5, 0.05, 0.3, 1.2]
    inputs = [tf.constant(x), tf.constant(w)]
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        value = dynamic_arcface_loss(tf.constant(labels), *inputs, tf.constant(margins), scale=4.0)
    gradients = [g.numpy() for g in tape.gradient(value, inputs)]
    assert all(np.abs(g).max() > 1e-6 for g in gradients)
    delta = 1e-6
    for _ in range(3):
        dx, dw = rng.normal(size=x.shape), rng.normal(size=w.shape)
        plus = reference_dynamic_arcface(labels, x + delta * dx, w + delta * dw, margins, scale=4.0)
        minus = reference_dynamic_arcface(labels, x - delta * dx, w - delta * dw, margins, scale=4.0)
        analytic = np.sum(gradients[0] * dx) + np.sum(gradients[1] * dw)
        np.testing.assert_allclose(analytic, (plus - minus) / (2 * delta), rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------- recipes, defaults and arguments


def test_recipe_run_passes_the_training_class_counts():
    config = load_config(None, ["loss.class=DynamicArcFaceLoss", "model.embedding_dim=8"])
    loss = build_loss(config, num_classes=3, num_images=13, class_counts=[10, 2, 1])
    assert loss.class_counts == [10, 2, 1] and loss.embedding_dim == 8
    np.testing.assert_allclose(loss.margins.numpy(), reference_margins([10, 2, 1]), rtol=1e-6)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert restored.get_config()["class_counts"] == [10, 2, 1]
    np.testing.assert_array_equal(restored.margins.numpy(), loss.margins.numpy())


def test_defaults():
    config = DynamicArcFaceLoss(3, 4).get_config()
    assert config["class_counts"] is None
    assert (config["exponent"], config["margin_min"], config["margin_max"]) == (0.25, 0.05, 0.5)
    assert (config["scale"], config["learning_rate"]) == (30.0, 5e-4)


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"class_counts": [1, 2]}, "class_counts must be a list of 3 integers"),
        ({"class_counts": "abc"}, "class_counts must be a list of 3 integers"),
        ({"class_counts": [1, -2, 3]}, "class_counts must be an integer >= 0"),
        ({"class_counts": [1, 2.5, 3]}, "class_counts must be an integer >= 0"),
        ({"class_counts": [0, 0, 0]}, "class_counts must count at least one image"),
        ({"exponent": 0.0}, "exponent must be"),
        ({"margin_max": 1.6}, "margin_max must be"),
        ({"margin_min": 0.6}, "margin_min must be"),
        ({"scale": -1.0}, "scale must be"),
    ],
)
def test_bad_arguments_are_named(bad, match):
    with pytest.raises(ValueError, match=f"DynamicArcFaceLoss: {match}"):
        DynamicArcFaceLoss(3, 4, **bad)
