"""Multi-label retrieval metrics (a neighbour is relevant when it shares a label with the query) against a
brute-force NumPy reference and PML's AccuracyCalculator (tests/fixtures/pml/MultiLabelRetrieval.json), the
per-label breakdown, and the inputs multi-label evaluation refuses."""

import numpy as np
import pytest

import pml_parity
from tfdml.evaluation import PositiveRanks, evaluate, per_label, precision_at_k, rank_positives
from tfdml.evaluation.knn import UNRANKED, _positive_columns, _shared_label_columns

K = (1, 3, 20)


def reference(x, label_sets, k=K):
    """Per-query R@k, P@k and MAP@R by a full sort of the other samples (continuous embeddings: no ties)."""
    distances = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    rows = []
    for q in range(len(x)):
        others = np.array([j for j in np.argsort(distances[q]) if j != q])
        relevant = np.array([bool(np.any(label_sets[q] & label_sets[j])) for j in others])
        r = relevant.sum()
        if r == 0:
            continue
        hits = np.cumsum(relevant)
        row = {f"recall_at_{c}": float(relevant[:c].any()) for c in k}
        row.update({f"precision_at_{c}": relevant[:c].sum() / c for c in k})
        row["map_at_r"] = sum(hits[m] / (m + 1) for m in range(r) if relevant[m]) / r
        row["r_precision"] = relevant[:r].sum() / r
        row["labels"] = label_sets[q]
        rows.append(row)
    return rows


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    label_sets = (rng.random((60, 6)) < 0.25).astype(np.int64)
    label_sets[:3] = 0  # unlabelled samples: never relevant, left out as queries
    x = rng.normal(size=(60, 5)).astype(np.float32) + 0.8 * (label_sets @ rng.normal(size=(6, 5)))
    return x.astype(np.float32), label_sets


def test_evaluate_matches_the_reference(data):
    x, label_sets = data
    rows = reference(x, label_sets)
    scores = evaluate(x, label_sets, metrics=("recall_at_k", "precision_at_k", "map_at_r", "r_precision"), k=K)
    for key in scores:
        np.testing.assert_allclose(scores[key], np.mean([row[key] for row in rows]), rtol=1e-6, err_msg=key)
    assert 0.0 < scores["map_at_r"] < 1.0 and scores["precision_at_20"] < scores["recall_at_20"]


def test_per_label_breakdown_averages_each_labels_queries(data):
    x, label_sets = data
    rows = reference(x, label_sets, k=(1, 3))
    breakdown = per_label(rank_positives(x, label_sets), k=(1,), precision_k=(3,))  # the trace evaluate compiled
    assert sorted(breakdown) == list(range(label_sets.shape[1]))
    for label, scores in breakdown.items():
        carrying = [row for row in rows if row["labels"][label]]
        assert scores["queries"] == len(carrying)
        for key in ("recall_at_1", "precision_at_3", "map_at_r"):
            np.testing.assert_allclose(scores[key], np.mean([row[key] for row in carrying]), rtol=1e-6)


def test_one_hot_label_sets_have_the_positives_of_their_class_ids():
    ids = np.array([2, 0, 2, 1, 0, 2, 3])
    self_index = np.arange(len(ids))
    columns, valid = _shared_label_columns(np.eye(4, dtype=int)[ids], np.eye(4, dtype=int)[ids], self_index, 3)
    expected_columns, expected_valid = _positive_columns(ids, ids, self_index)
    assert [set(c[v]) for c, v in zip(columns, valid)] == [set(c[v]) for c, v in zip(expected_columns, expected_valid)]


def test_precision_needs_the_ranks_to_depth_k():
    shallow = PositiveRanks(
        first=np.array([1, 2]), positives=np.array([[1, UNRANKED], [2, UNRANKED]]), num_positives=np.array([2, 1]),
        labels=np.array([0, 0]), depth=2,
    )
    assert precision_at_k(shallow, 2) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="precision@5 needs depth >= 5"):
        precision_at_k(shallow, 5)


def test_bad_multi_label_inputs_are_named(data):
    x, label_sets = data
    with pytest.raises(ValueError, match=r"\['nmi'\] are undefined for multi-label sets"):
        evaluate(x, label_sets, metrics=("recall_at_k", "nmi"))
    bad = label_sets.copy()
    bad[5, 2] = 3
    with pytest.raises(ValueError, match="labels must be multi-hot .* got the value 3"):
        evaluate(x, bad, metrics=("recall_at_k",))
    with pytest.raises(ValueError, match="per_label needs the ranks of multi-hot label sets"):
        per_label(PositiveRanks(np.ones(1), np.ones((1, 1)), np.ones(1), np.zeros(1), 1))


@pytest.mark.parametrize("case", pml_parity.cases("MultiLabelRetrieval"), ids=pml_parity.case_ids("MultiLabelRetrieval"))
def test_multi_label_scores_match_pml_with_a_shares_a_label_comparison(case):
    inputs, expected = case["inputs"], case["scores"]
    scores = evaluate(inputs["embeddings"], inputs["labels"], metrics=("recall_at_k", "r_precision", "map_at_r"), k=(1,))
    np.testing.assert_allclose(scores["recall_at_1"], expected["precision_at_1"], atol=1e-5)
    np.testing.assert_allclose(scores["r_precision"], expected["r_precision"], atol=1e-5)
    np.testing.assert_allclose(scores["map_at_r"], expected["mean_average_precision_at_r"], atol=1e-5)
