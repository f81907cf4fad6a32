"""Ranked list and instance losses against slow NumPy references written from their papers, float64 gradients,
and pytorch-metric-learning's values and gradients (tests/fixtures/pml)."""

import math

import numpy as np
import pytest
import tensorflow as tf

import pml_parity
from finite_differences import central_differences, tape_gradient
from tfdml.losses import InstanceLoss, RankedListLoss, instance_loss, ranked_list_loss

# ---------------------------------------------------------------- slow NumPy references, one loop per sum


def normalized(x):
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def reference_ranked_list(
    x,
    labels,
    margin=0.4,
    alpha=1.2,
    negative_temperature=10.0,
    positive_temperature=0.0,
    balance=0.5,
    stabiliser=0.0,
):
    """Wang et al.: per query, the weighted means of L_m over the non-trivial positives (d > α − m) and
    negatives (d < α), balanced by λ, averaged over all queries. ``stabiliser`` > 0 adds it to each weight
    sum once per batch sample, as PML does (1e-5)."""
    x = normalized(x)
    b = len(labels)
    total = 0.0
    for i in range(b):
        positive, negative = [], []  # (weight, L_m) of each non-trivial pair
        for j in range(b):
            d = float(np.linalg.norm(x[i] - x[j]))
            if j != i and labels[j] == labels[i] and d > alpha - margin:
                gap = d - (alpha - margin)
                positive.append((math.exp(positive_temperature * gap), gap))
            elif labels[j] != labels[i] and d < alpha:
                gap = alpha - d
                negative.append((math.exp(negative_temperature * gap), gap))
        for weight_of_set, pairs in ((1.0 - balance, positive), (balance, negative)):
            if pairs:
                norm = sum(w for w, _ in pairs) + stabiliser * b
                total += weight_of_set * sum(w * gap for w, gap in pairs) / norm
    return total / b


def reference_instance(x, labels, scale=64.0):
    """Cross-entropy of each sample's softmax over the batch (γ-scaled cosines) with its class, self included."""
    x = normalized(x)
    total = 0.0
    for i in range(len(labels)):
        logits = [scale * float(x[i] @ x[k]) for k in range(len(labels))]
        top = max(logits)
        log_norm = top + math.log(sum(math.exp(v - top) for v in logits))
        same = [j for j in range(len(labels)) if labels[j] == labels[i]]
        total -= sum(logits[j] - log_norm for j in same) / len(same)
    return total / len(labels)


LOSSES = {
    "RankedListLoss": (RankedListLoss, ranked_list_loss, reference_ranked_list),
    "InstanceLoss": (InstanceLoss, instance_loss, reference_instance),
}
PARAMS = {
    "RankedListLoss": [
        {},
        {"margin": 0.2, "alpha": 1.3, "negative_temperature": 4.0, "positive_temperature": 2.0, "balance": 0.3},
    ],
    "InstanceLoss": [{}, {"scale": 8.0}],
}


def batch(rng, dim=6):
    """Unnormalised embeddings (the losses normalise) of three classes and a singleton (a query without positives)."""
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3])
    return 3.0 * rng.normal(size=(len(labels), dim)), labels


@pytest.mark.reference("RankedListLoss", "InstanceLoss")
@pytest.mark.parametrize("name,params", [(name, params) for name in sorted(PARAMS) for params in PARAMS[name]])
def test_function_and_class_match_reference(name, params, rng):
    loss_class, function, reference = LOSSES[name]
    x, labels = batch(rng)
    expected = reference(x, labels, **params)
    assert expected > 0.0
    np.testing.assert_allclose(function(tf.constant(labels), tf.constant(x), **params), expected, rtol=1e-10)
    as_class = loss_class(**params)(tf.constant(labels[:, None]), tf.constant(x, tf.float16))
    np.testing.assert_allclose(as_class.numpy(), reference(x.astype(np.float16), labels, **params), rtol=2e-4)


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_float64_gradients_match_finite_differences_of_the_reference(name, rng):
    _, function, reference = LOSSES[name]
    params = PARAMS[name][-1]
    x, labels = batch(rng, dim=3)
    gradient = tape_gradient(lambda e: function(tf.constant(labels), e, **params), x)
    numerical = central_differences(lambda e: reference(e, labels, **params), x)
    np.testing.assert_allclose(gradient, numerical, rtol=1e-5, atol=1e-8)
    assert np.abs(gradient).max() > 1e-3


# ---------------------------------------------------------------- pytorch-metric-learning


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_value_and_gradient_match_pml(name):
    _, function, reference = LOSSES[name]
    for case in pml_parity.cases(name):
        inputs = case["inputs"]
        embeddings, labels = inputs["embeddings"], inputs["labels"]
        value, gradient = pml_parity.value_and_gradient(function, case)
        if "pml_differs" in case:
            # Ranked list on identical embeddings (PML: 0) and instance loss with class labels (PML: one sample).
            assert abs(value - case["loss"]) > 1e-2, case["id"]
            np.testing.assert_allclose(value, reference(embeddings, labels, **case["params"]), rtol=1e-10)
            continue
        np.testing.assert_allclose(gradient, case["grad"], rtol=1e-5, atol=1e-5, err_msg=case["id"])
        if name == "RankedListLoss":
            # PML adds 1e-5 per sample to each weight sum: the reference with that stabiliser is PML's value,
            # without it tfdml's.
            np.testing.assert_allclose(
                reference(embeddings, labels, **case["params"], stabiliser=1e-5), case["loss"], rtol=1e-10, atol=1e-12
            )
            np.testing.assert_allclose(value, reference(embeddings, labels, **case["params"]), rtol=1e-10, atol=1e-12)
        else:
            np.testing.assert_allclose(value, case["loss"], rtol=1e-5, atol=1e-5, err_msg=case["id"])


def test_pml_cases_cover_random_and_degenerate_batches():
    degenerate = {"one_class", "no_positives", "identical", "two_samples"}
    ranked = {case["id"] for case in pml_parity.cases("RankedListLoss")}
    assert {"b32_d8", "b32_d64", "b16_singletons"} | degenerate <= ranked
    instances = {case["id"] for case in pml_parity.cases("InstanceLoss")}
    assert {"b32_d8", "b32_d64", "b16_arange", "b32_classes"} | degenerate <= instances
    differing = sorted(case["id"] for name in LOSSES for case in pml_parity.cases(name) if "pml_differs" in case)
    assert differing == ["b32_classes", "b32_classes_g8", "identical", "identical_tp2", "one_class", "one_class_g8"]


# ---------------------------------------------------------------- conventions, defaults and arguments


def test_conventions_on_small_batches():
    labels = tf.constant([0, 0, 1, 1])
    same = tf.ones((4, 3), tf.float64)
    # Identical embeddings: every negative sits at 0 < α (loss α), every positive inside α − m.
    np.testing.assert_allclose(ranked_list_loss(labels, same).numpy(), 0.5 * 1.2)
    np.testing.assert_allclose(ranked_list_loss(labels, same, balance=0.2).numpy(), 0.2 * 1.2)
    # ... and every softmax is uniform over the batch.
    np.testing.assert_allclose(instance_loss(labels, same).numpy(), math.log(4.0))
    # Orthogonal classes (d = √2 > α), each class one point: every pair beyond its boundary.
    apart = tf.constant([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], tf.float64)
    assert ranked_list_loss(labels, apart).numpy() == 0.0
    # Queries without positives add their negatives' term: each one's negatives within α = 1.2 lie at the
    # 45° distance d (the orthogonal pair, at √2, is beyond α).
    x = tf.constant([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], tf.float64)
    d = math.sqrt(2.0 - math.sqrt(2.0))
    np.testing.assert_allclose(ranked_list_loss(tf.constant([0, 1, 2]), x).numpy(), 0.5 * (1.2 - d))
    # Class 0's orthogonal pair lies beyond α − m = 0.8: its two queries add 0.5 (√2 − 0.8) each, and the
    # singleton query 2 only its negatives' term, to a mean over 3.
    expected = (2 * 0.5 * (math.sqrt(2.0) - 0.8) + 3 * 0.5 * (1.2 - d)) / 3
    np.testing.assert_allclose(ranked_list_loss(tf.constant([0, 0, 1]), x).numpy(), expected)
    # One instance per sample: log(1 + Σ_{j ≠ i} exp(γ (s_ij − 1))).
    s = normalized(x.numpy()) @ normalized(x.numpy()).T
    expected = np.mean([math.log1p(sum(math.exp(8.0 * (s[i, j] - 1.0)) for j in range(3) if j != i)) for i in range(3)])
    np.testing.assert_allclose(instance_loss(tf.constant([0, 1, 2]), x, scale=8.0).numpy(), expected)


def test_large_temperature_does_not_overflow(rng):
    x, labels = batch(rng)
    value = ranked_list_loss(tf.constant(labels), tf.constant(x, tf.float32), negative_temperature=500.0)
    assert np.isfinite(value.numpy()) and value.numpy() > 0.0


def test_paper_defaults():
    loss = RankedListLoss()
    assert (loss.margin, loss.alpha, loss.negative_temperature, loss.positive_temperature, loss.balance) == (
        0.4,
        1.2,
        10.0,
        0.0,
        0.5,
    )
    assert InstanceLoss().scale == 64.0


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: RankedListLoss(margin=-0.1), "RankedListLoss: margin"),
        (lambda: RankedListLoss(alpha=0.0), "RankedListLoss: alpha"),
        (lambda: RankedListLoss(negative_temperature=float("nan")), "RankedListLoss: negative_temperature"),
        (lambda: RankedListLoss(positive_temperature=-1.0), "RankedListLoss: positive_temperature"),
        (lambda: RankedListLoss(balance=1.5), "RankedListLoss: balance"),
        (lambda: InstanceLoss(scale=0.0), "InstanceLoss: scale"),
    ],
)
def test_bad_hyperparameters_are_refused_by_name(make, match):
    with pytest.raises(ValueError, match=match):
        make()
