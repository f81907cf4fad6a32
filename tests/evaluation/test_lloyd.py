"""tfdml.evaluation.lloyd against plain Lloyd: scikit-learn's and a brute-force NumPy one."""

import numpy as np
import pytest
import sklearn.cluster

from tfdml.evaluation import clustering, lloyd


def reference_lloyd(x, centroids, max_iterations):
    """Plain float64 Lloyd, ties to the lower index, empty clusters relocated to the farthest
    samples one at a time as scikit-learn does; also says whether any was relocated."""
    x, centroids = np.asarray(x, np.float64), np.array(centroids, np.float64)
    assigned, relocated = None, False
    for _ in range(max_iterations + 1):
        new = np.argmin(np.sum((x[:, None, :] - centroids[None, :, :]) ** 2, axis=2), axis=1)
        if assigned is not None and np.array_equal(new, assigned):
            break
        assigned = new
        sums = np.array([x[assigned == cluster].sum(axis=0) for cluster in range(len(centroids))])
        counts = np.bincount(assigned, minlength=len(centroids))
        distances = np.sum((x - centroids[assigned]) ** 2, axis=1)
        farthest = iter(np.argsort(-distances, kind="stable"))
        for cluster in np.flatnonzero(counts == 0):
            sample = next(farthest)
            sums[assigned[sample]] -= x[sample]
            counts[assigned[sample]] -= 1
            sums[cluster], counts[cluster], relocated = x[sample], 1, True
        centroids = sums / counts[:, None]
    return assigned, relocated


def sklearn_lloyd(x, num_clusters, max_iterations, seed):
    model = sklearn.cluster.KMeans(
        num_clusters, init="random", n_init=1, max_iter=max_iterations, tol=0.0, algorithm="lloyd", random_state=seed
    )
    return model.fit_predict(x)


@pytest.mark.parametrize(
    ("count", "dim", "num_clusters", "max_iterations"),
    [(2000, 16, 50, 20), (3000, 8, 300, 20), (3000, 8, 300, 3), (3000, 8, 300, 1), (500, 4, 1, 20), (300, 5, 300, 20)],
)
def test_equals_sklearn_lloyd_from_the_same_start(rng, monkeypatch, count, dim, num_clusters, max_iterations):
    x = (rng.normal(size=(count, dim)) + 50.0).astype(np.float32)  # off-centre: both centre the data first
    rescores = []
    original = lloyd._rescore
    monkeypatch.setattr(lloyd, "_rescore", lambda *args: rescores.append(args[2].size) or original(*args))
    ours = clustering.kmeans(x, num_clusters, max_iterations=max_iterations, seed=3)
    np.testing.assert_array_equal(ours, sklearn_lloyd(x, num_clusters, max_iterations, seed=3))
    same_start = clustering.kmeans(x, num_clusters, max_iterations=max_iterations, seed=3, backend="sklearn")
    np.testing.assert_array_equal(ours, same_start)
    if (count, num_clusters, max_iterations) == (3000, 300, 20):
        assert rescores and min(rescores) < num_clusters / 10  # the incremental path did the work


@pytest.mark.parametrize("seed", [0, 7])
def test_empty_clusters_move_to_the_farthest_samples(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(300, 2)).astype(np.float32)
    start = lloyd.starting_centroids(300, 100, seed)
    expected, relocated = reference_lloyd(x, x[start], 20)
    assert relocated  # these seeds empty a cluster on the way
    np.testing.assert_array_equal(lloyd.lloyd(x, x[start], 20), expected)
    np.testing.assert_array_equal(clustering.kmeans(x, 100, seed=seed), sklearn_lloyd(x, 100, 20, seed))


def test_a_centroid_no_sample_reaches_takes_the_farthest_sample(rng):
    x = rng.normal(size=(200, 3)).astype(np.float32)
    start = np.concatenate([x[:5], np.full((1, 3), 100.0, np.float32)])
    clusters = lloyd.lloyd(x, start, 20)
    np.testing.assert_array_equal(clusters, reference_lloyd(x, start, 20)[0])
    assert set(np.unique(clusters)) == set(range(6))


@pytest.mark.parametrize("num_clusters", [120, 40, 10])
def test_duplicate_samples_share_a_cluster(rng, num_clusters):
    points = rng.normal(size=(40, 3)).astype(np.float32)
    which = rng.permutation(np.repeat(np.arange(40), 3))
    clusters = clustering.kmeans(points[which], num_clusters)
    assert all(len(np.unique(clusters[which == point])) == 1 for point in range(40))
    if num_clusters == 120:  # K = n: identical starting centroids tie; one of each survives
        assert len(np.unique(clusters)) == 40


def test_identical_samples_and_k_equal_one(rng):
    np.testing.assert_array_equal(clustering.kmeans(np.ones((30, 4), np.float32), 3) >= 0, True)
    np.testing.assert_array_equal(clustering.kmeans(rng.normal(size=(30, 4)), 1), 0)


def test_row_blocks_do_not_change_the_result(rng, monkeypatch):
    x = rng.normal(size=(1000, 8)).astype(np.float32)
    expected = clustering.kmeans(x, 100)
    monkeypatch.setattr(lloyd, "BLOCK_SCORES", 700)  # 5 rows per full block (128 padded columns)
    np.testing.assert_array_equal(clustering.kmeans(x, 100), expected)


def test_progress_bar_counts_moves(rng, capsys):
    clustering.kmeans(rng.normal(size=(400, 4)).astype(np.float32), 20, verbose=1)
    assert "moved" in capsys.readouterr().out
