"""Batch samplers: structure on real Omniglot, determinism, bad input, and NumPy references
for the memory-bank selection rules (greedy coreset, DDM, FRD)."""

import functools
import itertools
from math import comb

import keras
import numpy as np
import pytest
import scipy.linalg
import tensorflow as tf

import tfdml.data
from tfdml.sampling import (
    CategoryHardSampler,
    CategoryVersusUncategorisedSampler,
    CoresetSampler,
    DDMSampler,
    FRDSampler,
    MemoryBank,
    MemoryBankRefresh,
    RandomClassSampler,
    SPCRandomSampler,
    SPCSampler,
    batches,
    distance_histogram_wasserstein,
    frechet_distance,
    greedy_coreset,
    indexed_batches,
)


@functools.lru_cache(maxsize=1)
def _omniglot(root):
    return tfdml.data.load("omniglot", root=root, split="all", validate="none", image_size=28)


@pytest.fixture
def omniglot(omniglot_dir):
    """All 4,840 Omniglot images: 242 characters (classes) in 8 alphabets (categories)."""
    return _omniglot(str(omniglot_dir))


def _class_sizes(labels):
    return dict(zip(*np.unique(labels, return_counts=True)))


def _all_samplers(labels, categories):
    bank = MemoryBank(labels.size, 4, seed=1)
    return [
        SPCSampler(labels, batch_size=16, samples_per_class=4, batches_per_epoch=5, seed=3),
        SPCRandomSampler(labels, batch_size=16, seed=3),
        RandomClassSampler(labels, batch_size=16, seed=3),
        CategoryHardSampler(labels, categories, batch_size=16, batches_per_pair=2, seed=3),
        CategoryVersusUncategorisedSampler(labels, np.where(categories == 0, -1, categories), batch_size=16, seed=3),
        CoresetSampler(labels, bank=bank, batch_size=16, pool_size=40, batches_per_epoch=3, seed=3),
        DDMSampler(labels, bank=bank, batch_size=16, pool_size=40, batches_per_epoch=3, seed=3),
        FRDSampler(labels, bank=bank, batch_size=16, pool_size=40, batches_per_epoch=3, seed=3),
    ]


def _small_dataset():
    """60 samples, 12 classes of 5, classes 0–3 / 4–7 / 8–11 in categories 0 / 1 / 2."""
    labels = np.repeat(np.arange(12), 5)
    return labels, labels // 4


# --- SPC-n ------------------------------------------------------------------------------------


def test_spc_batches_on_omniglot(omniglot):
    labels = omniglot.labels
    sampler = SPCSampler(labels, batch_size=32, samples_per_class=4, seed=0)
    plan = sampler.plan_epoch(0)
    assert sampler.batches_per_epoch == 4840 // 32 == plan.shape[0]
    assert plan.shape == (151, 32) and plan.dtype == np.int64
    for batch in plan:
        classes, counts = np.unique(labels[batch], return_counts=True)
        assert classes.size == 8 and np.all(counts == 4)
        assert np.unique(batch).size == 32  # every class has 20 ≥ 4 images: no repeats
    # A class's images cycle through a shuffled order: no image repeats before all 20 were shown.
    used = {}
    for batch in plan:
        for c in np.unique(labels[batch]):
            used.setdefault(c, []).extend(batch[labels[batch] == c])
    for c, samples in used.items():
        assert np.unique(samples).size == min(len(samples), 20)


def test_spc_small_classes_repeat_and_exclude():
    labels = np.array([0] + [1] * 2 + [2] * 3 + [3] * 6 + [4] * 6 + [5] * 7)
    plan = SPCSampler(labels, batch_size=8, samples_per_class=4, batches_per_epoch=40, seed=1).plan_epoch(0)
    seen = set()
    for batch in plan:
        assert labels[batch[0]] != labels[batch[4]]
        for slot in batch.reshape(2, 4):
            (c,) = np.unique(labels[slot])  # one class per slot of 4
            members = np.flatnonzero(labels == c)
            if members.size < 4:  # a small class shows all its samples, then repeats them
                assert set(slot) == set(members)
            else:
                assert np.unique(slot).size == 4
            seen.add(c)
    assert seen == set(range(6))
    excluded = SPCSampler(labels, batch_size=8, samples_per_class=4, small_classes="exclude", seed=1)
    for batch in excluded.plan_epoch(0):
        assert set(labels[batch]) <= {3, 4, 5}
        assert np.unique(batch).size == 8


def test_spc_classes_are_balanced():
    labels = np.repeat(np.arange(12), 3)
    plan = SPCSampler(labels, batch_size=6, samples_per_class=2, batches_per_epoch=32, seed=0).plan_epoch(0)
    counts = np.bincount(labels[plan[:, ::2]].ravel(), minlength=12)
    # 32 batches × 3 classes deal exactly 8 shuffled copies of the 12 classes.
    assert np.all(counts == 8)


def test_spc_bad_input():
    labels = np.repeat(np.arange(5), 4)
    with pytest.raises(ValueError, match=r"batch_size=10 is not divisible by samples_per_class=4"):
        SPCSampler(labels, batch_size=10, samples_per_class=4)
    with pytest.raises(ValueError, match=r"32/4 = 8 distinct classes, but labels have 5 classes"):
        SPCSampler(labels, batch_size=32, samples_per_class=4)
    with pytest.raises(ValueError, match=r"have 0 classes with at least 5 samples"):
        SPCSampler(labels, batch_size=10, samples_per_class=5, small_classes="exclude")
    with pytest.raises(ValueError, match="small_classes"):
        SPCSampler(labels, batch_size=8, samples_per_class=4, small_classes="drop")
    with pytest.raises(ValueError, match="labels must hold integers"):
        SPCSampler(labels.astype(float), batch_size=8)
    with pytest.raises(ValueError, match=r"labels must be a non-empty 1-D array; got shape \(4, 5\)"):
        SPCSampler(labels.reshape(4, 5), batch_size=8)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        SPCSampler(labels, batch_size=0)


# --- SPC-R ------------------------------------------------------------------------------------


def test_spc_random_on_omniglot(omniglot):
    labels = omniglot.labels
    sampler = SPCRandomSampler(labels, batch_size=33, seed=0)
    plan = sampler.plan_epoch(0)
    assert sampler.batches_per_epoch == -(-4840 // 32) == plan.shape[0] == 152
    for batch in plan:
        run, last = batch[:-1], batch[-1]
        assert np.unique(run).size == 32
        assert last not in run and labels[last] in labels[run]
    assert np.unique(plan[:, :-1]).size == 4840  # every sample visited


def test_spc_random_when_a_run_has_no_class_mates():
    labels = np.concatenate([np.arange(30), [30, 30]])  # 30 singletons and one pair
    plan = SPCRandomSampler(labels, batch_size=5, seed=2).plan_epoch(0)
    for batch in plan:
        assert labels[batch[-1]] == 30 and labels[batch[-1]] in labels[batch[:-1]]
        assert np.unique(batch).size == 5


def test_spc_random_bad_input():
    with pytest.raises(ValueError, match="every one of the 6 classes has a single sample"):
        SPCRandomSampler(np.arange(6), batch_size=4)
    with pytest.raises(ValueError, match=r"batch_size - 1 = 9 random samples need .* labels have 4"):
        SPCRandomSampler(np.array([0, 0, 1, 1]), batch_size=10)
    with pytest.raises(ValueError, match="at least 2"):
        SPCRandomSampler(np.array([0, 0, 1, 1]), batch_size=1)


# --- FastAP random ----------------------------------------------------------------------------


def test_random_class_on_omniglot(omniglot):
    labels = omniglot.labels
    sampler = RandomClassSampler(labels, batch_size=64, seed=0)
    plan = sampler.plan_epoch(0)
    assert plan.shape == (76, 64) == (-(-4840 // 64), 64)
    assert np.unique(plan).size == 4840  # every sample visited
    for batch in plan:
        batch_labels = labels[batch]
        runs = [c for c, _ in itertools.groupby(batch_labels)]
        assert len(runs) == len(set(runs))  # each class is one contiguous block
        counts = _class_sizes(batch_labels)
        inner = runs[1:-1]
        assert all(counts[c] == 20 for c in inner)  # whole classes, except at the batch edges


def test_random_class_bad_input():
    with pytest.raises(ValueError, match="at least two classes; got 1"):
        RandomClassSampler(np.zeros(10, int), batch_size=4)
    with pytest.raises(ValueError, match=r"between 2 and the number of samples \(6\); got 8"):
        RandomClassSampler(np.array([0, 0, 0, 1, 1, 1]), batch_size=8)


# --- FastAP hard --------------------------------------------------------------------------------


def test_category_hard_on_omniglot(omniglot):
    labels, categories = omniglot.labels, omniglot.categories
    sampler = CategoryHardSampler(labels, categories, batch_size=80, batches_per_pair=3, seed=0)
    plan = sampler.plan_epoch(0)
    assert sampler.batches_per_epoch == comb(8, 2) * 3 == plan.shape[0]
    pair_counts = {}
    for batch in plan:
        first, second = categories[batch[:40]], categories[batch[40:]]
        assert np.unique(first).size == 1 and np.unique(second).size == 1 and first[0] != second[0]
        assert np.unique(categories[batch]).size == 2
        pair = tuple(sorted((first[0], second[0])))
        pair_counts[pair] = pair_counts.get(pair, 0) + 1
        for half in (batch[:40], batch[40:]):
            runs = [c for c, _ in itertools.groupby(labels[half])]
            assert len(runs) == len(set(runs))  # whole classes in contiguous blocks
            assert all(_class_sizes(labels[half])[c] == 20 for c in runs[1:-1])
        assert np.unique(batch).size == 80
    assert pair_counts == {pair: 3 for pair in itertools.combinations(range(8), 2)}
    # Each category's cursor moves on: its 7 × 3 half batches of 40 cover ≥ 340 distinct images.
    for c in range(8):
        mine = np.concatenate([b[:40] if categories[b[0]] == c else b[40:] for b in plan if c in categories[b]])
        assert np.unique(mine).size == min(mine.size, np.sum(categories == c))


def test_category_hard_ignores_unknown_categories():
    labels, categories = _small_dataset()
    categories = np.where(labels == 0, -1, categories)
    plan = CategoryHardSampler(labels, categories, batch_size=10, seed=0).plan_epoch(0)
    assert not np.isin(plan, np.flatnonzero(labels == 0)).any()


def test_category_hard_bad_input(omniglot):
    labels, categories = omniglot.labels, omniglot.categories
    with pytest.raises(ValueError, match=r"too small to fill batch_size/2 = 350 samples: 7 \(340 samples\)"):
        CategoryHardSampler(labels, categories, batch_size=700)
    with pytest.raises(ValueError, match="batch_size must be even"):
        CategoryHardSampler(labels, categories, batch_size=33)
    with pytest.raises(ValueError, match="at least two categories .*got 1"):
        CategoryHardSampler(labels, np.zeros_like(categories), batch_size=32)
    with pytest.raises(ValueError, match="categories are required"):
        CategoryHardSampler(labels, None, batch_size=32)
    with pytest.raises(ValueError, match="categories has 10 entries but labels has 4840"):
        CategoryHardSampler(labels, categories[:10], batch_size=32)


def test_category_versus_uncategorised_on_omniglot(omniglot):
    labels = omniglot.labels
    categories = np.where(omniglot.categories >= 5, -1, omniglot.categories)  # 3 alphabets unknown
    sampler = CategoryVersusUncategorisedSampler(labels, categories, batch_size=64, seed=0)
    sizes = np.bincount(categories[categories >= 0])
    plan = sampler.plan_epoch(0)
    assert sampler.batches_per_epoch == sum(-(-2 * n // 64) for n in sizes) == plan.shape[0]
    for batch in plan:
        assert np.unique(categories[batch[:32]]).size == 1 and categories[batch[0]] >= 0
        assert np.all(categories[batch[32:]] == -1)
    assert set(np.unique(plan[:, :32])) == set(np.flatnonzero(categories >= 0))  # every known sample
    one_unknown = np.where(np.arange(4840) == 0, -1, categories.clip(0))
    with pytest.raises(ValueError, match=r"1 samples have unknown category \(-1\); half a batch needs batch_size/2 = 32"):
        CategoryVersusUncategorisedSampler(labels, one_unknown, batch_size=64)
    with pytest.raises(ValueError, match="every sample has category -1"):
        CategoryVersusUncategorisedSampler(labels, np.full(4840, -1), batch_size=64)


# --- shared contract -----------------------------------------------------------------------------


@pytest.mark.parametrize("index", range(8))
def test_determinism_epochs_and_dataset(index):
    labels, categories = _small_dataset()
    sampler = _all_samplers(labels, categories)[index]
    twin = _all_samplers(labels, categories)[index]
    other = type(sampler).from_config(dict(sampler.get_config(), seed=4))
    other.bank = getattr(sampler, "bank", None)
    epoch0, epoch1 = sampler.plan_epoch(0), sampler.plan_epoch(1)
    assert epoch0.shape == (sampler.batches_per_epoch, 16) and epoch0.dtype == np.int64
    np.testing.assert_array_equal(epoch0, twin.plan_epoch(0))
    assert not np.array_equal(epoch0, epoch1)
    assert not np.array_equal(epoch0, other.plan_epoch(0))
    dataset = sampler.index_dataset(epochs=2)
    assert dataset.element_spec == tf.TensorSpec((16,), tf.int64)
    np.testing.assert_array_equal(np.stack(list(dataset.as_numpy_iterator())), np.concatenate([epoch0, epoch1]))
    resumed = next(iter(sampler.index_dataset(initial_epoch=1))).numpy()
    np.testing.assert_array_equal(resumed, epoch1[0])
    assert epoch0.min() >= 0 and epoch0.max() < labels.size


@pytest.mark.parametrize("index", range(8))
def test_config_round_trip(index):
    labels, categories = _small_dataset()
    sampler = _all_samplers(labels, categories)[index]
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(sampler))
    assert type(restored) is type(sampler) and restored.get_config() == sampler.get_config()
    if not hasattr(sampler, "bank"):  # memory-bank samplers get a fresh bank
        np.testing.assert_array_equal(restored.plan_epoch(0), sampler.plan_epoch(0))


# --- memory-bank samplers ---------------------------------------------------------------------------


def _greedy_coreset_reference(points, size, first):
    chosen = [first]
    while len(chosen) < size:
        best, best_cover = None, -1.0
        for i, x in enumerate(points):
            cover = min(np.sqrt(np.sum((x - points[j]) ** 2)) for j in chosen)
            if cover > best_cover:
                best, best_cover = i, cover
        chosen.append(best)
    return chosen


def test_greedy_coreset_matches_brute_force(rng):
    points = rng.normal(size=(60, 5))
    for first in (0, 17):
        np.testing.assert_array_equal(greedy_coreset(points, 12, first), _greedy_coreset_reference(points, 12, first))


def test_coreset_sampler_maps_picks_through_its_own_pool(rng):
    labels = np.repeat(np.arange(40), 5)
    bank = MemoryBank(200, 3)
    bank.update(np.arange(200), rng.normal(size=(200, 3)))
    sampler = CoresetSampler(labels, bank=bank, batch_size=16, samples_per_class=2, pool_size=50, seed=0)
    batch = sampler.choose_batch(np.random.default_rng(7))
    # Replay the sampler's draws: pool, then first pick.
    replay = np.random.default_rng(7)
    pool = replay.choice(200, 50, replace=False)
    first = replay.integers(50)
    picks = _greedy_coreset_reference(bank.embeddings[pool].astype(np.float64), 8, first)
    seeds, mates = batch[0::2], batch[1::2]
    np.testing.assert_array_equal(seeds, pool[picks])  # the selected samples themselves (Roth's bug picks others)
    np.testing.assert_array_equal(labels[mates], labels[seeds])
    assert np.all(mates != seeds)


def _wasserstein_reference(batch, pool, edges):
    def histogram(points):
        distances = [np.linalg.norm(points[i] - points[j]) for i in range(len(points)) for j in range(i)]
        counts = np.histogram(distances, edges)[0]
        return counts / counts.sum()

    # W1 on a line = area between the CDFs.
    return np.sum(np.abs(np.cumsum(histogram(batch)) - np.cumsum(histogram(pool)))[:-1] * np.diff(edges)[:-1])


def test_ddm_distance_and_choice_match_reference(rng):
    labels = np.repeat(np.arange(30), 4)
    bank = MemoryBank(120, 4)
    bank.update(np.arange(120), rng.normal(size=(120, 4)) * np.linspace(0.2, 3.0, 120)[:, None])
    sampler = DDMSampler(labels, bank=bank, batch_size=8, pool_size=60, num_bins=20, seed=0)
    pool = rng.choice(120, 60, replace=False)
    candidates = rng.choice(120, (6, 8), replace=False)
    embeddings = bank.embeddings.astype(np.float64)
    top = max(
        max(np.linalg.norm(a - b) for a in embeddings[s] for b in embeddings[s]) for s in [pool, *candidates]
    )
    edges = np.linspace(0, top, 21)
    expected = [_wasserstein_reference(embeddings[c], embeddings[pool], edges) for c in candidates]
    got = distance_histogram_wasserstein(embeddings[candidates], embeddings[pool], num_bins=20)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert len(set(np.round(expected, 9))) == 6
    np.testing.assert_array_equal(sampler.select_batch(pool, candidates), candidates[np.argmin(expected)])


def _frechet_reference(x, y):
    cx, cy = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    root = scipy.linalg.sqrtm(cx @ cy).real
    return np.sum((x.mean(0) - y.mean(0)) ** 2) + np.trace(cx + cy - 2 * root)


def test_frd_distance_and_choice_match_reference(rng):
    labels = np.repeat(np.arange(30), 4)
    bank = MemoryBank(120, 3)
    bank.update(np.arange(120), rng.normal(size=(120, 3)) + np.linspace(0, 2, 120)[:, None])
    sampler = FRDSampler(labels, bank=bank, batch_size=12, pool_size=80, seed=0)
    pool = rng.choice(120, 80, replace=False)
    candidates = rng.choice(120, (5, 12), replace=False)
    embeddings = bank.embeddings.astype(np.float64)
    expected = [_frechet_reference(embeddings[c], embeddings[pool]) for c in candidates]
    np.testing.assert_allclose(frechet_distance(embeddings[candidates], embeddings[pool]), expected, rtol=1e-6)
    np.testing.assert_array_equal(sampler.select_batch(pool, candidates), candidates[np.argmin(expected)])
    assert frechet_distance(embeddings[pool][None], embeddings[pool])[0] == pytest.approx(0.0, abs=1e-9)


def test_memory_bank_dataset_sees_bank_updates():
    # 8 far outliers: a coreset of 8 over the whole set takes a random first point and then
    # the outliers, so each batch shows where the outliers are at the time it is built.
    labels, bank = np.arange(64) // 2, MemoryBank(64, 2)
    sampler = CoresetSampler(labels, bank=bank, batch_size=8, samples_per_class=1, pool_size=64, seed=0)
    iterator = iter(sampler.index_dataset())
    for outliers in (np.arange(8), np.arange(40, 48)):
        embeddings = np.zeros((64, 2), np.float32)
        embeddings[outliers] = 100 * np.stack([np.cos(outliers), np.sin(outliers)], 1)
        bank.update(np.arange(64), embeddings)
        assert np.isin(next(iterator).numpy(), outliers).sum() >= 7


def test_memory_bank_update_and_refresh_callback():
    bank = MemoryBank(10, 2)
    np.testing.assert_allclose(np.linalg.norm(bank.embeddings, axis=1), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match=r"embeddings must have shape \(2, 2\) for 2 indices; got \(2, 3\)"):
        bank.update([0, 1], np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 10\); got range \[3, 10\]"):
        bank.update([3, 10], np.zeros((2, 2)))
    with pytest.raises(ValueError, match="the bank holds 10 samples but labels has 12"):
        FRDSampler(np.arange(12) // 2, bank=bank, batch_size=4, pool_size=8)
    with pytest.raises(ValueError, match=r"pool_size must lie between .* = 2 and the number of samples \(10\); got 11"):
        FRDSampler(np.arange(10) // 2, bank=bank, batch_size=4, pool_size=11)
    assert FRDSampler(np.arange(10) // 2, bank=bank, batch_size=4).pool_size == 10
    assert FRDSampler(np.arange(2000) // 2, bank=MemoryBank(2000, 2), batch_size=4).pool_size == 1024

    images = tf.random.stateless_uniform((10, 3), seed=[1, 2])
    indexed = tf.data.Dataset.from_tensor_slices((images, tf.range(10, dtype=tf.int64))).batch(4)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    refresh = MemoryBankRefresh(bank, indexed, every_n_epochs=2)
    model.fit(images, tf.zeros((10, 2)), epochs=1, batch_size=5, verbose=0, callbacks=[refresh])
    stale = model(images).numpy()  # refreshed on train begin only (epoch 1 is not a multiple of 2)
    assert not np.allclose(bank.embeddings, stale)
    model.fit(images, tf.zeros((10, 2)), epochs=2, batch_size=5, verbose=0, callbacks=[refresh])
    np.testing.assert_allclose(bank.embeddings, model(images).numpy(), rtol=1e-5, atol=1e-6)


# --- pipeline ------------------------------------------------------------------------------------


def test_batches_on_omniglot(omniglot):
    sampler = CategoryHardSampler(omniglot.labels, omniglot.categories, batch_size=16, batches_per_pair=1, seed=0)
    augment = tfdml.data.Augmentation("base", size=24, seed=0)
    dataset = batches(omniglot, sampler, preprocess=augment, epochs=1, with_categories=True)
    plan = sampler.plan_epoch(0)
    first = list(dataset.take(3).as_numpy_iterator())
    for (images, labels, categories), indices in zip(first, plan):
        assert images.shape == (16, 24, 24, 1) and images.dtype == np.float32
        assert 0 <= images.min() and images.max() <= 255 and images.max() > 100
        np.testing.assert_array_equal(labels, omniglot.labels[indices])
        np.testing.assert_array_equal(categories, omniglot.categories[indices])
        assert np.unique(categories).size == 2
    again = batches(omniglot, sampler, preprocess=augment, epochs=1, with_categories=True)
    again = list(again.take(3).as_numpy_iterator())
    np.testing.assert_array_equal(first[2][0], again[2][0])  # seeded augmentation replays


def test_batches_deliver_the_planned_images():
    # Each image is filled with its own index, so a batch shows exactly which samples it holds.
    n = 40
    data = tfdml.data.LabelledImages(
        name="indexed",
        labels=np.arange(n) // 4,
        load=lambda index: tf.fill([3, 3, 1], tf.cast(index, tf.uint8)),
    )
    sampler = SPCSampler(data.labels, batch_size=8, samples_per_class=2, seed=1)
    plan = np.concatenate([sampler.plan_epoch(0), sampler.plan_epoch(1)])
    out = list(batches(data, sampler, preprocess=lambda image: image + 0.5, epochs=2).as_numpy_iterator())
    assert len(out) == plan.shape[0]
    for (images, labels), indices in zip(out, plan):
        np.testing.assert_array_equal(images[:, 0, 0, 0], indices + 0.5)
        np.testing.assert_array_equal(labels, indices // 4)
    (images, indices), *rest = list(indexed_batches(data, 16).as_numpy_iterator())
    np.testing.assert_array_equal(indices, np.arange(16))
    np.testing.assert_array_equal(images[:, 1, 1, 0], np.arange(16))
    assert [len(i) for _, i in rest] == [16, 8]
    with pytest.raises(ValueError, match="other labels than those of 'indexed'"):
        batches(data, SPCSampler(np.arange(n) // 5, batch_size=8))


def test_memory_bank_sampler_trains_with_fit():
    """FRD batches feed ``fit`` while the refresh callback rewrites the bank between epochs."""
    n = 48
    pixels = np.random.default_rng(0).uniform(0, 255, (n, 2, 2, 1)).astype(np.float32)
    data = tfdml.data.LabelledImages(
        name="toy", labels=np.arange(n) // 4, load=lambda index: tf.gather(tf.constant(pixels), index)
    )
    model = keras.Sequential([keras.Input((2, 2, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    model.compile(optimizer="sgd", loss=lambda labels, embeddings: tf.reduce_mean(embeddings**2))
    bank = MemoryBank(n, 3)
    sampler = FRDSampler(data.labels, bank=bank, batch_size=8, pool_size=24, num_candidate_batches=3, seed=0)
    refresh = MemoryBankRefresh(bank, indexed_batches(data, 16))
    history = model.fit(
        batches(data, sampler), steps_per_epoch=3, epochs=2, shuffle=False, verbose=0, callbacks=[refresh]
    )
    assert len(history.history["loss"]) == 2
    np.testing.assert_allclose(bank.embeddings, model(pixels).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("protocol", [None, "base"])
def test_batches_started_mid_stream_continue_the_full_stream(protocol):
    """Issue 14, item 3: a resumed run starts its input at batch ``start``; batches and augmentation
    seeds must be those the uninterrupted stream gives from there on."""
    data = tfdml.data.LabelledImages(
        name="indexed",
        labels=np.arange(40) // 4,
        load=lambda index: tf.cast(tf.reshape(tf.range(64) + tf.cast(index, tf.int32) * 64, [8, 8, 1]) % 256, tf.uint8),
    )
    sampler = SPCSampler(data.labels, batch_size=8, samples_per_class=2, seed=1)
    preprocess = None if protocol is None else tfdml.data.augmentation(protocol, size=6, seed=3)
    assert sampler.batches_per_epoch == 5
    full = list(itertools.islice(batches(data, sampler, preprocess=preprocess).as_numpy_iterator(), 12))
    for start in (3, 7):  # inside the first sampler epoch, and in the second
        resumed = list(itertools.islice(batches(data, sampler, preprocess=preprocess, start=start).as_numpy_iterator(), 12 - start))
        for (images, labels), (expected_images, expected_labels) in zip(resumed, full[start:]):
            np.testing.assert_array_equal(labels, expected_labels)
            np.testing.assert_array_equal(images, expected_images)
