"""tfdml.evaluation against brute-force NumPy references written from the metric definitions."""

import json

import keras
import numpy as np
import pytest
import sklearn.datasets
import sklearn.metrics
import tensorflow as tf

import tfdml.evaluation as ev
from tfdml.data.base import LabelledImages
from tfdml.evaluate import main, write_report
from tfdml.evaluation import clustering, knn, retrieval, spectrum, verification

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- references


def reference_distances(query, gallery, metric):
    q = np.asarray(query, np.float64)
    g = np.asarray(gallery, np.float64)
    if metric == "cosine":
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        g = g / np.linalg.norm(g, axis=1, keepdims=True)
        return 1.0 - np.sum(q[:, None, :] * g[None, :, :], axis=2)
    squared = np.sum((q[:, None, :] - g[None, :, :]) ** 2, axis=2)
    return squared if metric == "squared_euclidean" else np.sqrt(squared)


def reference_relevance(query, query_labels, gallery, gallery_labels, self_index, metric="euclidean"):
    """Per query, the relevance list of the whole ranking: ties put negatives before positives."""
    distances = reference_distances(query, gallery, metric)
    lists = []
    for i in range(len(query)):
        keep = [j for j in range(len(gallery)) if j != self_index[i]]
        relevant = np.array([gallery_labels[j] == query_labels[i] for j in keep])
        order = np.lexsort((relevant, distances[i, keep]))  # by distance, then negatives (False) first
        lists.append(relevant[order])
    return lists


def reference_metrics(lists, query_labels, ks):
    recalls = {k: [] for k in ks}
    r_precisions, maps, per_class = [], [], {}
    for relevance, label in zip(lists, query_labels):
        r = int(relevance.sum())
        if r == 0:
            continue
        for k in ks:
            recalls[k].append(relevance[:k].any())
        r_precisions.append(relevance[:r].sum() / r)
        precision_at = np.cumsum(relevance) / np.arange(1, len(relevance) + 1)
        ap = sum(precision_at[i] for i in range(r) if relevance[i]) / r
        maps.append(ap)
        per_class.setdefault(label, []).append(ap)
    return (
        {k: np.mean(v) for k, v in recalls.items()},
        np.mean(r_precisions),
        np.mean(maps),
        np.mean([np.mean(v) for v in per_class.values()]),
    )


def tied_data(rng, n=70, d=3, classes=12):
    """Small-integer embeddings: many exact distance ties, all float32 arithmetic exact; one singleton class."""
    x = rng.integers(-1, 2, size=(n, d)).astype(np.float32)
    labels = rng.integers(0, classes, size=n)
    labels[0] = classes  # a class of size 1
    return x, labels


# ---------------------------------------------------------------- retrieval


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("kind", ["ties", "continuous"])
def test_retrieval_metrics_match_bruteforce(rng, metric, kind):
    if kind == "ties":
        x, labels = tied_data(rng)
        if metric == "cosine":
            x[np.all(x == 0, axis=1)] = 1.0  # cosine needs non-zero vectors
    else:
        x = rng.normal(size=(60, 5)).astype(np.float32)
        labels = rng.integers(0, 9, size=60)
    ks = (1, 2, 4, 8, 1000)
    ranks = knn.rank_positives(x, labels, metric=metric, chunk_size=16)
    lists = reference_relevance(x, labels, x, labels, np.arange(len(x)), metric)
    recalls, r_prec, map_r, map_class = reference_metrics(lists, labels, ks)
    for k in ks:
        assert retrieval.recall_at_k(ranks, k) == pytest.approx(recalls[k])
    assert retrieval.r_precision(ranks) == pytest.approx(r_prec)
    assert retrieval.map_at_r(ranks) == pytest.approx(map_r)
    assert retrieval.map_c(ranks) == pytest.approx(map_class)


def test_many_blocks_with_duplicates_match_bruteforce(rng):
    # 700 samples on a 7³ integer grid: duplicates of the query tie with it exactly, spread over 11 column blocks.
    x = rng.integers(-3, 4, size=(700, 3)).astype(np.float32)
    labels = rng.integers(0, 250, size=700)
    ranks = knn.rank_positives(x, labels, chunk_size=256)
    lists = reference_relevance(x, labels, x, labels, np.arange(len(x)))
    recalls, r_prec, map_r, _ = reference_metrics(lists, labels, (1, 5, 50))
    for k in (1, 5, 50):
        assert retrieval.recall_at_k(ranks, k) == pytest.approx(recalls[k])
    assert retrieval.r_precision(ranks) == pytest.approx(r_prec)
    assert retrieval.map_at_r(ranks) == pytest.approx(map_r)


def test_depth_one_over_many_blocks_matches_bruteforce(rng):
    # Pairs only: depth 1, and the query's own column is the smallest score of its block.
    x = rng.normal(size=(640, 3)).astype(np.float32)
    labels = rng.permutation(np.arange(640) // 2)
    ranks = knn.rank_positives(x, labels, chunk_size=320)
    assert ranks.depth == 1
    lists = reference_relevance(x, labels, x, labels, np.arange(len(x)))
    recalls, r_prec, map_r, _ = reference_metrics(lists, labels, (1, 3))
    assert retrieval.recall_at_k(ranks, 1) == pytest.approx(recalls[1])
    assert retrieval.recall_at_k(ranks, 3) == pytest.approx(recalls[3])
    assert retrieval.map_at_r(ranks) == pytest.approx(map_r)


def test_separate_query_and_gallery(rng):
    x, labels = tied_data(rng, n=80)
    query, gallery = np.arange(0, 30), np.arange(20, 80)  # overlapping rows 20..29 never retrieve themselves
    scores = ev.evaluate(x, labels, query=query, gallery=gallery, metrics=("recall_at_k", "map_at_r"), k=(1, 3))
    position = {g: i for i, g in enumerate(gallery)}
    self_index = np.array([position.get(q, -1) for q in query])
    lists = reference_relevance(x[query], labels[query], x[gallery], labels[gallery], self_index)
    recalls, _, map_r, _ = reference_metrics(lists, labels[query], (1, 3))
    assert scores["recall_at_1"] == pytest.approx(recalls[1])
    assert scores["recall_at_3"] == pytest.approx(recalls[3])
    assert scores["map_at_r"] == pytest.approx(map_r)
    mask = np.zeros(len(x), bool)
    mask[query] = True
    assert ev.evaluate(x, labels, query=mask, gallery=gallery, metrics=("map_at_r",)) == {"map_at_r": scores["map_at_r"]}


def test_chunking_gives_identical_ranks(rng):
    x, labels = tied_data(rng, n=90)
    whole = knn.rank_positives(x, labels, chunk_size=1000)
    for chunk in (7, 32):
        chunked = knn.rank_positives(x, labels, chunk_size=chunk)
        np.testing.assert_array_equal(chunked.first, whole.first)
        np.testing.assert_array_equal(chunked.positives, whole.positives)
    np.testing.assert_array_equal(knn.nearest_neighbors(x, k=5, chunk_size=7)[1], knn.nearest_neighbors(x, k=5)[1])


def test_the_xla_compiled_rank_step_gives_the_ranks_of_the_plain_one(rng, monkeypatch):
    x, labels = tied_data(rng, n=90)
    monkeypatch.setattr(knn, "XLA_MIN_ENTRIES", 10**12)
    plain = [knn.rank_positives(x, labels, chunk_size=32, depth=depth) for depth in (None, 3)]
    monkeypatch.setattr(knn, "XLA_MIN_ENTRIES", 0)
    compiled = [knn.rank_positives(x, labels, chunk_size=32, depth=depth) for depth in (None, 3)]
    for ours, theirs in zip(plain, compiled):
        np.testing.assert_array_equal(ours.first, theirs.first)
        np.testing.assert_array_equal(ours.positives, theirs.positives)
    assert knn._RANK_STEPS[True].experimental_get_tracing_count() > 0  # the compiled step did run


def test_rank_beyond_depth_and_tie_at_depth_boundary():
    # Query 0 at the origin; gallery distances 1 (neg), 2 (neg, pos tied), 2 (neg), 3 (pos).
    x = np.array([[0, 0], [1, 0], [2, 0], [0, 2], [-2, 0], [3, 0]], np.float32)
    labels = np.array([0, 1, 2, 0, 3, 0])
    ranks = knn.rank_positives(x, labels, depth=2)
    # Pessimistic: both negatives at distance 2 come before the positive at 2 → rank 4; the positive at 3 → 5.
    assert ranks.first[0] == 4
    assert ranks.positives[0, 0] == 4 and ranks.positives[0, 1] == knn.UNRANKED
    deep = knn.rank_positives(x, labels, depth=5)
    np.testing.assert_array_equal(deep.positives[0], [4, 5])
    assert knn.rank_positives(x, labels).positives[0, 1] == knn.UNRANKED  # default depth = R = 2
    with pytest.raises(ValueError, match="depth"):
        retrieval.map_at_r(knn.rank_positives(x, labels, depth=1))


def test_collapsed_embedding_scores_zero_recall():
    x = np.ones((20, 4), np.float32)
    labels = np.arange(20) % 4
    scores = ev.evaluate(x, labels, metrics=("recall_at_k", "map_at_r"), k=(1, 15, 16))
    # All 19 candidates tie: the 15 negatives rank before the 4 positives.
    assert scores["recall_at_1"] == 0.0 and scores["map_at_r"] == 0.0
    assert scores["recall_at_15"] == 0.0 and scores["recall_at_16"] == 1.0


def test_perfect_embedding_scores_one():
    labels = np.repeat(np.arange(5), 4)
    x = np.eye(5, dtype=np.float32)[labels] * 10 + np.random.default_rng(1).normal(0, 0.01, (20, 5)).astype(np.float32)
    scores = ev.evaluate(x, labels, metrics=("recall_at_k", "r_precision", "map_at_r", "map_c"), k=(1,))
    assert all(value == pytest.approx(1.0) for value in scores.values()), scores
    assert clustering.nmi(labels, labels + 7) == pytest.approx(1.0)
    assert clustering.pair_f1(labels, labels + 7) == pytest.approx(1.0)


def test_singleton_only_queries_give_nan():
    scores = ev.evaluate(np.eye(4, dtype=np.float32), np.arange(4), metrics=("recall_at_k", "map_at_r"), k=(1,))
    assert np.isnan(scores["recall_at_1"]) and np.isnan(scores["map_at_r"])


@pytest.mark.parametrize("metric", ["euclidean", "squared_euclidean", "cosine"])
def test_nearest_neighbors_match_bruteforce(rng, metric):
    x = rng.normal(size=(40, 6)).astype(np.float32)
    x[5] = x[3]  # a duplicate of query 3 must be returned for it, not dropped with the self-match
    distances, indices = knn.nearest_neighbors(x, k=4, metric=metric, chunk_size=9)
    reference = reference_distances(x, x, metric)
    np.fill_diagonal(reference, np.inf)
    np.testing.assert_array_equal(indices, np.argsort(reference, axis=1, kind="stable")[:, :4])
    np.testing.assert_allclose(distances, np.take_along_axis(reference, indices, 1), atol=2e-5)
    assert indices[3, 0] == 5 and indices[5, 0] == 3
    assert not np.any(indices == np.arange(40)[:, None])


def test_nearest_neighbors_ties_in_index_order():
    x = np.array([[0, 0], [1, 0], [0, 1], [-1, 0]], np.float32)
    _, indices = knn.nearest_neighbors(x[:1], x, k=4)
    np.testing.assert_array_equal(indices, [[0, 1, 2, 3]])


# ---------------------------------------------------------------- clustering


def reference_pair_f1(labels, clusters):
    tp = fp = fn = 0
    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            same_class, same_cluster = labels[i] == labels[j], clusters[i] == clusters[j]
            tp += same_class and same_cluster
            fp += same_cluster and not same_class
            fn += same_class and not same_cluster
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    return 2 * precision * recall / (precision + recall)


def test_nmi_and_f1_match_references(rng):
    labels = rng.integers(0, 5, size=50)
    clusters = rng.integers(0, 6, size=50)
    assert clustering.nmi(labels, clusters) == pytest.approx(sklearn.metrics.normalized_mutual_info_score(labels, clusters))
    assert clustering.pair_f1(labels, clusters) == pytest.approx(reference_pair_f1(labels, clusters))
    assert np.isnan(clustering.pair_f1(np.arange(5), np.arange(5)))


@pytest.mark.parametrize("backend", ["lloyd", "sklearn", "faiss"])
def test_kmeans_recovers_separated_clusters(rng, backend):
    if backend == "faiss":
        pytest.importorskip("faiss", reason="optional faiss backend not installed")
    centres = rng.normal(size=(6, 8)) * 20
    labels = np.repeat(np.arange(6), 10)
    x = (centres[labels] + rng.normal(size=(60, 8))).astype(np.float32)
    # Several seeds: Lloyd from random starts can merge two clusters; the best run must be exact.
    best = max(clustering.nmi(labels, clustering.kmeans(x, 6, seed=s, backend=backend)) for s in range(5))
    assert best == pytest.approx(1.0)
    assert clustering.kmeans(x, 6, seed=0, backend=backend).shape == (60,)


def test_kmeans_rejects_bad_arguments(rng):
    x = rng.normal(size=(10, 2)).astype(np.float32)
    with pytest.raises(ValueError, match="num_clusters"):
        clustering.kmeans(x, 11)
    with pytest.raises(ValueError, match="backend"):
        clustering.kmeans(x, 2, backend="mystery")


# ---------------------------------------------------------------- verification


def reference_verification(distances, same, folds=10):
    accuracies = []
    for test in np.array_split(np.arange(len(distances)), folds):
        train = np.setdiff1d(np.arange(len(distances)), test)
        values = np.sort(np.unique(distances[train]))
        candidates = np.concatenate([[values[0] - 1], (values[1:] + values[:-1]) / 2, [values[-1] + 1]])
        train_accuracy = [np.mean((distances[train] <= t) == same[train]) for t in candidates]
        threshold = candidates[int(np.argmax(train_accuracy))]
        accuracies.append(np.mean((distances[test] <= threshold) == same[test]))
    return np.mean(accuracies), np.array(accuracies)


def test_verification_matches_reference(rng):
    same = rng.random(200) < 0.5
    distances = np.round(np.where(same, rng.normal(1.0, 0.3, 200), rng.normal(1.5, 0.3, 200)), 1)  # ties
    result = verification.verification_accuracy(distances, same)
    accuracy, folds = reference_verification(distances, same)
    assert result.accuracy == pytest.approx(accuracy)
    np.testing.assert_allclose(result.fold_accuracies, folds)
    assert result.std == pytest.approx(folds.std())
    separable = verification.verification_accuracy(np.where(same, 0.5, 2.0), same)
    assert separable.accuracy == 1.0 and np.all((separable.thresholds > 0.5) & (separable.thresholds < 2.0))


def test_paired_distances_and_errors(rng):
    a, b = rng.normal(size=(2, 7, 3)).astype(np.float32)
    expected = np.diag(reference_distances(a, b, "euclidean"))
    np.testing.assert_allclose(verification.paired_distances(a, b), expected, rtol=1e-6)
    np.testing.assert_allclose(verification.paired_distances(a, b, "squared_euclidean"), expected**2, rtol=1e-6)
    np.testing.assert_allclose(
        verification.paired_distances(a, b, "cosine"), np.diag(reference_distances(a, b, "cosine")), atol=1e-6
    )
    with pytest.raises(ValueError, match="is_same"):
        verification.verification_accuracy([0.1, 0.2, 0.3], [0, 1])
    with pytest.raises(ValueError, match="num_folds"):
        verification.verification_accuracy([0.1, 0.2], [0, 1], num_folds=10)


# ---------------------------------------------------------------- spectrum


def test_spectral_decay_matches_reference(rng):
    x = rng.normal(size=(50, 6)) * np.array([5, 3, 2, 1, 0.5, 0.1])
    s = np.linalg.svd(x, compute_uv=False)[1:]
    s = s / s.sum()
    expected = sum((1 / len(s)) * np.log((1 / len(s)) / v) for v in s)
    assert spectrum.spectral_decay(x) == pytest.approx(expected, rel=1e-5)
    flat = np.vstack([np.eye(4) * 3, np.eye(4) * 3])  # all singular values equal
    assert spectrum.spectral_decay(flat) == pytest.approx(0.0, abs=1e-9)
    assert spectrum.spectral_decay(np.outer(rng.normal(size=10), [1.0, 2.0, 3.0])) == np.inf  # rank 1


def test_spectral_decay_of_a_rank_deficient_embedding_over_its_nonzero_spectrum(rng):
    x = rng.normal(size=(50, 4)) * np.array([5, 3, 2, 1])
    padded = np.hstack([x, np.zeros((50, 3))]) @ np.linalg.qr(rng.normal(size=(7, 7)))[0]  # rank 4 in 7-d
    assert spectrum.spectral_decay(padded) == np.inf
    assert spectrum.spectral_decay(padded, nonzero_only=True) == pytest.approx(spectrum.spectral_decay(x), rel=1e-5)
    assert np.count_nonzero(spectrum.singular_values(padded)) == 4
    with pytest.raises(ValueError, match="No \\(non-zero\\) singular value"):
        spectrum.spectral_decay(np.outer(rng.normal(size=10), [1.0, 2.0, 3.0]), nonzero_only=True)


def test_class_distance_statistics_match_reference(rng):
    x = rng.normal(size=(30, 4))
    labels = rng.integers(0, 5, size=30)
    labels[0] = 9  # singleton: no intra pair, still a class mean
    intra = [np.linalg.norm(x[i] - x[j]) for i in range(30) for j in range(30) if i != j and labels[i] == labels[j]]
    classes = np.unique(labels)
    means = np.array([x[labels == c].mean(0) for c in classes])
    inter = [np.linalg.norm(means[a] - means[b]) for a in range(len(classes)) for b in range(len(classes)) if a != b]
    stats = spectrum.class_distance_statistics(x, labels)
    assert stats["pi_intra"] == pytest.approx(np.mean(intra))
    assert stats["pi_inter"] == pytest.approx(np.mean(inter))
    assert stats["pi_ratio"] == pytest.approx(np.mean(intra) / np.mean(inter))


# ---------------------------------------------------------------- evaluate


def test_evaluate_keys_and_tensor_input(rng):
    x, labels = tied_data(rng)
    scores = ev.evaluate(tf.constant(x + 0.1 * rng.normal(size=x.shape).astype(np.float32)), tf.constant(labels[:, None]))
    expected = {"recall_at_1", "recall_at_2", "recall_at_4", "recall_at_8", "r_precision", "map_at_r", "map_c",
                "nmi", "f1", "rho_spectral_decay", "pi_intra", "pi_inter", "pi_ratio"}
    assert set(scores) == expected
    assert all(isinstance(value, float) for value in scores.values())


def test_evaluate_rejects_bad_input(rng):
    x = rng.normal(size=(10, 3)).astype(np.float32)
    labels = np.arange(10) % 2
    with pytest.raises(ValueError, match="Unknown metrics"):
        ev.evaluate(x, labels, metrics=("recall",))
    with pytest.raises(ValueError, match="labels must have shape"):
        ev.evaluate(x, labels[:9])
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ev.evaluate(bad, labels)
    with pytest.raises(ValueError, match="metric"):
        ev.evaluate(x, labels, metric="manhattan")
    with pytest.raises(ValueError, match="query"):
        ev.evaluate(x, labels, query=np.array([0, 12]))
    with pytest.raises(ValueError, match="k must"):
        ev.evaluate(x, labels, k=(0,))


# ---------------------------------------------------------------- callback


class EmbeddingWrapper(keras.Model):
    """Stands in for tfdml.training.MetricLearningModel: trains a head, evaluates `embedding_model`."""

    def __init__(self, embedding_model):
        super().__init__()
        self.embedding_model = embedding_model
        self.head = keras.layers.Dense(3)

    def call(self, inputs):
        return self.head(self.embedding_model(inputs))


def test_callback_writes_logs_during_fit(rng):
    x = rng.normal(size=(48, 5)).astype(np.float32)
    y = np.arange(48) % 3
    embedder = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4)])
    model = EmbeddingWrapper(embedder)
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    evaluation = ev.RetrievalEvaluation((x, y), metrics=("recall_at_k", "map_at_r", "nmi"), k=(1, 2), batch_size=16)
    stopper = keras.callbacks.EarlyStopping("val_recall_at_1", mode="max", patience=5)
    history = model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[evaluation, stopper])
    for key in ("val_recall_at_1", "val_recall_at_2", "val_map_at_r", "val_nmi"):
        assert len(history.history[key]) == 2
    embeddings = embedder.predict(x, verbose=0)
    expected = ev.evaluate(embeddings, y, metrics=("recall_at_k",), k=(1,))["recall_at_1"]
    assert history.history["val_recall_at_1"][-1] == pytest.approx(expected)
    assert evaluation.get_config()["every_n_epochs"] == 1


def test_callback_every_n_epochs(rng):
    x = rng.normal(size=(24, 5)).astype(np.float32)
    y = np.arange(24) % 3
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    evaluation = ev.RetrievalEvaluation(dataset, every_n_epochs=2, metrics=("map_at_r",))
    seen = []
    recorder = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append("val_map_at_r" in logs))
    model.fit(x, y, epochs=4, verbose=0, callbacks=[evaluation, recorder])
    assert seen == [False, True, False, True]
    with pytest.raises(ValueError, match="every_n_epochs"):
        ev.RetrievalEvaluation(dataset, every_n_epochs=0)


# ---------------------------------------------------------------- CLI


def _digits_images():
    bunch = sklearn.datasets.load_digits()
    keep = bunch.target >= 5
    images = tf.constant(bunch.images[keep][:, :, :, None] * 16.0, tf.float32)
    return LabelledImages(name="digits/test", labels=bunch.target[keep].astype(np.int64), load=lambda i: tf.gather(images, i))


def _tiny_model():
    return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(6)])


def _assert_report(out_dir):
    report = json.loads((out_dir / "report.json").read_text())
    assert {"recall_at_1", "map_at_r", "nmi", "rho_spectral_decay"} <= set(report["metrics"])
    assert len(report["figures"]) == 4
    for name in report["figures"].values():
        assert (out_dir / name).read_bytes()[:8] == PNG_SIGNATURE
    return report


def test_cli_with_saved_model(tmp_path):
    model = _tiny_model()
    model.export(str(tmp_path / "export"), verbose=False)
    main([str(tmp_path / "export"), "--data", "digits", "--image-size", "8", "--out", str(tmp_path / "eval"),
          "--verbose", "0"])
    report = _assert_report(tmp_path / "eval")
    assert report["data"] == "digits/test" and report["embedding_dim"] == 6


def test_cli_report_with_keras_file(tmp_path):
    model = _tiny_model()
    model.save(tmp_path / "model.keras")
    from tfdml.evaluate import embed_images, load_embedder

    data = _digits_images()
    embeddings = embed_images(load_embedder(tmp_path / "model.keras"), data, batch_size=64)
    np.testing.assert_allclose(embeddings[:5], model.predict(np.stack([data.load(i) for i in range(5)]), verbose=0),
                               rtol=1e-5, atol=1e-5)
    write_report(embeddings, data, tmp_path / "eval", k=(1, 2))
    assert "recall_at_2" in _assert_report(tmp_path / "eval")["metrics"]
    with pytest.raises(ValueError, match="MODEL"):
        load_embedder(tmp_path / "missing.h5")


# Issue 14, item 11: degenerate evaluations warn and return the documented nan values.
def test_a_single_class_warns_and_gives_nan_instead_of_perfect_scores(rng):
    embeddings = rng.normal(size=(20, 4))
    with pytest.warns(UserWarning, match="one class"):
        scores = ev.evaluate(embeddings, np.zeros(20, np.int64), k=(1, 2))
    for name in ("recall_at_1", "recall_at_2", "map_at_r", "nmi", "pi_inter", "pi_ratio"):
        assert np.isnan(scores[name]), (name, scores)
    assert np.isfinite(scores["pi_intra"]) and np.isfinite(scores["rho_spectral_decay"])


def test_every_sample_its_own_class_warns_and_gives_nan(rng):
    embeddings = rng.normal(size=(12, 4))
    with pytest.warns(UserWarning, match="its own class"):
        scores = ev.evaluate(embeddings, np.arange(12), metrics=["recall_at_k", "map_at_r", "nmi", "f1"], k=1)
    assert all(np.isnan(value) for value in scores.values()), scores


def test_k_larger_than_the_gallery_is_reported_not_scored_as_one(rng):
    embeddings = rng.normal(size=(10, 4))
    labels = np.arange(10) % 2
    with pytest.warns(UserWarning, match=r"k=\[10, 100\] exceeds the 9 gallery items"):
        scores = ev.evaluate(embeddings, labels, metrics=["recall_at_k"], k=(1, 9, 10, 100))
    assert np.isnan(scores["recall_at_10"]) and np.isnan(scores["recall_at_100"])
    assert scores["recall_at_9"] == 1.0 and 0.0 <= scores["recall_at_1"] <= 1.0


def test_ordinary_evaluation_does_not_warn(rng):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ev.evaluate(rng.normal(size=(30, 4)), np.arange(30) % 3, k=(1, 2, 4, 8))


def test_missing_model_is_reported_as_not_found(tmp_path, capsys):
    """Issue 14, item 13."""
    from tfdml.evaluate import load_embedder

    with pytest.raises(ValueError, match="MODEL not found: .*no_model"):
        load_embedder(tmp_path / "no_model")
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "no_model"), "--data", "digits", "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2 and "model not found" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
