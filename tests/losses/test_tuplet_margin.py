"""Tuplet margin and intra-pair variance losses (Yu & Tao 2019) against slow NumPy references written from the
paper, float64 gradients, degenerate batches, mined pairs, and pytorch-metric-learning's values and gradients
(tests/fixtures/pml)."""

import math

import numpy as np
import pytest
import tensorflow as tf

import pml_parity
from tfdml.losses import (
    IntraPairVarianceLoss,
    TupletMarginLoss,
    intra_pair_variance_all_pairs,
    intra_pair_variance_loss,
    tuplet_margin_all_pairs,
    tuplet_margin_loss,
)
from tfdml.losses.tuples import mine_pairs
from tfdml.mining import BatchHardMiner, MultiSimilarityMiner

# ---------------------------------------------------------------- slow NumPy references, one loop per sum


def cosine(x):
    x = np.asarray(x, np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    return x @ x.T


def all_pairs(labels):
    """Boolean masks of the ordered positive pairs (same label, i ≠ j) and negative pairs."""
    n = len(labels)
    positives = np.array([[i != j and labels[i] == labels[j] for j in range(n)] for i in range(n)])
    negatives = np.array([[labels[i] != labels[j] for j in range(n)] for i in range(n)])
    return positives, negatives


def reference_tuplet(x, labels, margin=0.1, scale=64.0, pairs=None):
    """Per positive pair (a, p), log(1 + Σ_{n ∈ N_a} exp(s (cos θ_an − cos(θ_ap − β)))) with θ = acos,
    averaged over the positive pairs."""
    s = cosine(x)
    positives, negatives = all_pairs(labels) if pairs is None else pairs
    terms = []
    for a in range(len(labels)):
        for p in range(len(labels)):
            if not positives[a, p]:
                continue
            target = math.cos(math.acos(min(s[a, p], 1.0)) - margin)
            exponents = [scale * (s[a, n] - target) for n in range(len(labels)) if negatives[a, n]]
            terms.append(np.logaddexp.reduce([0.0, *exponents]))
    return sum(terms) / len(terms) if terms else 0.0


def reference_intra_pair_variance(x, labels, pos_eps=0.01, neg_eps=0.01, pairs=None):
    """E_P[[(1 − ε⁺) E_P[S] − S]_+²] + E_N[[S − (1 + ε⁻) E_N[S]]_+²]; an empty side adds 0."""
    s = cosine(x)
    positives, negatives = all_pairs(labels) if pairs is None else pairs
    positive = [s[i, j] for i, j in zip(*np.nonzero(positives))]
    negative = [s[i, j] for i, j in zip(*np.nonzero(negatives))]
    total = 0.0
    if positive:
        mean = sum(positive) / len(positive)
        total += sum(max((1.0 - pos_eps) * mean - v, 0.0) ** 2 for v in positive) / len(positive)
    if negative:
        mean = sum(negative) / len(negative)
        total += sum(max(v - (1.0 + neg_eps) * mean, 0.0) ** 2 for v in negative) / len(negative)
    return total


LOSSES = {
    "TupletMarginLoss": (TupletMarginLoss, tuplet_margin_all_pairs, tuplet_margin_loss, reference_tuplet),
    "IntraPairVarianceLoss": (
        IntraPairVarianceLoss,
        intra_pair_variance_all_pairs,
        intra_pair_variance_loss,
        reference_intra_pair_variance,
    ),
}
PARAMS = {
    "TupletMarginLoss": [{}, {"margin": 0.0, "scale": 16.0}, {"margin": 0.4, "scale": 8.0}],
    "IntraPairVarianceLoss": [{}, {"pos_eps": 0.3, "neg_eps": 0.2}],
}


def batch(rng, dim=6):
    """Unnormalised embeddings (the losses normalise) of three classes and a singleton (an anchor without positives)."""
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3])
    return 3.0 * rng.normal(size=(len(labels), dim)), labels


@pytest.mark.reference("TupletMarginLoss", "IntraPairVarianceLoss")
@pytest.mark.parametrize("name,params", [(name, params) for name in sorted(PARAMS) for params in PARAMS[name]])
def test_function_and_class_match_reference(name, params, rng):
    loss_class, function, _, reference = LOSSES[name]
    x, labels = batch(rng)
    expected = reference(x, labels, **params)
    assert expected > 0.0
    np.testing.assert_allclose(function(tf.constant(labels), tf.constant(x), **params), expected, rtol=1e-10)
    as_class = loss_class(**params)(tf.constant(labels[:, None]), tf.constant(x, tf.float32))  # labels (b, 1)
    np.testing.assert_allclose(as_class.numpy(), expected, rtol=2e-5)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_mined_pairs_match_reference_on_those_pairs(name, rng):
    # A triplet miner's tuples give their (a, p) and (a, n) pairs; a pair miner's masks are used as they are.
    loss_class, _, function, reference = LOSSES[name]
    x, labels = batch(rng)
    for miner in (BatchHardMiner(), MultiSimilarityMiner(epsilon=0.1)):
        pairs = mine_pairs(name, miner, tf.constant(x, tf.float32), tf.constant(labels))
        masks = (pairs.positives.numpy(), pairs.negatives.numpy())
        assert masks[0].sum() < all_pairs(labels)[0].sum() or masks[1].sum() < all_pairs(labels)[1].sum()
        expected = reference(x, labels, pairs=masks)
        np.testing.assert_allclose(function(pairs, tf.constant(x)), expected, rtol=1e-10)
        as_class = loss_class(miner=miner)(tf.constant(labels), tf.constant(x, tf.float32))
        np.testing.assert_allclose(as_class.numpy(), expected, rtol=2e-5)


@pytest.mark.parametrize(
    "name,params", [("TupletMarginLoss", {"margin": 0.3, "scale": 4.0}), ("IntraPairVarianceLoss", {})]
)
def test_float64_gradients_match_finite_differences(name, params, rng):
    _, function, _, _ = LOSSES[name]
    x, labels = batch(rng, dim=4)
    theoretical, numerical = tf.test.compute_gradient(
        lambda e: function(tf.constant(labels), e, **params), [tf.constant(x)]
    )
    np.testing.assert_allclose(theoretical[0], numerical[0], rtol=1e-5, atol=1e-7)
    assert np.abs(theoretical[0]).max() > 0.0


def test_degenerate_batches():
    x = tf.constant(np.random.default_rng(0).normal(size=(6, 4)))
    identical = tf.ones((6, 4), tf.float64)
    for function in (tuplet_margin_all_pairs, intra_pair_variance_all_pairs):
        # No positive pair, or (tuplet) no negative: 0 with a zero gradient.
        for labels in (tf.range(6), tf.zeros(6, tf.int32)):
            with tf.GradientTape() as tape:
                tape.watch(x)
                value = function(labels, x)
            gradient = tape.gradient(value, x).numpy()
            if function is tuplet_margin_all_pairs:
                assert value.numpy() == 0.0 and np.all(gradient == 0.0)
            assert np.all(np.isfinite(gradient))
    labels = tf.constant([0, 0, 1, 1, 2, 2])
    with tf.GradientTape() as tape:
        tape.watch(identical)
        value = tuplet_margin_all_pairs(labels, identical, margin=0.1, scale=64.0)
    # Every cosine is 1: each pair is log(1 + 4 exp(s (1 − cos β))), and θ = 0 has a finite (zero) gradient.
    np.testing.assert_allclose(value.numpy(), np.logaddexp(0.0, math.log(4.0) + 64.0 * (1.0 - math.cos(0.1))))
    np.testing.assert_allclose(tape.gradient(value, identical).numpy(), 0.0, atol=1e-12)
    assert intra_pair_variance_all_pairs(labels, identical).numpy() == 0.0


def test_half_precision_inputs_match_float32(rng):
    # Losses compute in float32 (DMLLoss casts); half-precision inputs differ only by their rounding.
    x, labels = batch(rng)
    y = tf.constant(labels)
    for loss in (TupletMarginLoss(miner=BatchHardMiner()), IntraPairVarianceLoss()):
        expected = loss(y, tf.constant(x, tf.float32)).numpy()
        for dtype in (tf.float16, tf.bfloat16):
            np.testing.assert_allclose(loss(y, tf.constant(x, dtype)).numpy(), expected, rtol=0.05)


# ---------------------------------------------------------------- pytorch-metric-learning


def parity_function(name, case):
    _, all_pairs_function, function, _ = LOSSES[name]
    if "miner" not in case:
        return all_pairs_function
    miner = MultiSimilarityMiner(**case["miner"])
    return lambda labels, x, **params: function(mine_pairs(name, miner, x, labels), x, **params)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_value_and_gradient_match_pml(name):
    for case in pml_parity.cases(name):
        value, gradient = pml_parity.value_and_gradient(parity_function(name, case), case)
        np.testing.assert_allclose(value, case["loss"], rtol=1e-5, atol=1e-5, err_msg=case["id"])
        np.testing.assert_allclose(gradient, case["grad"], rtol=1e-5, atol=1e-5, err_msg=case["id"])


def test_pml_cases_cover_random_mined_and_degenerate_batches():
    for name in LOSSES:
        ids = {case["id"] for case in pml_parity.cases(name)}
        expected = {"b32_d8", "b32_d64", "b16_singletons", "b32_d8_mined", "one_class", "no_positives", "identical"}
        assert expected | {"two_samples"} <= ids, name
        assert not any("pml_differs" in case for case in pml_parity.cases(name))


# ---------------------------------------------------------------- conventions, defaults and arguments


def test_defaults_are_pmls():
    assert (TupletMarginLoss().margin, TupletMarginLoss().scale, TupletMarginLoss().miner) == (0.1, 64.0, None)
    assert math.isclose(math.degrees(TupletMarginLoss().margin), 5.73, abs_tol=1e-3)  # PML's 5.73°
    assert (IntraPairVarianceLoss().pos_eps, IntraPairVarianceLoss().neg_eps) == (0.01, 0.01)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: TupletMarginLoss(scale=0.0), "TupletMarginLoss: scale"),
        (lambda: TupletMarginLoss(margin=-0.1), "TupletMarginLoss: margin"),
        (lambda: TupletMarginLoss(margin=5.73), "TupletMarginLoss: margin"),  # degrees, as PML takes it
        (lambda: IntraPairVarianceLoss(pos_eps=float("nan")), "IntraPairVarianceLoss: pos_eps"),
        (lambda: IntraPairVarianceLoss(neg_eps=-0.01), "IntraPairVarianceLoss: neg_eps"),
    ],
)
def test_bad_hyperparameters_are_refused_by_name(make, match):
    with pytest.raises(ValueError, match=match):
        make()
