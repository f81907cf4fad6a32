"""tfdml.index (GalleryIndex) and the retrieval SavedModel of tfdml.export (exact_search itself: tests/test_neighbors.py).

The reference is a brute-force NumPy search in float64: one distance per (query, gallery row)
from the formula, then a stable sort so ties keep gallery order, as ``tfdml.index`` documents.
"""

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tfdml import export, models
from tfdml.index import GalleryIndex

DIM = 8
IMAGE_SHAPE = (16, 16, 1)
try:
    import faiss  # noqa: F401  (optional peer dependency)

    HAS_FAISS = True
except ImportError:
    HAS_FAISS = False
needs_faiss = pytest.mark.skipif(not HAS_FAISS, reason="faiss-cpu is an optional peer dependency and is not installed")


def brute_force_search(queries, gallery, k, metric):
    """``(distances, positions)`` of the ``k`` nearest gallery rows per query; ties in gallery order."""
    queries, gallery = np.asarray(queries, np.float64), np.asarray(gallery, np.float64)
    distances = np.zeros((len(queries), k))
    positions = np.zeros((len(queries), k), np.int64)
    for i, query in enumerate(queries):
        row = np.zeros(len(gallery))
        for j, item in enumerate(gallery):
            if metric == "cosine":
                row[j] = 1.0 - query @ item / (np.linalg.norm(query) * np.linalg.norm(item))
            else:
                row[j] = np.sqrt(np.sum((query - item) ** 2))
        order = np.argsort(row, kind="stable")[:k]
        positions[i], distances[i] = order, row[order]
    return distances, positions


def make_index(embeddings, ids=None, labels=None, metric="euclidean", backend="exact"):
    index = GalleryIndex(embeddings.shape[1], metric=metric, backend=backend)
    index.add(embeddings, np.arange(len(embeddings)) if ids is None else ids, labels)
    return index


@pytest.fixture
def gallery(rng):
    embeddings = rng.normal(size=(60, DIM)).astype(np.float32)
    labels = rng.integers(0, 6, size=60)
    queries = rng.normal(size=(13, DIM)).astype(np.float32)
    return embeddings, labels, queries


# --- search against the brute-force reference -------------------------------------------------


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("k", [1, 5, 60])
def test_search_matches_brute_force(gallery, metric, k):
    embeddings, labels, queries = gallery
    ids = np.arange(100, 160)
    result = make_index(embeddings, ids, labels, metric).search(queries, k)
    distances, positions = brute_force_search(queries, embeddings, k, metric)
    np.testing.assert_array_equal(result.positions, positions)
    np.testing.assert_array_equal(result.ids, ids[positions])
    np.testing.assert_array_equal(result.labels, labels[positions])
    np.testing.assert_allclose(result.distances, distances, atol=1e-4, rtol=1e-5)
    assert result.ids.shape == result.distances.shape == result.labels.shape == (len(queries), k)


def test_query_equal_to_a_gallery_item_finds_it_at_distance_zero(gallery):
    embeddings, _, _ = gallery
    result = make_index(embeddings).search(embeddings[:10], 1)
    np.testing.assert_array_equal(result.ids[:, 0], np.arange(10))
    np.testing.assert_allclose(result.distances[:, 0], 0.0, atol=1e-3)


def test_no_queries_give_empty_results(gallery):
    embeddings, _, _ = gallery
    result = make_index(embeddings).search(np.zeros((0, DIM), np.float32), 3)
    assert result.ids.shape == result.distances.shape == result.labels.shape == (0, 3)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_ties_are_returned_in_gallery_order(rng, metric):
    # Three copies of each of 4 vectors, interleaved: rows j, j+4, j+8 are equal.
    base = rng.normal(size=(4, DIM)).astype(np.float32)
    embeddings = np.concatenate([base, base, base])
    queries = base + 0.01
    result = make_index(embeddings, metric=metric).search(queries, 5)
    _, reference = brute_force_search(queries, embeddings, 5, metric)
    np.testing.assert_array_equal(result.positions[:, :3], np.arange(4)[:, None] + [0, 4, 8])
    np.testing.assert_array_equal(result.positions, reference)
    # k cutting through a group of ties keeps the earliest copies.
    first_two = make_index(embeddings, metric=metric).search(queries, 2).positions
    np.testing.assert_array_equal(first_two[:, 1], np.arange(4) + 4)


def exactly_scored_gallery(rng, copies, dim, metric):
    """``copies`` copies of 37 vectors whose every score is exact in float32, whatever
    the order a matmul kernel accumulates in: small integers for Euclidean distances, and
    ±1 in 4 of ``dim`` places (unit rows of ±½) for cosine."""
    if metric == "cosine":
        base = np.zeros((37, dim), np.float32)
        for row in base:
            row[rng.choice(dim, 4, replace=False)] = rng.choice([-1.0, 1.0], 4)
    else:
        base = rng.integers(-8, 9, size=(37, dim)).astype(np.float32)
    return np.tile(base, (copies, 1)), base


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_exact_ties_keep_gallery_order_wherever_the_duplicates_sit(rng, metric):
    # 27 copies of 37 vectors in a 999-row gallery of odd width: copies land in every block a
    # matmul kernel cuts the gallery into, including the tail blocks.
    embeddings, base = exactly_scored_gallery(rng, 27, 101, metric)
    queries = base[[3, 17, 30, 36]] + (0.0 if metric == "cosine" else 1.0)
    result = make_index(embeddings, metric=metric).search(queries, 60)
    _, reference = brute_force_search(queries, embeddings, 60, metric)
    np.testing.assert_array_equal(result.positions, reference)
    np.testing.assert_array_equal(result.positions[:, :27], result.positions[:, :1] + 37 * np.arange(27))


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_duplicates_of_float_vectors_come_back_together(rng, metric):
    # Float duplicates may differ in the last bit (see tfdml.neighbors), so only their order
    # among themselves is free: which vectors come back, and their distances, are not.
    base = rng.normal(size=(37, 100)).astype(np.float32)
    embeddings = np.tile(base, (27, 1))
    queries = rng.normal(size=(5, 100)).astype(np.float32)
    result = make_index(embeddings, metric=metric).search(queries, 60)
    distances, reference = brute_force_search(queries, embeddings, 60, metric)
    np.testing.assert_array_equal(result.positions % 37, reference % 37)
    np.testing.assert_allclose(result.distances, distances, rtol=1e-5, atol=1e-6)
    assert all(len(set(row)) == 60 for row in result.positions)


def test_cosine_distance_ignores_norms(gallery):
    embeddings, _, queries = gallery
    scaled = embeddings * np.linspace(0.1, 10.0, len(embeddings), dtype=np.float32)[:, None]
    plain = make_index(embeddings, metric="cosine").search(queries, 5)
    rescaled = make_index(scaled, metric="cosine").search(queries * 3.0, 5)
    np.testing.assert_array_equal(rescaled.positions, plain.positions)
    np.testing.assert_allclose(rescaled.distances, plain.distances, atol=1e-5)
    assert np.all((plain.distances >= 0) & (plain.distances <= 2))


# --- add / remove / save / load ----------------------------------------------------------------


def test_adding_in_batches_equals_adding_at_once(gallery):
    embeddings, labels, queries = gallery
    index = GalleryIndex(DIM)
    index.add(embeddings[:25], np.arange(25), labels[:25])
    index.add(embeddings[25:], np.arange(25, 60), labels[25:])
    assert len(index) == 60
    whole = make_index(embeddings, labels=labels).search(queries, 4)
    batched = index.search(queries, 4)
    np.testing.assert_array_equal(batched.ids, whole.ids)
    np.testing.assert_array_equal(batched.labels, whole.labels)


def test_remove_equals_building_without_those_items(gallery):
    embeddings, labels, queries = gallery
    index = make_index(embeddings, labels=labels)
    removed = np.array([3, 17, 59, 0])
    index.remove(removed)
    keep = np.setdiff1d(np.arange(60), removed)
    assert len(index) == 56
    expected = make_index(embeddings[keep], keep, labels[keep]).search(queries, 6)
    result = index.search(queries, 6)
    np.testing.assert_array_equal(result.ids, expected.ids)
    np.testing.assert_array_equal(result.labels, expected.labels)
    assert not np.isin(removed, result.ids).any()


def test_removed_ids_can_be_added_again(gallery):
    embeddings, _, _ = gallery
    index = make_index(embeddings)
    index.remove([5])
    index.add(embeddings[5:6] * 0 + 100.0, [5])
    assert index.search(np.full((1, DIM), 100.0, np.float32), 1).ids[0, 0] == 5


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_save_load_round_trip(gallery, tmp_path, metric):
    embeddings, labels, queries = gallery
    index = make_index(embeddings, np.array([f"img_{i:03d}.png" for i in range(60)]), labels, metric)
    index.save(str(tmp_path / "index"))
    loaded = GalleryIndex.load(str(tmp_path / "index"))
    assert (loaded.dim, loaded.metric, loaded.backend, len(loaded)) == (DIM, metric, "exact", 60)
    np.testing.assert_array_equal(loaded.embeddings, index.embeddings)
    np.testing.assert_array_equal(loaded.ids, index.ids)
    np.testing.assert_array_equal(loaded.labels, index.labels)
    before, after = index.search(queries, 5), loaded.search(queries, 5)
    np.testing.assert_array_equal(after.ids, before.ids)
    np.testing.assert_array_equal(after.distances, before.distances)


def test_saving_again_replaces_the_saved_index(gallery, tmp_path):
    embeddings, _, _ = gallery
    index = make_index(embeddings)
    index.save(str(tmp_path / "index"))
    index.remove(np.arange(50))
    index.save(str(tmp_path / "index"))
    assert len(GalleryIndex.load(str(tmp_path / "index"))) == 10
    assert sorted(os.listdir(tmp_path)) == ["index"]  # no temporary directories left behind


def test_load_of_a_missing_index_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="index.json"):
        GalleryIndex.load(str(tmp_path / "nowhere"))


@pytest.mark.parametrize(
    "ids", [np.arange(60) * 7, np.array([f"person/{i}.jpg" for i in range(60)])], ids=["int", "str"]
)
def test_int_and_string_ids(gallery, ids):
    embeddings, labels, queries = gallery
    result = make_index(embeddings, ids, labels).search(queries, 3)
    _, positions = brute_force_search(queries, embeddings, 3, "euclidean")
    np.testing.assert_array_equal(result.ids, ids[positions])
    assert result.ids.dtype.kind == ids.dtype.kind


def test_labels_default_to_minus_one(gallery):
    embeddings, _, queries = gallery
    assert np.all(make_index(embeddings).search(queries, 2).labels == -1)


# --- bad input -----------------------------------------------------------------------------------


def test_duplicate_ids_are_rejected_and_named(gallery):
    embeddings, _, _ = gallery
    with pytest.raises(ValueError, match=r"duplicate ids: \[4\]"):
        make_index(embeddings[:3], np.array([4, 1, 4]))
    index = make_index(embeddings[:3], np.array(["a", "b", "c"]))
    with pytest.raises(ValueError, match="duplicate ids: \\['b'\\]"):
        index.add(embeddings[3:5], ["x", "b"])
    assert len(index) == 3  # a rejected add changes nothing


def test_mixing_int_and_string_ids_is_rejected(gallery):
    embeddings, _, _ = gallery
    index = make_index(embeddings[:3])
    with pytest.raises(ValueError, match="ids must all be of one kind"):
        index.add(embeddings[3:4], ["x"])


def test_removing_unknown_ids_names_them_and_changes_nothing(gallery):
    embeddings, _, _ = gallery
    index = make_index(embeddings)
    with pytest.raises(KeyError, match=r"\[99, 123\]"):
        index.remove([1, 99, 123])
    assert len(index) == 60


def test_empty_gallery_cannot_be_searched(gallery):
    _, _, queries = gallery
    with pytest.raises(ValueError, match="empty"):
        GalleryIndex(DIM).search(queries, 1)
    index = make_index(gallery[0][:2])
    index.remove([0, 1])
    with pytest.raises(ValueError, match="empty"):
        index.search(queries, 1)


@pytest.mark.parametrize("k", [0, -1, 61, 2.5])
def test_k_outside_the_gallery_size_is_rejected(gallery, k):
    embeddings, _, queries = gallery
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, 60\]"):
        make_index(embeddings).search(queries, k)


@pytest.mark.parametrize("shape", [(4, DIM + 1), (DIM,), (2, 2, DIM)])
def test_queries_of_the_wrong_shape_are_rejected(gallery, shape):
    with pytest.raises(ValueError, match=rf"queries must have shape \(q, {DIM}\)"):
        make_index(gallery[0]).search(np.zeros(shape, np.float32), 1)


def test_bad_gallery_items_are_rejected(gallery):
    embeddings, _, _ = gallery
    index = GalleryIndex(DIM)
    with pytest.raises(ValueError, match=rf"embeddings must have shape \(n, {DIM}\)"):
        index.add(embeddings[:, :3], np.arange(60))
    with pytest.raises(ValueError, match=r"ids must have shape \(60,\)"):
        index.add(embeddings, np.arange(59))
    with pytest.raises(ValueError, match="labels must have shape"):
        index.add(embeddings, np.arange(60), labels=np.zeros(3))
    with pytest.raises(ValueError, match="NaN or inf"):
        index.add(np.full((1, DIM), np.nan, np.float32), [0])
    assert len(index) == 0


def test_non_finite_queries_are_rejected(gallery):
    queries = gallery[2].copy()
    queries[3, 1] = np.inf
    with pytest.raises(ValueError, match="queries contain NaN or inf"):
        make_index(gallery[0]).search(queries, 1)


def test_zero_vectors_have_no_cosine_distance(gallery):
    embeddings, _, queries = gallery
    with pytest.raises(ValueError, match="embeddings contain all-zero rows"):
        make_index(np.concatenate([embeddings, np.zeros((1, DIM), np.float32)]), metric="cosine")
    index = make_index(embeddings, metric="cosine")
    with pytest.raises(ValueError, match="queries contain all-zero rows"):
        index.search(np.zeros((1, DIM), np.float32), 1)
    # Euclidean distance is defined for the origin.
    np.testing.assert_allclose(
        make_index(embeddings).search(np.zeros((1, DIM), np.float32), 1).distances[0, 0],
        np.linalg.norm(embeddings, axis=1).min(),
        rtol=1e-5,
    )


def test_bad_constructor_arguments_are_rejected():
    with pytest.raises(ValueError, match="dim"):
        GalleryIndex(0)
    with pytest.raises(ValueError, match="metric"):
        GalleryIndex(4, metric="manhattan")
    with pytest.raises(ValueError, match="backend"):
        GalleryIndex(4, backend="annoy")


def test_faiss_backend_without_faiss_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # makes `import faiss` raise ImportError
    with pytest.raises(ImportError, match="pip install faiss-cpu"):
        GalleryIndex(4, backend="faiss")


# --- faiss backend -------------------------------------------------------------------------------


@needs_faiss
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_faiss_backend_equals_exact(gallery, metric):
    embeddings, labels, queries = gallery
    ids = np.array([f"g{i}" for i in range(60)])
    exact = make_index(embeddings, ids, labels, metric).search(queries, 7)
    approx = make_index(embeddings, ids, labels, metric, backend="faiss").search(queries, 7)
    np.testing.assert_array_equal(approx.ids, exact.ids)
    np.testing.assert_array_equal(approx.labels, exact.labels)
    np.testing.assert_allclose(approx.distances, exact.distances, atol=1e-4)


@pytest.mark.parametrize("backend", ["exact", pytest.param("faiss", marks=needs_faiss)])
def test_search_follows_add_remove_and_load(gallery, tmp_path, backend):
    # Each backend keeps the gallery in its own form between searches; it must not go stale.
    embeddings, _, queries = gallery
    index = make_index(embeddings[:30], backend=backend)
    index.search(queries, 3)
    index.add(embeddings[30:], np.arange(30, 60))
    index.search(queries, 3)
    index.remove(np.arange(10))
    index.save(str(tmp_path / "saved_index"))
    loaded = GalleryIndex.load(str(tmp_path / "saved_index"))
    assert loaded.backend == backend
    _, positions = brute_force_search(queries, embeddings[10:], 3, "euclidean")
    np.testing.assert_array_equal(index.search(queries, 3).ids, positions + 10)
    np.testing.assert_array_equal(loaded.search(queries, 3).ids, positions + 10)


# --- the retrieval SavedModel --------------------------------------------------------------------


def file_digests(directory):
    return {
        os.path.relpath(os.path.join(root, name), directory): hashlib.sha256(
            open(os.path.join(root, name), "rb").read()
        ).hexdigest()
        for root, _, names in os.walk(directory)
        for name in names
    }


@pytest.fixture(scope="module")
def retrieval_export(tmp_path_factory):
    """A tiny convnet, a gallery of its embeddings (string ids, labels) and its retrieval export (k=4)."""
    model = models.build_embedding_model("convnet", input_shape=IMAGE_SHAPE, embedding_dim=DIM, filters=4)
    images = np.random.default_rng(1).uniform(0, 255, size=(24, *IMAGE_SHAPE)).astype(np.float32)
    gallery_images, query_images = images[:18], images[18:]
    index = GalleryIndex(DIM)
    index.add(model.predict(gallery_images, verbose=0), [f"gallery/{i}.png" for i in range(18)], np.arange(18) % 5)
    base = tmp_path_factory.mktemp("models")
    path = export.export_retrieval_model(model, index, str(base), "toy-search", k=4)
    # Queries: two gallery images (must find themselves first) and six new ones.
    queries = np.concatenate([gallery_images[[2, 11]], query_images])
    return model, index, base, path, queries


@pytest.fixture(scope="module")
def served(retrieval_export):
    return tf.saved_model.load(retrieval_export[3]).signatures


def test_retrieval_export_layout(retrieval_export):
    _, _, base, path, _ = retrieval_export
    assert path == os.path.join(str(base), "toy-search", "1")
    assert os.path.exists(os.path.join(path, "saved_model.pb"))
    assert os.path.exists(os.path.join(path, export.WARMUP_FILE))


def test_retrieval_model_in_a_fresh_process_without_tfdml_equals_the_index(retrieval_export, tmp_path):
    model, index, _, path, queries = retrieval_export
    np.save(tmp_path / "queries.npy", queries)
    script = (
        "import sys, numpy as np, tensorflow as tf\n"
        f"m = tf.saved_model.load({path!r})\n"
        f"x = np.load({str(tmp_path / 'queries.npy')!r})\n"
        "floats = m.signatures['serving_default'](images=tf.constant(x))\n"
        "png = [tf.io.encode_png(tf.cast(tf.round(i), tf.uint8)).numpy() for i in x]\n"
        "encoded = m.signatures['serving_bytes'](image_bytes=tf.constant(png))\n"
        "assert 'tfdml' not in sys.modules\n"
        # String ids come back as an object array of bytes; store them as fixed-width bytes (no pickle).
        "out = {f'{s}_{key}': r[key].numpy() for s, r in (('float', floats), ('bytes', encoded)) for key in r}\n"
        "out = {key: value.astype(bytes) if value.dtype == object else value for key, value in out.items()}\n"
        f"np.savez({str(tmp_path / 'out.npz')!r}, **out)\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": ""})
    served = np.load(tmp_path / "out.npz")
    for prefix, images in (("float", queries), ("bytes", np.round(queries))):
        expected = index.search(model.predict(images, verbose=0), 4)
        np.testing.assert_array_equal(served[f"{prefix}_ids"].astype(str), expected.ids)
        np.testing.assert_array_equal(served[f"{prefix}_labels"], expected.labels)
        np.testing.assert_allclose(served[f"{prefix}_distances"], expected.distances, atol=1e-5)
    np.testing.assert_array_equal(served["float_ids"][:2, 0].astype(str), ["gallery/2.png", "gallery/11.png"])


def test_k_larger_than_the_gallery_or_an_empty_gallery_fail_at_export_time(retrieval_export, tmp_path):
    model, index, _, _, _ = retrieval_export
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, 18\]"):
        export.export_retrieval_model(model, index, str(tmp_path), "m", k=19)
    with pytest.raises(ValueError, match="empty"):
        export.export_retrieval_model(model, GalleryIndex(DIM), str(tmp_path), "m", k=1)
    assert not os.path.exists(tmp_path / "m")


def test_embedding_dimension_mismatch_fails_at_export_time(retrieval_export, tmp_path):
    model, _, _, _, _ = retrieval_export
    other = GalleryIndex(DIM + 1)
    other.add(np.ones((3, DIM + 1), np.float32), np.arange(3))
    with pytest.raises(ValueError, match="embedding dimension"):
        export.export_retrieval_model(model, other, str(tmp_path), "m", k=1)


@pytest.mark.parametrize("shape", [(2, 8, 8, 1), (2, 32, 32, 1), (2, 16, 16, 3), (16, 16, 1)])
def test_queries_of_the_wrong_shape_get_a_clean_error(served, shape):
    # (2, 32, 32, 1) would run through the convnet's global pooling: a wrong answer, not an error.
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"not compatible with expected shape \[\?,16,16,1\]"):
        served["serving_default"](images=tf.zeros(shape, tf.float32))


def test_queries_of_the_wrong_dtype_get_a_clean_error(served):
    with pytest.raises(tf.errors.InvalidArgumentError, match="expected to be a float tensor"):
        served["serving_default"](images=tf.zeros((2, *IMAGE_SHAPE), tf.float64))


def test_undecodable_image_bytes_get_a_clean_error(served):
    png = tf.io.encode_png(tf.zeros(IMAGE_SHAPE, tf.uint8))
    with pytest.raises(tf.errors.InvalidArgumentError, match="Unknown image file format"):
        served["serving_bytes"](image_bytes=tf.stack([png, tf.constant(b"not an image")]))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"not compatible with expected shape \[\?\]"):
        served["serving_bytes"](image_bytes=tf.stack([[png]]))
    # The model keeps answering after bad requests.
    assert served["serving_bytes"](image_bytes=tf.stack([png]))["ids"].shape == (1, 4)


def test_an_empty_request_gets_empty_results(served):
    floats = served["serving_default"](images=tf.zeros((0, *IMAGE_SHAPE), tf.float32))
    encoded = served["serving_bytes"](image_bytes=tf.zeros((0,), tf.string))
    for result in (floats, encoded):
        assert result["ids"].shape == result["distances"].shape == result["labels"].shape == (0, 4)


def test_a_new_version_leaves_the_old_one_intact(retrieval_export, served):
    model, index, base, first, queries = retrieval_export
    before = file_digests(first)
    # The new version: a smaller gallery, int ids and the cosine metric.
    updated = GalleryIndex(DIM, metric="cosine")
    updated.add(index.embeddings[:5], np.arange(5), np.zeros(5))
    second = export.export_retrieval_model(model, updated, str(base), "toy-search", k=2)
    assert second == os.path.join(str(base), "toy-search", "2")
    with pytest.raises(FileExistsError):
        export.export_retrieval_model(model, updated, str(base), "toy-search", version=1, k=2)
    assert file_digests(first) == before
    old = served["serving_default"](images=tf.constant(queries))
    np.testing.assert_array_equal(old["ids"].numpy()[:2, 0].astype(str), ["gallery/2.png", "gallery/11.png"])
    new = tf.saved_model.load(second).signatures["serving_default"](images=tf.constant(queries))
    expected = updated.search(model.predict(queries, verbose=0), 2)
    np.testing.assert_array_equal(new["ids"].numpy(), expected.ids)
    np.testing.assert_allclose(new["distances"].numpy(), expected.distances, atol=1e-5)


# Issue 14, item 1: saving never deletes files the index did not write.
def test_saving_into_a_folder_with_other_files_is_refused_and_keeps_them(gallery, tmp_path):
    embeddings, _, _ = gallery
    target = tmp_path / "d"
    target.mkdir()
    (target / "important.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="important.txt"):
        make_index(embeddings).save(str(target))
    assert (target / "important.txt").read_text() == "keep"
    assert sorted(os.listdir(tmp_path)) == ["d"]
    make_index(embeddings).save(str(tmp_path / "index"))
    assert oct(os.stat(tmp_path / "index").st_mode & 0o777) == "0o755"


# Issue 14, item 12: load validates what it reads and names the problem.
def saved_arrays(tmp_path, gallery_embeddings, changes):
    path = tmp_path / "index"
    make_index(gallery_embeddings).save(str(path))
    with np.load(path / "gallery.npz") as stored:
        arrays = dict(stored)
    arrays.update(changes)
    np.savez(path / "gallery.npz", **arrays)
    return str(path)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda e: {"ids": np.arange(len(e) - 1)}, "ids must be 60 integers or strings, one per embedding"),
        (lambda e: {"labels": np.zeros(3, np.int64)}, "labels must be 60 integers"),
        (lambda e: {"ids": np.zeros(len(e), np.int64)}, r"duplicate ids \[0\]"),
        (lambda e: {"embeddings": np.where(np.arange(len(e))[:, None] == 3, np.nan, e)}, "NaN or inf"),
        (lambda e: {"embeddings": e[:, :4]}, f"dimension 4 but index.json says dim={DIM}"),
    ],
    ids=["ids-length", "labels-length", "duplicate-ids", "nan", "dim"],
)
def test_inconsistent_saved_index_is_rejected_on_load(gallery, tmp_path, change, message):
    embeddings, _, _ = gallery
    path = saved_arrays(tmp_path, embeddings, change(embeddings))
    with pytest.raises(ValueError, match=message) as error:
        GalleryIndex.load(path)
    assert "gallery.npz" in str(error.value)


@pytest.mark.parametrize(
    "content",
    [b"not a zip file", "pickled"],
)
def test_corrupt_gallery_file_is_named_and_unpickling_is_never_suggested(gallery, tmp_path, content):
    embeddings, _, _ = gallery
    path = tmp_path / "index"
    make_index(embeddings).save(str(path))
    if content == "pickled":
        np.savez(path / "gallery.npz", embeddings=embeddings, ids=np.array([object()] * 60, dtype=object), labels=np.zeros(60))
    else:
        (path / "gallery.npz").write_bytes(content)
    with pytest.raises(ValueError) as error:
        GalleryIndex.load(str(path))
    message = str(error.value)
    assert "gallery.npz is corrupt" in message and "allow_pickle" not in message


def test_bad_index_description_is_named(gallery, tmp_path):
    embeddings, _, _ = gallery
    path = tmp_path / "index"
    make_index(embeddings).save(str(path))
    (path / "index.json").write_text('{"dim": 0, "metric": "euclidean", "backend": "exact"}')
    with pytest.raises(ValueError, match="index.json is not a valid gallery index description: dim must be"):
        GalleryIndex.load(str(path))
    os.remove(path / "index.json")
    with pytest.raises(FileNotFoundError, match="index.json is missing"):
        GalleryIndex.load(str(path))
