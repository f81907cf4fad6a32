"""tfdml.evaluation vs pytorch-metric-learning's AccuracyCalculator at Stanford Online Products test scale.

Synthetic clustered embeddings with SOP's test shape (60,502 × 128, 11,316
classes of 2–12 images, L2-normalised) are evaluated by both libraries in the
same process, one after the other:

- peer: ``AccuracyCalculator(k="max_bin_count")`` (faiss ``IndexFlatL2`` kNN, faiss
  k-means with 20 iterations) for precision@1 / R-precision / MAP@R, then NMI;
- tfdml: ``evaluate`` for Recall@{1,10,100,1000}, R-precision, MAP@R, then NMI
  (k-means backend as chosen by ``--kmeans-backend``, default ``"lloyd"``).

Where the definitions coincide the values must agree: precision@1 = recall@1 (one
neighbour), R-precision and MAP@R (the same exact kNN; ties have probability ~0
on continuous data). NMI is shown for both, but the k-means runs start from
different random centroids.

Run: ``python -m benchmarks.evaluation [--samples 60502 --classes 11316 --dim 128]``.
Needs ``requirements-peers.txt`` (torch CPU first, then pytorch-metric-learning and faiss-cpu).
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

import tfdml.evaluation as ev


def sop_like_embeddings(samples, classes, dim, seed=0, noise=0.09):
    """Clustered unit vectors: ``classes`` random centres, 2–12 samples each, ``samples`` in total."""
    rng = np.random.default_rng(seed)
    sizes = np.full(classes, 2)
    extra = rng.choice(np.repeat(np.arange(classes), 10), size=samples - 2 * classes, replace=False)
    sizes += np.bincount(extra, minlength=classes)
    labels = rng.permutation(np.repeat(np.arange(classes), sizes))
    centres = rng.normal(size=(classes, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = centres[labels] + noise * rng.normal(size=(samples, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), labels.astype(np.int64)


def timed(function):
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def run_peer(x, labels):
    import torch
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    torch.set_num_threads(os.cpu_count())
    calculator = AccuracyCalculator(k="max_bin_count", device=torch.device("cpu"))
    retrieval, retrieval_time = timed(
        lambda: calculator.get_accuracy(
            x, labels, include=("precision_at_1", "r_precision", "mean_average_precision_at_r")
        )
    )
    clustering, clustering_time = timed(lambda: calculator.get_accuracy(x, labels, include=("NMI",)))
    values = {
        "recall_at_1": retrieval["precision_at_1"],
        "r_precision": retrieval["r_precision"],
        "map_at_r": retrieval["mean_average_precision_at_r"],
        "nmi": clustering["NMI"],
    }
    return values, retrieval_time, clustering_time


def run_tfdml(x, labels, backend, chunk_size, verbose):
    retrieval, retrieval_time = timed(
        lambda: ev.evaluate(
            x,
            labels,
            metrics=("recall_at_k", "r_precision", "map_at_r"),
            k=(1, 10, 100, 1000),
            chunk_size=chunk_size,
            verbose=verbose,
        )
    )
    clustering, clustering_time = timed(
        lambda: ev.evaluate(x, labels, metrics=("nmi",), kmeans_backend=backend, verbose=0)
    )
    return {**retrieval, **clustering}, retrieval_time, clustering_time


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=60502)
    parser.add_argument("--classes", type=int, default=11316)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--kmeans-backend", default="lloyd", choices=("lloyd", "sklearn", "faiss"))
    parser.add_argument("--chunk-size", type=int, default=1024)
    parser.add_argument("--verbose", type=int, default=1)
    parser.add_argument("--skip-peer", action="store_true")
    args = parser.parse_args()

    x, labels = sop_like_embeddings(args.samples, args.classes, args.dim)
    print(f"{args.samples} × {args.dim} embeddings, {args.classes} classes, {os.cpu_count()} CPU cores")
    ours, ours_retrieval, ours_clustering = run_tfdml(x, labels, args.kmeans_backend, args.chunk_size, args.verbose)
    rows = [("tfdml", ours, ours_retrieval, ours_clustering)]
    if not args.skip_peer:
        rows.append(("pytorch-metric-learning", *run_peer(x, labels)))

    keys = ("recall_at_1", "recall_at_10", "recall_at_100", "recall_at_1000", "r_precision", "map_at_r", "nmi")
    print(f"\n{'library':<26}{'kNN metrics s':>14}{'NMI s':>9}{'total s':>9}  " + "  ".join(f"{k:>14}" for k in keys))
    for name, values, retrieval_time, clustering_time in rows:
        cells = "  ".join(f"{values[k]:>14.5f}" if k in values else f"{'-':>14}" for k in keys)
        total = retrieval_time + clustering_time
        print(f"{name:<26}{retrieval_time:>14.2f}{clustering_time:>9.2f}{total:>9.2f}  {cells}")
    if len(rows) == 2:
        (_, ours, ours_r, ours_c), (_, peer, peer_r, peer_c) = rows
        print(f"\nratio tfdml/peer: kNN metrics {ours_r / peer_r:.2f}, NMI {ours_c / peer_c:.2f}, "
              f"total {(ours_r + ours_c) / (peer_r + peer_c):.2f} (target <= 0.5)")
        for key in ("recall_at_1", "r_precision", "map_at_r"):
            print(f"{key}: |tfdml − peer| = {abs(ours[key] - peer[key]):.2e}")


if __name__ == "__main__":
    main()
