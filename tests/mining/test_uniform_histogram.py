"""UniformHistogramMiner against a NumPy reference of its histogram written from PML's definition, and against
the distribution of PML's own draws over the bins (``tests/fixtures/pml``)."""

import collections

import numpy as np
import pytest
import tensorflow as tf

import pml_parity
from tfdml import losses
from tfdml.mining import UniformHistogramMiner

# Pairs this close to a bin edge may fall either side of it in float32.
TOLERANCE = 1e-5


def reference_bins(d, members, num_bins):
    """``{pair: bin}`` of PML's histogram: ``num_bins`` equal bins from the smallest to the largest distance of
    ``members``, ``[s, e)`` each but the last, closed; and the pairs within ``TOLERANCE`` of an inner edge."""
    pairs = list(zip(*np.nonzero(members)))
    if not pairs:
        return {}, set()
    values = np.array([d[pair] for pair in pairs])
    edges = np.linspace(values.min(), values.max(), num_bins + 1)
    bins = {}
    for pair, value in zip(pairs, values):
        for k in range(num_bins):
            if edges[k] <= value and (value < edges[k + 1] or (k == num_bins - 1 and value <= edges[k + 1])):
                bins[pair] = k
                break
    if values.max() - values.min() < TOLERANCE:  # one distance (identical embeddings): one bin holds every pair
        return dict.fromkeys(pairs, num_bins - 1), set()
    near = {pair for pair, value in zip(pairs, values) if np.min(np.abs(edges[1:-1] - value), initial=1.0) < TOLERANCE}
    return bins, near


def sides(x, labels):
    unit = np.asarray(x, np.float64) / np.linalg.norm(x, axis=1, keepdims=True)
    d = np.linalg.norm(unit[:, None] - unit[None], axis=2)
    same = labels[:, None] == labels[None]
    return d, same & ~np.eye(len(labels), dtype=bool), ~same


def per_bin(kept, bins):
    """Distinct kept pairs per bin (every kept pair must be one of the histogram's)."""
    pairs = list(zip(*np.nonzero(kept)))
    assert set(pairs) <= set(bins)
    return collections.Counter(bins[pair] for pair in pairs)


@pytest.mark.reference("UniformHistogramMiner")
def test_uniform_histogram_miner_draws_one_pair_per_bin_uniformly(rng):
    x = rng.normal(size=(12, 3))
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 4])
    d, positives, negatives = sides(x, labels)
    histograms = [reference_bins(d, mask, 4) for mask in (positives, negatives)]
    assert not any(near for _, near in histograms)
    mine = tf.function(UniformHistogramMiner(num_bins=4, pos_per_bin=1, neg_per_bin=1, seed=0).__call__)
    draws = 100
    counts = [collections.Counter(), collections.Counter()]
    for _ in range(draws):
        mined = mine(tf.constant(x, tf.float32), labels)
        for kept, (bins, _), count in zip(mined, histograms, counts):
            kept = kept.numpy()
            assert per_bin(kept, bins) == collections.Counter(set(bins.values()))  # one per non-empty bin
            count.update(zip(*np.nonzero(kept)))
    # Uniform within each bin: Pearson's χ² of the members' counts is about its degrees of freedom.
    chi2 = dof = 0.0
    for (bins, _), count in zip(histograms, counts):
        sizes = collections.Counter(bins.values())
        chi2 += sum((count[pair] - draws / sizes[k]) ** 2 / (draws / sizes[k]) for pair, k in bins.items())
        dof += sum(size - 1 for size in sizes.values())
    assert dof > 50 and chi2 < 1.4 * dof


@pytest.mark.parametrize(
    "case", pml_parity.cases("UniformHistogramMiner"), ids=pml_parity.case_ids("UniformHistogramMiner")
)
def test_uniform_histogram_miner_draws_as_pml(case):
    x, labels, params = case["inputs"]["embeddings"], case["inputs"]["labels"], case["params"]
    d, positives, negatives = sides(x, labels)
    histograms = [reference_bins(d, mask, params["num_bins"]) for mask in (positives, negatives)]
    assert not any(near for _, near in histograms)
    mine = tf.function(UniformHistogramMiner(**params, seed=0).__call__)
    ours = [mine(tf.constant(x, tf.float32), labels) for _ in case["runs"]]
    pml = []
    for run in case["runs"]:
        masks = []
        for name in ("positive_pairs", "negative_pairs"):
            mask = np.zeros(d.shape, bool)
            mask[tuple(np.asarray(run[name], int).reshape(2, -1))] = True
            masks.append(mask)
        pml.append(masks)
    draws = (params["pos_per_bin"], params["neg_per_bin"])
    for side, ((bins, _), per_side) in enumerate(zip(histograms, draws)):
        sizes = collections.Counter(bins.values())
        # A bin of m pairs holds m (1 − (1 − 1/m)^s) distinct pairs of s draws on average.
        expected = {k: m * (1 - (1 - 1 / m) ** per_side) for k, m in sizes.items()}
        for runs in ([masks[side] for masks in pml], [mined[side].numpy() for mined in ours]):
            counts = [per_bin(kept, bins) for kept in runs]
            for count in counts:  # every non-empty bin, each with 1 to min(s, m) distinct pairs
                assert set(count) == set(sizes) and all(1 <= count[k] <= min(per_side, sizes[k]) for k in sizes)
            for k in sizes:
                assert abs(np.mean([count[k] for count in counts]) - expected[k]) < 0.75, (side, k)


def test_uniform_histogram_miner_feeds_the_pair_losses_and_keeps_each_pair_once(rng):
    x, labels = rng.normal(size=(8, 4)).astype(np.float32), np.repeat(np.arange(2), 4)
    miner = UniformHistogramMiner(num_bins=1, pos_per_bin=500, neg_per_bin=0, seed=0)
    mined = miner(x, labels)
    _, positives, _ = sides(x, labels)
    assert np.array_equal(mined.positives.numpy(), positives)  # 500 draws of 24 pairs: each kept once
    assert not mined.negatives.numpy().any()
    assert np.isfinite(float(losses.MultiSimilarityLoss(miner=miner)(labels, x)))
    with pytest.raises(TypeError, match="UniformHistogramMiner returned PairMasks"):
        losses.TripletLoss(miner=miner)(labels, x)


@pytest.mark.parametrize(
    "arguments, message",
    [({"num_bins": 0}, "num_bins"), ({"pos_per_bin": 1.5}, "pos_per_bin"), ({"neg_per_bin": -1}, "neg_per_bin")],
)
def test_bad_arguments_are_named(arguments, message):
    with pytest.raises(ValueError, match=f"UniformHistogramMiner: {message} must be"):
        UniformHistogramMiner(**arguments)
