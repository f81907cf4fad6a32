"""PML parity cases of multi-label retrieval (``tfdml.evaluation.evaluate`` of multi-hot label sets), in float64.

PML's ``AccuracyCalculator`` scores multi-label data through ``label_comparison_fn``; with a function that says
"shares a label" (``(a * b).sum(-1) > 0`` on multi-hot rows) and Euclidean distances of the embeddings as given
(``CustomKNN(LpDistance(normalize_embeddings=False))``, tfdml's ``metric="euclidean"``), its ``precision_at_1``
(tfdml's Recall@1 = Precision@1), ``r_precision`` and ``mean_average_precision_at_r`` are tfdml's. The batch
holds embeddings correlated with sparse label sets and unlabelled rows (never relevant, left out as queries).
"""

import numpy as np


def shares_a_label(query_labels, reference_labels):
    return (query_labels * reference_labels).sum(-1) > 0


def multi_label_retrieval(rng):
    import torch
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from pytorch_metric_learning.utils.inference import CustomKNN

    calculator = AccuracyCalculator(
        include=("precision_at_1", "r_precision", "mean_average_precision_at_r"),
        label_comparison_fn=shares_a_label,
        knn_func=CustomKNN(LpDistance(normalize_embeddings=False)),
    )
    made = []
    for case_id, (size, labels, density) in {"n60_c12": (60, 12, 0.15)}.items():
        label_sets = (rng.random((size, labels)) < density).astype(np.int64)
        label_sets[:2] = 0
        embeddings = rng.standard_normal((size, 5)) + 0.8 * label_sets @ rng.standard_normal((labels, 5))
        scores = calculator.get_accuracy(torch.tensor(embeddings), torch.tensor(label_sets), ref_includes_query=True)
        made.append({
            "id": case_id,
            "inputs": {"embeddings": embeddings, "labels": label_sets},
            "params": {},
            "pml": {"label_comparison_fn": "shares a label", "distance": "LpDistance(normalize_embeddings=False)"},
            "scores": {name: float(value) for name, value in scores.items()},
        })
    return made


CASES = {"MultiLabelRetrieval": multi_label_retrieval}
