import keras
import numpy as np
import pytest
import tensorflow as tf

import pml_parity
import registry_cases as rc
from tests import reference_tuple as ref
from tests.test_distances import reference_comparison
from tfdml.distances import DISTANCES
from tfdml.losses import (
    ContrastiveLoss,
    MarginLoss,
    QuadrupletLoss,
    TripletLoss,
    contrastive_loss,
    margin_loss,
    quadruplet_loss,
    triplet_loss,
)
from tfdml.mining import DistanceWeightedMiner, TupleMiner
from tfdml.mining.base import MaskedTriplets, Miner, ReplicaConsistentRandom, Triplets


class FixedMiner(Miner):
    """Returns the same hand-built tuples for every batch."""

    def __init__(self, tuples, seed=0):
        super().__init__(seed=seed)
        self.tuples = tuples

    def mine(self, embeddings, labels):
        columns = np.array(self.tuples, np.int32).reshape(-1, 3).T
        return Triplets(*(tf.constant(c) for c in columns))


LOSSES = {
    "contrastive": lambda miner: ContrastiveLoss(miner=miner),
    "triplet": lambda miner: TripletLoss(miner=miner),
    "triplet-squared": lambda miner: TripletLoss(distance="squared_euclidean", miner=miner),
    "margin": lambda miner: MarginLoss(miner=miner),
    "quadruplet": lambda miner: QuadrupletLoss(miner=miner),
}
# Every registered tuple miner (the multi-similarity miner gives pair masks, not tuples).
MINERS = {name: make for name, make in rc.miner_cases().items() if isinstance(make(), TupleMiner)}


def unit_batch(rng, num_classes=4, per_class=3, dim=8, dtype=np.float32):
    x = rng.normal(size=(num_classes * per_class, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(dtype), np.repeat(np.arange(num_classes), per_class).astype(np.int32)


def reference(name, x, labels, tuples):
    if name == "contrastive":
        return ref.contrastive_loss(x, tuples)
    if name == "triplet":
        return ref.triplet_loss(x, tuples)
    if name == "triplet-squared":
        return ref.triplet_loss(x, tuples, squared=True)
    if name == "margin":
        return ref.margin_loss(x, labels, tuples)
    raise KeyError(name)


@pytest.mark.reference("ContrastiveLoss", "TripletLoss", "MarginLoss")
@pytest.mark.parametrize("name", ["contrastive", "triplet", "triplet-squared", "margin"])
@pytest.mark.parametrize("miner_name", sorted(MINERS))
def test_loss_matches_reference_on_the_miners_tuples(name, miner_name, rng):
    x, labels = unit_batch(rng)
    loss = LOSSES[name](MINERS[miner_name]())
    tuples = list(zip(*(t.numpy().tolist() for t in MINERS[miner_name]()(x, labels))))
    assert tuples
    np.testing.assert_allclose(float(loss(labels, x)), reference(name, x, labels, tuples), rtol=1e-5, atol=1e-6)


def test_hand_built_values():
    x = np.array([[0.0, 0.0], [0.3, 0.4], [0.6, 0.8], [0.0, 0.1]], np.float32)  # D01 = 0.5, D02 = 1.0, D03 = 0.1
    labels = np.array([0, 0, 1, 2])
    tuples = [(0, 1, 2), (0, 1, 3)]
    # Contrastive: positives 0.5, 0.5; negatives (1 − 1.0)_+ = 0, (1 − 0.1) = 0.9 → 1.9 / 4.
    np.testing.assert_allclose(float(ContrastiveLoss(miner=FixedMiner(tuples))(labels, x)), 1.9 / 4, rtol=1e-6)
    # Triplet: (0.5 − 1.0 + 0.2)_+ = 0, (0.5 − 0.1 + 0.2) = 0.6 → 0.3.
    np.testing.assert_allclose(float(TripletLoss(miner=FixedMiner(tuples))(labels, x)), 0.3, rtol=1e-6)
    # ℓ2²: (0.25 − 1 + 0.2)_+ = 0, (0.25 − 0.01 + 0.2) = 0.44 → 0.22.
    np.testing.assert_allclose(float(TripletLoss(squared=True, miner=FixedMiner(tuples))(labels, x)), 0.22, rtol=1e-5)
    # Margin β = 1.2: positives (0.2 + 0.5 − 1.2)_+ = 0 twice; negatives (0.2 + 1.2 − 1.0) = 0.4, (0.2 + 1.2 − 0.1) = 1.3.
    np.testing.assert_allclose(float(MarginLoss(miner=FixedMiner(tuples))(labels, x)), 1.7 / 2, rtol=1e-6)
    # β = 0.6: positives (0.2 + 0.5 − 0.6) = 0.1 twice, negatives 0 and (0.2 + 0.6 − 0.1) = 0.7 → 0.9 / 3.
    np.testing.assert_allclose(float(MarginLoss(beta=0.6, miner=FixedMiner(tuples))(labels, x)), 0.9 / 3, rtol=1e-5)


def test_margin_loss_with_class_and_image_betas_and_nu_matches_reference(rng):
    x, labels = unit_batch(rng, num_classes=3, per_class=4)
    image_ids = rng.permutation(40)[: len(labels)]
    tuples = [tuple(t) for t in np.array([t.numpy() for t in DistanceWeightedMiner(seed=5)(x, labels)]).T.tolist()]
    loss = MarginLoss(
        beta=0.9,
        learn_beta=True,
        beta_class=True,
        num_classes=3,
        beta_image=True,
        num_images=40,
        nu=0.1,
        miner=DistanceWeightedMiner(seed=5),
    )
    class_beta = rng.normal(scale=0.2, size=3).astype(np.float32)
    image_beta = rng.normal(scale=0.2, size=40).astype(np.float32)
    loss.class_beta.assign(class_beta)
    loss.image_beta.assign(image_beta)
    y_true = np.stack([labels, image_ids], axis=1)
    expected = ref.margin_loss(
        x, labels, tuples, beta=0.9, beta_class=class_beta, beta_image=image_beta, image_ids=image_ids, nu=0.1
    )
    np.testing.assert_allclose(float(loss.value(y_true, x)), expected, rtol=1e-5)


@pytest.mark.reference("QuadrupletLoss")
def test_quadruplet_loss_matches_reference_when_the_fourth_sample_is_forced(rng):
    # Class 2 has one member (index 6): every tuple between classes 0 and 1 must take l = 6.
    x = rng.normal(size=(7, 5)).astype(np.float32)
    labels = np.array([0, 0, 0, 1, 1, 1, 2])
    tuples = [(0, 1, 3), (1, 2, 5), (3, 4, 0), (5, 3, 2), (2, 0, 4)]
    expected = ref.quadruplet_loss(x, [t + (6,) for t in tuples])
    np.testing.assert_allclose(float(QuadrupletLoss(miner=FixedMiner(tuples))(labels, x)), expected, rtol=1e-5)


def test_quadruplet_fourth_sample_is_uniform_over_other_classes():
    from tfdml.losses.quadruplet import sample_other_class

    labels = tf.constant([3, 1, 0, 3, 2, 1, 0, 2, 2, 5])
    excluded_a = tf.constant([3, 2, 0, 5] * 2000)
    excluded_b = tf.constant([1, 2, 5, 0] * 2000)
    fourth, valid = sample_other_class(ReplicaConsistentRandom(0), labels, excluded_a, excluded_b)
    assert np.all(valid.numpy())
    labels_np = labels.numpy()
    for k in range(4):
        drawn = fourth.numpy()[k::4]
        allowed = [i for i in range(10) if labels_np[i] not in (excluded_a.numpy()[k], excluded_b.numpy()[k])]
        counts = np.bincount(drawn, minlength=10)
        assert set(np.nonzero(counts)[0]) == set(allowed)
        assert np.max(np.abs(counts[allowed] / 2000 - 1 / len(allowed))) < 0.04
    _, valid = sample_other_class(
        ReplicaConsistentRandom(0), tf.constant([0, 0, 1, 1]), tf.constant([0]), tf.constant([1])
    )
    assert not valid.numpy()[0]


def test_quadruplet_without_a_third_class_keeps_only_the_triplet_term(rng):
    x = rng.normal(size=(4, 3)).astype(np.float32)
    labels = np.array([0, 0, 1, 1])
    tuples = [(0, 1, 2), (2, 3, 0)]
    np.testing.assert_allclose(
        float(QuadrupletLoss(miner=FixedMiner(tuples))(labels, x)), ref.triplet_loss(x, tuples, margin=1.0), rtol=1e-5
    )


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_float64_gradients_match_finite_differences(name, rng):
    # The singleton class 2 makes the quadruplet's random fourth sample deterministic (always 6).
    x = rng.normal(size=(7, 4)) / 2.0
    labels = np.array([0, 0, 0, 1, 1, 1, 2], np.int32)
    tuples = [(0, 1, 3), (1, 2, 5), (3, 4, 0), (5, 3, 2), (2, 0, 4)]
    loss = LOSSES[name](FixedMiner(tuples))
    theoretical, numerical = tf.test.compute_gradient(lambda e: loss.compute(tf.constant(labels), e), [tf.constant(x)])
    np.testing.assert_allclose(theoretical[0], numerical[0], atol=1e-6)
    assert np.abs(theoretical[0]).max() > 0.0


def test_margin_beta_gradients_match_finite_differences(rng):
    x, labels = unit_batch(rng, num_classes=3, per_class=3, dim=4, dtype=np.float64)
    tuples = [(0, 1, 3), (1, 2, 7), (3, 5, 0), (4, 3, 8), (6, 8, 2), (7, 6, 1)]
    loss = MarginLoss(beta=0.9, nu=0.05, miner=FixedMiner(tuples))

    def as_function_of_beta(beta):
        loss.beta = beta
        loss.global_beta = beta
        return loss.compute(tf.constant(labels), tf.constant(x))

    theoretical, numerical = tf.test.compute_gradient(as_function_of_beta, [tf.constant(0.9, tf.float64)])
    np.testing.assert_allclose(theoretical[0], numerical[0], atol=1e-6)


# Finite values and gradients on every degenerate batch: tests/test_registry.py, for every loss.
@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("labels", [np.arange(6), np.zeros(6, int)], ids=["no-positive-pair", "one-class"])
def test_batches_without_a_valid_tuple_give_zero_loss_and_zero_gradients(name, labels, rng):
    x = tf.Variable(rng.normal(size=(6, 4)).astype(np.float32))
    with tf.GradientTape() as tape:
        value = LOSSES[name](DistanceWeightedMiner(seed=3))(labels, x)
    gradient = tape.gradient(value, x)
    assert float(value) == 0.0 and not np.any(tf.convert_to_tensor(gradient).numpy())


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_float16_embeddings_are_handled_in_float32(name, rng):
    x, labels = unit_batch(rng)
    x16 = tf.Variable(x.astype(np.float16))
    loss = LOSSES[name](DistanceWeightedMiner(seed=0))
    with tf.GradientTape() as tape:
        value = loss(labels, x16)
    gradient = tape.gradient(value, x16)
    assert value.dtype == tf.float32 and np.isfinite(value.numpy())
    assert gradient.dtype == tf.float16 and np.all(np.isfinite(tf.convert_to_tensor(gradient).numpy()))
    reference_value = LOSSES[name](DistanceWeightedMiner(seed=0))(labels, x.astype(np.float16).astype(np.float32))
    np.testing.assert_allclose(float(value), float(reference_value), rtol=1e-5)


def test_loss_functions_take_explicit_tuples_and_ignore_invalid_ones(rng):
    x, labels = unit_batch(rng)
    tuples = [(0, 1, 3), (4, 5, 0), (7, 6, 10), (9, 11, 2)]
    # A fifth, invalid tuple must change nothing.
    columns = np.array(tuples + [(1, 2, 3)], np.int32).T
    triplets = MaskedTriplets(*(tf.constant(c) for c in columns), tf.constant([True] * 4 + [False]))
    np.testing.assert_allclose(float(triplet_loss(triplets, x)), ref.triplet_loss(x, tuples), rtol=1e-5)
    np.testing.assert_allclose(
        float(triplet_loss(triplets, x, distance="squared_euclidean")),
        ref.triplet_loss(x, tuples, squared=True),
        rtol=1e-5,
    )
    np.testing.assert_allclose(float(contrastive_loss(triplets, x)), ref.contrastive_loss(x, tuples), rtol=1e-5)
    betas = tf.fill([5], 0.9)
    np.testing.assert_allclose(
        float(margin_loss(triplets, x, betas, nu=0.1)), ref.margin_loss(x, labels, tuples, beta=0.9, nu=0.1), rtol=1e-5
    )
    fourth = tf.constant([6, 9, 0, 3, 0])
    quadruplets = [(a, p, n, int(l)) for (a, p, n), l in zip(tuples, fourth.numpy())]
    np.testing.assert_allclose(
        float(quadruplet_loss(triplets, x, fourth, tf.constant([True] * 5))),
        ref.quadruplet_loss(x, quadruplets),
        rtol=1e-5,
    )


# (margin, positive_margin) per distance: under a similarity the contrastive margins are similarities.
CONTRASTIVE_MARGINS = {
    "euclidean": (1.2, 0.3),
    "squared_euclidean": (1.5, 0.1),
    "cosine": (0.1, 0.6),
    "dot": (0.5, 2.0),
}


@pytest.mark.reference("ContrastiveLoss", "TripletLoss")
@pytest.mark.parametrize("distance", DISTANCES)
def test_each_distance_matches_the_reference_in_its_direction(distance, rng):
    x, labels = unit_batch(rng)
    x = 2.0 * x  # "dot" differs from "cosine"
    tuples = [(0, 1, 3), (4, 5, 0), (7, 6, 10), (9, 11, 2), (3, 5, 8)]
    matrix, sign = reference_comparison(x, distance)
    margin, positive_margin = CONTRASTIVE_MARGINS[distance]
    contrastive = [
        max(sign * (matrix[a, p] - positive_margin), 0.0) + max(sign * (margin - matrix[a, n]), 0.0)
        for a, p, n in tuples
    ]
    triplet = [max(sign * (matrix[a, p] - matrix[a, n]) + 0.3, 0.0) for a, p, n in tuples]
    assert min(max(contrastive), max(triplet)) > 0.0
    miner = FixedMiner(tuples)
    as_tensors = (tf.constant(labels), tf.constant(x))
    loss = ContrastiveLoss(margin, positive_margin, distance=distance, miner=miner)
    np.testing.assert_allclose(float(loss(*as_tensors)), np.mean(contrastive) / 2.0, rtol=1e-5)
    loss = TripletLoss(0.3, distance=distance, miner=miner)
    np.testing.assert_allclose(float(loss(*as_tensors)), np.mean(triplet), rtol=1e-5)


def test_margin_loss_serializes_its_beta_options():
    loss = MarginLoss(beta=0.6, learn_beta=True, beta_class=True, num_classes=5, nu=0.01, beta_learning_rate=1e-3)
    restored = MarginLoss.from_config(loss.get_config())
    assert restored.get_config() == loss.get_config()
    assert sorted(v.name for v in restored.trainable_variables) == ["beta", "beta_class"]
    assert restored.parameters.learning_rate == 1e-3


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_default_miners(name):
    loss = LOSSES[name](None)
    assert isinstance(loss.miner, DistanceWeightedMiner) and loss.miner.construction == "pairs"


@pytest.mark.parametrize("name,policy", [("triplet", "float32"), ("margin", "mixed_float16")])
def test_plain_keras_compile_and_fit(name, policy, rng):
    x, labels = unit_batch(rng, num_classes=4, per_class=4, dim=6)
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8), keras.layers.UnitNormalization()])
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss=LOSSES[name](DistanceWeightedMiner(seed=0)))
        history = model.fit(x, labels[:, None], batch_size=16, epochs=2, shuffle=False, verbose=0)
        assert model(x).dtype == ("float16" if policy == "mixed_float16" else "float32")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert np.all(np.isfinite(history.history["loss"])) and history.history["loss"][0] > 0.0


def test_learnable_margin_refuses_plain_compile(rng):
    x, labels = unit_batch(rng)
    with pytest.raises(ValueError, match="MetricLearningModel"):
        MarginLoss(learn_beta=True)(labels, x)


def test_label_beyond_num_classes_raises_a_clear_error(rng):
    x, labels = unit_batch(rng)
    loss = MarginLoss(beta_class=True, num_classes=3)
    with pytest.raises(tf.errors.InvalidArgumentError, match="num_classes=3"):
        loss.value(labels, x)  # labels go up to 3


def test_bad_margin_arguments_raise_clear_errors(rng):
    with pytest.raises(ValueError, match="num_classes"):
        MarginLoss(beta_class=True)
    with pytest.raises(ValueError, match="num_images"):
        MarginLoss(beta_image=True)
    loss = MarginLoss(beta_image=True, num_images=10)
    x, labels = unit_batch(rng)
    with pytest.raises(ValueError, match=r"\(batch, 2\)"):
        loss.value(labels, x)
    with pytest.raises(tf.errors.InvalidArgumentError, match="num_images=10"):
        loss.value(np.stack([labels, np.arange(len(labels))], axis=1), x)
    with pytest.raises(TypeError, match="Miner"):
        TripletLoss(miner="semihard")


def test_margin_betas_train_under_model_fit_and_stay_out_of_the_embedder(rng):
    from tfdml.training import MetricLearningModel

    num_classes, per_class = 6, 4
    centres = rng.normal(size=(num_classes, 10))
    labels = np.repeat(np.arange(num_classes), per_class)
    images = (centres[labels] + 0.7 * rng.normal(size=(len(labels), 10))).astype(np.float32)
    dataset = tf.data.Dataset.from_tensors((images, labels.astype(np.int32))).repeat(15)
    embedder = keras.Sequential([keras.Input((10,)), keras.layers.Dense(16), keras.layers.UnitNormalization()])
    loss = MarginLoss(
        learn_beta=True,
        beta_class=True,
        num_classes=num_classes,
        beta_learning_rate=5e-3,
        miner=DistanceWeightedMiner(seed=0),
    )
    model = MetricLearningModel(embedder, loss)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    before = float(MarginLoss(miner=DistanceWeightedMiner(seed=0), beta=1.2)(labels, embedder(images)))
    history = model.fit(dataset, epochs=1, verbose=0)
    after = float(
        MarginLoss(miner=DistanceWeightedMiner(seed=0), beta=float(loss.global_beta.numpy()))(labels, embedder(images))
    )
    assert float(loss.global_beta.numpy()) != pytest.approx(1.2, abs=1e-4)
    assert np.any(np.abs(loss.class_beta.numpy()) > 1e-4)
    assert history.history["loss"][-1] < before and after < before
    embedder_variables = {id(v) for v in embedder.variables}
    assert all(id(v) not in embedder_variables for v in loss.trainable_variables)
    assert all("beta" not in v.path for v in embedder.variables)


def every_triplet(labels):
    """:class:`MaskedTriplets` of every (anchor, positive, negative) of the batch (one invalid entry when none)."""
    n = len(labels)
    tuples = [
        (a, p, k)
        for a in range(n)
        for p in range(n)
        for k in range(n)
        if a != p and labels[a] == labels[p] != labels[k]
    ]
    columns = np.array(tuples or [(0, 0, 0)], np.int32).T
    return MaskedTriplets(*(tf.constant(c) for c in columns), tf.constant([bool(tuples)] * columns.shape[1]))


def test_triplet_loss_matches_pml_under_each_distance():
    cases = pml_parity.cases("TripletLoss")
    for case in cases:
        triplets = every_triplet(case["inputs"]["labels"])
        value, gradient = pml_parity.value_and_gradient(
            lambda _, x, **params: triplet_loss(triplets, x, **params), case
        )
        np.testing.assert_allclose(value, case["loss"], rtol=1e-5, atol=1e-5, err_msg=case["id"])
        np.testing.assert_allclose(gradient, case["grad"], rtol=1e-5, atol=1e-5, err_msg=case["id"])
    ids = {case["id"] for case in cases}
    distances = ("euclidean", "squared_euclidean", "cosine")
    assert {f"{batch}_{distance}" for batch in ("b32_d8", "b32_d64", "identical") for distance in distances} <= ids
