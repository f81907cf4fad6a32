"""Sub-center ArcFace (loss and dominant-sub-centre outlier filter) and NCA against slow NumPy references
written from their papers, float64 gradients, and pytorch-metric-learning's values (tests/fixtures/pml).

The registry-walking tests (tests/test_registry.py, the per-class-vector tests of test_proxy_losses.py)
cover serialization, degenerate batches, float16, label checks and training under XLA.
"""

import math

import numpy as np
import pytest
import tensorflow as tf

import pml_parity
from tfdml.losses import (
    ArcFaceLoss,
    NCALoss,
    SubCenterArcFaceLoss,
    arcface_loss,
    nca_loss,
    subcenter_arcface_loss,
    subcenter_arcface_outliers,
)

# ---------------------------------------------------------------- slow NumPy references, one loop per sum


def _unit(v):
    return v / np.linalg.norm(v)


def logsumexp(values):
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def reference_subcenter_arcface(labels, x, centers, margin=0.5, scale=64.0):
    """Deng et al. 2020: ArcFace's softmax cross-entropy with θ_i,c = arccos(max_k x̂_i · Ŵ_c,k) and the
    target logit s·cos(θ + m), continued as s·(cos θ − m·sin m) past θ + m = π."""
    total = 0.0
    for i, y in enumerate(labels):
        logits = []
        for c in range(len(centers)):
            cosine = max(float(_unit(x[i]) @ _unit(w)) for w in centers[c])
            if c != y:
                logits.append(scale * cosine)
                continue
            theta = math.acos(min(max(cosine, -1.0), 1.0))
            target = math.cos(theta + margin) if theta + margin <= math.pi else cosine - margin * math.sin(margin)
            logits.append(scale * target)
        total += logsumexp(logits) - logits[y]
    return total / len(labels)


def reference_outliers(labels, x, centers, threshold):
    """Deng et al. 2020, section 3: per class, each sample votes for its nearest sub-centre; the most voted
    (lowest index among ties) is dominant; samples more than ``threshold`` radians from it are outliers."""
    outliers, dominant = [], [0] * len(centers)
    for c in range(len(centers)):
        members = [i for i in range(len(labels)) if labels[i] == c]
        if not members:
            continue
        votes = [0] * len(centers[c])
        for i in members:
            cosines = [float(_unit(x[i]) @ _unit(w)) for w in centers[c]]
            votes[cosines.index(max(cosines))] += 1
        dominant[c] = votes.index(max(votes))
        for i in members:
            if math.acos(min(float(_unit(x[i]) @ _unit(centers[c][dominant[c]])), 1.0)) > threshold:
                outliers.append(i)
    return sorted(outliers), dominant


def reference_nca(labels, x, scale=1.0):
    """Goldberger et al. 2004: p_ij = exp(−s‖x_i − x_j‖²) / Σ_{k≠i} exp(−s‖x_i − x_k‖²),
    p_i = Σ_{j∈C_i} p_ij; the mean of −log p_i over the samples whose class has another member in the batch."""
    terms = []
    for i in range(len(labels)):
        others = [k for k in range(len(labels)) if k != i]
        if not any(labels[j] == labels[i] for j in others):
            continue
        logits = {k: -scale * float(np.sum((x[i] - x[k]) ** 2)) for k in others}
        positive = logsumexp([logits[j] for j in others if labels[j] == labels[i]])
        terms.append(logsumexp(list(logits.values())) - positive)
    return sum(terms) / len(terms) if terms else 0.0


def _random_batch(rng, batch=9, dim=5, num_classes=4, sub_centers=3):
    labels = rng.integers(0, num_classes, size=batch).astype(np.int32)
    return labels, rng.normal(size=(batch, dim)), rng.normal(size=(num_classes, sub_centers, dim))


def _nca_batch(rng, dim=4):
    """Random embeddings of three classes and a singleton (an anchor without positives)."""
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 3])
    return labels, rng.normal(size=(len(labels), dim))


SUBCENTER_PARAMS = [{}, {"margin": 0.3, "scale": 16.0}, {"margin": 1.2, "scale": 4.0}]
NCA_PARAMS = [{}, {"scale": 0.25}, {"scale": 3.0}]

# ---------------------------------------------------------------- values


@pytest.mark.reference("SubCenterArcFaceLoss")
@pytest.mark.parametrize("params", SUBCENTER_PARAMS)
def test_subcenter_arcface_matches_reference(params, rng):
    for sub_centers in (1, 3):
        labels, x, w = _random_batch(rng, sub_centers=sub_centers)
        value = subcenter_arcface_loss(tf.constant(labels), tf.constant(x), tf.constant(w), **params)
        np.testing.assert_allclose(value.numpy(), reference_subcenter_arcface(labels, x, w, **params), rtol=1e-10)
    loss = SubCenterArcFaceLoss(num_classes=4, embedding_dim=5, seed=3, **params)
    assert loss.centers.dtype == "float32" and loss.trainable_variables == [loss.centers]
    assert loss.centers.shape == (4, 3, 5)
    value = loss.value(tf.constant(labels), tf.constant(x, tf.float32))
    expected = reference_subcenter_arcface(labels, x.astype(np.float32), loss.centers.numpy(), **params)
    assert value.dtype == tf.float32
    np.testing.assert_allclose(value.numpy(), expected, rtol=2e-5)


def test_one_sub_centre_is_arcface(rng):
    labels, x, w = _random_batch(rng, sub_centers=1)
    value = subcenter_arcface_loss(tf.constant(labels), tf.constant(x), tf.constant(w), margin=0.4, scale=8.0)
    expected = arcface_loss(tf.constant(labels), tf.constant(x), tf.constant(w[:, 0]), margin=0.4, scale=8.0)
    np.testing.assert_allclose(value.numpy(), expected.numpy(), rtol=1e-12)


def test_subcenter_arcface_takes_the_nearest_sub_centre():
    # The sample lies on the second sub-centre of its class: θ = 0 whatever the other sub-centres.
    centers = tf.constant([[[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], [[0.0, 0.0, 1.0], [0.0, -1.0, 0.0]]], tf.float64)
    value = subcenter_arcface_loss(tf.constant([0]), tf.constant([[2.0, 0.0, 0.0]], tf.float64), centers, 0.5, 4.0)
    np.testing.assert_allclose(value.numpy(), math.log1p(math.exp(-4.0 * math.cos(0.5))), rtol=1e-12)


@pytest.mark.reference("NCALoss")
@pytest.mark.parametrize("params", NCA_PARAMS)
def test_nca_matches_reference(params, rng):
    labels, x = _nca_batch(rng)
    expected = reference_nca(labels, x, **params)
    assert expected > 0.0
    value = nca_loss(tf.constant(labels), tf.constant(x), **params)
    np.testing.assert_allclose(value.numpy(), expected, rtol=1e-10)
    as_class = NCALoss(**params)(tf.constant(labels), tf.constant(x, tf.float32))
    np.testing.assert_allclose(as_class.numpy(), expected, rtol=2e-5)


def test_nca_conventions_on_small_batches():
    # Identical embeddings: a uniform softmax over the 3 others, 1 of them positive.
    np.testing.assert_allclose(nca_loss(tf.constant([0, 0, 1, 1]), tf.ones((4, 3), tf.float64)).numpy(), math.log(3.0))
    # No positive pair, or a single sample: 0.
    x = tf.constant([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], tf.float64)
    assert nca_loss(tf.constant([0, 1, 2]), x).numpy() == 0.0
    assert nca_loss(tf.constant([0]), x[:1]).numpy() == 0.0
    # Used as given, not normalised: scaling the embeddings by 2 is scaling s by 4.
    labels = tf.constant([0, 0, 1])
    np.testing.assert_allclose(nca_loss(labels, 2.0 * x).numpy(), nca_loss(labels, x, scale=4.0).numpy(), rtol=1e-12)
    assert nca_loss(labels, 2.0 * x).numpy() != pytest.approx(nca_loss(labels, x).numpy())
    # The positive 60 away, a negative 30 away: p_i = e^−2700 underflows exp, the loss (log space) does not.
    far = nca_loss(tf.constant([0, 1, 1]), tf.constant([[0.0], [30.0], [-30.0]], tf.float64))
    np.testing.assert_allclose(far.numpy(), 60.0**2 - 30.0**2, rtol=1e-12)


# ---------------------------------------------------------------- outlier filter


@pytest.mark.parametrize("degrees", [30.0, 75.0, 100.0])
def test_outliers_match_reference(degrees, rng):
    labels, x, w = _random_batch(rng, batch=40, dim=3, num_classes=5)
    labels[labels == 4] = 3  # class 4 without samples: dominant sub-centre 0
    outliers, dominant = subcenter_arcface_outliers(
        tf.constant(labels), tf.constant(x), tf.constant(w), math.radians(degrees)
    )
    expected_outliers, expected_dominant = reference_outliers(labels, x, w, math.radians(degrees))
    assert 0 < len(expected_outliers) < len(labels) or degrees == 100.0
    assert np.flatnonzero(outliers.numpy()).tolist() == expected_outliers
    assert dominant.numpy().tolist() == expected_dominant


def test_outliers_break_ties_towards_the_lower_sub_centre():
    # Class 0: one vote for each of sub-centres 2 and 1: sub-centre 1 dominates, the sample nearest to 2
    # (90° from 1) is an outlier at 75°. Class 1 has no sample.
    centers = tf.constant(np.stack([np.eye(3), np.eye(3)]))
    x = tf.constant([[0.0, 0.0, 1.0], [0.1, 1.0, 0.0]], tf.float64)
    outliers, dominant = subcenter_arcface_outliers(tf.constant([0, 0]), x, centers, math.radians(75.0))
    assert outliers.numpy().tolist() == [True, False]
    assert dominant.numpy().tolist() == [1, 0]


def test_get_outliers_checks_its_inputs_and_returns_indices_and_dominant_centres(rng):
    loss = SubCenterArcFaceLoss(num_classes=4, embedding_dim=3, seed=0)
    labels, x, _ = _random_batch(rng, batch=30, dim=3)
    indices, centers = loss.get_outliers(labels[:, np.newaxis], x)
    expected_outliers, expected_dominant = reference_outliers(labels, x, loss.centers.numpy(), math.radians(75.0))
    assert indices.dtype == np.int64 and indices.tolist() == expected_outliers
    np.testing.assert_array_equal(centers, loss.centers.numpy()[np.arange(4), expected_dominant])
    with pytest.raises(ValueError, match="label 4 is out of range for num_classes=4"):
        loss.get_outliers([0, 4], x[:2])
    with pytest.raises(ValueError, match=r"embeddings must have shape \(n, 3\)"):
        loss.get_outliers([0, 1], x[:2, :2])
    with pytest.raises(ValueError, match="threshold must be"):
        loss.get_outliers([0, 1], x[:2], threshold=75.0)


# ---------------------------------------------------------------- gradients in float64


def test_subcenter_arcface_gradients_match_finite_differences(rng):
    labels, x, w = _random_batch(rng, batch=6, dim=4, num_classes=3, sub_centers=2)
    theoretical, numerical = tf.test.compute_gradient(
        lambda e, c: subcenter_arcface_loss(tf.constant(labels), e, c, margin=0.5, scale=4.0),
        [tf.constant(x), tf.constant(w)],
        delta=1e-6,
    )
    for analytic, finite_difference in zip(theoretical, numerical):
        np.testing.assert_allclose(analytic, finite_difference, rtol=1e-5, atol=1e-6)
        assert np.abs(analytic).max() > 1e-3


def test_nca_gradient_matches_finite_differences(rng):
    labels, x = _nca_batch(rng)
    theoretical, numerical = tf.test.compute_gradient(
        lambda e: nca_loss(tf.constant(labels), e, scale=0.5), [tf.constant(x)], delta=1e-6
    )
    np.testing.assert_allclose(theoretical[0], numerical[0], rtol=1e-5, atol=1e-7)
    assert np.abs(theoretical[0]).max() > 1e-3


# ---------------------------------------------------------------- pytorch-metric-learning


def test_subcenter_arcface_matches_pml():
    for case in pml_parity.cases("SubCenterArcFaceLoss"):
        inputs = case["inputs"]
        centers = tf.constant(inputs["centers"])
        value, gradient = pml_parity.value_and_gradient(subcenter_arcface_loss, case, centers)
        np.testing.assert_allclose(value, case["loss"], rtol=1e-5, atol=1e-5, err_msg=case["id"])
        np.testing.assert_allclose(gradient, case["grad"], rtol=1e-5, atol=1e-5, err_msg=case["id"])
        threshold = math.radians(case["outlier_threshold"])
        outliers, dominant = subcenter_arcface_outliers(
            tf.constant(inputs["labels"]), tf.constant(inputs["embeddings"]), centers, threshold
        )
        assert np.flatnonzero(outliers.numpy()).tolist() == case["outliers"].tolist(), case["id"]
        present = np.isin(np.arange(len(centers)), inputs["labels"])
        dominant_centers = tf.gather(centers, dominant, axis=1, batch_dims=1).numpy()
        np.testing.assert_array_equal(dominant_centers[present], case["dominant_centers"][present], err_msg=case["id"])


def test_subcenter_arcface_object_matches_pml_with_pml_sub_centres():
    # The class in float32 with PML's initial sub-centres assigned, on the first random batch.
    case = pml_parity.cases("SubCenterArcFaceLoss")[0]
    inputs = case["inputs"]
    num_classes, sub_centers, dim = inputs["centers"].shape
    assert case["pml"] == {"margin": math.degrees(0.5), "scale": 64.0, "sub_centers": 3}
    loss = SubCenterArcFaceLoss(num_classes, dim, sub_centers=sub_centers, **case["params"])
    loss.centers.assign(inputs["centers"])
    value = loss.value(tf.constant(inputs["labels"]), tf.constant(inputs["embeddings"], tf.float32))
    np.testing.assert_allclose(value.numpy(), case["loss"], rtol=1e-5, atol=1e-5)


def test_nca_matches_pml():
    for case in pml_parity.cases("NCALoss"):
        value, gradient = pml_parity.value_and_gradient(nca_loss, case)
        if "pml_differs" in case:
            # No positive pair: PML's mean over no anchors is NaN, tfdml's loss is 0 (documented).
            assert math.isnan(case["loss"]) and value == 0.0 and not gradient.any(), case["id"]
            continue
        np.testing.assert_allclose(value, case["loss"], rtol=1e-5, atol=1e-5, err_msg=case["id"])
        np.testing.assert_allclose(gradient, case["grad"], rtol=1e-5, atol=1e-5, err_msg=case["id"])


def test_pml_cases_cover_random_and_degenerate_batches():
    degenerate = {"one_class", "no_positives", "identical", "two_samples"}
    assert {"b32_d8", "b32_d64"} | degenerate <= {case["id"] for case in pml_parity.cases("SubCenterArcFaceLoss")}
    nca_cases = pml_parity.cases("NCALoss")
    assert {"b32_d8", "b32_d64", "b16_singletons"} | degenerate <= {case["id"] for case in nca_cases}
    assert any(case["pml"]["normalize_embeddings"] for case in nca_cases)
    differing = {case["id"] for case in nca_cases if "pml_differs" in case}
    suffixes = ("", "_s01", "_pml_default")
    assert differing == {f"{kind}{suffix}" for kind in ("no_positives", "two_samples") for suffix in suffixes}


# ---------------------------------------------------------------- defaults and arguments


def test_paper_defaults():
    subcenter = SubCenterArcFaceLoss(3, 4).get_config()
    assert (subcenter["margin"], subcenter["scale"], subcenter["sub_centers"]) == (0.5, 64.0, 3)
    assert subcenter["learning_rate"] == ArcFaceLoss(3, 4).get_config()["learning_rate"] == 5e-4
    assert NCALoss().scale == 1.0


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: SubCenterArcFaceLoss(4, 3, sub_centers=0), "SubCenterArcFaceLoss: sub_centers"),
        (lambda: SubCenterArcFaceLoss(4, 3, sub_centers=2.5), "SubCenterArcFaceLoss: sub_centers"),
        (lambda: SubCenterArcFaceLoss(4, 3, margin=28.6), "SubCenterArcFaceLoss: margin"),
        (lambda: SubCenterArcFaceLoss(4, 3, scale=0.0), "SubCenterArcFaceLoss: scale"),
        (lambda: NCALoss(scale=0.0), "NCALoss: scale"),
        (lambda: NCALoss(scale=float("nan")), "NCALoss: scale"),
    ],
)
def test_bad_hyperparameters_are_refused_by_name(make, match):
    with pytest.raises(ValueError, match=match):
        make()
