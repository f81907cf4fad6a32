"""The decoupled contrastive loss and VICReg against slow NumPy references written from their papers, float64
gradients, and pytorch-metric-learning's VICReg values and gradients (tests/fixtures/pml; PML has no DCL)."""

import math

import numpy as np
import pytest
import tensorflow as tf

import pml_parity
from tfdml.losses import DecoupledContrastiveLoss, VICRegLoss, decoupled_contrastive_loss, vicreg_loss

# ---------------------------------------------------------------- slow NumPy references, one loop per sum


def reference_dcl(x, labels, temperature=0.1, sigma=None):
    """Yeh et al. Eq. 6 (DCL) or Eq. 7 (DCLW, vMF weights over the batch's positive pairs) per ordered positive
    pair, averaged over the pairs; a pair whose anchor has no negative adds 0."""
    x = np.asarray(x, np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    s = x @ x.T
    n = len(labels)
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j and labels[i] == labels[j]]
    if sigma is not None:
        mean = sum(math.exp(s[i, j] / sigma) for i, j in pairs) / len(pairs)
    total = 0.0
    for i, j in pairs:
        negatives = [math.exp(s[i, k] / temperature) for k in range(n) if labels[k] != labels[i]]
        if not negatives:
            continue
        weight = 1.0 if sigma is None else 2.0 - math.exp(s[i, j] / sigma) / mean
        total += -weight * s[i, j] / temperature + math.log(sum(negatives))
    return total / len(pairs) if pairs else 0.0


def reference_views(labels):
    """The samples of each label in batch order, paired 1st with 2nd, 3rd with 4th, …"""
    members = {}
    for index, label in enumerate(labels):
        members.setdefault(label, []).append(index)
    return [(group[k], group[k + 1]) for group in members.values() for k in range(0, len(group) - 1, 2)]


def reference_vicreg(x, labels, invariance_lambda=25.0, variance_mu=25.0, covariance_v=1.0, eps=1e-4):
    """Bardes et al. Eqs. 1–6 with the authors' code's mean squared error and averaged variance terms, on the views
    the labels pair; 0 without a pair, zero spread with one."""
    x = np.asarray(x, np.float64)
    pairs = reference_views(labels)
    if not pairs:
        return 0.0
    n, d = len(pairs), x.shape[1]
    views = [x[[first for first, _ in pairs]], x[[second for _, second in pairs]]]
    invariance = sum((views[0][i, j] - views[1][i, j]) ** 2 for i in range(n) for j in range(d)) / (n * d)
    variance = covariance = 0.0
    for z in views:
        mean = [sum(z[i, j] for i in range(n)) / n for j in range(d)]
        cov = [
            [sum((z[i, j] - mean[j]) * (z[i, k] - mean[k]) for i in range(n)) / max(n - 1, 1) for k in range(d)]
            for j in range(d)
        ]
        variance += sum(max(0.0, 1.0 - math.sqrt(cov[j][j] + eps)) for j in range(d)) / d
        covariance += sum(cov[j][k] ** 2 for j in range(d) for k in range(d) if j != k) / d
    return invariance_lambda * invariance + variance_mu * variance / 2.0 + covariance_v * covariance


LOSSES = {
    "DecoupledContrastiveLoss": (DecoupledContrastiveLoss, decoupled_contrastive_loss, reference_dcl),
    "VICRegLoss": (VICRegLoss, vicreg_loss, reference_vicreg),
}
PARAMS = {
    "DecoupledContrastiveLoss": [{}, {"sigma": 0.5}, {"temperature": 0.5, "sigma": 2.0}],
    "VICRegLoss": [{}, {"invariance_lambda": 10.0, "variance_mu": 5.0, "covariance_v": 2.0, "eps": 1e-2}],
}


def batch(rng, dim=6):
    """Unnormalised embeddings, unsorted labels: a class of 4 (two VICReg pairs), of 3 (its third sample has no
    partner), two of 2 and a singleton (a DCL anchor without positives)."""
    labels = np.array([0, 1, 0, 2, 1, 3, 0, 2, 1, 4, 3, 0])
    return 2.0 * rng.normal(size=(len(labels), dim)), labels


@pytest.mark.reference("DecoupledContrastiveLoss", "VICRegLoss")
@pytest.mark.parametrize("name,params", [(name, params) for name in sorted(PARAMS) for params in PARAMS[name]])
def test_function_and_class_match_reference(name, params, rng):
    loss_class, function, reference = LOSSES[name]
    x, labels = batch(rng)
    expected = reference(x, labels, **params)
    assert expected != 0.0
    np.testing.assert_allclose(function(tf.constant(labels), tf.constant(x), **params), expected, rtol=1e-10)
    as_class = loss_class(**params)(tf.constant(labels[:, None]), tf.constant(x, tf.float16))
    np.testing.assert_allclose(as_class.numpy(), reference(x.astype(np.float16), labels, **params), rtol=1e-4)


@pytest.mark.parametrize(
    "name,params",
    [("DecoupledContrastiveLoss", {"temperature": 0.2, "sigma": 0.5}), ("VICRegLoss", {})],
    ids=["DCLW", "VICReg"],
)
def test_float64_gradients_match_finite_differences(name, params, rng):
    _, function, _ = LOSSES[name]
    x, labels = (part[:8] for part in batch(rng, dim=3))
    theoretical, numerical = tf.test.compute_gradient(
        lambda e: function(tf.constant(labels), e, **params), [tf.constant(x)], delta=1e-6
    )
    np.testing.assert_allclose(theoretical[0], numerical[0], rtol=1e-5, atol=1e-7)
    assert np.abs(theoretical[0]).max() > 0.0


# ---------------------------------------------------------------- pytorch-metric-learning (VICReg only)


def test_vicreg_value_and_gradient_match_pml():
    for case in pml_parity.cases("VICRegLoss"):
        value, gradient = pml_parity.value_and_gradient(vicreg_loss, case)
        if "pml_differs" in case:
            # One pair: PML's unbiased variance is 0/0; tfdml's statistics of one pair are 0 (documented).
            assert np.isnan(case["loss"]), case["id"]
            inputs = case["inputs"]
            np.testing.assert_allclose(value, reference_vicreg(inputs["embeddings"], inputs["labels"]), rtol=1e-10)
            assert np.all(np.isfinite(gradient))
            continue
        np.testing.assert_allclose(value, case["loss"], rtol=1e-5, atol=1e-5, err_msg=case["id"])
        np.testing.assert_allclose(gradient, case["grad"], rtol=1e-5, atol=1e-5, err_msg=case["id"])


def test_vicreg_pml_cases_cover_random_and_degenerate_batches():
    cases = {case["id"]: case for case in pml_parity.cases("VICRegLoss")}
    expected = {"b16_d8", "b16_d8_nondefault", "b32_d64", "b64_d16", "one_class", "identical", "odd_class", "one_pair"}
    assert set(cases) == expected
    assert [key for key, case in cases.items() if "pml_differs" in case] == ["one_pair"]
    # The shuffled batches do separate a pair's two samples, and the odd class leaves a sample out of PML's views.
    assert not np.array_equal(cases["b16_d8"]["inputs"]["labels"][0::2], cases["b16_d8"]["inputs"]["labels"][1::2])
    assert np.all(cases["odd_class"]["grad"][5] == 0.0) and np.any(cases["odd_class"]["grad"][2] != 0.0)


# ---------------------------------------------------------------- conventions, defaults and arguments


def test_dcl_conventions_on_small_batches():
    # Identical embeddings: every s = 1 and w = 1, so each pair's term is −1/τ + log(|N_i| e^(1/τ)) = log |N_i|.
    same = tf.ones((4, 3), tf.float64)
    labels = tf.constant([0, 0, 1, 1])
    np.testing.assert_allclose(decoupled_contrastive_loss(labels, same).numpy(), math.log(2.0))
    np.testing.assert_allclose(decoupled_contrastive_loss(labels, same, sigma=0.5).numpy(), math.log(2.0))
    # No positive pair, or no negative: 0.
    x = tf.constant(np.random.default_rng(0).normal(size=(5, 3)))
    for sigma in (None, 0.5):
        assert decoupled_contrastive_loss(tf.range(5), x, sigma=sigma).numpy() == 0.0
        assert decoupled_contrastive_loss(tf.zeros(5, tf.int64), x, sigma=sigma).numpy() == 0.0


def test_vicreg_views_come_from_the_labels(rng):
    x = rng.normal(size=(8, 5))
    # Two views of four images, first views first: the value depends on the pairs and on which sample of a pair
    # comes first (Z's statistics are those of the first views), not on where the pairs lie in the batch.
    labels = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    value = vicreg_loss(tf.constant(labels), tf.constant(x)).numpy()
    interleaved = [0, 4, 1, 5, 2, 6, 3, 7]
    np.testing.assert_allclose(vicreg_loss(tf.constant(labels[interleaved]), tf.constant(x[interleaved])), value)
    np.testing.assert_allclose(vicreg_loss(tf.constant(labels[::-1] + 100), tf.constant(x[::-1])).numpy(), value)
    one_pair_swapped = [4, 1, 2, 3, 0, 5, 6, 7]
    assert not np.isclose(vicreg_loss(tf.constant(labels), tf.constant(x[one_pair_swapped])).numpy(), value)
    # A class seen once adds nothing; no pair at all gives 0.
    with_singleton = vicreg_loss(tf.constant(np.append(labels, 9)), tf.constant(np.vstack([x, 50.0 * x[:1]])))
    np.testing.assert_allclose(with_singleton.numpy(), value)
    assert vicreg_loss(tf.range(4), tf.constant(x[:4])).numpy() == 0.0
    # Identical embeddings: no spread, so every dimension's hinge is 1 − sqrt(ε).
    np.testing.assert_allclose(vicreg_loss(tf.constant(labels), tf.ones((8, 5), tf.float64)).numpy(), 25.0 * 0.99)


def test_defaults():
    assert DecoupledContrastiveLoss().temperature == 0.1 and DecoupledContrastiveLoss().sigma is None
    loss = VICRegLoss()
    assert (loss.invariance_lambda, loss.variance_mu, loss.covariance_v, loss.eps) == (25.0, 25.0, 1.0, 1e-4)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: DecoupledContrastiveLoss(temperature=0.0), "DecoupledContrastiveLoss: temperature"),
        (lambda: DecoupledContrastiveLoss(sigma=-1.0), "DecoupledContrastiveLoss: sigma"),
        (lambda: VICRegLoss(invariance_lambda=-1.0), "VICRegLoss: invariance_lambda"),
        (lambda: VICRegLoss(variance_mu=float("nan")), "VICRegLoss: variance_mu"),
        (lambda: VICRegLoss(eps=0.0), "VICRegLoss: eps"),
    ],
)
def test_bad_hyperparameters_are_refused_by_name(make, match):
    with pytest.raises(ValueError, match=match):
        make()
