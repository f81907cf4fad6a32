import collections

import keras
import numpy as np
import pytest
import tensorflow as tf

import registry_cases as rc
from tests import reference_tuple as ref
from tfdml.mining import (
    BatchHardMiner,
    DistanceWeightedMiner,
    RandomMiner,
    RhoRegularizedMiner,
    SemiHardMiner,
    SoftHardMiner,
    TupleMiner,
)
from tfdml.mining.base import ReplicaConsistentRandom, deserialize_miner
from tfdml.mining.tuples import sample_columns


def unit_batch(rng, num_classes=4, per_class=4, dim=16):
    x = rng.normal(size=(num_classes * per_class, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, np.repeat(np.arange(num_classes), per_class).astype(np.int32)


def as_tuples(triplets):
    return list(zip(*(t.numpy().tolist() for t in triplets)))


def assert_valid(tuples, labels):
    for a, p, n in tuples:
        assert a != p and labels[a] == labels[p], (a, p)
        assert labels[n] != labels[a], (a, n)


@pytest.mark.parametrize("miner_class", [SemiHardMiner, DistanceWeightedMiner])
def test_wu_construction_uses_every_ordered_positive_pair_once(miner_class, rng):
    x, labels = unit_batch(rng, num_classes=3, per_class=4)
    labels[-1] = 7  # a singleton class: no pair of its own, still a negative for others
    tuples = as_tuples(miner_class(seed=0)(x, labels))
    pairs = collections.Counter((a, p) for a, p, _ in tuples)
    expected = {(a, p) for a in range(len(labels)) for p in range(len(labels)) if a != p and labels[a] == labels[p]}
    assert set(pairs) == expected and set(pairs.values()) == {1}


def test_roth_construction_gives_one_tuple_per_anchor_with_a_positive(rng):
    x, labels = unit_batch(rng)
    labels[-1] = 9
    tuples = as_tuples(DistanceWeightedMiner(construction="anchors", seed=0)(x, labels))
    assert [a for a, _, _ in tuples] == list(range(len(labels) - 1))


@pytest.mark.reference("BatchHardMiner")
def test_batch_hard_matches_reference(rng):
    x = rng.normal(size=(12, 5)).astype(np.float32)
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 3, 4, 4, 4])
    d = ref.distance_matrix(x)
    expected = []
    for a in range(12):
        positives = [j for j in range(12) if labels[j] == labels[a] and j != a]
        negatives = [j for j in range(12) if labels[j] != labels[a]]
        if positives and negatives:
            expected.append((a, max(positives, key=lambda j: d[a, j]), min(negatives, key=lambda j: d[a, j])))
    assert as_tuples(BatchHardMiner()(x, labels)) == expected


@pytest.mark.reference("SoftHardMiner")
def test_soft_hard_draws_from_the_hard_candidate_sets(rng):
    x, labels = unit_batch(rng, num_classes=4, per_class=5, dim=3)
    d = ref.distance_matrix(x)
    seen_positives, seen_negatives = collections.defaultdict(set), collections.defaultdict(set)
    miner = SoftHardMiner(seed=0)
    mine = tf.function(miner.__call__)
    for _ in range(150):
        for a, p, n in as_tuples(mine(x, labels)):
            positives, negatives = ref.soft_hard_candidates(d, labels, a)
            assert p in positives and n in negatives
            seen_positives[a].add(p)
            seen_negatives[a].add(n)
    for a in range(len(labels)):  # every candidate eventually drawn: uniform, not argmax
        positives, negatives = ref.soft_hard_candidates(d, labels, a)
        assert seen_positives[a] == set(positives) and seen_negatives[a] == set(negatives)


@pytest.mark.reference("SemiHardMiner")
@pytest.mark.parametrize(
    "lower_bound,margin,squared", [(None, 0.2, False), (None, None, False), (0.5, 0.2, False), (None, 0.3, True)]
)
def test_semi_hard_negative_is_in_the_band_or_the_documented_fallback(lower_bound, margin, squared, rng):
    x, labels = unit_batch(rng, num_classes=5, per_class=4, dim=4)
    d = ref.distance_matrix(x) ** (2 if squared else 1)
    miner = SemiHardMiner(margin=margin, lower_bound=lower_bound, squared=squared, seed=0)
    tuples = as_tuples(miner(x, labels))
    assert len(tuples) == 5 * 4 * 3
    for a, p, n in tuples:
        assert n in ref.semi_hard_candidates(d, labels, a, p, margin, lower_bound)


def test_semi_hard_fallbacks_on_hand_built_batch():
    # 1-D points. Anchor 0 at 0, positive 1 at 1.0: negatives at 0.5 (closer) and 3.0 (beyond the band).
    x = np.array([[0.0], [1.0], [0.5], [3.0]], np.float32)
    labels = np.array([0, 0, 1, 2])
    tuples = dict(((a, p), n) for a, p, n in as_tuples(SemiHardMiner(margin=0.2, seed=0)(x, labels)))
    assert tuples[(0, 1)] == 3  # band (1.0, 1.2) empty: the closest negative beyond D_ap
    # Anchor 1 at 1.0, positive 0 at 1.0: negatives at 0.5 and 2.0; 2.0 is beyond the band too.
    x_far = np.array([[0.0], [1.0], [0.9], [0.8]], np.float32)
    tuples = dict(((a, p), n) for a, p, n in as_tuples(SemiHardMiner(margin=0.2, seed=0)(x_far, labels)))
    assert tuples[(0, 1)] == 2  # every negative closer than D_ap: the farthest one


def test_semi_hard_draws_uniformly_inside_the_band():
    x = np.array([[0.0], [1.0], [1.02], [1.05], [1.08], [1.11], [1.5]], np.float32)
    labels = np.array([0, 0, 1, 2, 3, 4, 5])
    mine = tf.function(SemiHardMiner(margin=0.2, seed=0).__call__)
    counts = collections.Counter()
    for _ in range(400):
        counts.update(n for a, p, n in as_tuples(mine(x, labels)) if (a, p) == (0, 1))
    assert set(counts) == {2, 3, 4, 5}
    assert all(60 <= c <= 140 for c in counts.values()), counts


@pytest.mark.reference("RandomMiner")
def test_random_miner_is_uniform_over_valid_triplets():
    labels = np.array([0, 0, 0, 1, 1, 2])
    valid = ref.valid_triplets(labels)
    tuples = as_tuples(RandomMiner(num_tuples=20000, seed=0)(np.zeros((6, 2), np.float32), labels))
    assert len(tuples) == 20000
    counts = collections.Counter(tuples)
    assert set(counts) == set(valid)
    expected = 20000 / len(valid)
    assert max(abs(c - expected) for c in counts.values()) < 5 * np.sqrt(expected)


@pytest.mark.reference("DistanceWeightedMiner")
@pytest.mark.parametrize("dim", [64, 128, 512, 2048])
def test_distance_weighted_probabilities_are_valid_per_row_and_match_reference(dim, rng):
    x, labels = unit_batch(rng, num_classes=4, per_class=3, dim=dim)
    miner = DistanceWeightedMiner()
    log_weights, candidates = miner.negative_log_weights(tf.constant(x), tf.constant(labels))
    draws, has = sample_columns(ReplicaConsistentRandom(0), log_weights, candidates, 4000)
    expected = ref.distance_weighted_probabilities(x, labels)
    assert np.all(has.numpy())
    assert np.allclose(expected.sum(axis=1), 1.0)
    frequencies = np.stack([np.bincount(row, minlength=len(labels)) for row in draws.numpy()]) / 4000
    assert np.all(frequencies[expected == 0.0] == 0.0)  # never a positive, self, or an ineligible negative
    assert np.max(np.abs(frequencies - expected)) < 0.04


def test_per_row_normalisation_survives_where_a_global_max_underflows(rng):
    # One close negative pair (D = 0.5) lifts the global max of log w so far that, in float32, the
    # reference code's exp(log w − global max) is 0 on every row whose negatives sit near √2.
    dim = 512
    x, labels = unit_batch(rng, num_classes=4, per_class=3, dim=dim)
    theta = 2.0 * np.arcsin(0.25)
    orthogonal = x[5] - (x[5] @ x[0]) * x[0]
    x[3] = np.cos(theta) * x[0] + np.sin(theta) * orthogonal / np.linalg.norm(orthogonal)
    log_weights, candidates = DistanceWeightedMiner().negative_log_weights(tf.constant(x), tf.constant(labels))
    masked = np.where(candidates.numpy(), log_weights.numpy(), -np.inf)
    global_max_weights = np.exp((masked - masked.max()).astype(np.float32))
    assert np.sum(global_max_weights.sum(axis=1) == 0.0) >= 6
    draws, has = sample_columns(ReplicaConsistentRandom(0), log_weights, candidates, 2000)
    assert np.all(has.numpy())
    assert np.all(np.take_along_axis(candidates.numpy(), draws.numpy(), axis=1))
    frequencies = np.stack([np.bincount(row, minlength=len(labels)) for row in draws.numpy()]) / 2000
    assert np.max(np.abs(frequencies - ref.distance_weighted_probabilities(x, labels))) < 0.05


def test_distance_weighted_falls_back_to_uniform_negatives_when_none_is_eligible():
    # Two antipodal clusters: every negative is farther than 1.4.
    x = np.array([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [-1.0, 0.0]], np.float32)
    labels = np.array([0, 0, 1, 1])
    tuples = as_tuples(DistanceWeightedMiner(seed=0)(x, labels))
    assert len(tuples) == 4
    assert_valid(tuples, labels)


def test_distance_weighted_samples_are_much_flatter_in_distance_than_the_batch(rng):
    dim = 8
    x = rng.normal(size=(256, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = np.arange(256) // 2
    miner = DistanceWeightedMiner(nonzero_loss_cutoff=None, seed=0)
    mine = tf.function(miner.__call__)
    d = np.sqrt(np.maximum(((x[:, None] - x[None]) ** 2).sum(-1), 0.0))
    sampled = np.concatenate([d[t.anchors.numpy(), t.negatives.numpy()] for t in (mine(x, labels) for _ in range(30))])
    negatives = d[labels[:, None] != labels[None, :]]
    bins = np.linspace(0.5, 1.9, 8)
    raw_hist, _ = np.histogram(negatives, bins=bins, density=True)
    sampled_hist, _ = np.histogram(sampled, bins=bins, density=True)
    variation = lambda h: np.std(h) / np.mean(h)
    assert variation(sampled_hist) < 0.5 * variation(raw_hist), (sampled_hist, raw_hist)


@pytest.mark.reference("RhoRegularizedMiner")
@pytest.mark.parametrize("name", sorted(n for n, make in rc.miner_cases().items() if isinstance(make(), TupleMiner)))
def test_p_switch_turns_tuples_into_anchor_anchor_positive(name, rng):
    # Roth et al.'s ρ rule, for every tuple miner and the wrapper: with p_switch = 1, every (a, p, n)
    # the miner gives with p_switch = 0 becomes (a, a, p) (same seed, same tuples before the switch).
    x, labels = unit_batch(rng)
    config = rc.miner_cases()[name]().get_config()
    plain = as_tuples(type(rc.miner_cases()[name]()).from_config({**config, "p_switch": 0.0})(x, labels))
    switched = type(rc.miner_cases()[name]()).from_config({**config, "p_switch": 1.0})
    assert plain and as_tuples(switched(x, labels)) == [(a, a, p) for a, p, _ in plain]


def test_p_switch_rate_and_wrapper_compose_with_any_miner(rng):
    x, labels = unit_batch(rng, num_classes=8, per_class=8)
    for miner in (
        DistanceWeightedMiner(p_switch=0.3, seed=0),
        RhoRegularizedMiner(BatchHardMiner(), p_switch=0.3, seed=0),
    ):
        tuples = as_tuples(miner(x, labels))
        switched = [t for t in tuples if t[0] == t[1]]
        assert all(labels[n] == labels[a] and n != a for a, _, n in switched)
        assert_valid([t for t in tuples if t[0] != t[1]], labels)
        assert abs(len(switched) / len(tuples) - 0.3) < 0.12
    wrapper = RhoRegularizedMiner(SemiHardMiner(seed=2), p_switch=0.4, seed=3)
    restored = deserialize_miner(keras.saving.serialize_keras_object(wrapper))
    assert isinstance(restored.miner, SemiHardMiner) and restored.p_switch == 0.4
    assert as_tuples(restored(x, labels)) == as_tuples(
        RhoRegularizedMiner(SemiHardMiner(seed=2), p_switch=0.4, seed=3)(x, labels)
    )


@pytest.mark.parametrize(
    "bad",
    [
        lambda: DistanceWeightedMiner(construction="triplets"),
        lambda: DistanceWeightedMiner(cutoff=0.0),
        lambda: DistanceWeightedMiner(cutoff=0.5, nonzero_loss_cutoff=0.4),
        lambda: SemiHardMiner(margin=-1.0),
        lambda: RandomMiner(num_tuples=0),
        lambda: BatchHardMiner(p_switch=1.5),
        lambda: RhoRegularizedMiner("not a miner"),
    ],
)
def test_bad_arguments_raise_clear_errors(bad):
    with pytest.raises((ValueError, TypeError)):
        bad()


def test_xla_miners_compile_with_static_shapes_where_the_graph_miners_drop_invalid_tuples(rng):
    # Two classes with one sample each have no positive: their cells are invalid, not absent.
    x, labels = unit_batch(rng)
    labels[-2:] = [100, 101]
    mined = tf.function(DistanceWeightedMiner(seed=1).mine_masked, jit_compile=True)(x, labels)
    assert mined.anchors.shape == (len(labels) ** 2,)
    expected_pairs = sum(int(np.sum(labels == label)) * (int(np.sum(labels == label)) - 1) for label in set(labels))
    assert int(np.sum(mined.valid.numpy())) == expected_pairs
