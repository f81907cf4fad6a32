"""tfdml.neighbors, the package's one exact search engine, against a brute-force float64 NumPy search
(one distance per (query, gallery row) from the formula, a stable sort so ties keep gallery order)."""

import numpy as np
import pytest
import tensorflow as tf

from tfdml import neighbors
from tfdml.distances import METRICS


def brute_force_distances(queries, gallery, metric):
    queries, gallery = np.asarray(queries, np.float64), np.asarray(gallery, np.float64)
    distances = np.zeros((len(queries), len(gallery)))
    for i, query in enumerate(queries):
        for j, item in enumerate(gallery):
            if metric == "cosine":
                distances[i, j] = 1.0 - query @ item / (np.linalg.norm(query) * np.linalg.norm(item))
            else:
                squared = np.sum((query - item) ** 2)
                distances[i, j] = squared if metric == "squared_euclidean" else np.sqrt(squared)
    return distances


def brute_force_search(queries, gallery, k, metric, self_index=None):
    distances = brute_force_distances(queries, gallery, metric)
    if self_index is not None:
        for i, own in enumerate(self_index):
            if own >= 0:
                distances[i, own] = np.inf
    positions = np.argsort(distances, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(distances, positions, 1), positions


@pytest.fixture
def data(rng):
    return rng.normal(size=(13, 6)).astype(np.float32), rng.normal(size=(40, 6)).astype(np.float32)


@pytest.mark.parametrize("metric", METRICS)
def test_search_matches_brute_force(data, metric):
    queries, gallery = data
    distances, positions = neighbors.search(queries, gallery, 7, metric)
    expected_distances, expected_positions = brute_force_search(queries, gallery, 7, metric)
    np.testing.assert_array_equal(positions.numpy(), expected_positions)
    np.testing.assert_allclose(distances.numpy(), expected_distances, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_self_index_excludes_the_query_itself_never_its_duplicate(data, metric):
    _, gallery = data
    gallery = gallery.copy()
    gallery[5] = gallery[3]
    self_index = np.arange(40)
    self_index[7] = -1  # a query that is not in the gallery
    distances, positions = neighbors.exact_search(gallery, gallery, 4, metric, self_index=tf.constant(self_index))
    _, expected = brute_force_search(gallery, gallery, 4, metric, self_index)
    np.testing.assert_array_equal(positions.numpy(), expected)
    assert positions.numpy()[3, 0] == 5 and positions.numpy()[5, 0] == 3 and positions.numpy()[7, 0] == 7


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("max_scores", [1, 60, 3 * 60 + 7])
def test_small_chunks_give_identical_results(rng, metric, max_scores):
    # max_scores=1 → one query per chunk; 187 → 3 rows per chunk, the last chunk partial (13 queries).
    embeddings = rng.normal(size=(60, 8)).astype(np.float32)
    queries = rng.normal(size=(13, 8)).astype(np.float32)
    whole_distances, whole_positions = neighbors.exact_search(queries, embeddings, 7, metric)
    distances, positions = neighbors.exact_search(queries, embeddings, 7, metric, max_scores=max_scores)
    np.testing.assert_array_equal(positions.numpy(), whole_positions.numpy())
    np.testing.assert_allclose(distances.numpy(), whole_distances.numpy(), rtol=1e-6, atol=1e-6)


def test_ties_come_back_in_gallery_order():
    gallery = np.array([[1, 0], [0, 1], [1, 0], [-1, 0], [0, 1]], np.float32)
    _, positions = neighbors.search(np.zeros((1, 2), np.float32), gallery, 5)
    np.testing.assert_array_equal(positions.numpy(), [[0, 1, 2, 3, 4]])
    _, positions = neighbors.search(np.array([[1, 0]], np.float32), gallery, 2, "cosine")
    np.testing.assert_array_equal(positions.numpy(), [[0, 2]])


def test_a_batch_of_searches_equals_each_search(rng):
    queries = rng.normal(size=(3, 5, 4)).astype(np.float32)
    galleries = rng.normal(size=(3, 9, 4)).astype(np.float32)
    distances, positions = neighbors.search(queries, galleries, 3, chunk_rows=2)
    for e in range(3):
        expected_distances, expected_positions = brute_force_search(queries[e], galleries[e], 3, "euclidean")
        np.testing.assert_array_equal(positions.numpy()[e], expected_positions)
        np.testing.assert_allclose(distances.numpy()[e], expected_distances, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("metric", METRICS)
def test_ranking_scores_order_like_the_metric_and_give_its_distances(data, metric):
    queries, gallery = data
    query_operand, gallery_operand, query_sq = neighbors.ranking_operands(queries, gallery, metric, block=64)
    assert gallery_operand.shape == (64, 7)  # [g, ‖g‖²] padded to a multiple of the block
    scores = neighbors.chunk_scores(query_operand, gallery_operand)
    assert np.all(scores.numpy()[:, 40:] >= neighbors.PADDING_SCORE)  # padding ranks last
    distances = neighbors.scores_to_distances(scores[:, :40], query_sq, metric).numpy()
    np.testing.assert_allclose(distances, brute_force_distances(queries, gallery, metric), rtol=1e-4, atol=1e-4)


def test_unit_rows_keep_zero_rows_and_give_equal_rows_bit_identical_results():
    rows = np.array([[3.0, 4.0], [0.0, 0.0], [3.0, 4.0]], np.float32)
    unit = neighbors.unit_rows(rows).numpy()
    np.testing.assert_allclose(unit, [[0.6, 0.8], [0.0, 0.0], [0.6, 0.8]], rtol=1e-6)
    assert np.array_equal(unit[0], unit[2])


def test_mask_self_sets_each_querys_own_column_to_infinity():
    scores = tf.zeros((3, 4))
    masked = neighbors.mask_self(scores, tf.constant([2, -1, 0])).numpy()
    np.testing.assert_array_equal(np.isinf(masked), [[0, 0, 1, 0], [0, 0, 0, 0], [1, 0, 0, 0]])


@pytest.mark.parametrize("chunk_rows", [1, 3, 4, 10, 100])
def test_map_chunks_concatenates_the_steps_and_cuts_the_padding(chunk_rows):
    values = tf.range(10, dtype=tf.float32)[:, None] * tf.ones((1, 2))
    shapes, done = [], []

    def step(chunk):
        shapes.append(tuple(chunk.shape))
        return (2.0 * chunk, tf.reduce_sum(chunk, axis=1))

    doubled, sums = neighbors.map_chunks(step, ((values, -1.0),), chunk_rows, (tf.float32, tf.float32), done.append)
    np.testing.assert_array_equal(doubled.numpy(), 2.0 * values.numpy())
    np.testing.assert_array_equal(sums.numpy(), 2.0 * np.arange(10))
    assert len(set(shapes)) == 1 and shapes[0][0] <= min(chunk_rows, 10)  # one shape: compiled once
    assert done[-1] == 10 and done == sorted(done)


def test_unknown_metric_is_named():
    with pytest.raises(ValueError, match="manhattan"):
        neighbors.check_metric("manhattan")
    with pytest.raises(ValueError, match="manhattan"):
        neighbors.search(np.zeros((1, 2)), np.zeros((3, 2)), 1, "manhattan")
