"""tfdml.checks: the label and embedding validators every entry uses, their accepted inputs and messages."""

import numpy as np
import pytest
import tensorflow as tf

from tfdml import checks


@pytest.mark.parametrize("labels", [[0, 1], np.array([0.0, 1.0]), np.array([True, False]), tf.constant([3, 4])])
def test_check_label_dtype_accepts_numbers(labels):
    assert checks.check_label_dtype(labels) is labels


@pytest.mark.parametrize("labels", [["a", "b"], np.array(["a"], dtype=object), tf.constant(["a"])])
def test_check_label_dtype_refuses_strings_naming_the_caller(labels):
    with pytest.raises(TypeError, match=r"^TripletLoss: y_true: labels must be integer class ids; got labels of dtype"):
        checks.check_label_dtype(labels, "TripletLoss: y_true")


@pytest.mark.parametrize(
    "labels", [[3, 1, 2], [[3], [1], [2]], np.array([3.0, 1.0, 2.0]), np.array([3, 1, 2], np.uint8), tf.constant([3, 1, 2])]
)
def test_label_array_gives_int64_vectors(labels):
    array = checks.label_array(labels, count=3)
    assert array.dtype == np.int64
    np.testing.assert_array_equal(array, [3, 1, 2])


@pytest.mark.parametrize(
    "labels, kwargs, message",
    [
        ([0, 1], {"count": 3}, r"^fewshot: labels must have shape \(3,\) to match the embeddings; got \(2,\)\.$"),
        (np.zeros((2, 2)), {}, r"^fewshot: labels must be a non-empty 1-D array; got shape \(2, 2\)\.$"),
        ([], {}, r"^fewshot: labels must be a non-empty 1-D array; got shape \(0,\)\.$"),
        (["a", "b"], {}, r"^fewshot: labels must hold integers; got dtype <U1\.$"),
        ([0.0, 1.0], {"integral_floats": False}, r"^fewshot: labels must hold integers; got dtype float64\.$"),
        ([0.5, 1.0], {}, r"^fewshot: labels must be integer class ids; got non-integer values\.$"),
        ([2.0**63, 1.0], {}, r"^fewshot: labels must fit in int64; got 9\.2\d+e\+18\.$"),
    ],
)
def test_label_array_errors_name_the_caller_and_the_argument(labels, kwargs, message):
    with pytest.raises(ValueError, match=message):
        checks.label_array(labels, who="fewshot", **kwargs)


def test_label_array_names_other_arguments_without_a_caller():
    with pytest.raises(ValueError, match=r"^categories must hold integers"):
        checks.label_array(["x"], "categories")


@pytest.mark.parametrize("kwargs", [{}, {"dim": 2}, {"count": 3}, {"dim": 2, "count": 3}])
def test_as_embeddings_gives_float32_matrices(kwargs):
    array = checks.as_embeddings(tf.constant(np.arange(6.0).reshape(3, 2)), **kwargs)
    assert array.dtype == np.float32 and array.shape == (3, 2)


def test_as_embeddings_with_dim_or_count_accepts_no_rows():
    assert checks.as_embeddings(np.zeros((0, 4)), dim=4).shape == (0, 4)
    assert checks.as_embeddings(np.zeros((0, 4)), count=0).shape == (0, 4)


@pytest.mark.parametrize(
    "embeddings, kwargs, message",
    [
        (np.zeros((0, 4)), {}, r"^queries must have shape \(q, d\) with q >= 1; got \(0, 4\)\.$"),
        (np.zeros(4), {}, r"^queries must have shape \(q, d\) with q >= 1; got \(4,\)\.$"),
        (np.zeros((2, 3)), {"dim": 4}, r"^queries must have shape \(q, 4\); got \(2, 3\)\.$"),
        (np.zeros((2, 3)), {"dim": 3, "count": 4}, r"^queries must have shape \(4, 3\) for 4 q; got \(2, 3\)\.$"),
        (np.zeros((2, 3)), {"count": 4}, r"^queries must have shape \(4, d\) for 4 q; got \(2, 3\)\.$"),
        (np.array([[0.0, np.nan]]), {}, r"^queries contain NaN or inf values\.$"),
        (np.array([[np.inf, 0.0]]), {"dim": 2}, r"^queries contain NaN or inf values\.$"),
    ],
)
def test_as_embeddings_errors_name_the_argument(embeddings, kwargs, message):
    with pytest.raises(ValueError, match=message):
        checks.as_embeddings(embeddings, "queries", rows="q", **kwargs)


def test_graph_label_predicates():
    assert bool(checks.labels_are_integral(tf.constant([1, 2])))
    assert bool(checks.labels_are_integral(tf.constant([1.0, 2.0])))
    assert not bool(checks.labels_are_integral(tf.constant([1.0, 2.5])))
    assert bool(checks.labels_are_exact(tf.constant([2**40], tf.int64)))
    assert bool(checks.labels_are_exact(tf.constant([2.0**24 - 1])))
    assert not bool(checks.labels_are_exact(tf.constant([2.0**24])))
    assert checks.exact_integer_bits(tf.float16) == 11 and checks.exact_integer_bits("float64") == 53
    assert checks.inexact_message(tf.float32).startswith("float32 labels hold class ids exactly only below 2**24 = 16777216")


def test_ids_in_range_asserts_and_reports_the_condition():
    ids, in_range = checks.ids_in_range(tf.constant([0, 2]), 3, "MarginLoss: labels", "num_classes")
    np.testing.assert_array_equal(ids, [0, 2])
    assert bool(in_range)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"MarginLoss: labels must be integers in \[0, num_classes=3\)"):
        checks.ids_in_range(tf.constant([0, 3]), 3, "MarginLoss: labels", "num_classes")
