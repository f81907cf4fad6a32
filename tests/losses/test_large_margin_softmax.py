"""L-Softmax and SphereFace (A-Softmax) against NumPy references written from the papers, float64 gradients,
and pytorch-metric-learning's values (tests/fixtures/pml).

The registry-walking tests (tests/test_registry.py, the per-class-vector tests of test_proxy_losses.py)
cover serialization, degenerate batches, float16, label checks and training under XLA.
"""

import math

import numpy as np
import pytest
import tensorflow as tf

import pml_parity
from tfdml.losses import LargeMarginSoftmaxLoss, SphereFaceLoss, large_margin_softmax_loss, sphereface_loss
from tfdml.losses.large_margin_softmax import large_margin_target_cosine

# ---------------------------------------------------------------- slow NumPy references, one loop per sum


def reference_psi(theta, margin):
    """Liu et al. 2016, eq. 6: ψ(θ) = (−1)^k cos(mθ) − 2k for θ ∈ [kπ/m, (k+1)π/m], cos(mθ) taken directly."""
    k = min(math.floor(theta * margin / math.pi), margin - 1)
    return (-1) ** k * math.cos(margin * theta) - 2 * k


def reference_large_margin(labels, x, weights, margin=4, scale=1.0, normalize_weights=False):
    """Liu et al. 2016 (L-Softmax), and 2017 (A-Softmax: ‖W_c‖ = 1): softmax cross-entropy of the logits
    s‖W_c‖‖x_i‖cos θ_i,c, the target's with ψ(θ_i,y_i) in place of cos θ_i,y_i."""
    total = 0.0
    for i, y in enumerate(labels):
        logits = []
        for c, w in enumerate(weights):
            w_norm = 1.0 if normalize_weights else float(np.linalg.norm(w))
            x_norm = float(np.linalg.norm(x[i]))
            cosine = float(x[i] @ w) / (x_norm * float(np.linalg.norm(w)))
            if c == y:
                cosine = reference_psi(math.acos(min(max(cosine, -1.0), 1.0)), margin)
            logits.append(scale * w_norm * x_norm * cosine)
        top = max(logits)
        total += top + math.log(sum(math.exp(z - top) for z in logits)) - logits[y]
    return total / len(labels)


def reference_sphereface(labels, x, weights, margin=4, scale=1.0):
    return reference_large_margin(labels, x, weights, margin, scale, normalize_weights=True)


LOSSES = {
    "LargeMarginSoftmaxLoss": (LargeMarginSoftmaxLoss, large_margin_softmax_loss, reference_large_margin),
    "SphereFaceLoss": (SphereFaceLoss, sphereface_loss, reference_sphereface),
}
VARIANTS = [
    ("LargeMarginSoftmaxLoss", {}),
    ("LargeMarginSoftmaxLoss", {"margin": 3, "scale": 2.0}),
    ("SphereFaceLoss", {}),
    ("SphereFaceLoss", {"margin": 2, "scale": 0.5}),
]


def _random_batch(rng, batch=7, dim=5, num_classes=4):
    labels = rng.integers(0, num_classes, size=batch).astype(np.int32)
    return labels, rng.normal(size=(batch, dim)), rng.normal(size=(num_classes, dim))


# ---------------------------------------------------------------- values


@pytest.mark.parametrize("name, kwargs", VARIANTS)
def test_function_matches_reference_on_random_batches(name, kwargs, rng):
    _, function, reference = LOSSES[name]
    for _ in range(3):
        labels, x, w = _random_batch(rng)
        value = function(tf.constant(labels), tf.constant(x), tf.constant(w), **kwargs)
        np.testing.assert_allclose(value.numpy(), reference(labels, x, w, **kwargs), rtol=1e-10, atol=1e-10)


@pytest.mark.reference("LargeMarginSoftmaxLoss", "SphereFaceLoss")
@pytest.mark.parametrize("name, kwargs", VARIANTS[::2])
def test_loss_object_uses_its_variables_in_float32(name, kwargs, rng):
    loss_class, _, reference = LOSSES[name]
    loss = loss_class(num_classes=4, embedding_dim=5, seed=3, **kwargs)
    labels, x, _ = _random_batch(rng)
    assert loss.centers.dtype == "float32" and loss.trainable_variables == [loss.centers]
    value = loss.compute(tf.constant(labels), tf.constant(x, tf.float32))
    expected = reference(labels, x.astype(np.float32), loss.centers.numpy(), margin=loss.margin, scale=loss.scale)
    assert value.dtype == tf.float32
    np.testing.assert_allclose(value.numpy(), expected, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("margin", [1, 2, 3, 4, 5])
def test_target_cosine_is_psi_continuous_and_decreasing(margin):
    theta = np.linspace(0.0, math.pi, 721)
    psi = large_margin_target_cosine(tf.constant(np.cos(theta)), margin).numpy()
    np.testing.assert_allclose(psi, [reference_psi(t, margin) for t in theta], atol=1e-9)
    assert psi[0] == pytest.approx(1.0) and psi[-1] == pytest.approx(1.0 - 2.0 * margin)
    assert np.all(np.diff(psi) < 0.0)


def test_margin_one_is_the_plain_softmax(rng):
    # ψ(θ) = cos θ for m = 1: L-Softmax is the softmax cross-entropy of the logits W·x (SphereFace: Ŵ·x).
    labels, x, w = _random_batch(rng)
    for function, weights in ((large_margin_softmax_loss, w), (sphereface_loss, w / np.linalg.norm(w, axis=1, keepdims=True))):
        expected = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, x @ weights.T))
        value = function(tf.constant(labels), tf.constant(x), tf.constant(w), margin=1, scale=1.0)
        np.testing.assert_allclose(value.numpy(), expected.numpy(), rtol=1e-12)


def test_sphereface_ignores_the_weight_norms_and_l_softmax_does_not(rng):
    labels, x, w = _random_batch(rng)
    rescaled = w * rng.uniform(0.5, 3.0, size=(len(w), 1))
    sphere = [sphereface_loss(tf.constant(labels), tf.constant(x), tf.constant(v)).numpy() for v in (w, rescaled)]
    large = [large_margin_softmax_loss(tf.constant(labels), tf.constant(x), tf.constant(v)).numpy() for v in (w, rescaled)]
    np.testing.assert_allclose(sphere[0], sphere[1], rtol=1e-12)
    assert abs(large[0] - large[1]) > 1e-3


# ---------------------------------------------------------------- gradients in float64


@pytest.mark.parametrize("name, kwargs", VARIANTS)
def test_gradients_match_finite_differences_of_the_reference(name, kwargs, rng):
    # Directional derivatives along random directions of (embeddings, weights), central differences in float64.
    _, function, reference = LOSSES[name]
    labels, x, w = _random_batch(rng, batch=6)
    inputs = [tf.constant(x), tf.constant(w)]
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        value = function(tf.constant(labels), *inputs, **kwargs)
    gradients = [g.numpy() for g in tape.gradient(value, inputs)]
    assert all(np.abs(g).max() > 1e-6 for g in gradients)
    delta = 1e-6
    for _ in range(3):
        dx, dw = rng.normal(size=x.shape), rng.normal(size=w.shape)
        plus = reference(labels, x + delta * dx, w + delta * dw, **kwargs)
        minus = reference(labels, x - delta * dx, w - delta * dw, **kwargs)
        analytic = np.sum(gradients[0] * dx) + np.sum(gradients[1] * dw)
        np.testing.assert_allclose(analytic, (plus - minus) / (2 * delta), rtol=1e-6, atol=1e-7)


def test_zero_embedding_has_finite_gradients():
    x = tf.constant([[0.0, 0.0, 0.0], [1.0, 2.0, 0.5]], tf.float64)
    for function in (large_margin_softmax_loss, sphereface_loss):
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = function(tf.constant([0, 1]), x, tf.constant(np.eye(3)[:2]))
        assert np.isfinite(value.numpy()) and np.all(np.isfinite(tape.gradient(value, x).numpy()))


# ---------------------------------------------------------------- parity with pytorch-metric-learning


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_value_and_gradient_match_pml(name):
    _, function, _ = LOSSES[name]
    for case in pml_parity.cases(name):
        value, gradient = pml_parity.value_and_gradient(function, case, tf.constant(case["inputs"]["centers"]))
        np.testing.assert_allclose(value, case["loss"], rtol=1e-5, atol=1e-5, err_msg=case["id"])
        np.testing.assert_allclose(gradient, case["grad"], rtol=1e-5, atol=1e-5, err_msg=case["id"])


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_object_matches_pml_with_pml_class_vectors(name):
    # The class in float32 with PML's initial class weights assigned, on the first random batch.
    loss_class, _, _ = LOSSES[name]
    case = pml_parity.cases(name)[0]
    inputs = case["inputs"]
    num_classes, dim = inputs["centers"].shape
    loss = loss_class(num_classes=num_classes, embedding_dim=dim, **case["params"])
    loss.centers.assign(inputs["centers"])
    value = loss.value(tf.constant(inputs["labels"]), tf.constant(inputs["embeddings"], tf.float32))
    np.testing.assert_allclose(value.numpy(), case["loss"], rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- defaults and arguments


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_defaults(name):
    config = LOSSES[name][0](3, 4).get_config()
    assert (config["margin"], config["scale"], config["learning_rate"]) == (4, 1.0, 5e-4)


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("bad", [{"margin": 0}, {"margin": 2.5}, {"scale": 0.0}, {"scale": float("nan")}])
def test_bad_hyperparameters_are_rejected(name, bad):
    with pytest.raises(ValueError, match=rf"{name}: (margin|scale) must be"):
        LOSSES[name][0](4, 3, **bad)
