"""Gallery search latency: tfdml's exact index and retrieval SavedModel vs brute-force NumPy and faiss.

One gallery of random unit vectors (default 100k × 128 float32), one batch of queries
(default 32), k = 10, Euclidean distance. Rows:

- ``numpy``: brute force, ``‖g‖² − 2 q·g`` (``‖g‖²`` precomputed) + ``argpartition`` + sort of the k;
- ``faiss-flat``: ``faiss.IndexFlatL2`` built once, ``search`` timed (peer; ``requirements-peers.txt``);
- ``GalleryIndex``: ``tfdml.index.GalleryIndex.search`` (exact backend), NumPy in and out;
- ``GalleryIndex-faiss``: the same with ``backend="faiss"``;
- ``exact_search``: the in-graph search the retrieval SavedModel runs, on a gallery already in TF;
- ``SavedModel``: ``export_retrieval_model`` of an embedding model that only reshapes its
  ``(8, 16, 1)`` "image" into the 128-d query, reloaded with ``tf.saved_model.load`` and called
  through its ``serving_default`` signature: the whole TF Serving request minus the network.

Every row must return the same ids as ``numpy`` (column ``same ids``). Times are the median of
``--repeats`` calls after one warm-up call, the rows taking turns. Target: each tfdml row well under 1 s.

    python -m benchmarks.index                   # 100k × 128, 32 queries, k = 10
    python -m benchmarks.index --gallery 20000 --repeats 5
"""

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import tensorflow as tf

from tfdml.export import export_retrieval_model
from tfdml.index import GalleryIndex
from tfdml.neighbors import exact_search

TARGET_MS = 1000.0
QUERY_IMAGE_SHAPE = (8, 16, 1)  # a 128-d query posing as an image, so the export's image signatures apply


def unit_vectors(rng, count, dim):
    vectors = rng.normal(size=(count, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def median_ms(rows, repeats):
    """``{name: (median ms, ids)}``; calls rotate through the rows so that load from other
    processes on the machine falls on all rows alike."""
    ids = {name: search() for name, search in rows.items()}  # warm-up: tracing, index construction
    times = {name: [] for name in rows}
    for _ in range(repeats):
        for name, search in rows.items():
            start = time.perf_counter()
            search()
            times[name].append(time.perf_counter() - start)
    return {name: (1000 * statistics.median(times[name]), ids[name]) for name in rows}


def numpy_search(gallery, k):
    gallery_sq = np.sum(gallery**2, axis=1)

    def search(queries):
        d2 = gallery_sq[None, :] - 2.0 * queries @ gallery.T
        candidates = np.argpartition(d2, k - 1, axis=1)[:, :k]
        order = np.argsort(np.take_along_axis(d2, candidates, axis=1), axis=1)
        return np.take_along_axis(candidates, order, axis=1)

    return search


def saved_model_search(gallery, k, directory):
    dim = gallery.shape[1]
    if np.prod(QUERY_IMAGE_SHAPE) != dim:
        raise ValueError(f"The SavedModel row needs --dim {np.prod(QUERY_IMAGE_SHAPE)}; got {dim}.")
    inputs = keras.Input(QUERY_IMAGE_SHAPE)
    embedder = keras.Model(inputs, keras.layers.Flatten()(inputs))
    index = GalleryIndex(dim)
    index.add(gallery, np.arange(len(gallery)))
    signature = tf.saved_model.load(export_retrieval_model(embedder, index, directory, "bench", k=k)).signatures[
        "serving_default"
    ]
    return lambda queries: signature(images=tf.reshape(queries, (-1, *QUERY_IMAGE_SHAPE)))["ids"].numpy()


def build_rows(gallery, queries, k, directory):
    """``{name: search()}``; each ``search()`` returns the ``(q, k)`` gallery positions/ids."""
    rows = {"numpy": lambda: numpy_search(gallery, k)(queries)}
    try:
        import faiss

        flat = faiss.IndexFlatL2(gallery.shape[1])
        flat.add(gallery)
        rows["faiss-flat"] = lambda: flat.search(queries, k)[1]
    except ImportError:
        print("faiss-cpu is not installed: no faiss rows (pip install faiss-cpu==1.15.1)")
        faiss = None
    for backend in ("exact", "faiss") if faiss else ("exact",):
        index = GalleryIndex(gallery.shape[1], backend=backend)
        index.add(gallery, np.arange(len(gallery)))
        name = "GalleryIndex" if backend == "exact" else "GalleryIndex-faiss"
        rows[name] = lambda index=index: index.search(queries, k).ids
    gallery_tensor, query_tensor = tf.constant(gallery), tf.constant(queries)
    rows["exact_search"] = lambda: exact_search(query_tensor, gallery_tensor, k)[1].numpy()
    served = saved_model_search(gallery, k, directory)
    rows["SavedModel"] = lambda: served(query_tensor)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gallery", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--queries", type=int, default=32)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    gallery, queries = unit_vectors(rng, args.gallery, args.dim), unit_vectors(rng, args.queries, args.dim)
    with tempfile.TemporaryDirectory() as directory:
        rows = build_rows(gallery, queries, args.k, directory)
        results = median_ms(rows, args.repeats)

    reference_ms, reference_ids = results["numpy"]
    peer_ms = results["faiss-flat"][0] if "faiss-flat" in results else None
    print(
        f"Gallery search: {args.gallery} × {args.dim} float32 unit vectors, {args.queries} queries, k={args.k}, "
        f"Euclidean; {os.cpu_count()} CPU threads; median of {args.repeats} calls (ms)"
    )
    header = f"{'method':<20} {'ms':>9} {'× numpy':>8} {'× faiss':>8} {'same ids':>9} {'< 1 s':>6}"
    print(header)
    print("-" * len(header))
    for name, (ms, ids) in results.items():
        same = np.array_equal(np.asarray(ids), reference_ids)
        vs_faiss = f"{ms / peer_ms:.2f}" if peer_ms else "-"
        print(f"{name:<20} {ms:>9.2f} {ms / reference_ms:>8.2f} {vs_faiss:>8} {str(same):>9} {str(ms < TARGET_MS):>6}")


if __name__ == "__main__":
    main()
