"""N-pair, angular, generalized lifted structure, multi-similarity (+ miner), histogram and SNR losses."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import reference_structure as ref
from tfdml.losses import (
    AngularLoss,
    GeneralizedLiftedStructureLoss,
    HistogramLoss,
    MultiSimilarityLoss,
    NPairLoss,
    SNRLoss,
    angular_loss,
    generalized_lifted_structure_loss,
    histogram_loss,
    multi_similarity_loss,
    npair_loss,
    snr_loss,
)
from tfdml.mining import DistanceWeightedMiner, Miner, MultiSimilarityMiner, PairMasks, Triplets
from tfdml.mining.base import MaskedTriplets


@keras.saving.register_keras_serializable(package="tfdml_tests")
class FixedTriplets(Miner):
    """Returns the same triplets for any batch (deterministic mining for references and gradient checks)."""

    def __init__(self, anchors, positives, negatives, seed=None):
        super().__init__(seed=seed)
        self.anchors, self.positives, self.negatives = list(anchors), list(positives), list(negatives)

    def mine(self, embeddings, labels):
        return Triplets(*(tf.constant(t, tf.int32) for t in (self.anchors, self.positives, self.negatives)))


# Includes an R-SNR switched triplet (2, 2, 1): the anchor is its own positive.
SNR_TRIPLETS = ([0, 1, 3, 2, 4], [1, 0, 4, 2, 5], [5, 3, 0, 1, 0])
SNR_SEED = 7


def seeded_snr_reference(labels, x, p_switch=0.0):
    """The SNR reference on the triplets that a fresh ``DistanceWeightedMiner(seed=SNR_SEED)`` draws."""
    twin = DistanceWeightedMiner(p_switch=p_switch, seed=SNR_SEED)
    triplets = twin(tf.math.l2_normalize(tf.constant(x, tf.float32), axis=1), tf.constant(labels))
    return ref.snr(x, *(t.numpy() for t in triplets))


SPC2 = np.array([0, 0, 1, 1, 2, 2, 3, 3])
SPC3 = np.array([4, 4, 4, 1, 1, 1, 7, 7, 7])
UNEVEN = np.array([0, 0, 0, 0, 1, 2, 2, 5])

# (loss factory, NumPy reference taking (labels, x)), default hyperparameters unless stated.
CASES = {
    "npair": (NPairLoss, ref.npair),
    "angular": (AngularLoss, ref.angular),
    "angular_30": (lambda: AngularLoss(alpha=30.0, angular_weight=1.0, nu=0.01), lambda y, x: ref.angular(y, x, 30.0, 1.0, 0.01)),
    "lifted": (GeneralizedLiftedStructureLoss, ref.generalized_lifted_structure),
    "lifted_margin": (
        lambda: GeneralizedLiftedStructureLoss(margin=0.5, nu=0.0),
        lambda y, x: ref.generalized_lifted_structure(y, x, 0.5, 0.0),
    ),
    "multi_similarity": (MultiSimilarityLoss, ref.multi_similarity),
    "multi_similarity_all_pairs": (
        lambda: MultiSimilarityLoss(alpha=3.0, beta=20.0, threshold=0.3, miner=MultiSimilarityMiner(epsilon=math.inf)),
        lambda y, x: ref.multi_similarity(y, x, 3.0, 20.0, 0.3, epsilon=math.inf),
    ),
    "multi_similarity_eps": (
        lambda: MultiSimilarityLoss(miner=MultiSimilarityMiner(epsilon=0.3)),
        lambda y, x: ref.multi_similarity(y, x, epsilon=0.3),
    ),
    "histogram": (HistogramLoss, ref.histogram),
    "histogram_11": (lambda: HistogramLoss(num_bins=11), lambda y, x: ref.histogram(y, x, 11)),
    "snr": (lambda: SNRLoss(miner=DistanceWeightedMiner(seed=SNR_SEED)), seeded_snr_reference),
    "snr_fixed_triplets": (
        lambda: SNRLoss(margin=0.5, regularization=0.1, miner=FixedTriplets(*SNR_TRIPLETS)),
        lambda y, x: ref.snr(x, *SNR_TRIPLETS, margin=0.5, regularization=0.1),
    ),
}
# Losses whose mining is random: a second call draws other tuples, so they have no fixed gradient.
STOCHASTIC = {"snr"}
DEFAULT_LOSSES = {
    "npair": NPairLoss,
    "angular": AngularLoss,
    "lifted": GeneralizedLiftedStructureLoss,
    "multi_similarity": MultiSimilarityLoss,
    "histogram": HistogramLoss,
    "snr": CASES["snr"][0],
}


def embeddings(rng, labels, dim=6, scale=1.0, cluster=0.0):
    """Random embeddings, optionally pulled towards a per-class centre so mining has work to do."""
    centres = rng.normal(size=(int(labels.max()) + 1, dim))
    return scale * (rng.normal(size=(len(labels), dim)) + cluster * centres[labels])


def loss_value(loss, labels, x):
    return float(loss(tf.constant(labels), tf.constant(x, tf.float32)))


def gradient_of(loss, labels, x, dtype=tf.float32):
    x = tf.constant(x, dtype)
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = loss(tf.constant(labels), x)
    return value, tape.gradient(value, x)


@pytest.mark.reference("NPairLoss", "AngularLoss", "GeneralizedLiftedStructureLoss", "MultiSimilarityLoss", "HistogramLoss", "SNRLoss")
@pytest.mark.parametrize("labels", [SPC2, SPC3, UNEVEN], ids=["spc2", "spc3", "uneven"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_numpy_reference(case, labels, rng):
    make_loss, reference = CASES[case]
    for scale, cluster in [(1.0, 0.0), (0.5, 2.0)]:
        x = embeddings(rng, labels, scale=scale, cluster=cluster)
        np.testing.assert_allclose(loss_value(make_loss(), labels, x), reference(labels, x), rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("case", sorted(set(CASES) - STOCHASTIC))
def test_float64_gradient_matches_finite_differences(case, rng):
    labels = np.array([0, 0, 0, 1, 1, 2])
    loss = CASES[case][0]()
    x = tf.constant(embeddings(rng, labels, dim=4, cluster=1.0), tf.float64)
    theoretical, numerical = tf.test.compute_gradient(lambda e: loss.compute(tf.constant(labels, tf.int32), e), [x], delta=1e-6)
    np.testing.assert_allclose(theoretical[0], numerical[0], rtol=1e-5, atol=1e-6)


def test_loss_functions_take_explicit_inputs_in_float64(rng):
    labels = SPC3
    x = embeddings(rng, labels, dim=4, cluster=1.0)
    y, e = tf.constant(labels), tf.constant(x, tf.float64)
    np.testing.assert_allclose(npair_loss(y, e, nu=0.01).numpy(), ref.npair(labels, x, 0.01), rtol=1e-10)
    expected = ref.angular(labels, x, 30.0, 1.0, 0.01)
    np.testing.assert_allclose(angular_loss(y, e, 30.0, 1.0, 0.01).numpy(), expected, rtol=1e-10)
    expected = ref.generalized_lifted_structure(labels, x, 0.5, 0.0)
    np.testing.assert_allclose(generalized_lifted_structure_loss(y, e, 0.5, 0.0).numpy(), expected, rtol=1e-10)
    np.testing.assert_allclose(histogram_loss(y, e, num_bins=11).numpy(), ref.histogram(labels, x, 11), rtol=1e-10)
    masks = PairMasks(*(tf.constant(m) for m in ref.multi_similarity_masks(labels, x)))
    np.testing.assert_allclose(multi_similarity_loss(masks, e).numpy(), ref.multi_similarity(labels, x), rtol=1e-10)
    columns = [tf.constant(t, tf.int32) for t in SNR_TRIPLETS]
    triplets = MaskedTriplets(*columns, tf.ones_like(columns[0], tf.bool))
    np.testing.assert_allclose(snr_loss(triplets, e).numpy(), ref.snr(x, *SNR_TRIPLETS), rtol=1e-10)


def test_npair_hand_built_batch():
    # S_ap = 1 and S_an = 0 for all 4 positive pairs, 2 negatives each; ‖φ‖² = 1.
    x = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    labels = np.array([0, 0, 1, 1])
    expected = math.log(1.0 + 2.0 * math.exp(-1.0)) + 0.005
    assert loss_value(NPairLoss(), labels, x) == pytest.approx(expected, rel=1e-6)


def test_angular_hand_built_batch():
    # Orthonormal classes, norm 2: tan²45° = 1, f_apn = 4·0 − 4·1 for both negatives of each pair.
    x = 2.0 * np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    labels = np.array([0, 0, 1, 1])
    npair = math.log(1.0 + 2.0 * math.exp(-4.0)) + 0.005 * 4.0
    expected = npair + 2.0 * math.log(1.0 + 2.0 * math.exp(-4.0))
    assert loss_value(AngularLoss(), labels, x) == pytest.approx(expected, rel=1e-6)


def test_angular_large_margins(rng):
    x = embeddings(rng, SPC3, cluster=1.0)
    assert loss_value(AngularLoss(alpha=60.0), SPC3, x) == pytest.approx(ref.angular(SPC3, x, alpha=60.0), rel=1e-5)
    # At 80° (4 tan²α ≈ 129) the smallest exponentials underflow: the loss must stay finite.
    value, gradient = gradient_of(AngularLoss(alpha=80.0), SPC3, x)
    assert np.isfinite(value.numpy()) and np.all(np.isfinite(gradient.numpy()))


def test_lifted_structure_hand_built_batch():
    # d01 = 2, d02 = d12 = 1: anchors 0 and 1 give 2 + log e^(1-1) = 2; anchor 2 has no positive.
    x = np.array([[0.0], [2.0], [1.0]])
    labels = np.array([0, 0, 1])
    assert loss_value(GeneralizedLiftedStructureLoss(), labels, x) == pytest.approx(2.0 + 0.005 * 5.0 / 3.0, rel=1e-6)
    # d01 = 1, d02 = 3, d12 = 2: both hinges are inactive, only the regulariser remains.
    x = np.array([[0.0], [1.0], [3.0]])
    assert loss_value(GeneralizedLiftedStructureLoss(), labels, x) == pytest.approx(0.005 * 10.0 / 3.0, rel=1e-6)


def test_histogram_hand_built_batches():
    e = np.array([1.0, 0.0])
    # Positive pairs at s = −1, negatives at ±1: every negative lies above the positive CDF → loss 1.
    x = np.stack([e, e, -e, -e])
    assert loss_value(HistogramLoss(), np.array([0, 1, 1, 0]), x) == pytest.approx(1.0, abs=1e-6)
    # Positives at s = 1, negatives at s = −1: no overlap → loss 0.
    assert loss_value(HistogramLoss(), np.array([0, 0, 1, 1]), x) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("num_bins", [1, 2.5, 0])
def test_histogram_rejects_bad_num_bins(num_bins):
    with pytest.raises(ValueError, match="num_bins"):
        HistogramLoss(num_bins=num_bins)


@pytest.mark.parametrize(
    "make_loss, argument",
    [
        (lambda: NPairLoss(nu=-1.0), "nu"),
        (lambda: AngularLoss(alpha=90.0), "alpha"),
        (lambda: AngularLoss(angular_weight=-1.0), "angular_weight"),
        (lambda: GeneralizedLiftedStructureLoss(nu=-0.1), "nu"),
        (lambda: MultiSimilarityLoss(beta=0.0), "beta"),
        (lambda: MultiSimilarityMiner(epsilon=-0.1), "epsilon"),
    ],
)
def test_bad_hyperparameters_are_named(make_loss, argument):
    with pytest.raises(ValueError, match=argument):
        make_loss()


@pytest.mark.reference("MultiSimilarityMiner")
@pytest.mark.parametrize("labels", [SPC2, SPC3, UNEVEN, np.array([0, 1, 2, 3])], ids=["spc2", "spc3", "uneven", "singletons"])
@pytest.mark.parametrize("epsilon", [0.0, 0.1, 0.5])
def test_multi_similarity_miner_matches_reference(labels, epsilon, rng):
    x = embeddings(rng, labels, cluster=1.0)
    masks = MultiSimilarityMiner(epsilon=epsilon)(tf.constant(x, tf.float32), tf.constant(labels))
    expected_positives, expected_negatives = ref.multi_similarity_masks(labels, x, epsilon)
    np.testing.assert_array_equal(masks.positives.numpy(), expected_positives)
    np.testing.assert_array_equal(masks.negatives.numpy(), expected_negatives)


def test_multi_similarity_miner_hand_built_batch():
    def unit(degrees):
        return [math.cos(math.radians(degrees)), math.sin(math.radians(degrees))]

    # Anchor 0 at 0°: positive 1 at 80° (S ≈ 0.17), negatives at 30° (S ≈ 0.87) and 180° (S = −1).
    x = np.array([unit(0), unit(80), unit(30), unit(180)])
    labels = np.array([0, 0, 1, 2])
    masks = MultiSimilarityMiner(epsilon=0.1)(tf.constant(x, tf.float32), tf.constant(labels))
    # Hard negative 2 is kept (0.87 + 0.1 > 0.17), easy negative 3 is not (−1 + 0.1 < 0.17).
    assert masks.negatives.numpy()[0].tolist() == [False, False, True, False]
    # Positive 1 violates the hardest negative (0.17 − 0.1 < 0.87).
    assert masks.positives.numpy()[0].tolist() == [False, True, False, False]
    # Samples 2 and 3 have no positive: nothing is mined for them.
    assert not masks.positives.numpy()[2:].any() and not masks.negatives.numpy()[2:].any()


def test_multi_similarity_miner_runs_in_tf_function_with_unknown_batch():
    miner = MultiSimilarityMiner()
    mine = tf.function(
        miner.mine,
        input_signature=[tf.TensorSpec([None, 4], tf.float32), tf.TensorSpec([None], tf.int32)],
    )
    masks = mine(tf.random.normal((6, 4)), tf.constant([0, 0, 1, 1, 2, 2]))
    assert masks.positives.shape == (6, 6)


def test_multi_similarity_no_overflow_at_large_beta(rng):
    # All negatives identical to the anchor: β(S − λ) = 40·0.5 would be fine, 400·0.5 overflows exp in float32.
    x = np.tile(rng.normal(size=(1, 4)), (6, 1)) + 1e-3 * rng.normal(size=(6, 4))
    labels = np.array([0, 0, 1, 1, 2, 2])
    for beta in [40.0, 400.0]:
        loss = MultiSimilarityLoss(beta=beta)
        value, gradient = gradient_of(loss, labels, x)
        np.testing.assert_allclose(value.numpy(), ref.multi_similarity(labels, x, beta=beta), rtol=1e-4)
        assert np.all(np.isfinite(gradient.numpy()))


def test_multi_similarity_accepts_a_triplet_miner(rng):
    labels = np.array([0, 0, 1, 1])
    x = embeddings(rng, labels)
    # Triplets (0, 1, 2), (0, 1, 3) and (2, 3, 0): pairs 0→1 (twice), 0→2, 0→3, 2→3 and 2→0.
    loss = MultiSimilarityLoss(miner=FixedTriplets([0, 0, 2], [1, 1, 3], [2, 3, 0]))
    s = ref.normalize(x) @ ref.normalize(x).T

    def anchor_term(positives, negatives):
        positive = math.log(1 + sum(math.exp(-2.0 * (s[a, p] - 0.5)) for a, p in positives)) / 2.0
        negative = math.log(1 + sum(math.exp(40.0 * (s[a, n] - 0.5)) for a, n in negatives)) / 40.0
        return positive + negative

    expected = (anchor_term([(0, 1)], [(0, 2), (0, 3)]) + anchor_term([(2, 3)], [(2, 0)])) / 4.0
    assert loss_value(loss, labels, x) == pytest.approx(expected, rel=1e-5)


def test_multi_similarity_rejects_a_miner_with_another_output(rng):
    class Wrong(Miner):
        def mine(self, embeddings, labels):
            return embeddings

    with pytest.raises(TypeError, match="PairMasks or Triplets"):
        MultiSimilarityLoss(miner=Wrong())(tf.constant(SPC2), tf.constant(embeddings(rng, SPC2), tf.float32))


def test_multi_similarity_miner_output_feeds_the_loss(rng):
    labels = SPC3
    x = embeddings(rng, labels, cluster=1.0)
    masks = MultiSimilarityMiner()(tf.constant(x, tf.float32), tf.constant(labels))
    assert isinstance(masks, PairMasks)
    # Mining only removes pairs, so the mined loss is at most the all-pairs one.
    all_pairs = MultiSimilarityLoss(miner=MultiSimilarityMiner(epsilon=math.inf))
    assert loss_value(MultiSimilarityLoss(), labels, x) < loss_value(all_pairs, labels, x)


# Edge cases, for every loss with its defaults.

EDGE_BATCHES = {
    "no_positive_pair": np.array([0, 1, 2, 3, 4, 5]),
    "one_class": np.zeros(6, int),
    "spc2": np.array([0, 0, 1, 1, 2, 2]),
}


@pytest.mark.parametrize("batch", sorted(EDGE_BATCHES))
@pytest.mark.parametrize("name", sorted(DEFAULT_LOSSES))
@pytest.mark.parametrize("kind", ["random", "identical", "zero", "huge"])
def test_edge_cases_give_finite_values_and_gradients(name, batch, kind, rng):
    labels = EDGE_BATCHES[batch]
    x = {
        "random": rng.normal(size=(6, 5)),
        "identical": np.tile(rng.normal(size=(1, 5)), (6, 1)),
        "zero": np.zeros((6, 5)),
        "huge": 1e3 * rng.normal(size=(6, 5)),
    }[kind]
    loss = DEFAULT_LOSSES[name]()
    value, gradient = gradient_of(loss, labels, x)
    assert np.isfinite(value.numpy()), (name, batch, kind)
    assert np.all(np.isfinite(gradient.numpy())), (name, batch, kind)
    if kind != "huge":
        reference = CASES[name][1](labels, x)
        np.testing.assert_allclose(value.numpy(), reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(DEFAULT_LOSSES))
def test_float16_inputs_under_mixed_precision_compute_in_float32(name, rng):
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        x = embeddings(rng, SPC2, dim=8, cluster=1.0).astype(np.float16)
        value, gradient = gradient_of(DEFAULT_LOSSES[name](), SPC2, x, dtype=tf.float16)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert value.dtype == tf.float32 and gradient.dtype == tf.float16
    assert np.all(np.isfinite(gradient.numpy()))
    expected = CASES[name][1](SPC2, x.astype(np.float64))
    np.testing.assert_allclose(value.numpy(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(DEFAULT_LOSSES))
def test_rejects_mismatched_or_malformed_inputs(name):
    loss = DEFAULT_LOSSES[name]()
    with pytest.raises(ValueError, match="y_pred"):
        loss(tf.constant([0, 0]), tf.zeros((2, 3, 1)))
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match="batch sizes|shape"):
        loss(tf.constant([0, 0, 1]), tf.zeros((2, 3)))


@pytest.mark.parametrize("name", sorted(DEFAULT_LOSSES))
def test_runs_in_tf_function_with_unknown_batch_size(name, rng):
    loss = DEFAULT_LOSSES[name]()
    call = tf.function(loss.__call__, input_signature=[tf.TensorSpec([None], tf.int32), tf.TensorSpec([None, 5], tf.float32)])
    x = embeddings(rng, SPC3, dim=5)
    assert float(call(tf.constant(SPC3, tf.int32), tf.constant(x, tf.float32))) == pytest.approx(
        CASES[name][1](SPC3, x), rel=1e-5, abs=1e-6
    )


# SNR and R-SNR.


def test_snr_hand_built_triplet():
    # φ_a = (1, 0), φ_p = (0.6, 0.8), φ_n = (−1, 0): var(φ_a) = 0.25, var(φ_p − φ_a) = 0.36,
    # var(φ_n − φ_a) = 1, Σφ = 1, 1.4, −1.
    x = np.array([[1.0, 0.0], [0.6, 0.8], [-1.0, 0.0]])
    loss = SNRLoss(miner=FixedTriplets([0], [1], [2]))
    expected = max(0.36 / 0.25 - 1.0 / 0.25 + 0.2, 0.0) + 0.005 * (1.0 + 1.4 + 1.0) / 3.0
    assert loss_value(loss, np.array([0, 0, 1]), x) == pytest.approx(expected, rel=1e-6)
    loss = SNRLoss(miner=FixedTriplets([0], [2], [1]))
    expected = (1.0 / 0.25 - 0.36 / 0.25 + 0.2) + 0.005 * (1.0 + 1.4 + 1.0) / 3.0
    assert loss_value(loss, np.array([0, 0, 1]), x) == pytest.approx(expected, rel=1e-6)


def test_r_snr_composes_with_rho_switching(rng):
    # p_switch = 1: every triplet (a, p, n) becomes (a, a, p), so only same-class pairs are pushed apart.
    labels = SPC3
    x = embeddings(rng, labels, cluster=1.0)
    twin = DistanceWeightedMiner(p_switch=1.0, seed=SNR_SEED)
    anchors, positives, negatives = (t.numpy() for t in twin(tf.math.l2_normalize(tf.constant(x, tf.float32), axis=1), tf.constant(labels)))
    assert len(anchors) > 0 and np.array_equal(anchors, positives)
    assert np.array_equal(labels[anchors], labels[negatives])
    loss = SNRLoss(miner=DistanceWeightedMiner(p_switch=1.0, seed=SNR_SEED))
    assert loss_value(loss, labels, x) == pytest.approx(ref.snr(x, anchors, positives, negatives), rel=1e-5)
    partly_switched = SNRLoss(miner=DistanceWeightedMiner(p_switch=0.35, seed=SNR_SEED))
    assert loss_value(partly_switched, labels, x) == pytest.approx(seeded_snr_reference(labels, x, p_switch=0.35), rel=1e-5)


def test_snr_default_miner_is_distance_weighted():
    loss = SNRLoss()
    assert isinstance(loss.miner, DistanceWeightedMiner) and loss.miner.p_switch == 0.0
    restored = SNRLoss.from_config(SNRLoss(miner=DistanceWeightedMiner(p_switch=0.35, seed=1)).get_config())
    assert restored.miner.p_switch == 0.35 and restored.miner.seed == 1


def test_snr_rejects_a_non_miner():
    with pytest.raises(TypeError, match="miner"):
        SNRLoss(miner="distance")
    with pytest.raises(ValueError, match="regularization"):
        SNRLoss(regularization=-1.0)
