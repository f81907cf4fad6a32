"""Reference values from pytorch-metric-learning (PML) for tfdml's parity tests, committed as fixtures.

The test suite does not install torch: this script, run once in the peer environment
(``pip install -r requirements-peers.txt`` in a separate virtualenv, NumPy and torch only),
computes PML's loss values and gradients (or mined tuples) on fixed inputs and writes them to
``tests/fixtures/pml/<ClassName>.json``; ``tests/pml_parity.py`` reads them back and the loss
tests compare tfdml's value and gradient with PML's within 1e-5. Each family module of this
package (``benchmarks/pml_parity/<family>.py``) defines ``CASES``: ``{tfdml class name: function(rng)
-> list of case dicts}``; a case dict holds ``inputs`` (``embeddings``, ``labels``, and what else the
loss takes, e.g. PML's initial ``proxies``), ``params`` (tfdml constructor arguments), ``pml``
(PML's constructor arguments, when they differ), ``loss`` and ``grad`` (d loss / d embeddings),
all as plain lists (:func:`plain`).

    python -m benchmarks.pml_parity            # writes every fixture
    python -m benchmarks.pml_parity CosFaceLoss # writes one
"""

import argparse
import importlib
import json
import os
import pkgutil

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(REPO, "tests", "fixtures", "pml")


def batch(rng, size, dim, classes):
    """Random float64 embeddings ``(size, dim)`` and int64 labels over ``classes`` classes (every class present
    when ``size >= classes``)."""
    labels = np.concatenate([np.arange(min(classes, size)), rng.integers(0, classes, max(0, size - classes))])
    return rng.standard_normal((size, dim)), rng.permutation(labels).astype(np.int64)


def degenerate_batches(rng, dim):
    """The degenerate batches every parity case list includes: one class, every sample its own class
    (no positives), identical embeddings, two samples."""
    embeddings = rng.standard_normal((8, dim))
    return {
        "one_class": (embeddings, np.zeros(8, np.int64)),
        "no_positives": (embeddings, np.arange(8, dtype=np.int64)),
        "identical": (np.repeat(embeddings[:1], 8, axis=0), np.array([0, 0, 1, 1, 2, 2, 3, 3], np.int64)),
        "two_samples": (embeddings[:2], np.array([0, 1], np.int64)),
    }


def plain(value):
    """``value`` with NumPy arrays and torch tensors as nested lists, for JSON."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    return value


def families():
    """The family modules of this package, imported."""
    package = os.path.dirname(os.path.abspath(__file__))
    return [
        importlib.import_module(f"benchmarks.pml_parity.{info.name}")
        for info in pkgutil.iter_modules([package])
        if info.name != "__main__"
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description="Write PML reference values for tfdml's parity tests.")
    parser.add_argument("names", nargs="*", help="tfdml class names (default: all)")
    args = parser.parse_args(argv)
    import torch

    torch.set_default_dtype(torch.float64)
    cases = {name: make for family in families() for name, make in family.CASES.items()}
    unknown = sorted(set(args.names) - set(cases))
    if unknown:
        parser.error(f"no parity cases for {unknown}; known: {sorted(cases)}")
    os.makedirs(FIXTURES, exist_ok=True)
    for name in args.names or sorted(cases):
        torch.manual_seed(0)
        made = cases[name](np.random.default_rng(0))
        path = os.path.join(FIXTURES, f"{name}.json")
        with open(path, "w") as f:
            json.dump({"class": name, "cases": plain(made)}, f)
        print(f"wrote {os.path.relpath(path, REPO)} ({len(made)} cases)")


if __name__ == "__main__":
    main()
