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
