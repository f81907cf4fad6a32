"""All-pairs pair losses (tfdml.losses.*_all_pairs, plumbing in tfdml.losses.pairs) against slow NumPy references written from the formulas."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import pml_parity
from tests.reference_tuple import distance_matrix
from tests.test_distances import reference_comparison
from tfdml.distances import DISTANCES
from tfdml.losses import (
    ContrastiveLoss,
    MarginLoss,
    MultiSimilarityLoss,
    contrastive_all_pairs,
    contrastive_pair_loss,
    margin_loss_all_pairs,
    multi_similarity_all_pairs,
)
from tfdml.losses.pairs import batch_distances, symmetric_batch_distances
from tfdml.mining import DistanceWeightedMiner, MultiSimilarityMiner, PairMarginMiner
from tfdml.mining.multi_similarity import PairMasks


def ordered_pairs(labels):
    n = len(labels)
    return [(i, j, labels[i] == labels[j]) for i in range(n) for j in range(n) if i != j]


def reference_contrastive(
    x, labels, margin=1.0, positive_margin=0.0, average="pairs", distance="euclidean", masks=None
):
    """Every ordered pair, or the pairs in ``masks`` (boolean positives, negatives); under a similarity
    (sign −1) the terms are (m⁺ − S)_+ and (S − γ)_+."""
    d, sign = reference_comparison(x, distance)
    positive, negative = [], []
    for i, j, same in ordered_pairs(labels):
        if masks is not None and not (masks[0][i, j] or masks[1][i, j]):
            continue
        if same:
            positive.append(max(sign * (d[i, j] - positive_margin), 0.0))
        else:
            negative.append(max(sign * (margin - d[i, j]), 0.0))
    if average == "pairs":
        terms = positive + negative
        return sum(terms) / len(terms) if terms else 0.0

    def mean_nonzero(values):
        nonzero = [v for v in values if v > 0.0]
        return sum(nonzero) / len(nonzero) if nonzero else 0.0

    return mean_nonzero(positive) + mean_nonzero(negative)


def reference_margin(x, labels, beta, margin=0.2, nu=0.0):
    d = distance_matrix(x)
    beta = np.broadcast_to(np.asarray(beta, np.float64), (len(labels),))
    total, active = 0.0, 0
    for i, j, same in ordered_pairs(labels):
        y = 1.0 if same else -1.0
        term = max(margin + y * (d[i, j] - beta[i]), 0.0)
        total += term + nu * beta[i]
        active += term > 0.0
    return total / active if active else 0.0


def reference_multi_similarity(x, labels, alpha=2.0, beta=40.0, threshold=0.5, distance="cosine"):
    """Wang et al. eq. 12 on the similarity S; on a distance D (sign +1) S − λ becomes λ − D, as in PML."""
    s, sign = reference_comparison(x, distance)
    s = -sign * s
    threshold = -sign * threshold
    n = len(labels)
    total = 0.0
    for i in range(n):
        positive = sum(math.exp(-alpha * (s[i, j] - threshold)) for j in range(n) if j != i and labels[j] == labels[i])
        negative = sum(math.exp(beta * (s[i, k] - threshold)) for k in range(n) if labels[k] != labels[i])
        total += math.log1p(positive) / alpha + math.log1p(negative) / beta
    return total / n


def batch(rng, num_classes=4, per_class=3, dim=8, dtype=np.float32):
    x = rng.normal(size=(num_classes * per_class, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = rng.permutation(np.repeat(np.arange(num_classes), per_class)).astype(np.int32)
    return x.astype(dtype), labels


def test_batch_distances_and_their_hand_written_gradient(rng):
    x = rng.normal(size=(6, 3))
    x[4] = x[1]  # a zero distance off the diagonal: subgradient 0
    weights = tf.constant(rng.normal(size=(6, 6)))
    np.testing.assert_allclose(batch_distances(tf.constant(x)).numpy(), distance_matrix(x), atol=1e-7)
    assert np.all(np.diag(batch_distances(tf.constant(x)).numpy()) == 0.0)
    theoretical, numerical = tf.test.compute_gradient(
        lambda e: tf.reduce_sum(weights * batch_distances(e)), [tf.constant(x + 1e-3 * np.eye(6, 3))]
    )
    np.testing.assert_allclose(theoretical[0], numerical[0], rtol=1e-5, atol=1e-6)
    with tf.GradientTape() as tape:
        variable = tf.constant(x)
        tape.watch(variable)
        value = tf.reduce_sum(weights * batch_distances(variable))
    gradient = tape.gradient(value, variable).numpy()
    assert np.all(np.isfinite(gradient))


def test_symmetric_batch_distances_gradient_for_a_symmetric_loss(rng):
    x = tf.constant(rng.normal(size=(6, 3)))
    weights = rng.normal(size=(6, 6))
    weights = tf.constant(weights + weights.T)  # L(D) = L(Dᵀ)
    gradients = []
    for distances_of in (batch_distances, symmetric_batch_distances):
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = tf.reduce_sum(weights * distances_of(x))
        gradients.append(tape.gradient(value, x).numpy())
    np.testing.assert_allclose(symmetric_batch_distances(x).numpy(), batch_distances(x).numpy())
    np.testing.assert_allclose(gradients[1], gradients[0], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("average", ["pairs", "nonzero"])
@pytest.mark.parametrize("margin,positive_margin", [(1.0, 0.0), (1.3, 0.4)])
def test_contrastive_matches_reference(average, margin, positive_margin, rng):
    x, labels = batch(rng)
    value = contrastive_all_pairs(labels, x, margin, positive_margin, average=average)
    expected = reference_contrastive(x, labels, margin, positive_margin, average)
    assert expected > 0.0
    np.testing.assert_allclose(float(value), expected, rtol=1e-5)


@pytest.mark.parametrize("per_anchor_beta", [False, True])
@pytest.mark.parametrize("nu", [0.0, 0.05])
def test_margin_matches_reference(per_anchor_beta, nu, rng):
    x, labels = batch(rng)
    beta = rng.uniform(0.8, 1.4, size=len(labels)) if per_anchor_beta else 1.2
    value = margin_loss_all_pairs(labels, x, tf.constant(beta, tf.float32), margin=0.2, nu=nu)
    np.testing.assert_allclose(float(value), reference_margin(x, labels, beta, 0.2, nu), rtol=1e-5)


@pytest.mark.parametrize("alpha,beta,threshold", [(2.0, 40.0, 0.5), (1.0, 5.0, 0.2)])
def test_multi_similarity_matches_reference(alpha, beta, threshold, rng):
    x, labels = batch(rng)
    x = 3.0 * x  # the loss normalises
    value = multi_similarity_all_pairs(labels, x, alpha, beta, threshold)
    np.testing.assert_allclose(float(value), reference_multi_similarity(x, labels, alpha, beta, threshold), rtol=1e-5)


# (contrastive margin, positive_margin, multi-similarity threshold) per distance, on the unit embeddings × 2.
DISTANCE_PARAMS = {
    "euclidean": (1.5, 0.5, 1.3),
    "squared_euclidean": (3.0, 0.5, 2.0),
    "cosine": (0.0, 0.5, 0.5),
    "dot": (0.0, 2.0, 2.0),
}


@pytest.mark.reference("ContrastiveLoss", "MultiSimilarityLoss")
@pytest.mark.parametrize("distance", DISTANCES)
def test_each_distance_matches_the_reference_in_its_direction(distance, rng):
    x, labels = batch(rng)
    x = 2.0 * x  # "dot" differs from "cosine"
    margin, positive_margin, threshold = DISTANCE_PARAMS[distance]
    expected = reference_contrastive(x, labels, margin, positive_margin, "nonzero", distance)
    assert expected > 0.0
    value = contrastive_all_pairs(labels, x, margin, positive_margin, average="nonzero", distance=distance)
    np.testing.assert_allclose(float(value), expected, rtol=1e-5)
    loss = ContrastiveLoss(margin, positive_margin, distance=distance, pairs="all")
    expected = reference_contrastive(x, labels, margin, positive_margin, "pairs", distance)
    np.testing.assert_allclose(float(loss(labels, x)), expected, rtol=1e-5)
    loss = MultiSimilarityLoss(1.0, 5.0, threshold, distance=distance, pairs="all")
    expected = reference_multi_similarity(x, labels, 1.0, 5.0, threshold, distance)
    np.testing.assert_allclose(float(loss(labels, x)), expected, rtol=1e-5)


@pytest.mark.reference("ContrastiveLoss")
@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_contrastive_takes_a_pair_miners_masks(distance, rng):
    x, labels = batch(rng)
    margin, positive_margin, _ = DISTANCE_PARAMS[distance]
    for miner in (PairMarginMiner(pos_margin=1.2, neg_margin=1.4), MultiSimilarityMiner(epsilon=0.1)):
        masks = miner.mine_masked(tf.constant(x), tf.constant(labels))
        assert 0 < int(tf.reduce_sum(tf.cast(masks.positives, tf.int32))) < len(labels) * (len(labels) - 1)
        expected = reference_contrastive(
            x, labels, margin, positive_margin, distance=distance, masks=[m.numpy() for m in masks]
        )
        loss = ContrastiveLoss(margin, positive_margin, distance=distance, miner=miner)
        np.testing.assert_allclose(float(loss(labels, x)), expected, rtol=1e-5, err_msg=type(miner).__name__)


def test_contrastive_pair_loss_gradient_on_asymmetric_masks(rng):
    x, labels = batch(rng, num_classes=3, per_class=2, dim=3, dtype=np.float64)
    positives = tf.constant(rng.uniform(size=(6, 6)) < 0.5) & tf.constant(labels[:, None] == labels[None, :])
    negatives = tf.constant(labels[:, None] != labels[None, :]) & tf.constant(rng.uniform(size=(6, 6)) < 0.5)
    pairs = PairMasks(tf.linalg.set_diag(positives, tf.zeros(6, tf.bool)), negatives)
    theoretical, numerical = tf.test.compute_gradient(
        lambda e: contrastive_pair_loss(pairs, e, margin=1.5, positive_margin=0.1, average="nonzero"),
        [tf.constant(x)],
        delta=1e-6,
    )
    np.testing.assert_allclose(theoretical[0], numerical[0], rtol=1e-5, atol=1e-7)
    assert np.abs(theoretical[0]).max() > 0.0


FUNCTIONS = {
    "contrastive": lambda labels, x: contrastive_all_pairs(labels, x),
    "contrastive-nonzero": lambda labels, x: contrastive_all_pairs(labels, x, 1.3, 0.2, average="nonzero"),
    "margin": lambda labels, x: margin_loss_all_pairs(labels, x, beta=0.9, nu=0.05),
    "multi-similarity": lambda labels, x: multi_similarity_all_pairs(labels, x),
}


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_float64_gradients_match_finite_differences(name, rng):
    x = rng.normal(size=(7, 4)) / 2.0
    labels = tf.constant([0, 0, 0, 1, 1, 1, 2])
    theoretical, numerical = tf.test.compute_gradient(lambda e: FUNCTIONS[name](labels, e), [tf.constant(x)])
    # rtol: multi-similarity's β = 40 curvature leaves ~1e-5 relative error in the finite differences.
    np.testing.assert_allclose(theoretical[0], numerical[0], rtol=1e-4, atol=1e-6)
    assert np.abs(theoretical[0]).max() > 0.0


def test_margin_beta_gradients_match_finite_differences(rng):
    x, labels = batch(rng, num_classes=3, dim=4, dtype=np.float64)
    beta = rng.uniform(0.6, 1.2, size=len(labels))
    theoretical, numerical = tf.test.compute_gradient(
        lambda b: margin_loss_all_pairs(labels, tf.constant(x), b, nu=0.05), [tf.constant(beta)]
    )
    np.testing.assert_allclose(theoretical[0], numerical[0], atol=1e-6)
    assert np.abs(theoretical[0]).max() > 0.0


REFERENCES = {
    "contrastive": lambda x, labels: reference_contrastive(x, labels),
    "contrastive-nonzero": lambda x, labels: reference_contrastive(x, labels, 1.3, 0.2, "nonzero"),
    "margin": lambda x, labels: reference_margin(x, labels, 0.9, nu=0.05),
    "multi-similarity": lambda x, labels: reference_multi_similarity(x, labels),
}
EDGE_BATCHES = {
    "no-positive-pair": (np.arange(6), None),
    "one-class": (np.zeros(6, int), None),
    "identical-embeddings": (np.repeat(np.arange(3), 2), np.ones((6, 4), np.float32)),
    "two-samples": (np.array([0, 1]), None),
}


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
@pytest.mark.parametrize("edge", sorted(EDGE_BATCHES))
def test_edge_cases_match_reference_with_finite_gradients(name, edge, rng):
    labels, x = EDGE_BATCHES[edge]
    x = rng.normal(size=(len(labels), 4)).astype(np.float32) if x is None else x
    variable = tf.Variable(x)
    with tf.GradientTape() as tape:
        value = FUNCTIONS[name](tf.constant(labels), variable)
    gradient = tape.gradient(value, variable)
    assert value.dtype == tf.float32
    np.testing.assert_allclose(float(value), REFERENCES[name](x, labels), rtol=1e-5, atol=1e-6)
    assert gradient is not None and np.all(np.isfinite(gradient.numpy()))


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_embeddings_give_nan_loss(name, bad, rng):
    x, labels = batch(rng)
    x[2, 1] = bad
    assert np.isnan(float(FUNCTIONS[name](tf.constant(labels), tf.constant(x))))


# The other functions are the registry's "-all-pairs" variants, compiled under XLA in test_registry.
@pytest.mark.parametrize("name", ["contrastive-nonzero"])
def test_compiles_under_xla_and_matches_eager(name, rng):
    x, labels = batch(rng, num_classes=8, per_class=4)

    @tf.function(jit_compile=True)
    def value_and_gradient(labels, x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = FUNCTIONS[name](labels, x)
        return value, tape.gradient(value, x)

    with tf.GradientTape() as tape:
        x_eager = tf.constant(x)
        tape.watch(x_eager)
        eager = FUNCTIONS[name](tf.constant(labels), x_eager)
    value, gradient = value_and_gradient(tf.constant(labels), tf.constant(x))
    np.testing.assert_allclose(float(value), float(eager), rtol=1e-5)
    np.testing.assert_allclose(gradient.numpy(), tape.gradient(eager, x_eager).numpy(), rtol=1e-4, atol=1e-6)


LOSSES = {
    "contrastive": (lambda: ContrastiveLoss(margin=1.3, positive_margin=0.2, pairs="all"), FUNCTIONS["contrastive"]),
    "margin": (lambda: MarginLoss(beta=0.9, nu=0.05, pairs="all"), FUNCTIONS["margin"]),
    "multi-similarity": (lambda: MultiSimilarityLoss(pairs="all"), FUNCTIONS["multi-similarity"]),
}


@pytest.mark.reference("ContrastiveLoss", "MarginLoss", "MultiSimilarityLoss")
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_keras_losses_route_pairs_all_to_the_matrix_path(name, rng):
    x, labels = batch(rng)
    make, _ = LOSSES[name]
    loss = make()
    assert loss.miner is None
    expected = {
        "contrastive": reference_contrastive(x, labels, 1.3, 0.2),
        "margin": reference_margin(x, labels, 0.9, nu=0.05),
        "multi-similarity": reference_multi_similarity(x, labels),
    }[name]
    np.testing.assert_allclose(float(loss(labels[:, None], x)), expected, rtol=1e-5)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert restored.pairs == "all" and restored.miner is None
    np.testing.assert_allclose(float(restored(labels, x)), expected, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_pairs_all_takes_no_miner_and_pairs_is_checked(name):
    cls = type(LOSSES[name][0]())
    with pytest.raises(ValueError, match="takes no miner"):
        cls(pairs="all", miner=DistanceWeightedMiner(seed=0))
    with pytest.raises(ValueError, match="pairs must be one of"):
        cls(pairs="every")
    assert cls().pairs == "mined" and cls().miner is not None


def test_contrastive_average_is_checked(rng):
    x, labels = batch(rng)
    with pytest.raises(ValueError, match="average must be one of"):
        contrastive_all_pairs(labels, x, average="mean")


def test_margin_pairs_all_uses_class_betas(rng):
    x, labels = batch(rng)
    loss = MarginLoss(beta=1.0, beta_class=True, num_classes=4, nu=0.01, pairs="all")
    class_beta = rng.uniform(-0.3, 0.3, size=4).astype(np.float32)
    loss.class_beta.assign(class_beta)
    expected = reference_margin(x, labels, 1.0 + class_beta[labels], nu=0.01)
    with tf.GradientTape() as tape:
        value = loss.value(labels, x)
    np.testing.assert_allclose(float(value), expected, rtol=1e-5)
    assert np.abs(tf.convert_to_tensor(tape.gradient(value, loss.class_beta)).numpy()).max() > 0.0


def test_learnable_beta_trains_with_pairs_all_under_metric_learning_model(rng):
    from tfdml.training import MetricLearningModel

    num_classes, per_class = 6, 4
    centres = rng.normal(size=(num_classes, 10))
    labels = np.repeat(np.arange(num_classes), per_class).astype(np.int32)
    images = (centres[labels] + 0.7 * rng.normal(size=(len(labels), 10))).astype(np.float32)
    dataset = tf.data.Dataset.from_tensors((images, labels)).repeat(10)
    embedder = keras.Sequential([keras.Input((10,)), keras.layers.Dense(16), keras.layers.UnitNormalization()])
    loss = MarginLoss(learn_beta=True, beta_learning_rate=5e-3, pairs="all")
    model = MetricLearningModel(embedder, loss)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = model.fit(dataset, epochs=1, verbose=0)
    assert float(loss.global_beta.numpy()) != pytest.approx(1.2, abs=1e-4)
    assert np.all(np.isfinite(history.history["loss"]))


# ---------------------------------------------------------------- pytorch-metric-learning


def contrastive_as_pml(labels, embeddings, miner=None, **params):
    """tfdml's contrastive loss with PML's default ``AvgNonZeroReducer``, on every pair or on the pairs of
    ``PairMarginMiner(**miner)`` (PML's, on the L2-normalised embeddings)."""
    if miner is None:
        return contrastive_all_pairs(labels, embeddings, average="nonzero", **params)
    pairs = PairMarginMiner(**miner).mine_masked(embeddings, labels)
    return contrastive_pair_loss(pairs, embeddings, average="nonzero", **params)


PML_FUNCTIONS = {"ContrastiveLoss": contrastive_as_pml, "MultiSimilarityLoss": multi_similarity_all_pairs}
# Beside the random and degenerate batches: every distance, and the contrastive loss on PairMarginMiner's pairs.
PML_IDS = {
    "ContrastiveLoss": {"b32_d8_euclidean", "b32_d8_cosine", "identical_dot", "b32_d8_euclidean_pair_margin_miner"},
    "MultiSimilarityLoss": {"b32_d64", "b32_d8_euclidean", "b32_d8_dot", "one_class_euclidean", "no_positives_dot"},
}


@pytest.mark.parametrize("name", sorted(PML_FUNCTIONS))
def test_value_and_gradient_match_pml(name):
    cases = pml_parity.cases(name)
    for case in cases:
        mining = {"miner": case["miner"]} if "miner" in case else {}
        value, gradient = pml_parity.value_and_gradient(
            lambda labels, x, **params: PML_FUNCTIONS[name](labels, x, **params, **mining), case
        )
        np.testing.assert_allclose(value, case["loss"], rtol=1e-5, atol=1e-5, err_msg=case["id"])
        np.testing.assert_allclose(gradient, case["grad"], rtol=1e-5, atol=1e-5, err_msg=case["id"])
    assert PML_IDS[name] <= {case["id"] for case in cases}
