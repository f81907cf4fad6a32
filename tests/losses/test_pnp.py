"""PNP against a slow NumPy reference written from its paper, float64 gradients, and pytorch-metric-learning's
values and gradients (tests/fixtures/pml)."""

import math

import numpy as np
import pytest
import tensorflow as tf

import pml_parity
from finite_differences import central_differences, tape_gradient
from tfdml.losses import PNPLoss, pnp_loss

# ---------------------------------------------------------------- slow NumPy reference, one loop per sum


def sigmoid(x):
    return 0.5 * (1.0 + math.tanh(0.5 * x))


PENALTIES = {
    "O": lambda r, b, alpha: r,
    "Ds": lambda r, b, alpha: math.log(1.0 + r),
    "Dq": lambda r, b, alpha: (1.0 + r) ** -alpha,
    "Iu": lambda r, b, alpha: (1.0 + r) * math.log(1.0 + r),
    "Ib": lambda r, b, alpha: (b * r - math.log(1.0 + b * r)) / b**2,
}


def reference_pnp(x, labels, b=2.0, alpha=1.0, anneal=0.01, variant="O"):
    """Li et al.'s PNP per query with a positive: the mean over its positives (itself included) of f(R), R the
    sigmoid-smoothed number of negatives ranked before the positive; PNP-D_q is 1 − that mean."""
    x = np.asarray(x, np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    s = x @ x.T
    n = len(labels)
    terms = []
    for q in range(n):
        positives = [i for i in range(n) if labels[i] == labels[q]]
        if len(positives) < 2:
            continue
        negatives = [j for j in range(n) if labels[j] != labels[q]]
        mean = 0.0
        for i in positives:
            rank = sum(sigmoid((s[q, j] - s[q, i]) / anneal) for j in negatives)
            mean += PENALTIES[variant](rank, b, alpha) / len(positives)
        terms.append(1.0 - mean if variant == "Dq" else mean)
    return sum(terms) / len(terms) if terms else 0.0


PARAMS = [
    {},
    {"variant": "Ds"},
    {"variant": "Dq", "alpha": 2.0},
    {"variant": "Iu", "anneal": 0.1},
    {"variant": "Ib", "b": 3.0},
]


def batch(rng, dim=6):
    """Unnormalised embeddings of uneven, unsorted classes and a singleton (a query without positives)."""
    labels = np.array([2, 0, 0, 1, 2, 1, 0, 2, 2, 3])
    return rng.normal(size=(len(labels), dim)), labels


@pytest.mark.reference("PNPLoss")
@pytest.mark.parametrize("params", PARAMS, ids=lambda params: params.get("variant", "O"))
def test_function_and_class_match_reference(params, rng):
    x, labels = batch(rng)
    expected = reference_pnp(x, labels, **params)
    assert expected > 0.0
    np.testing.assert_allclose(pnp_loss(tf.constant(labels), tf.constant(x), **params), expected, rtol=1e-10)


@pytest.mark.reference("PNPLoss")
def test_class_takes_float16_embeddings_and_labels_b1(rng):
    x, labels = batch(rng)
    as_class = PNPLoss(variant="Dq")(tf.constant(labels[:, None]), tf.constant(x, tf.float16))
    np.testing.assert_allclose(as_class.numpy(), reference_pnp(x.astype(np.float16), labels, variant="Dq"), rtol=2e-4)


@pytest.mark.parametrize("params", [{"variant": "Dq"}, {"variant": "Iu", "anneal": 0.1}], ids=["Dq", "Iu"])
def test_float64_gradients_match_finite_differences_of_the_reference(params, rng):
    # Central differences of the paper's formula: τ = 0.01 is too sharp for tf.test.compute_gradient's step.
    x, labels = batch(rng, dim=3)
    gradient = tape_gradient(lambda e: pnp_loss(tf.constant(labels), e, **params), x)
    numerical = central_differences(lambda e: reference_pnp(e, labels, **params), x)
    np.testing.assert_allclose(gradient, numerical, rtol=1e-5, atol=1e-7)
    assert np.abs(gradient).max() > 1e-3


# ---------------------------------------------------------------- pytorch-metric-learning


def test_value_and_gradient_match_pml():
    cases = pml_parity.cases("PNPLoss")
    assert not any("pml_differs" in case for case in cases)
    for case in cases:
        value, gradient = pml_parity.value_and_gradient(pnp_loss, case)
        np.testing.assert_allclose(value, case["loss"], rtol=1e-5, atol=1e-5, err_msg=case["id"])
        np.testing.assert_allclose(gradient, case["grad"], rtol=1e-5, atol=1e-5, err_msg=case["id"])


def test_pml_cases_cover_random_and_degenerate_batches_and_every_variant():
    cases = {case["id"]: case for case in pml_parity.cases("PNPLoss")}
    expected = {"b32_d8", "b32_d64", "b16_singletons", "one_class", "no_positives", "identical", "two_samples"}
    assert expected <= set(cases)
    assert {case["params"].get("variant", "O") for case in cases.values()} == {"O", "Ds", "Dq", "Iu", "Ib"}
    assert cases["b32_d8"]["loss"] > 0.0 and np.abs(cases["b16_singletons_Dq"]["grad"]).max() > 0.0


# ---------------------------------------------------------------- conventions, defaults and arguments


def test_conventions_on_small_batches():
    # Identical embeddings: every G = 1/2; each query of 4 classes of 2 has 6 negatives, R = 3 for every positive.
    same = tf.ones((8, 3), tf.float64)
    labels = tf.constant([0, 0, 1, 1, 2, 2, 3, 3])
    np.testing.assert_allclose(pnp_loss(labels, same).numpy(), 3.0)
    np.testing.assert_allclose(pnp_loss(labels, same, variant="Dq").numpy(), 0.75)
    np.testing.assert_allclose(pnp_loss(labels, same, variant="Ds").numpy(), math.log(4.0))
    # One class (no negatives: R = 0) and no positive pair: 0, for PNP-D_q too.
    x = tf.constant(np.random.default_rng(0).normal(size=(5, 3)))
    for variant in ("O", "Dq"):
        assert pnp_loss(tf.zeros(5, tf.int64), x, variant=variant).numpy() == 0.0
        assert pnp_loss(tf.range(5), x, variant=variant).numpy() == 0.0


def test_pml_defaults():
    loss = PNPLoss()
    assert (loss.b, loss.alpha, loss.anneal, loss.variant) == (2.0, 1.0, 0.01, "O")


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: PNPLoss(anneal=0.0), "PNPLoss: anneal"),
        (lambda: PNPLoss(b=-1.0), "PNPLoss: b"),
        (lambda: PNPLoss(alpha=float("nan")), "PNPLoss: alpha"),
        (lambda: PNPLoss(variant="Dx"), "PNPLoss: variant"),
    ],
)
def test_bad_hyperparameters_are_refused_by_name(make, match):
    with pytest.raises(ValueError, match=match):
        make()
