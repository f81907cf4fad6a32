"""Circle, SupCon and NT-Xent losses against slow NumPy references written from their papers, float64
gradients, and pytorch-metric-learning's values and gradients (tests/fixtures/pml)."""

import math

import numpy as np
import pytest
import tensorflow as tf

import pml_parity
from finite_differences import central_differences, tape_gradient
from tests.test_distances import reference_comparison
from tfdml.distances import DISTANCES, SIMILARITIES
from tfdml.losses import CircleLoss, NTXentLoss, SupConLoss, circle_loss, ntxent_loss, supcon_loss

# ---------------------------------------------------------------- slow NumPy references, one loop per sum


def cosine(x):
    x = np.asarray(x, np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    return x @ x.T


def similarity(x, distance):
    """The similarity ``distance`` gives, or the negated distance (as PML)."""
    if distance == "cosine":
        return cosine(x)
    matrix, sign = reference_comparison(x, distance)
    return -sign * matrix


def logsumexp(values):
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def reference_circle(x, labels, margin=0.4, scale=80.0, weights_at=None, distance="cosine"):
    """Sun et al. Eq. 6 per anchor with Eq. 5's weights and Eq. 8's O_p = 1 + m, O_n = −m, Δ_p = 1 − m,
    Δ_n = m, averaged over all anchors. The weights α come from the similarities of ``weights_at``
    (default ``x``): fixed there, the finite differences of this function check the gradient."""
    s = similarity(x, distance)
    fixed = s if weights_at is None else similarity(weights_at, distance)
    total = 0.0
    for i in range(len(labels)):
        positive, negative = [], []
        for j in range(len(labels)):
            if j == i:
                continue
            if labels[j] == labels[i]:
                alpha = max(1.0 + margin - fixed[i, j], 0.0)
                positive.append(-scale * alpha * (s[i, j] - (1.0 - margin)))
            else:
                alpha = max(fixed[i, j] + margin, 0.0)
                negative.append(scale * alpha * (s[i, j] - margin))
        if positive and negative:
            # log(1 + Σ_n exp(·) Σ_p exp(·)), as log-sum-exps: γ = 256 overflows exp.
            total += np.logaddexp(0.0, logsumexp(negative) + logsumexp(positive))
    return total / len(labels)


def reference_supcon(x, labels, temperature=0.1, distance="cosine"):
    """Khosla et al. Eq. 2 (L^sup_out) per anchor, averaged over the anchors with a positive."""
    s = similarity(x, distance) / temperature
    terms = []
    for i in range(len(labels)):
        others = [a for a in range(len(labels)) if a != i]
        positives = [p for p in others if labels[p] == labels[i]]
        if not positives:
            continue
        denominator = sum(math.exp(s[i, a]) for a in others)
        terms.append(-sum(math.log(math.exp(s[i, p]) / denominator) for p in positives) / len(positives))
    return sum(terms) / len(terms) if terms else 0.0


def reference_ntxent(x, labels, temperature=0.07, distance="cosine"):
    """SimCLR's Eq. 1 with labels: each ordered positive pair against the anchor's negatives, averaged over pairs."""
    s = similarity(x, distance) / temperature
    terms = []
    for i in range(len(labels)):
        for j in range(len(labels)):
            if j == i or labels[j] != labels[i]:
                continue
            negatives = sum(math.exp(s[i, k]) for k in range(len(labels)) if labels[k] != labels[i])
            terms.append(-math.log(math.exp(s[i, j]) / (math.exp(s[i, j]) + negatives)))
    return sum(terms) / len(terms) if terms else 0.0


LOSSES = {
    "CircleLoss": (CircleLoss, circle_loss, reference_circle),
    "SupConLoss": (SupConLoss, supcon_loss, reference_supcon),
    "NTXentLoss": (NTXentLoss, ntxent_loss, reference_ntxent),
}
PARAMS = {
    "CircleLoss": [{}, {"margin": 0.25, "scale": 256.0}, {"margin": 0.1, "scale": 16.0}],
    "SupConLoss": [{}, {"temperature": 0.07}, {"temperature": 1.0}],
    "NTXentLoss": [{}, {"temperature": 0.2}, {"temperature": 1.0}],
}


def batch(rng, dim=6):
    """Unnormalised embeddings (the losses normalise) of three classes and a singleton (an anchor without positives)."""
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3])
    return 3.0 * rng.normal(size=(len(labels), dim)), labels


@pytest.mark.reference("CircleLoss", "SupConLoss", "NTXentLoss")
@pytest.mark.parametrize("name,params", [(name, params) for name in sorted(PARAMS) for params in PARAMS[name]])
def test_function_and_class_match_reference(name, params, rng):
    loss_class, function, reference = LOSSES[name]
    x, labels = batch(rng)
    expected = reference(x, labels, **params)
    assert expected > 0.0
    value = function(tf.constant(labels), tf.constant(x), **params)
    np.testing.assert_allclose(value, expected, rtol=1e-10)
    as_class = loss_class(**params)(tf.constant(labels), tf.constant(x, tf.float32))
    np.testing.assert_allclose(as_class.numpy(), expected, rtol=2e-5)


@pytest.mark.reference("CircleLoss", "SupConLoss", "NTXentLoss")
@pytest.mark.parametrize(
    "name,distance",
    [("CircleLoss", distance) for distance in SIMILARITIES]
    + [(name, distance) for name in ("NTXentLoss", "SupConLoss") for distance in DISTANCES],
)
def test_each_distance_matches_the_reference(name, distance, rng):
    loss_class, function, reference = LOSSES[name]
    x, labels = batch(rng)
    x = 0.4 * x  # "dot" differs from "cosine"; every logit stays within exp's range
    params = {"CircleLoss": {"margin": 0.25, "scale": 16.0}}.get(name, {"temperature": 0.5})
    expected = reference(x, labels, **params, distance=distance)
    assert expected > 0.0
    value = function(tf.constant(labels), tf.constant(x), **params, distance=distance)
    np.testing.assert_allclose(value, expected, rtol=1e-10)
    as_class = loss_class(**params, distance=distance)(tf.constant(labels), tf.constant(x, tf.float32))
    np.testing.assert_allclose(as_class.numpy(), expected, rtol=2e-5)


def test_circle_gradient_matches_finite_differences_with_the_weights_held(rng):
    # Sun et al. treat α_p, α_n as weights: the gradient is that of Eq. 6 with α fixed at the point.
    x, labels = batch(rng, dim=4)
    gradient = tape_gradient(lambda e: circle_loss(tf.constant(labels), e, margin=0.25, scale=8.0), x)
    numerical = central_differences(lambda e: reference_circle(e, labels, 0.25, 8.0, x), x)
    np.testing.assert_allclose(gradient, numerical, rtol=1e-5, atol=1e-7)
    assert np.abs(gradient).max() > 0.0


@pytest.mark.parametrize("function", [supcon_loss, ntxent_loss], ids=["supcon", "ntxent"])
def test_float64_gradients_match_finite_differences(function, rng):
    x, labels = batch(rng, dim=4)
    theoretical, numerical = tf.test.compute_gradient(
        lambda e: function(tf.constant(labels), e, temperature=0.2), [tf.constant(x)]
    )
    np.testing.assert_allclose(theoretical[0], numerical[0], rtol=1e-5, atol=1e-7)
    assert np.abs(theoretical[0]).max() > 0.0


# ---------------------------------------------------------------- pytorch-metric-learning


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_value_and_gradient_match_pml(name):
    _, function, reference = LOSSES[name]
    for case in pml_parity.cases(name):
        inputs = case["inputs"]
        value, gradient = pml_parity.value_and_gradient(function, case)
        if "pml_differs" in case:
            # SupCon on a one-class batch: PML returns 0, tfdml Eq. 2 (documented).
            assert case["loss"] == 0.0 and value > 0.0, case["id"]
            expected = reference(inputs["embeddings"], inputs["labels"], **case["params"])
            np.testing.assert_allclose(value, expected, rtol=1e-10, err_msg=case["id"])
            assert np.all(np.isfinite(gradient))
            continue
        np.testing.assert_allclose(value, case["loss"], rtol=1e-5, atol=1e-5, err_msg=case["id"])
        np.testing.assert_allclose(gradient, case["grad"], rtol=1e-5, atol=1e-5, err_msg=case["id"])


def test_pml_cases_cover_random_and_degenerate_batches():
    for name in LOSSES:
        ids = {case["id"] for case in pml_parity.cases(name)}
        expected = {"b32_d8", "b32_d64", "b16_singletons", "one_class", "no_positives", "identical", "two_samples"}
        assert expected <= ids, name
        if name != "CircleLoss":  # PML's CircleLoss takes only CosineSimilarity
            assert {f"{batch}_{distance}" for batch in expected for distance in ("euclidean", "dot")} <= ids, name
    differing = [case["id"] for name in LOSSES for case in pml_parity.cases(name) if "pml_differs" in case]
    suffixes = ("", "_t007", "_euclidean", "_dot")
    assert sorted(differing) == sorted(f"one_class{suffix}" for suffix in suffixes)


# ---------------------------------------------------------------- conventions, defaults and arguments


def test_conventions_on_small_batches():
    x = tf.constant([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], tf.float64)
    # Identical embeddings: every similarity is 1, so every softmax is uniform over its candidates.
    same = tf.ones((4, 3), tf.float64)
    labels = tf.constant([0, 0, 1, 1])
    np.testing.assert_allclose(supcon_loss(labels, same).numpy(), math.log(3.0))
    np.testing.assert_allclose(ntxent_loss(labels, same).numpy(), math.log(3.0))
    # No positive pair: every loss is 0.
    for function in (circle_loss, supcon_loss, ntxent_loss):
        assert function(tf.constant([0, 1, 2]), x).numpy() == 0.0
    # Circle averages over all anchors: the singleton anchor 2 adds 0 to a mean over 3.
    np.testing.assert_allclose(circle_loss(tf.constant([0, 0, 1]), x).numpy(), reference_circle(x.numpy(), [0, 0, 1]))
    assert reference_circle(x.numpy(), [0, 0, 1]) > 0.0


def test_paper_defaults():
    assert (CircleLoss().margin, CircleLoss().scale) == (0.4, 80.0)
    assert SupConLoss().temperature == 0.1
    assert NTXentLoss().temperature == 0.07
    assert CircleLoss().distance == SupConLoss().distance == NTXentLoss().distance == "cosine"


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: CircleLoss(scale=0.0), "CircleLoss: scale"),
        (lambda: CircleLoss(margin=float("nan")), "CircleLoss: margin"),
        (lambda: SupConLoss(temperature=0.0), "SupConLoss: temperature"),
        (lambda: NTXentLoss(temperature=-1.0), "NTXentLoss: temperature"),
        (lambda: CircleLoss(distance="euclidean"), r"CircleLoss: distance must be one of \('cosine', 'dot'\)"),
    ],
)
def test_bad_hyperparameters_are_refused_by_name(make, match):
    with pytest.raises(ValueError, match=match):
        make()
