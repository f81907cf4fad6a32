"""pytorch-metric-learning's values on fixed inputs, read from ``tests/fixtures/pml/`` (written by
``python -m benchmarks.pml_parity`` in the peer environment): parity tests need no torch."""

import json

import numpy as np
import pytest

import paths

FIXTURES = paths.REPO / "tests" / "fixtures" / "pml"


def cases(name):
    """The parity cases of tfdml class ``name``: dicts whose lists of numbers are NumPy arrays."""
    path = FIXTURES / f"{name}.json"
    if not path.exists():
        pytest.fail(f"{path} is missing: run python -m benchmarks.pml_parity {name} in the peer environment")
    with open(path) as f:
        fixture = json.load(f)
    return [arrays(case) for case in fixture["cases"]]


def arrays(value):
    if isinstance(value, dict):
        return {key: arrays(item) for key, item in value.items()}
    if isinstance(value, list) and value and all(isinstance(item, (int, float, list)) for item in value):
        return np.asarray(value)
    return value


def case_ids(name):
    return [case["id"] for case in cases(name)]


def value_and_gradient(function, case, *learned):
    """``function(labels, embeddings, *learned, **params)`` on a case's inputs in float64, and its gradient with
    respect to the embeddings (L2-normalised inside the tape where the case ran PML's
    ``normalize_embeddings``)."""
    import tensorflow as tf

    inputs = case["inputs"]
    x = tf.constant(inputs["embeddings"], tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(x)
        given = tf.math.l2_normalize(x, axis=1) if case.get("pml", {}).get("normalize_embeddings") else x
        value = function(tf.constant(inputs["labels"]), given, *learned, **case["params"])
    return value.numpy(), tape.gradient(value, x).numpy()
