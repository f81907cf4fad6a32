"""Smooth-AP and the original lifted structure loss against slow NumPy references written from their papers,
float64 gradients, and pytorch-metric-learning's values and gradients (tests/fixtures/pml)."""

import math

import numpy as np
import pytest
import tensorflow as tf

import pml_parity
from finite_differences import central_differences, tape_gradient
from tfdml.losses import LiftedStructureLoss, SmoothAPLoss, lifted_structure_loss, smooth_ap_loss

# ---------------------------------------------------------------- slow NumPy references, one loop per sum


def sigmoid(x):
    return 0.5 * (1.0 + math.tanh(0.5 * x))


def reference_smooth_ap(x, labels, temperature=0.01):
    """Brown et al.'s smoothed AP per query, averaged as 1 − mean AP; the query is in its own retrieval and
    positive sets (the authors' code)."""
    x = np.asarray(x, np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    s = x @ x.T
    b = len(labels)
    total = 0.0
    for q in range(b):
        positives = [i for i in range(b) if labels[i] == labels[q]]
        precision = 0.0
        for i in positives:
            above_positive = sum(sigmoid((s[q, j] - s[q, i]) / temperature) for j in positives if j != i)
            above_all = sum(sigmoid((s[q, j] - s[q, i]) / temperature) for j in range(b) if j != i)
            precision += (1.0 + above_positive) / (1.0 + above_all)
        total += 1.0 - precision / len(positives)
    return total / b


def reference_lifted(x, labels, margin=1.0):
    """Oh Song et al. Eq. 4: 1/(2|P|) Σ over unordered positive pairs of the squared hinge of J̃_ij."""
    x = np.asarray(x, np.float64)
    b = len(labels)
    d = np.array([[np.linalg.norm(x[i] - x[j]) for j in range(b)] for i in range(b)])
    pairs = [(i, j) for i in range(b) for j in range(i + 1, b) if labels[i] == labels[j]]
    total = 0.0
    for i, j in pairs:
        negatives = [math.exp(margin - d[i, k]) for k in range(b) if labels[k] != labels[i]]
        negatives += [math.exp(margin - d[j, k]) for k in range(b) if labels[k] != labels[j]]
        if negatives:
            total += max(math.log(sum(negatives)) + d[i, j], 0.0) ** 2
    return total / (2 * len(pairs)) if pairs else 0.0


LOSSES = {
    "SmoothAPLoss": (SmoothAPLoss, smooth_ap_loss, reference_smooth_ap),
    "LiftedStructureLoss": (LiftedStructureLoss, lifted_structure_loss, reference_lifted),
}
PARAMS = {
    "SmoothAPLoss": [{}, {"temperature": 0.1}, {"temperature": 1.0}],
    "LiftedStructureLoss": [{}, {"margin": 0.5}, {"margin": 3.0}],
}


def batch(rng, dim=6):
    """Unnormalised embeddings of uneven, unsorted classes and a singleton (tfdml takes any batch)."""
    labels = np.array([2, 0, 0, 1, 2, 1, 0, 2, 2, 3])
    return rng.normal(size=(len(labels), dim)), labels


@pytest.mark.reference("SmoothAPLoss", "LiftedStructureLoss")
@pytest.mark.parametrize("name,params", [(name, params) for name in sorted(PARAMS) for params in PARAMS[name]])
def test_function_and_class_match_reference(name, params, rng):
    loss_class, function, reference = LOSSES[name]
    x, labels = batch(rng)
    expected = reference(x, labels, **params)
    assert expected > 0.0
    value = function(tf.constant(labels), tf.constant(x), **params)
    np.testing.assert_allclose(value, expected, rtol=1e-10)
    as_class = loss_class(**params)(tf.constant(labels[:, None]), tf.constant(x, tf.float16))
    np.testing.assert_allclose(as_class.numpy(), reference(x.astype(np.float16), labels, **params), rtol=2e-4)


@pytest.mark.parametrize(
    "name,params",
    [("SmoothAPLoss", {"temperature": 0.01}), ("SmoothAPLoss", {"temperature": 0.5}), ("LiftedStructureLoss", {})],
)
def test_float64_gradients_match_finite_differences_of_the_reference(name, params, rng):
    # Central differences of the paper's formula: τ = 0.01 is too sharp for tf.test.compute_gradient's step.
    _, function, reference = LOSSES[name]
    x, labels = batch(rng, dim=3)
    gradient = tape_gradient(lambda e: function(tf.constant(labels), e, **params), x)
    numerical = central_differences(lambda e: reference(e, labels, **params), x)
    np.testing.assert_allclose(gradient, numerical, rtol=1e-5, atol=1e-7)
    assert np.abs(gradient).max() > 1e-3


# ---------------------------------------------------------------- pytorch-metric-learning


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_value_and_gradient_match_pml(name):
    _, function, reference = LOSSES[name]
    for case in pml_parity.cases(name):
        inputs = case["inputs"]
        value, gradient = pml_parity.value_and_gradient(function, case)
        if "pml_differs" in case:
            # Smooth-AP on batches PML cuts into blocks that are not its classes: tfdml reads the labels.
            expected = reference(inputs["embeddings"], inputs["labels"], **case["params"])
            np.testing.assert_allclose(value, expected, rtol=1e-10, atol=1e-14, err_msg=case["id"])
            assert np.all(np.isfinite(gradient))
            continue
        np.testing.assert_allclose(value, case["loss"], rtol=1e-5, atol=1e-5, err_msg=case["id"])
        np.testing.assert_allclose(gradient, case["grad"], rtol=1e-5, atol=1e-5, err_msg=case["id"])


def test_pml_cases_cover_random_and_degenerate_batches():
    lifted = {case["id"] for case in pml_parity.cases("LiftedStructureLoss")}
    assert {"b32_d8", "b32_d64", "b16_singletons", "one_class", "no_positives", "identical", "two_samples"} <= lifted
    smooth = {case["id"]: case for case in pml_parity.cases("SmoothAPLoss")}
    agreeing = {"b16_d8", "b16_d64", "b36_d8", "identical_2x2", "one_sample"}
    assert {key for key, case in smooth.items() if "pml_differs" not in case and "_t" not in key} == agreeing
    # Where PML's blocks are not the classes its value is another: the cases do tell the conventions apart.
    assert not np.isclose(smooth["identical"]["loss"], 2.0 / 3.0)
    assert not any("pml_differs" in case for case in pml_parity.cases("LiftedStructureLoss"))


# ---------------------------------------------------------------- conventions, defaults and arguments


def test_conventions_on_small_batches():
    # Identical embeddings: every G = 1/2; in 4 classes of 2, N = 1.5 and D = 4.5 for every item, AP = 1/3.
    same = tf.ones((8, 3), tf.float64)
    np.testing.assert_allclose(smooth_ap_loss(tf.constant([0, 0, 1, 1, 2, 2, 3, 3]), same).numpy(), 2.0 / 3.0)
    # One class: every item is a positive, AP = 1.
    x = tf.constant(np.random.default_rng(0).normal(size=(5, 3)))
    assert smooth_ap_loss(tf.zeros(5, tf.int64), x).numpy() == 0.0
    # Lifted structure: no positive pair, or no negative at all, gives 0.
    assert lifted_structure_loss(tf.range(5), x).numpy() == 0.0
    assert lifted_structure_loss(tf.zeros(5, tf.int64), x).numpy() == 0.0
    # Identical embeddings: D = 0, J̃_ij = log(2 · 2 exp(α)) for each of the 4 pairs.
    np.testing.assert_allclose(
        lifted_structure_loss(tf.constant([0, 0, 1, 1, 2, 2, 3, 3]), same, margin=1.0).numpy(),
        (1.0 + math.log(12.0)) ** 2 / 2.0,
    )


def test_paper_defaults():
    assert SmoothAPLoss().temperature == 0.01
    assert LiftedStructureLoss().margin == 1.0


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: SmoothAPLoss(temperature=0.0), "SmoothAPLoss: temperature"),
        (lambda: SmoothAPLoss(temperature=float("nan")), "SmoothAPLoss: temperature"),
        (lambda: LiftedStructureLoss(margin=-1.0), "LiftedStructureLoss: margin"),
    ],
)
def test_bad_hyperparameters_are_refused_by_name(make, match):
    with pytest.raises(ValueError, match=match):
        make()
