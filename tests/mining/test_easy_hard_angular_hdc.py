"""BatchEasyHardMiner, AngularMiner and HDCMiner against slow NumPy references written from their papers'
(and PML's) definitions, and against PML's own mined tuples (``tests/fixtures/pml``)."""

import collections
import itertools
import math

import numpy as np
import pytest
import tensorflow as tf

import pml_parity
import reference_tuple as ref
from tfdml import losses
from tfdml.mining import AngularMiner, BatchEasyHardMiner, HDCMiner

# Tuples this close to a boundary of their condition may fall either side of it in float32.
TOLERANCE = 1e-4
STRATEGY_PAIRS = [
    (pos, neg)
    for pos, neg in itertools.product(("easy", "semihard", "hard", "all"), repeat=2)
    if {pos, neg} not in ({"semihard"}, {"semihard", "all"}, {"all"})
]


def unit(x):
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def pair_sets(triplets):
    """The ``(a, p)`` and ``(a, n)`` pairs of mined triplets."""
    tuples = list(zip(*(t.numpy().tolist() for t in triplets)))
    return {(a, p) for a, p, _ in tuples}, {(a, n) for a, _, n in tuples}


def reference_easy_hard(x, labels, pos_strategy, neg_strategy, pos_range=None, neg_range=None):
    """Xuan et al.'s (and PML's) per-anchor choice, as the ``(a, p)`` and ``(a, n)`` pairs of the triplets:
    PML's pairs of the anchors that have both sides (ties to the lowest index)."""
    d = ref.distance_matrix(unit(x))
    b = len(labels)

    def pick(candidates, farthest):
        if not candidates:
            return None
        return min(candidates, key=lambda j: (-d[a, j] if farthest else d[a, j], j))

    def allowed(j, bounds):
        return bounds is None or bounds[0] <= d[a, j] <= bounds[1]

    positive_pairs, negative_pairs = set(), set()
    for a in range(b):
        positives = [j for j in range(b) if j != a and labels[j] == labels[a]]
        negatives = [j for j in range(b) if labels[j] != labels[a]]
        pos = [j for j in positives if allowed(j, pos_range)]
        neg = [j for j in negatives if allowed(j, neg_range)]
        p = n = None
        if pos_strategy == "semihard":
            n = pick(neg, farthest=neg_strategy == "easy")
            p = pick([j for j in pos if n is not None and d[a, j] < d[a, n]], farthest=True)
        elif neg_strategy == "semihard":
            p = pick(pos, farthest=pos_strategy == "hard")
            n = pick([j for j in neg if p is not None and d[a, j] > d[a, p]], farthest=False)
        else:
            if pos_strategy != "all":
                p = pick(pos, farthest=pos_strategy == "hard")
            if neg_strategy != "all":
                n = pick(neg, farthest=neg_strategy == "easy")
        chosen_positives = positives if pos_strategy == "all" else [p] if p is not None else []
        chosen_negatives = negatives if neg_strategy == "all" else [n] if n is not None else []
        if chosen_positives and chosen_negatives:
            positive_pairs |= {(a, j) for j in chosen_positives}
            negative_pairs |= {(a, j) for j in chosen_negatives}
    return positive_pairs, negative_pairs


@pytest.mark.reference("BatchEasyHardMiner")
def test_batch_easy_hard_miner_matches_reference(rng):
    x = rng.normal(size=(12, 3))
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 4])
    settings = [{"pos_strategy": pos, "neg_strategy": neg} for pos, neg in STRATEGY_PAIRS]
    ranged = {"pos_range": (0.5, 1.2), "neg_range": (0.8, 1.6)}
    settings += [{"pos_strategy": "easy", "neg_strategy": "semihard", **ranged}]
    settings += [{"pos_strategy": "semihard", "neg_strategy": "hard", **ranged}]
    for setting in settings:
        expected = reference_easy_hard(x, labels, **setting)
        assert expected[0] and expected[1], setting
        miner = BatchEasyHardMiner(
            setting["pos_strategy"],
            setting["neg_strategy"],
            allowed_pos_range=setting.get("pos_range"),
            allowed_neg_range=setting.get("neg_range"),
        )
        assert pair_sets(miner(x, labels)) == expected, setting


@pytest.mark.parametrize("case", pml_parity.cases("BatchEasyHardMiner"), ids=pml_parity.case_ids("BatchEasyHardMiner"))
def test_batch_easy_hard_miner_matches_pml(case):
    x, labels, params = case["inputs"]["embeddings"], case["inputs"]["labels"], case["params"]
    d = np.linalg.norm(unit(x)[:, None] - unit(x)[None], axis=2)
    sides = ("positive_pairs", "negative_pairs")
    pml = [set(zip(*np.asarray(case[side], int).reshape(2, -1).tolist())) for side in sides]
    # PML keeps an "all" side's pairs of the anchors without a partner on the other side; a triplet needs both.
    anchors = {a for a, _ in pml[0]} & {a for a, _ in pml[1]}
    pml = [{(a, j) for a, j in side if a in anchors} for side in pml]
    mined = pair_sets(BatchEasyHardMiner(**params)(x, labels))
    for ours, theirs in zip(mined, pml):
        assert {a for a, _ in ours} == {a for a, _ in theirs}
        # Per anchor, the partners' distances (ties, as in the identical batch, may pick another index).
        for a in anchors:
            np.testing.assert_allclose(
                sorted(d[a, j] for b, j in ours if b == a), sorted(d[a, j] for b, j in theirs if b == a), atol=1e-5
            )


def test_batch_easy_hard_miner_switches_with_p_switch(rng):
    x, labels = rng.normal(size=(8, 4)), np.repeat(np.arange(2), 4)
    plain = BatchEasyHardMiner(pos_strategy="all", neg_strategy="hard")(x, labels)
    switched = BatchEasyHardMiner(pos_strategy="all", neg_strategy="hard", p_switch=1.0, seed=0)(x, labels)
    np.testing.assert_array_equal(switched.positives, switched.anchors)
    np.testing.assert_array_equal(switched.negatives, plain.positives)


def reference_angles(x, labels):
    """``{(a, p, n): ∠n}``: Wang et al.'s angle at the negative, ``arctan(D_ap / (2 D_nc))`` with the centre
    ``c = (x_a + x_p) / 2``, on the embeddings as given (PML's); 90° at the centre (``D_nc = 0``)."""
    x = np.asarray(x, np.float64)
    angles = {}
    for a, p, n in itertools.product(range(len(labels)), repeat=3):
        if a == p or labels[a] != labels[p] or labels[n] == labels[a]:
            continue
        centre = (x[a] + x[p]) / 2
        to_centre = math.sqrt(float(np.sum((x[n] - centre) ** 2)))
        angles[a, p, n] = math.atan2(ref.distance(x, a, p), 2 * to_centre) if to_centre else math.pi / 2
    return angles


@pytest.mark.reference("AngularMiner")
def test_angular_miner_draws_every_triplet_of_the_reference_uniformly(rng):
    x = rng.normal(size=(12, 3))
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 4])
    angles = reference_angles(x, labels)
    expected = {t for t, value in angles.items() if value > math.radians(20.0)}
    assert expected and len(expected) < len(angles)
    assert all(abs(value - math.radians(20.0)) > TOLERANCE for value in angles.values())
    mine = tf.function(AngularMiner(angle=20.0, seed=0).__call__)
    draws, counts = 100, collections.Counter()
    for _ in range(draws):
        mined = mine(tf.constant(x, tf.float32), labels)
        ref.assert_triplets_match(mined, expected, set())
        counts.update(zip(*(t.numpy().tolist() for t in mined)))
    assert set(counts) == expected
    # Uniform within each pair's qualifying negatives: Pearson's χ² is about its degrees of freedom, here 140
    # (its standard deviation is 12% of that; a bias towards some negatives would multiply it).
    band = collections.Counter((a, p) for a, p, _ in expected)
    chi2 = sum((count - draws / band[a, p]) ** 2 / (draws / band[a, p]) for (a, p, _), count in counts.items())
    assert chi2 < 1.4 * sum(size - 1 for size in band.values())


@pytest.mark.parametrize("case", pml_parity.cases("AngularMiner"), ids=pml_parity.case_ids("AngularMiner"))
def test_angular_miner_matches_pml(case):
    x, labels, angle = case["inputs"]["embeddings"], case["inputs"]["labels"], case["params"]["angle"]
    pml = set(zip(*np.asarray(case["triplets"], int).reshape(3, -1).tolist()))
    # The boundary cases, vectorised: tan ∠n = D_ap / (2 D_nc), c = (x_a + x_p) / 2.
    d = np.linalg.norm(x[:, None] - x[None], axis=2)
    nc = np.linalg.norm(x[None, None] - (x[:, None, None] + x[None, :, None]) / 2, axis=3)  # nc[a, p, n]
    angles = np.where(nc == 0, math.pi / 2, np.arctan2(d[:, :, None], 2 * nc))  # identical: all collapsed
    same = labels[:, None] == labels[None]
    valid = (same & ~np.eye(len(labels), dtype=bool))[:, :, None] & ~same[:, None, :]
    near = set(zip(*np.nonzero(valid & (np.abs(angles - math.radians(angle)) < TOLERANCE))))
    assert set(zip(*np.nonzero(valid & (angles > math.radians(angle))))) - near == pml - near  # the reference is PML's
    ref.assert_triplets_match(AngularMiner(angle=angle, seed=0)(x, labels), pml, near)


def test_angular_miner_mines_qualifying_triplets_of_float16_inputs_and_switches(rng):
    # XLA: tests/test_registry.py compiles every miner and checks the XLA-mined tuples.
    x = rng.normal(size=(12, 4)).astype(np.float16)  # float16 inputs are mined in float32
    labels = np.repeat(np.arange(3), 4).astype(np.int32)
    angles = reference_angles(x.astype(np.float32), labels)
    expected = {t for t, value in angles.items() if value > math.radians(20.0)}
    near = {t for t, value in angles.items() if abs(value - math.radians(20.0)) < 1e-3}
    mined = AngularMiner(seed=0).mine_masked(tf.constant(x), tf.constant(labels))
    assert mined.anchors.shape == (12 * 12,)
    ref.assert_triplets_match(mined.compact(), expected, near)
    switched = AngularMiner(p_switch=1.0, seed=0)(x, labels)
    np.testing.assert_array_equal(switched.positives, switched.anchors)


def reference_hdc(x, labels, fraction):
    """Yuan et al.'s hard selection as PML keeps it: the ``⌈f · |P|⌉`` farthest positive pairs and the
    ``⌈f · |N|⌉`` closest negative pairs (ordered pairs; ties to the lowest flat index)."""
    d = ref.distance_matrix(unit(x))
    b = len(labels)
    positives = [(a, j) for a in range(b) for j in range(b) if a != j and labels[a] == labels[j]]
    negatives = [(a, j) for a in range(b) for j in range(b) if labels[a] != labels[j]]
    masks = []
    for pairs, sign in ((positives, -1.0), (negatives, 1.0)):
        kept = sorted(pairs, key=lambda pair: (sign * d[pair], pair))[: math.ceil(fraction * len(pairs))]
        mask = np.zeros((b, b), bool)
        mask[tuple(np.array(kept, int).reshape(-1, 2).T)] = True
        masks.append(mask)
    return masks, d


def unordered(mask):
    """The kept pairs as a multiset of unordered pairs: ``D_ap = D_pa`` ties every pair with its mirror."""
    return collections.Counter(frozenset(pair) for pair in zip(*np.nonzero(mask)))


@pytest.mark.reference("HDCMiner")
def test_hdc_miner_matches_reference(rng):
    x = rng.normal(size=(17, 3))
    # 50 ordered positive pairs: ⌈0.3 · 50⌉ is 15 in float64 (PML's Python float), 16 in float32.
    labels = np.repeat(np.arange(5), [5, 5, 3, 2, 2])
    for fraction in (0.3, 0.5, 0.0, 1.0):
        (positives, negatives), _ = reference_hdc(x, labels, fraction)
        mined = HDCMiner(filter_percentage=fraction)(x, labels)
        assert unordered(mined.positives.numpy()) == unordered(positives), fraction
        assert unordered(mined.negatives.numpy()) == unordered(negatives), fraction
    assert HDCMiner(filter_percentage=0.3)(x, labels).positives.numpy().sum() == 15


@pytest.mark.parametrize("case", pml_parity.cases("HDCMiner"), ids=pml_parity.case_ids("HDCMiner"))
def test_hdc_miner_matches_pml(case):
    x, labels = case["inputs"]["embeddings"], case["inputs"]["labels"]
    mined = HDCMiner(**case["params"])(x, labels)
    d = np.linalg.norm(unit(x)[:, None] - unit(x)[None], axis=2)
    same = labels[:, None] == labels[None]
    for mask, side, pairs in ((mined.positives, same & ~np.eye(len(x), dtype=bool), "positive_pairs"),
                              (mined.negatives, ~same, "negative_pairs")):
        mask = mask.numpy()
        pml = np.zeros(mask.shape, bool)
        pml[tuple(np.asarray(case[pairs], int).reshape(2, -1))] = True
        assert not (mask & ~side).any()
        # The same number of pairs at the same distances (PML's topk breaks ties arbitrarily).
        np.testing.assert_allclose(np.sort(d[mask]), np.sort(d[pml]), atol=1e-5)


def test_the_new_miners_feed_the_tuple_and_pair_losses(rng):
    x, labels = unit(rng.normal(size=(8, 4))).astype(np.float32), np.repeat(np.arange(2), 4)
    for make in (BatchEasyHardMiner, lambda: AngularMiner(seed=0)):  # a random miner: two of one seed mine alike
        triplets = make()(x, labels)
        expected = ref.triplet_loss(x, list(zip(*(t.numpy().tolist() for t in triplets))), margin=0.2)
        loss = losses.TripletLoss(margin=0.2, miner=make())
        np.testing.assert_allclose(float(loss(labels, x)), expected, rtol=1e-5)
    assert np.isfinite(float(losses.MultiSimilarityLoss(miner=HDCMiner())(labels, x)))
    with pytest.raises(TypeError, match="HDCMiner returned PairMasks"):
        losses.TripletLoss(miner=HDCMiner())(labels, x)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: BatchEasyHardMiner(pos_strategy="medium"), "BatchEasyHardMiner: pos_strategy must be one of"),
        (lambda: BatchEasyHardMiner(pos_strategy="semihard", neg_strategy="all"), "cannot be 'semihard' and 'all'"),
        (lambda: BatchEasyHardMiner(pos_strategy="all", neg_strategy="all"), "cannot both be 'all'"),
        (lambda: BatchEasyHardMiner(allowed_pos_range=(1.0, 0.5)), r"allowed_pos_range\[1\] must be"),
        (lambda: BatchEasyHardMiner(allowed_neg_range=0.5), "allowed_neg_range must be None or a"),
        (lambda: AngularMiner(angle=90), "AngularMiner: angle must be"),
        (lambda: HDCMiner(filter_percentage=1.5), "HDCMiner: filter_percentage must be"),
    ],
)
def test_bad_arguments_are_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()
