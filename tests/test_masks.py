"""tfdml.masks: label masks over a (queries × keys) matrix, checked against masks written from their
definition (self-pairs are never positives nor negatives), and ``flatten_labels``."""

import numpy as np
import pytest
import tensorflow as tf

from tfdml import masks


def reference_masks(query, keys, self_index):
    """``(positive, negative)`` from the definition, one pair at a time."""
    positive = np.zeros((len(query), len(keys)), bool)
    negative = np.zeros((len(query), len(keys)), bool)
    for i, a in enumerate(query):
        for j, b in enumerate(keys):
            positive[i, j] = a == b and j != self_index[i]
            negative[i, j] = a != b
    return positive, negative


def test_masks_exclude_self_and_accept_column_labels():
    labels = np.array([[3], [3], [5], [3]])
    pos = masks.positive_mask(labels).numpy()
    neg = masks.negative_mask(labels).numpy()
    expected_pos, expected_neg = reference_masks([3, 3, 5, 3], [3, 3, 5, 3], range(4))
    np.testing.assert_array_equal(pos, expected_pos)
    np.testing.assert_array_equal(neg, expected_neg)
    assert not np.any(np.diag(pos)) and not np.any(np.diag(neg))


def test_masks_against_separate_keys_with_self_index():
    query = np.array([0, 1])
    keys = np.array([1, 0, 0, 1])
    pos = masks.positive_mask(query, keys, self_index=[1, -1]).numpy()
    np.testing.assert_array_equal(pos, [[False, False, True, False], [True, False, False, True]])
    np.testing.assert_array_equal(masks.positive_mask(query, keys).numpy(), [[False, True, True, False], [True, False, False, True]])


def test_random_masks_match_the_definition(rng):
    query = rng.integers(0, 4, size=9)
    keys = rng.integers(0, 4, size=13)
    self_index = rng.integers(-1, 13, size=9)
    expected_pos, expected_neg = reference_masks(query, keys, self_index)
    np.testing.assert_array_equal(masks.positive_mask(query, keys, self_index=self_index).numpy(), expected_pos)
    np.testing.assert_array_equal(masks.negative_mask(query, keys).numpy(), expected_neg)
    np.testing.assert_array_equal(masks.same_label_mask(query, keys).numpy(), query[:, None] == keys[None, :])
    self_pairs = masks.self_mask(9, 13, self_index).numpy()
    np.testing.assert_array_equal(self_pairs, np.arange(13)[None, :] == self_index[:, None])


def test_self_mask_defaults_to_the_diagonal_and_masks_trace_with_unknown_sizes():
    np.testing.assert_array_equal(masks.self_mask(3, 4).numpy(), np.eye(3, 4, dtype=bool))
    positive = tf.function(
        masks.positive_mask, input_signature=[tf.TensorSpec([None], tf.int32)]
    )(tf.constant([2, 2, 7]))
    np.testing.assert_array_equal(positive.numpy(), [[0, 1, 0], [1, 0, 0], [0, 0, 0]])


def test_large_integer_labels_stay_apart():
    # int64 ids that float32 (2**24) or int32 (2**31) would merge.
    labels = np.array([2**40, 2**40 + 1, 2**40], np.int64)
    np.testing.assert_array_equal(masks.positive_mask(labels).numpy(), [[0, 0, 1], [0, 0, 0], [1, 0, 0]])


def test_flatten_labels_gives_int64_of_shape_b():
    for labels in (np.array([3, 1, 2]), np.array([[3], [1], [2]]), np.array([3.0, 1.0, 2.0], np.float32)):
        flat = masks.flatten_labels(labels)
        assert flat.dtype == tf.int64 and flat.shape == (3,)
        np.testing.assert_array_equal(flat.numpy(), [3, 1, 2])


def test_flatten_labels_rejects_wide_labels():
    with pytest.raises(ValueError, match=r"\(b,\) or \(b, 1\)"):
        masks.flatten_labels(np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"\(b,\) or \(b, 1\)"):
        masks.flatten_labels(np.zeros((4, 1, 1)))


def test_flatten_labels_refuses_fractional_inexact_and_string_labels():
    with pytest.raises(ValueError, match="fractional label 0.5"):
        masks.flatten_labels(np.array([0.0, 0.5]), "y_true")
    with pytest.raises(ValueError, match="2\\*\\*24"):
        masks.flatten_labels(np.array([0.0, 2.0**24], np.float32))
    with pytest.raises(TypeError, match="integer class ids"):
        masks.flatten_labels(np.array(["a", "b"]))
