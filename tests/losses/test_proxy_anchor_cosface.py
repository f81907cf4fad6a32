"""Proxy-Anchor and CosFace against NumPy references written from the papers, and against PML's values.

The registry-walking tests (tests/test_registry.py, the per-class-vector tests of test_proxy_losses.py)
cover serialization, degenerate batches, float16, label checks and training under XLA.
"""

import math

import numpy as np
import pytest
import tensorflow as tf

import pml_parity
from tfdml.losses import CosFaceLoss, ProxyAnchorLoss, cosface_loss, proxy_anchor_loss

# ---------------------------------------------------------------- slow NumPy references, one loop per sum


def _unit(v):
    return v / np.linalg.norm(v)


def reference_proxy_anchor(labels, x, proxies, margin=0.1, alpha=32.0):
    """Kim et al. eq. 3: mean over positive proxies of log(1 + Σ_{x∈X_p⁺} e^{−α(s−δ)}), plus the mean over
    all proxies of log(1 + Σ_{x∈X_p⁻} e^{α(s+δ)})."""
    positive_total, negative_total, positive_proxies = 0.0, 0.0, 0
    for p in range(len(proxies)):
        similarities = [float(_unit(x[i]) @ _unit(proxies[p])) for i in range(len(labels))]
        positives = [s for s, y in zip(similarities, labels) if y == p]
        negatives = [s for s, y in zip(similarities, labels) if y != p]
        if positives:
            positive_proxies += 1
            positive_total += math.log(1.0 + sum(math.exp(-alpha * (s - margin)) for s in positives))
        negative_total += math.log(1.0 + sum(math.exp(alpha * (s + margin)) for s in negatives))
    return positive_total / positive_proxies + negative_total / len(proxies)


def reference_cosface(labels, x, centers, margin=0.35, scale=64.0):
    """Wang et al. eq. 4: softmax cross-entropy of s·(cos θ_y − m) against s·cos θ_c for the other classes."""
    total = 0.0
    for i, y in enumerate(labels):
        cosines = [float(_unit(x[i]) @ _unit(centers[c])) for c in range(len(centers))]
        logits = [scale * (cosines[c] - (margin if c == y else 0.0)) for c in range(len(centers))]
        top = max(logits)
        total += -(logits[y] - top - math.log(sum(math.exp(z - top) for z in logits)))
    return total / len(labels)


LOSSES = {
    "ProxyAnchorLoss": (ProxyAnchorLoss, proxy_anchor_loss, reference_proxy_anchor, "proxies", ("margin", "alpha")),
    "CosFaceLoss": (CosFaceLoss, cosface_loss, reference_cosface, "centers", ("margin", "scale")),
}
VARIANTS = [
    ("ProxyAnchorLoss", {}),
    ("ProxyAnchorLoss", {"margin": 0.3, "alpha": 8.0}),
    ("CosFaceLoss", {}),
    ("CosFaceLoss", {"margin": 0.1, "scale": 10.0}),
]


def _hyperparameters(loss):
    config = loss.get_config()
    return {key: config[key] for key in LOSSES[type(loss).__name__][4]}


def _random_batch(rng, batch=7, dim=5, num_classes=4):
    labels = rng.integers(0, num_classes, size=batch).astype(np.int32)
    return labels, rng.normal(size=(batch, dim)), rng.normal(size=(num_classes, dim))


# ---------------------------------------------------------------- values


@pytest.mark.parametrize("name, kwargs", VARIANTS)
def test_function_matches_reference_on_random_batches(name, kwargs, rng):
    _, function, reference, _, _ = LOSSES[name]
    for _ in range(3):
        labels, x, w = _random_batch(rng)
        value = function(tf.constant(labels), tf.constant(x), tf.constant(w), **kwargs)
        np.testing.assert_allclose(value.numpy(), reference(labels, x, w, **kwargs), rtol=1e-10, atol=1e-10)


@pytest.mark.reference("ProxyAnchorLoss", "CosFaceLoss")
@pytest.mark.parametrize("name, kwargs", VARIANTS)
def test_loss_object_uses_its_variables_in_float32(name, kwargs, rng):
    loss_class, _, reference, vectors_name, _ = LOSSES[name]
    loss = loss_class(num_classes=4, embedding_dim=5, seed=3, **kwargs)
    labels, x, _ = _random_batch(rng)
    class_vectors = getattr(loss, vectors_name)
    assert class_vectors.dtype == "float32" and loss.trainable_variables == [class_vectors]
    value = loss.compute(tf.constant(labels), tf.constant(x, tf.float32))
    expected = reference(labels, x.astype(np.float32), class_vectors.numpy(), **_hyperparameters(loss))
    assert value.dtype == tf.float32
    np.testing.assert_allclose(value.numpy(), expected, rtol=2e-5, atol=2e-5)


def test_proxy_anchor_hand_built():
    # Two samples on their own orthogonal proxies, a third proxy without samples: every s(x, p) is 1 or 0.
    proxies, x = tf.constant(np.eye(3)), tf.constant([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0]], tf.float64)
    value = proxy_anchor_loss(tf.constant([0, 1]), x, proxies, margin=0.1, alpha=32.0)
    positive = math.log1p(math.exp(-32.0 * 0.9))  # each of the two positive proxies
    negative = (2 * math.log1p(math.exp(32.0 * 0.1)) + math.log1p(2 * math.exp(32.0 * 0.1))) / 3
    np.testing.assert_allclose(value.numpy(), positive + negative, rtol=1e-12)


def test_cosface_hand_built():
    # On its own centre, orthogonal to two others: logits (s(1 − m), 0, 0).
    embedding, centers = tf.constant([[1.0, 0.0, 0.0]], tf.float64), tf.constant(np.eye(3))
    value = cosface_loss(tf.constant([0]), embedding, centers, margin=0.35, scale=4.0)
    np.testing.assert_allclose(value.numpy(), math.log1p(2.0 * math.exp(-4.0 * 0.65)), rtol=1e-10)


def test_cosface_without_margin_is_the_scaled_normalised_softmax(rng):
    labels, x, w = _random_batch(rng)
    logits = 3.0 * tf.matmul(tf.math.l2_normalize(x, axis=1), tf.math.l2_normalize(w, axis=1), transpose_b=True)
    expected = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
    value = cosface_loss(tf.constant(labels), tf.constant(x), tf.constant(w), margin=0.0, scale=3.0)
    np.testing.assert_allclose(value.numpy(), expected.numpy(), rtol=1e-12)


# ---------------------------------------------------------------- gradients in float64


@pytest.mark.parametrize("name, kwargs", VARIANTS)
def test_gradients_match_finite_differences(name, kwargs, rng):
    _, function, _, _, _ = LOSSES[name]
    labels, x, w = _random_batch(rng, batch=6)
    theoretical, numerical = tf.test.compute_gradient(
        lambda e, c: function(tf.constant(labels), e, c, **kwargs), [tf.constant(x), tf.constant(w)], delta=1e-6
    )
    for analytic, finite_difference in zip(theoretical, numerical):
        np.testing.assert_allclose(analytic, finite_difference, rtol=1e-5, atol=1e-6)
        assert np.abs(analytic).max() > 1e-6


# ---------------------------------------------------------------- parity with pytorch-metric-learning


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_value_and_gradient_match_pml(name):
    _, function, _, vectors_name, _ = LOSSES[name]
    for case in pml_parity.cases(name):
        value, gradient = pml_parity.value_and_gradient(function, case, tf.constant(case["inputs"][vectors_name]))
        np.testing.assert_allclose(value, case["loss"], rtol=1e-5, atol=1e-5, err_msg=case["id"])
        np.testing.assert_allclose(gradient, case["grad"], rtol=1e-5, atol=1e-5, err_msg=case["id"])


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_object_matches_pml_with_pml_class_vectors(name):
    # The class in float32 with PML's initial class vectors assigned, on the first random batch.
    loss_class, _, _, vectors_name, _ = LOSSES[name]
    case = pml_parity.cases(name)[0]
    inputs = case["inputs"]
    num_classes, dim = inputs[vectors_name].shape
    loss = loss_class(num_classes=num_classes, embedding_dim=dim, **case["params"])
    getattr(loss, vectors_name).assign(inputs[vectors_name])
    value = loss.value(tf.constant(inputs["labels"]), tf.constant(inputs["embeddings"], tf.float32))
    np.testing.assert_allclose(value.numpy(), case["loss"], rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- defaults and arguments


def test_paper_defaults():
    proxy_anchor = ProxyAnchorLoss(3, 4).get_config()
    assert (proxy_anchor["alpha"], proxy_anchor["margin"], proxy_anchor["learning_rate"]) == (32.0, 0.1, 1e-2)
    cosface = CosFaceLoss(3, 4).get_config()
    assert (cosface["scale"], cosface["margin"], cosface["learning_rate"]) == (64.0, 0.35, 5e-4)


@pytest.mark.parametrize(
    "make",
    [
        lambda: ProxyAnchorLoss(4, 3, alpha=0.0),
        lambda: ProxyAnchorLoss(4, 3, margin=-0.1),
        lambda: CosFaceLoss(4, 3, scale=-1.0),
        lambda: CosFaceLoss(4, 3, margin=float("nan")),
    ],
)
def test_bad_hyperparameters_are_rejected(make):
    with pytest.raises(ValueError, match=r"(alpha|margin|scale) must be"):
        make()
