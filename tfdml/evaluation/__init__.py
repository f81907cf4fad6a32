"""Evaluation of embeddings: retrieval, clustering, verification and embedding-space structure.

``evaluate(embeddings, labels)`` computes the metrics of Wu et al. 2017 and
Roth et al. 2020 on NumPy arrays or tensors, by default with the test set as
both query and gallery and each query's own row excluded by index:

| key                          | module            | definition                                            |
|------------------------------|-------------------|-------------------------------------------------------|
| ``recall_at_{k}``            | ``retrieval``     | a positive among the k nearest (one key per k)        |
| ``r_precision``, ``map_at_r``| ``retrieval``     | Musgrave et al. 2020                                  |
| ``map_c``                    | ``retrieval``     | class-averaged mAP over the top k_c (Roth eq. 29)     |
| ``precision_at_{k}``         | ``retrieval``     | positives among the k nearest, over k (on request)    |
| ``nmi``, ``f1``              | ``clustering``    | K-means with K = number of classes                    |
| ``rho_spectral_decay``       | ``spectrum``      | KL(U ‖ normalised spectrum without its largest value) |
| ``pi_intra``, ``pi_inter``, ``pi_ratio`` | ``spectrum`` | mean intra-class / inter-class-mean distances     |
| ``fewshot_…`` (+ ``…_ci95``) | ``fewshot``       | N-way K-shot episode accuracy and 95% CI half-width |

The few-shot metrics (:data:`FEWSHOT_METRICS`: ``fewshot_20way_1shot_within``,
``fewshot_5way_1shot``, ``fewshot_5way_5shot``) are not in the default
``metrics``; the within-category one needs ``categories=``.

Multi-hot label sets ``(n, C)`` in place of ``labels`` evaluate multi-label retrieval (a neighbour is
relevant when it shares a label with the query): :data:`MULTI_LABEL_METRICS`, and
:func:`retrieval.per_label` for a per-label breakdown.

Face-verification accuracy works on pair lists instead:
:func:`verification.verification_accuracy`. :class:`RetrievalEvaluation` runs
``evaluate`` on a validation split during ``fit``.

Example:

>>> scores = tfdml.evaluation.evaluate(embeddings, labels, k=(1, 2, 4, 8))
>>> scores["recall_at_1"], scores["nmi"]
(0.62, 0.67)
"""

from tfdml.evaluation.callback import RetrievalEvaluation
from tfdml.evaluation.clustering import kmeans, nmi, pair_f1
from tfdml.evaluation.fewshot import Episodes, FewShotResult, episode_accuracies, fewshot_accuracy, sample_episodes
from tfdml.evaluation.knn import PositiveRanks, nearest_neighbors, rank_positives
from tfdml.evaluation.report import FEWSHOT_METRICS, METRICS, MULTI_LABEL_METRICS, PRECISION_METRICS, evaluate
from tfdml.evaluation.retrieval import map_at_r, map_c, per_label, precision_at_k, r_precision, recall_at_k
from tfdml.evaluation.spectrum import class_distance_statistics, singular_values, spectral_decay
from tfdml.evaluation.verification import VerificationResult, paired_distances, verification_accuracy

__all__ = [
    "Episodes",
    "FEWSHOT_METRICS",
    "FewShotResult",
    "METRICS",
    "MULTI_LABEL_METRICS",
    "PRECISION_METRICS",
    "PositiveRanks",
    "RetrievalEvaluation",
    "VerificationResult",
    "class_distance_statistics",
    "episode_accuracies",
    "evaluate",
    "fewshot_accuracy",
    "kmeans",
    "map_at_r",
    "map_c",
    "nearest_neighbors",
    "nmi",
    "pair_f1",
    "per_label",
    "precision_at_k",
    "paired_distances",
    "r_precision",
    "rank_positives",
    "recall_at_k",
    "sample_episodes",
    "singular_values",
    "spectral_decay",
    "verification_accuracy",
]
