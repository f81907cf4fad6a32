"""A gallery index for nearest-neighbour retrieval: exact TF search by default, faiss optionally.

``GalleryIndex`` holds gallery embeddings with their ids (int or str) and optional
integer labels, supports ``add``/``remove``/``save``/``load``, and answers
``search(queries, k) -> SearchResult(ids, distances, labels, positions)``.

The exact backend is :func:`tfdml.neighbors.exact_search`, the chunked matmul + top-k
engine that also runs inside the retrieval SavedModel (``tfdml.export.export_retrieval_model``),
so TF Serving answers with neighbours, not vectors, and both give the same ids. It returns
candidates at exactly equal distance in gallery order (lower position first), like NumPy's
``argsort(kind="stable")``; duplicate gallery vectors usually tie exactly, but may differ in
the last bit and come back in either order (see :mod:`tfdml.neighbors`). The faiss backend
orders ties its own way. Distances are ``metric``'s (:data:`tfdml.distances.METRICS`):
Euclidean (default), squared Euclidean or cosine distance (``1 − cos``).

Example:

>>> index = GalleryIndex(dim=128)
>>> index.add(gallery_embeddings, ids=np.arange(len(gallery_embeddings)), labels=gallery_labels)
>>> result = index.search(query_embeddings, k=5)
>>> result.ids.shape, result.distances.shape
((32, 5), (32, 5))
"""

import json
import os
import zipfile
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from tfdml.checks import as_embeddings, label_array
from tfdml.distances import METRICS
from tfdml.extras import require
from tfdml.io import recover_directory, write_directory_atomically
from tfdml.neighbors import exact_search

BACKENDS = ("exact", "faiss")
INDEX_FILES = ("gallery.npz", "index.json")
# Integers or str: the id kinds gallery.npz stores and reads back without pickling.
ID_KINDS = "iuU"


class SearchResult(NamedTuple):
    ids: np.ndarray
    distances: np.ndarray
    labels: np.ndarray
    positions: np.ndarray


class GalleryIndex:
    """Gallery embeddings + ids (+ labels) with exact or faiss nearest-neighbour search.

    Args:
        dim: embedding dimension.
        metric: ``"euclidean"`` (default), ``"squared_euclidean"`` or ``"cosine"``.
        backend: ``"exact"`` (chunked TF matmul + top-k, default) or ``"faiss"`` (exact
            ``IndexFlatL2``/``IndexFlatIP`` from the optional faiss-cpu package, for large galleries).
    """

    def __init__(self, dim, metric="euclidean", backend="exact"):
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim <= 0:
            raise ValueError(f"dim must be a positive integer; got {dim!r}.")
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}; got {metric!r}.")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}; got {backend!r}.")
        if backend == "faiss":
            require("faiss", "GalleryIndex(backend='faiss')")
        self.dim, self.metric, self.backend = int(dim), metric, backend
        self.embeddings = np.zeros((0, self.dim), np.float32)
        self.ids = np.zeros((0,), np.int64)
        self.labels = np.zeros((0,), np.int64)
        # (embeddings array, its backend form): building the form copies the whole gallery,
        # which costs as much as a search, so it is kept until add/remove/load replace the array.
        self._backend_cache = (None, None)

    def __len__(self):
        return int(self.embeddings.shape[0])

    def add(self, embeddings, ids, labels=None):
        """Append gallery items; ``ids`` (integers or str) must be new and unique, ``labels`` default
        to -1 (unknown)."""
        embeddings = self.check_vectors("embeddings", embeddings)
        ids = np.asarray(ids)
        if ids.shape != (len(embeddings),):
            raise ValueError(f"ids must have shape ({len(embeddings)},); got {ids.shape}.")
        if ids.dtype.kind not in ID_KINDS:
            raise ValueError(
                f"ids must be integers or strings (str, not bytes or objects: e.g. ids.astype(str)); got {ids.dtype}."
            )
        labels = np.full(len(ids), -1, np.int64) if labels is None else label_array(labels, count=len(ids))
        if len(self.ids) and ids.dtype.kind != self.ids.dtype.kind:
            raise ValueError(f"ids must all be of one kind; the index holds {self.ids.dtype}, got {ids.dtype}.")
        all_ids = np.concatenate([self.ids, ids]) if len(self.ids) else ids
        unique, counts = np.unique(all_ids, return_counts=True)
        if np.any(counts > 1):
            raise ValueError(f"duplicate ids: {unique[counts > 1][:5].tolist()}")
        self.embeddings = np.concatenate([self.embeddings, embeddings])
        self.ids = all_ids
        self.labels = np.concatenate([self.labels, labels])

    def remove(self, ids):
        """Remove the items with these ids; unknown ids are an error naming them."""
        ids = np.asarray(ids)
        missing = ids[~np.isin(ids, self.ids)]
        if len(missing):
            raise KeyError(f"ids not in the index: {missing[:5].tolist()}")
        keep = ~np.isin(self.ids, ids)
        self.embeddings, self.ids, self.labels = self.embeddings[keep], self.ids[keep], self.labels[keep]

    def check_vectors(self, name, vectors, rows="n"):
        """``vectors`` as a finite float32 ``(rows, dim)`` array with a cosine distance to everything."""
        vectors = as_embeddings(vectors, name, dim=self.dim, rows=rows)
        if self.metric == "cosine" and not np.all(np.any(vectors != 0, axis=1)):
            raise ValueError(f"{name} contain all-zero rows, which have no cosine distance.")
        return vectors

    def check_k(self, k):
        if len(self) == 0:
            raise ValueError("The gallery index is empty: add items before searching or exporting.")
        if int(k) != k or k <= 0 or k > len(self):
            raise ValueError(f"k must be an integer in [1, {len(self)}] (the gallery size); got {k!r}.")

    def search(self, queries, k):
        """The ``k`` nearest gallery items of each query, nearest first."""
        self.check_k(k)
        queries = self.check_vectors("queries", queries, rows="q")
        if self.backend == "faiss":
            distances, positions = self._faiss_search(queries, k)
        else:
            gallery = self._backend_gallery()
            distances, positions = (t.numpy() for t in exact_search(queries, gallery, int(k), self.metric))
        return SearchResult(self.ids[positions], distances, self.labels[positions], positions)

    def _backend_gallery(self):
        """The gallery as a TF tensor (exact) or a faiss flat index, built once per embeddings array."""
        cached_embeddings, gallery = self._backend_cache
        if cached_embeddings is self.embeddings:
            return gallery
        if self.backend == "exact":
            gallery = tf.constant(self.embeddings)
        else:
            import faiss

            if self.metric == "cosine":
                gallery = faiss.IndexFlatIP(self.dim)
                norms = np.linalg.norm(self.embeddings, axis=1, keepdims=True)
                gallery.add(np.ascontiguousarray(self.embeddings / norms))
            else:
                gallery = faiss.IndexFlatL2(self.dim)
                gallery.add(np.ascontiguousarray(self.embeddings))
        self._backend_cache = (self.embeddings, gallery)
        return gallery

    def _faiss_search(self, queries, k):
        index = self._backend_gallery()
        if self.metric == "cosine":
            queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
            similarity, positions = index.search(np.ascontiguousarray(queries), int(k))
            return 1.0 - similarity, positions
        d2, positions = index.search(np.ascontiguousarray(queries), int(k))
        d2 = np.maximum(d2, 0.0)
        return (d2 if self.metric == "squared_euclidean" else np.sqrt(d2)), positions

    def save(self, path):
        """Write ``path/`` (``gallery.npz`` + ``index.json``) atomically.

        An existing index folder is replaced, in one step where the filesystem can swap
        folders (a reader finds the old index or the new one, never none); a save killed
        half-way is undone or cleaned up by the next ``save`` or ``load`` (:mod:`tfdml.io`).
        A folder holding anything else is refused (``FileExistsError``), so saving never
        deletes files the index did not write.
        """

        def write(directory):
            np.savez(os.path.join(directory, "gallery.npz"), embeddings=self.embeddings, ids=self.ids, labels=self.labels)
            with open(os.path.join(directory, "index.json"), "w") as f:
                json.dump({"dim": self.dim, "metric": self.metric, "backend": self.backend}, f)

        write_directory_atomically(path, write, overwrite=True, owned=INDEX_FILES)

    @classmethod
    def load(cls, path):
        """Read an index written by :meth:`save`, checked as :meth:`add` checks new items.

        A missing, corrupt or inconsistent index (``index.json`` not matching ``gallery.npz``,
        ids and embeddings of different lengths, duplicate ids, NaN or inf embeddings, labels
        beyond int64) is a ``ValueError`` (``FileNotFoundError`` if missing) naming the file and
        the problem. Arrays are read without unpickling: only plain numeric and string arrays
        are accepted.
        """
        recover_directory(path)
        meta_path = os.path.join(path, "index.json")
        gallery_path = os.path.join(path, "gallery.npz")
        for required in (meta_path, gallery_path):
            if not os.path.exists(required):
                raise FileNotFoundError(f"No gallery index at {path} ({required} is missing).")
        try:
            with open(meta_path) as f:
                meta = json.load(f)
            if not isinstance(meta, dict) or set(meta) != {"dim", "metric", "backend"}:
                raise ValueError(f"expected the keys dim, metric and backend; got {meta!r}")
            index = cls(**meta)
        except (ValueError, TypeError, UnicodeDecodeError) as error:
            raise ValueError(f"{meta_path} is not a valid gallery index description: {error}") from None

        def corrupt(reason):
            return ValueError(
                f"{gallery_path} is corrupt or not written by GalleryIndex.save ({reason}); save the index again."
            )

        if not zipfile.is_zipfile(gallery_path):  # np.load takes any other file for a pickle, and says so
            raise corrupt("not an .npz archive")
        try:
            with np.load(gallery_path, allow_pickle=False) as arrays:
                embeddings, ids, labels = (arrays[name] for name in ("embeddings", "ids", "labels"))
        except Exception as error:  # zip, npy-format and pickled-object errors alike mean the file is unusable
            raise corrupt("it holds Python objects" if "allow_pickle" in str(error) else type(error).__name__) from None
        try:
            index.embeddings, index.ids, index.labels = cls._checked_gallery(index, embeddings, ids, labels)
        except ValueError as error:
            raise ValueError(f"{gallery_path}: {str(error).rstrip('.')}; save the index again.") from None
        return index

    @staticmethod
    def _checked_gallery(index, embeddings, ids, labels):
        """Loaded arrays as ``(embeddings, ids, labels)`` for ``index``, or a ``ValueError`` naming the problem."""
        if embeddings.ndim != 2 or embeddings.dtype.kind != "f":
            raise ValueError(f"embeddings must be a 2-D float array; got {embeddings.dtype} {embeddings.shape}")
        if embeddings.shape[1] != index.dim:
            raise ValueError(f"embeddings have dimension {embeddings.shape[1]} but index.json says dim={index.dim}")
        count = len(embeddings)
        if ids.shape != (count,) or ids.dtype.kind not in ID_KINDS:
            raise ValueError(f"ids must be {count} integers or strings, one per embedding; got {ids.dtype} {ids.shape}")
        if labels.shape != (count,) or labels.dtype.kind not in "iu":
            raise ValueError(f"labels must be {count} integers, one per embedding; got {labels.dtype} {labels.shape}")
        unique, counts = np.unique(ids, return_counts=True)
        if np.any(counts > 1):
            raise ValueError(f"duplicate ids {unique[counts > 1][:5].tolist()}")
        return index.check_vectors("embeddings", embeddings), ids, label_array(labels, count=count)
