"""Triplet miners and the triplet and margin losses with separate keys (a cross-batch memory): anchors are the
batch's queries, positives and negatives valid keys other than the anchor's own copy. NumPy references of the
mining rules and losses on the query × key rectangle, keys equal to the batch reproducing the in-batch code
exactly, and one XLA run of the wrapped margin loss."""

import collections
import math

import numpy as np
import pytest
import tensorflow as tf

from finite_differences import central_differences, tape_gradient
from tfdml.losses import MarginLoss, TripletLoss
from tfdml.losses.margin import margin_loss, margin_loss_all_pairs
from tfdml.losses.tuples import mine_triplets
from tfdml.masks import Keys
from tfdml.mining import BatchHardMiner, DistanceWeightedMiner, RandomMiner, SemiHardMiner

DIM = 4
LABELS = np.array([0, 0, 1, 1, 2, 2, 3, 4])  # 3 and 4: positives only in the memory
MEMORY_LABELS = np.array([0, 3, 1, 5, 4, 2])
MEMORY_VALID = np.array([False, True, True, True, True, True])  # the oldest slot is not filled yet
KEY_LABELS = np.concatenate([LABELS, MEMORY_LABELS])
KEY_VALID = np.concatenate([np.ones(len(LABELS), bool), MEMORY_VALID])
B, M = len(LABELS), len(KEY_LABELS)


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    x, memory = unit(rng.normal(size=(B, DIM))), unit(rng.normal(size=(len(MEMORY_LABELS), DIM)))
    memory[0] = -x[0]  # the unfilled slot, of class 0: anchor 0's hardest "positive" were it a key
    key_x = np.concatenate([x, memory])
    keys = Keys(tf.constant(key_x), tf.constant(KEY_LABELS), tf.constant(KEY_VALID), tf.range(B))
    d = np.linalg.norm(x.astype(np.float64)[:, None] - key_x.astype(np.float64)[None], axis=-1)
    return x, key_x, keys, d


def candidates(a):
    """Reference key sets of query ``a``: positives and negatives among the valid keys, its own copy left out."""
    exists = [j for j in range(M) if KEY_VALID[j] and j != a]
    return [j for j in exists if KEY_LABELS[j] == LABELS[a]], [j for j in exists if KEY_LABELS[j] != LABELS[a]]


def semi_hard_reference(d, a, p, margin=0.2):
    """FaceNet's band D_ap < D_an < D_ap + α among the valid negative keys, and its fallbacks when empty."""
    negatives = candidates(a)[1]
    band = [j for j in negatives if d[a, p] < d[a, j] < d[a, p] + margin]
    beyond = [j for j in negatives if d[a, j] > d[a, p]]
    if band:
        return band
    return [min(beyond, key=lambda j: d[a, j])] if beyond else [max(negatives, key=lambda j: d[a, j])]


def distance_weighted_reference(d, a, cutoff=0.5, nonzero_loss_cutoff=1.4):
    """Wu et al. §4: Pr(n | a) ∝ 1/q(max(D_an, cutoff)) over valid negative keys with D_an < 1.4 (all if none)."""
    negatives = candidates(a)[1]
    eligible = [j for j in negatives if d[a, j] < nonzero_loss_cutoff]
    log_w = dict.fromkeys(negatives, 0.0)  # no eligible negative: uniform over all of them
    for j in eligible:
        dist = max(d[a, j], cutoff)
        log_w[j] = -((DIM - 2) * math.log(dist) + 0.5 * (DIM - 3) * math.log(max(1.0 - dist * dist / 4.0, 1e-6)))
    if eligible:
        log_w = {j: log_w[j] for j in eligible}
    top = max(log_w.values())
    weights = {j: math.exp(v - top) for j, v in log_w.items()}
    probabilities = np.zeros(M)
    for j, w in weights.items():
        probabilities[j] = w / sum(weights.values())
    return probabilities


def tuples(triplets):
    return list(zip(*(t.numpy().tolist() for t in triplets.compact())))


@pytest.mark.reference("DistanceWeightedMiner")
@pytest.mark.reference("SemiHardMiner")
@pytest.mark.reference("BatchHardMiner")
@pytest.mark.reference("RandomMiner")
def test_keyed_triplet_miners_follow_their_rules_on_the_query_key_rectangle(data):
    x, _, keys, d = data
    pairs = {(a, p) for a in range(B) for p in candidates(a)[0]}
    mined = {
        name: tuples(miner.mine_masked(tf.constant(x), LABELS, keys=keys))
        for name, miner in {
            "distance_weighted": DistanceWeightedMiner(seed=0),
            "anchors": DistanceWeightedMiner(construction="anchors", seed=0),
            "semi_hard": SemiHardMiner(seed=0),
            "batch_hard": BatchHardMiner(),
            "random": RandomMiner(seed=0),
        }.items()
    }
    for name, found in mined.items():
        assert found, name
        for a, p, n in found:  # anchors are queries; positives and negatives valid keys, never the own copy
            assert 0 <= a < B and p in candidates(a)[0] and n in candidates(a)[1], (name, a, p, n)
    # Wu's construction: every valid (query, positive key) pair once; Roth's: one tuple per anchor with one.
    for name in ("distance_weighted", "semi_hard"):
        assert collections.Counter((a, p) for a, p, _ in mined[name]) == collections.Counter(pairs), name
    assert [a for a, _, _ in mined["anchors"]] == sorted({a for a, _ in pairs})
    for a, p, n in mined["semi_hard"]:
        assert n in semi_hard_reference(d, a, p), (a, p, n)
    for a, p, n in mined["distance_weighted"] + mined["anchors"]:
        assert distance_weighted_reference(d, a)[n] > 0.0, (a, n)
    expected = [
        (a, max(candidates(a)[0], key=lambda j: d[a, j]), min(candidates(a)[1], key=lambda j: d[a, j]))
        for a in range(B)
        if candidates(a)[0]
    ]
    assert mined["batch_hard"] == expected
    assert d[0, B] > d[0, 1]  # the unfilled slot (key B, class 0) would be anchor 0's hardest positive
    log_weights, allowed = DistanceWeightedMiner().negative_log_weights(tf.constant(x), LABELS, keys)
    masked = np.where(allowed.numpy(), log_weights.numpy(), -np.inf)
    weights = np.exp(masked - masked.max(1, keepdims=True))
    np.testing.assert_allclose(
        weights / weights.sum(1, keepdims=True), [distance_weighted_reference(d, a) for a in range(B)], atol=1e-5
    )


def batch_as_keys(x):
    return Keys(tf.constant(x), tf.constant(LABELS), tf.ones(B, tf.bool), tf.range(B))


def test_keys_equal_to_the_batch_reproduce_the_in_batch_miners_and_losses_exactly(data):
    x = data[0]
    miners = {
        "distance_weighted": lambda: DistanceWeightedMiner(p_switch=0.5, seed=1),
        "semi_hard": lambda: SemiHardMiner(construction="anchors", seed=1),
        "batch_hard": lambda: BatchHardMiner(p_switch=0.5, seed=1),
        "random": lambda: RandomMiner(seed=1),
    }
    for name, make in miners.items():
        in_batch, keyed = make().mine_masked(x, LABELS), make().mine_masked(x, LABELS, keys=batch_as_keys(x))
        for part, keyed_part in zip(in_batch, keyed):
            np.testing.assert_array_equal(part.numpy(), keyed_part.numpy(), err_msg=name)
    losses = {
        "triplet": lambda: TripletLoss(miner=SemiHardMiner(p_switch=0.5, seed=2)),
        "margin": lambda: MarginLoss(beta_class=True, num_classes=5, miner=DistanceWeightedMiner(p_switch=0.5, seed=2)),
    }
    for name, make in losses.items():
        in_batch, keyed = make(), make()
        if name == "margin":
            for loss in (in_batch, keyed):
                loss.class_beta.assign([0.1, -0.2, 0.3, 0.0, 0.05])
        expected = in_batch.compute(tf.constant(LABELS), tf.constant(x))
        assert float(keyed.compute(tf.constant(LABELS), tf.constant(x), keys=batch_as_keys(x))) == float(expected), name
    all_pairs = MarginLoss(pairs="all", miner=None, nu=0.1)
    np.testing.assert_allclose(
        all_pairs.compute(tf.constant(LABELS), tf.constant(x), keys=batch_as_keys(x)),
        all_pairs.compute(tf.constant(LABELS), tf.constant(x)),
        rtol=1e-6,
    )


def margin_reference(x, key_x, triplets, betas, margin=0.2, nu=0.0):
    """Wu et al.: Σ (α + y (D − β(a)))_+ + ν β(a) over the (anchor, key) pairs, over the number of active terms."""
    total, active = 0.0, 0
    for a, p, n in triplets:
        for y, j in ((1.0, p), (-1.0, n)):
            term = max(margin + y * (np.linalg.norm(x[a] - key_x[j]) - betas[a]), 0.0)
            total, active = total + term + nu * betas[a], active + (term > 0.0)
    return total / active if active else 0.0


@pytest.mark.reference("TripletLoss")
@pytest.mark.reference("MarginLoss")
def test_triplet_and_margin_losses_with_keys_match_the_reference_on_the_mined_triplets(data):
    x, key_x, keys, _ = data
    x64, key_x64 = x.astype(np.float64), key_x.astype(np.float64)
    triplets = tuples(SemiHardMiner(seed=4).mine_masked(x, LABELS, keys=keys))
    expected = np.mean([max(np.linalg.norm(x64[a] - key_x64[p]) - np.linalg.norm(x64[a] - key_x64[n]) + 0.2, 0)
                        for a, p, n in triplets])
    value = TripletLoss(miner=SemiHardMiner(seed=4)).compute(tf.constant(LABELS), tf.constant(x), keys=keys)
    assert float(value) == pytest.approx(expected, rel=1e-5)

    # ρ-switched tuples (a, a, p) take the anchor's own key copy as positive; β_class is the anchor's class.
    triplets = tuples(DistanceWeightedMiner(p_switch=0.5, seed=5).mine_masked(x, LABELS, keys=keys))
    assert any(p == a for a, p, _ in triplets) and any(p != a for a, p, _ in triplets)
    loss = MarginLoss(beta_class=True, num_classes=5, nu=0.1, miner=DistanceWeightedMiner(p_switch=0.5, seed=5))
    class_beta = np.array([0.1, -0.2, 0.3, 0.0, 0.05])
    loss.class_beta.assign(class_beta)
    betas = 1.2 + class_beta[LABELS]
    value = loss.compute(tf.constant(LABELS), tf.constant(x), keys=keys)
    assert float(value) == pytest.approx(margin_reference(x64, key_x64, triplets, betas, nu=0.1), rel=1e-5)


@pytest.mark.reference("MarginLoss")
def test_margin_all_pairs_with_keys_matches_the_reference_and_its_float64_gradient(data):
    x, key_x, _, _ = data
    memory = key_x[B:].astype(np.float64)
    betas = np.linspace(1.0, 1.3, B)
    pairs = [(a, j) for a in range(B) for j in sum(candidates(a), [])]

    def loss(embeddings):
        keys = Keys(tf.concat([embeddings, memory], 0), tf.constant(KEY_LABELS), tf.constant(KEY_VALID), tf.range(B))
        return margin_loss_all_pairs(tf.constant(LABELS), embeddings, tf.constant(betas), 0.2, 0.1, keys=keys)

    def reference(embeddings):
        key_embeddings = np.concatenate([embeddings, memory])
        terms = [max(0.2 + (1.0 if KEY_LABELS[j] == LABELS[a] else -1.0)
                     * (np.linalg.norm(embeddings[a] - key_embeddings[j]) - betas[a]), 0.0) for a, j in pairs]
        return (sum(terms) + 0.1 * sum(betas[a] for a, _ in pairs)) / sum(t > 0 for t in terms)

    x64 = x.astype(np.float64)
    assert float(loss(tf.constant(x64))) == pytest.approx(reference(x64), rel=1e-12)
    np.testing.assert_allclose(tape_gradient(loss, x64), central_differences(reference, x64), atol=1e-7)


def test_keyed_margin_loss_with_distance_weighted_pairs_compiles_under_xla(data):
    """The margin recipe's default (distance-weighted pairs, ρ-switching, β per class) against keys, mined and
    evaluated as ``MarginLoss.compute`` does, in one XLA graph: the value is the reference's on its tuples."""
    x, key_x, keys, _ = data
    loss = MarginLoss(beta_class=True, num_classes=5, miner=DistanceWeightedMiner(p_switch=0.3, seed=6))
    class_beta = np.array([0.1, -0.2, 0.3, 0.0, 0.05])
    loss.class_beta.assign(class_beta)

    @tf.function(jit_compile=True)
    def step(embeddings):
        triplets = mine_triplets(loss.miner, embeddings, tf.constant(LABELS), keys)
        betas = loss.anchor_betas(tf.constant(LABELS), triplets.anchors)
        return margin_loss(triplets, embeddings, betas, keys=keys), triplets

    value, triplets = step(tf.constant(x))
    triplets = tuples(triplets)
    assert all(p in candidates(a)[0] + [a] and n in sum(candidates(a), []) for a, p, n in triplets)
    betas = 1.2 + class_beta[LABELS]
    assert float(value) == pytest.approx(margin_reference(x.astype(np.float64), key_x, triplets, betas), rel=1e-5)
