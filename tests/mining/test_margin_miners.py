"""TripletMarginMiner and PairMarginMiner against slow NumPy references written from PML's definitions, and
against PML's own mined tuples (``tests/fixtures/pml``)."""

import collections

import numpy as np
import pytest
import tensorflow as tf

import pml_parity
import reference_tuple as ref
from tfdml import losses
from tfdml.mining import PairMarginMiner, TripletMarginMiner

KINDS = ["all", "hard", "semihard", "easy"]
# Triplets and pairs this close to a boundary of their condition may fall either side of it in float32.
TOLERANCE = 1e-4
DRAWS = 100


def unit(x):
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def holds(kind, margin, m):
    """PML's condition on the triplet margin ``m = D_an − D_ap``."""
    return {"all": m <= margin, "hard": m <= 0, "semihard": (0 < m) & (m <= margin), "easy": m > margin}[kind]


def reference_triplets(x, labels, margin, kind):
    """Every triplet ``(a, p, n)`` of PML's ``TripletMarginMiner`` (``D`` on the L2-normalised embeddings), and
    those of every triplet whose margin lies within ``TOLERANCE`` of a boundary of the condition."""
    d = ref.distance_matrix(unit(x))
    b = len(labels)
    expected, near = set(), set()
    for a in range(b):
        for p in range(b):
            for n in range(b):
                if a == p or labels[p] != labels[a] or labels[n] == labels[a]:
                    continue
                m = d[a, n] - d[a, p]
                if holds(kind, margin, m):
                    expected.add((a, p, n))
                if min(abs(m), abs(m - margin)) < TOLERANCE:
                    near.add((a, p, n))
    return expected, near


def reference_pairs(x, labels, pos_margin, neg_margin):
    """PML's ``PairMarginMiner`` as boolean ``(b, b)`` masks, and the pairs within ``TOLERANCE`` of their margin."""
    d = ref.distance_matrix(unit(x))
    b = len(labels)
    positives, negatives, near = (np.zeros((b, b), bool) for _ in range(3))
    for i in range(b):
        for j in range(b):
            if i != j and labels[i] == labels[j]:
                positives[i, j] = d[i, j] > pos_margin
                near[i, j] = abs(d[i, j] - pos_margin) < TOLERANCE
            elif labels[i] != labels[j]:
                negatives[i, j] = d[i, j] < neg_margin
                near[i, j] = abs(d[i, j] - neg_margin) < TOLERANCE
    return positives, negatives, near


def as_set(triplets):
    return set(zip(*(t.numpy().tolist() for t in triplets)))


@pytest.mark.reference("TripletMarginMiner")
@pytest.mark.parametrize("kind", KINDS)
def test_triplet_margin_miner_draws_every_triplet_of_the_reference_uniformly(kind, rng):
    x = rng.normal(size=(12, 3))
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 4])
    expected, near = reference_triplets(x, labels, 0.3, kind)
    assert expected and not near
    mine = tf.function(TripletMarginMiner(margin=0.3, type_of_triplets=kind, seed=0).__call__)
    counts = collections.Counter()
    for _ in range(DRAWS):
        mined = mine(tf.constant(x, tf.float32), labels)
        ref.assert_triplets_match(mined, expected, near)
        counts.update(as_set(mined))
    assert set(counts) == expected
    # Uniform within each pair's band: Pearson's χ² against DRAWS / (band size) draws per negative is about its
    # degrees of freedom, Σ (band size − 1) (a bias towards one end of the bands would multiply it).
    band = collections.Counter((a, p) for a, p, _ in expected)
    chi2 = sum((count - DRAWS / band[a, p]) ** 2 / (DRAWS / band[a, p]) for (a, p, _), count in counts.items())
    assert chi2 < 1.3 * sum(size - 1 for size in band.values())


@pytest.mark.parametrize("kind", KINDS)
def test_triplet_margin_miner_mines_the_reference_set_when_each_pair_has_one_negative(kind, rng):
    x = rng.normal(size=(6, 4))
    labels = np.array([0, 0, 0, 0, 0, 1])  # class 0's anchors have one negative; 5 has no positive
    expected, near = reference_triplets(x, labels, 0.2, kind)
    assert expected and not near
    assert as_set(TripletMarginMiner(type_of_triplets=kind, seed=0)(x, labels)) == expected


@pytest.mark.parametrize("case", pml_parity.cases("TripletMarginMiner"), ids=pml_parity.case_ids("TripletMarginMiner"))
def test_triplet_margin_miner_matches_pml(case):
    x, labels = case["inputs"]["embeddings"], case["inputs"]["labels"]
    margin, kind = case["params"]["margin"], case["params"]["type_of_triplets"]
    pml = set(zip(*(np.asarray(t, int).tolist() for t in case["triplets"])))
    # The boundary cases, vectorised (the loops of reference_triplets are too slow for 32 samples).
    d = np.linalg.norm(unit(x)[:, None] - unit(x)[None], axis=2)
    m = d[:, None, :] - d[:, :, None]  # m[a, p, n] = D_an − D_ap
    same = labels[:, None] == labels[None]
    valid = (same & ~np.eye(len(labels), dtype=bool))[:, :, None] & ~same[:, None, :]
    boundary = valid & (np.minimum(np.abs(m), np.abs(m - margin)) < TOLERANCE)
    near = set(zip(*np.nonzero(boundary)))
    assert set(zip(*np.nonzero(valid & holds(kind, margin, m)))) - near == pml - near  # the reference is PML's
    mined = TripletMarginMiner(margin=margin, type_of_triplets=kind, seed=0)(x, labels)
    ref.assert_triplets_match(mined, pml, near)


# "semihard" takes both bounds from D_ap, "easy" its upper bound from the anchor's negatives: every code path.
@pytest.mark.parametrize("kind", ["semihard", "easy"])
def test_triplet_margin_miner_under_xla_mines_tuples_of_its_type(kind, rng):
    x = rng.normal(size=(16, 8)).astype(np.float16)  # float16 inputs are mined in float32
    labels = np.repeat(np.arange(4), 4).astype(np.int32)
    expected, near = reference_triplets(x.astype(np.float32), labels, 0.2, kind)
    assert expected
    miner = TripletMarginMiner(type_of_triplets=kind, seed=0)
    mined = tf.function(miner.mine_masked, jit_compile=True)(tf.constant(x), tf.constant(labels))
    assert mined.anchors.shape == (16 * 16,)
    ref.assert_triplets_match(mined.compact(), expected, near)


def test_triplet_margin_miner_switches_with_p_switch(rng):
    x, labels = rng.normal(size=(8, 4)), np.repeat(np.arange(2), 4)
    plain = TripletMarginMiner(seed=0)(x, labels)
    switched = TripletMarginMiner(p_switch=1.0, seed=0)(x, labels)
    np.testing.assert_array_equal(switched.positives, switched.anchors)
    np.testing.assert_array_equal(switched.negatives, plain.positives)


@pytest.mark.reference("PairMarginMiner")
def test_pair_margin_miner_matches_reference(rng):
    x = rng.normal(size=(12, 3))
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 4])
    positives, negatives, near = reference_pairs(x, labels, 0.8, 1.2)
    assert positives.any() and (~positives & (labels[:, None] == labels)).any() and negatives.any() and not near.any()
    mined = PairMarginMiner(pos_margin=0.8, neg_margin=1.2)(x, labels)
    np.testing.assert_array_equal(mined.positives, positives)
    np.testing.assert_array_equal(mined.negatives, negatives)


@pytest.mark.parametrize("case", pml_parity.cases("PairMarginMiner"), ids=pml_parity.case_ids("PairMarginMiner"))
def test_pair_margin_miner_matches_pml(case):
    x, labels = case["inputs"]["embeddings"], case["inputs"]["labels"]
    pos_margin, neg_margin = case["params"]["pos_margin"], case["params"]["neg_margin"]
    mined = PairMarginMiner(pos_margin=pos_margin, neg_margin=neg_margin)(x, labels)
    d = np.linalg.norm(unit(x)[:, None] - unit(x)[None], axis=2)
    sides = ((mined.positives, pos_margin, "positive_pairs"), (mined.negatives, neg_margin, "negative_pairs"))
    for mask, margin, pairs in sides:
        pml = np.zeros(mask.shape, bool)
        pml[tuple(np.asarray(case[pairs], int))] = True
        differ = mask.numpy() != pml
        assert np.all(np.abs(d[differ] - margin) < TOLERANCE)


def test_the_margin_miners_feed_the_tuple_and_pair_losses(rng):
    x, labels = unit(rng.normal(size=(8, 4))).astype(np.float32), np.repeat(np.arange(2), 4)
    triplet_margin = TripletMarginMiner(type_of_triplets="all", seed=0)
    mined = triplet_margin.mine_masked(x, labels)
    expected = ref.triplet_loss(x, list(as_set(mined.compact())), margin=0.2)
    triplet = losses.TripletLoss(margin=0.2, miner=TripletMarginMiner(type_of_triplets="all", seed=0))
    np.testing.assert_allclose(float(triplet(labels, x)), expected, rtol=1e-5)
    assert np.isfinite(float(losses.ContrastiveLoss(miner=triplet_margin)(labels, x)))
    pair_margin = PairMarginMiner(pos_margin=0.5, neg_margin=1.5)
    assert np.isfinite(float(losses.MultiSimilarityLoss(miner=pair_margin)(labels, x)))
    with pytest.raises(TypeError, match="PairMarginMiner returned PairMasks"):
        losses.TripletLoss(miner=PairMarginMiner())(labels, x)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: TripletMarginMiner(type_of_triplets="medium"), "type_of_triplets must be one of"),
        (lambda: TripletMarginMiner(margin=-0.1), "TripletMarginMiner: margin must be"),
        (lambda: PairMarginMiner(pos_margin=float("nan")), "PairMarginMiner: pos_margin must be"),
        (lambda: PairMarginMiner(neg_margin="0.8"), "PairMarginMiner: neg_margin must be"),
    ],
)
def test_bad_arguments_are_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_count_at_most_is_searchsorted_right_also_under_xla():
    """The rank search behind the miner: ``np.searchsorted(side="right")`` per row, ties and +inf included."""
    from tfdml.mining.triplet_margin import count_at_most

    rng = np.random.default_rng(0)
    compiled = tf.function(count_at_most, jit_compile=True)
    for n, m in [(1, 1), (7, 3), (12, 12), (19, 5)]:
        ascending = rng.integers(0, 6, (4, n)).astype(np.float32)
        ascending[:, n // 2 :][rng.random((4, n - n // 2)) < 0.3] = np.inf
        ascending.sort(axis=1)
        bounds = rng.integers(-1, 7, (4, m)).astype(np.float32)
        expected = np.stack([np.searchsorted(row, bound, side="right") for row, bound in zip(ascending, bounds)])
        np.testing.assert_array_equal(count_at_most(tf.constant(ascending), tf.constant(bounds)), expected)
        np.testing.assert_array_equal(compiled(tf.constant(ascending), tf.constant(bounds)), expected)
