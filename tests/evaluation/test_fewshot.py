"""Few-shot episodes: sampling invariants, a brute-force loop reference, statistical sanity, errors."""

import numpy as np
import pytest

from tfdml import evaluation
from tfdml.evaluation import fewshot


def _data(rng, classes=12, per_class=7, categories=3, dim=6):
    labels = np.repeat(np.arange(classes), per_class)
    rng.shuffle(labels)
    return rng.normal(size=(len(labels), dim)), labels, labels % categories


def _reference_accuracies(embeddings, labels, episodes, classifier):
    """Python loops over episodes and queries, distances by np.linalg.norm."""
    accuracies = []
    for classes, support, query in zip(episodes.classes, episodes.support, episodes.query):
        correct = total = 0
        for way, rows in enumerate(query):
            for row in rows:
                scores = []
                for shots in support:
                    if classifier == "prototype":
                        scores.append(np.linalg.norm(embeddings[row] - embeddings[shots].mean(axis=0)))
                    else:
                        scores.append(min(np.linalg.norm(embeddings[row] - embeddings[shot]) for shot in shots))
                correct += classes[int(np.argmin(scores))] == labels[row]
                total += 1
        accuracies.append(correct / total)
    return np.array(accuracies)


@pytest.mark.parametrize("within", [False, True])
def test_episodes_are_distinct_images_of_distinct_classes(rng, within):
    _, labels, categories = _data(rng)
    drawn = fewshot.sample_episodes(
        labels, 4, 3, queries=2, episodes=50, categories=categories if within else None, seed=1
    )
    assert drawn.classes.shape == (50, 4) and drawn.support.shape == (50, 4, 3) and drawn.query.shape == (50, 4, 2)
    for classes, support, query in zip(drawn.classes, drawn.support, drawn.query):
        assert len(set(classes)) == 4
        rows = np.concatenate([support, query], axis=1)
        assert len(set(rows.ravel())) == rows.size  # no image twice in an episode
        np.testing.assert_array_equal(labels[rows], np.repeat(classes[:, None], 5, axis=1))
        if within:
            assert len(set(categories[rows.ravel()])) == 1
    # Across episodes, every class and every category gets used.
    assert set(drawn.classes.ravel()) == set(labels)


def test_episodes_are_seeded():
    _, labels, categories = _data(np.random.default_rng(0))
    first = fewshot.sample_episodes(labels, 4, 1, episodes=20, categories=categories, seed=3)
    again = fewshot.sample_episodes(labels, 4, 1, episodes=20, categories=categories, seed=3)
    other = fewshot.sample_episodes(labels, 4, 1, episodes=20, categories=categories, seed=4)
    np.testing.assert_array_equal(first.support, again.support)
    np.testing.assert_array_equal(first.query, again.query)
    assert not np.array_equal(first.support, other.support)


@pytest.mark.parametrize("classifier", ["prototype", "nearest"])
@pytest.mark.parametrize("ways, shots, queries", [(5, 1, 1), (5, 5, 2), (3, 2, 1)])
def test_accuracies_match_brute_force_reference(rng, classifier, ways, shots, queries):
    embeddings, labels, _ = _data(rng)
    # Pull classes apart a little so that accuracies are neither 0 nor 1.
    embeddings = embeddings + 0.8 * rng.normal(size=(labels.max() + 1, embeddings.shape[1]))[labels]
    drawn = fewshot.sample_episodes(labels, ways, shots, queries=queries, episodes=60, seed=2)
    got = fewshot.episode_accuracies(embeddings, drawn, classifier=classifier)
    np.testing.assert_allclose(got, _reference_accuracies(embeddings, labels, drawn, classifier))
    assert 0 < got.mean() < 1


def test_prototype_and_nearest_differ_with_several_shots_and_agree_with_one(rng):
    embeddings, labels, _ = _data(rng)
    many = fewshot.sample_episodes(labels, 5, 5, episodes=200, seed=0)
    assert not np.array_equal(
        fewshot.episode_accuracies(embeddings, many, classifier="prototype"),
        fewshot.episode_accuracies(embeddings, many, classifier="nearest"),
    )
    one = fewshot.sample_episodes(labels, 5, 1, episodes=200, seed=0)
    np.testing.assert_array_equal(
        fewshot.episode_accuracies(embeddings, one, classifier="prototype"),
        fewshot.episode_accuracies(embeddings, one, classifier="nearest"),
    )


def test_perfect_embeddings_score_one_and_random_ones_score_chance(rng):
    _, labels, categories = _data(rng, classes=40, per_class=6, categories=2)
    perfect = np.eye(40)[labels] * 5 + 0.01 * rng.normal(size=(len(labels), 40))
    result = fewshot.fewshot_accuracy(perfect, labels, 20, 1, categories=categories, episodes=400)
    assert result.mean == 1.0 and result.ci95 == 0.0
    noise = rng.normal(size=(len(labels), 8))
    for ways, shots in [(5, 1), (5, 5), (20, 1)]:
        result = fewshot.fewshot_accuracy(noise, labels, ways, shots, episodes=1000, seed=5)
        assert abs(result.mean - 1 / ways) < 3 * result.ci95 + 0.01, (ways, shots, result.mean, result.ci95)
        assert result.ci95 == pytest.approx(1.96 * result.accuracies.std() / np.sqrt(1000))


def test_within_category_drops_small_categories_with_a_warning(rng):
    labels = np.repeat(np.arange(9), 2)
    categories = np.repeat([0, 0, 0, 0, 1, 1, 1, 1, 2], 2)  # category 2 has one class
    with pytest.warns(UserWarning, match=r"left out: \{2: 1\}"):
        drawn = fewshot.sample_episodes(labels, 4, 1, episodes=100, categories=categories)
    assert set(categories[drawn.support.ravel()]) == {0, 1}
    with pytest.raises(ValueError, match="need a category with 5 classes; the largest has 4"):
        fewshot.sample_episodes(labels, 5, 1, categories=categories)


def test_clear_errors(rng):
    labels = np.array([0, 0, 1, 1, 2, 2, 2, 3])
    with pytest.raises(ValueError, match=r"needs 2 images of every class; 1 class\(es\) have fewer: 3 \(1\)"):
        fewshot.sample_episodes(labels, 2, 1)
    with pytest.raises(ValueError, match=r"needs 3 images.*: 0 \(2\), 1 \(2\), 3 \(1\)"):
        fewshot.sample_episodes(labels, 2, 2)
    with pytest.raises(ValueError, match="5-way episodes need 5 classes; the labels hold 3"):
        fewshot.sample_episodes(labels[:7], 5, 1)
    with pytest.raises(ValueError, match="class 1 has images in several categories"):
        fewshot.sample_episodes(labels[:7], 2, 1, categories=[0, 0, 0, 1, 1, 1, 1])
    with pytest.raises(ValueError, match="shots must be an integer >= 1"):
        fewshot.sample_episodes(labels, 2, 0)
    with pytest.raises(ValueError, match="classifier"):
        fewshot.episode_accuracies(np.zeros((8, 2)), fewshot.sample_episodes(labels[:7], 2, 1), classifier="svm")
    with pytest.raises(ValueError, match="needs categories="):
        fewshot.protocol_scores("fewshot_20way_1shot_within", np.zeros((8, 2)), labels)
    with pytest.raises(ValueError, match=">= 400 episodes; got 100"):
        fewshot.protocol_scores("fewshot_5way_1shot", np.zeros((8, 2)), labels, episodes=100)


def test_evaluate_reports_fewshot_protocols_with_confidence_intervals(rng):
    _, labels, categories = _data(rng, classes=40, per_class=6, categories=2)
    embeddings = np.eye(40)[labels] + 0.6 * rng.normal(size=(len(labels), 40))
    names = list(fewshot.PROTOCOLS)
    scores = evaluation.evaluate(embeddings, labels, metrics=["recall_at_k", *names], k=(1,), categories=categories)
    assert set(scores) == {"recall_at_1", *names, *(f"{name}_ci95" for name in names)}
    for name, settings in fewshot.PROTOCOLS.items():
        expected = fewshot.fewshot_accuracy(
            embeddings, labels, settings["ways"], settings["shots"],
            categories=categories if settings["within_category"] else None,
        )
        assert scores[name] == expected.mean and scores[f"{name}_ci95"] == expected.ci95
        assert 1 / settings["ways"] < scores[name] <= 1
    assert scores["fewshot_5way_5shot"] > scores["fewshot_5way_1shot"]
    with pytest.raises(ValueError, match="needs categories="):
        evaluation.evaluate(embeddings, labels, metrics=["fewshot_20way_1shot_within"])


@pytest.mark.parametrize("categories_from", ["dataset", "argument"])
def test_callback_logs_fewshot_scores_with_categories(rng, categories_from):
    import keras
    import tensorflow as tf

    _, labels, categories = _data(rng, classes=24, per_class=3, categories=1)
    x = rng.normal(size=(len(labels), 5)).astype(np.float32)
    embedder = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4)])
    if categories_from == "dataset":
        validation = tf.data.Dataset.from_tensor_slices((x, labels, categories)).batch(16)
        callback = evaluation.RetrievalEvaluation(validation, metrics=list(fewshot.PROTOCOLS)[:2], embedding_model=embedder)
    else:
        callback = evaluation.RetrievalEvaluation(
            (x, labels), metrics=list(fewshot.PROTOCOLS)[:2], embedding_model=embedder, categories=categories
        )
    logs = {}
    callback.on_epoch_end(0, logs)
    expected = evaluation.evaluate(
        embedder.predict(x, verbose=0), labels, metrics=list(fewshot.PROTOCOLS)[:2], categories=categories
    )
    assert logs == pytest.approx({f"val_{key}": value for key, value in expected.items()})
    assert set(logs) == {"val_fewshot_20way_1shot_within", "val_fewshot_20way_1shot_within_ci95",
                         "val_fewshot_5way_1shot", "val_fewshot_5way_1shot_ci95"}


def test_evaluate_cli_report_holds_fewshot_scores(tmp_path, rng):
    import json

    import keras

    from tfdml.evaluate import main

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(6)])
    model.save(tmp_path / "model.keras")
    main([str(tmp_path / "model.keras"), "--data", "digits", "--image-size", "8", "--out", str(tmp_path / "eval"),
          "--verbose", "0", "--fewshot", "fewshot_5way_1shot", "fewshot_5way_5shot"])
    metrics = json.loads((tmp_path / "eval" / "report.json").read_text())["metrics"]
    for name in ("fewshot_5way_1shot", "fewshot_5way_5shot"):
        assert 0.2 < metrics[name] <= 1 and 0 < metrics[f"{name}_ci95"] < 0.05
    assert "recall_at_1" in metrics and "fewshot_20way_1shot_within" not in metrics
