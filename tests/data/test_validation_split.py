"""Validation holdout: whole categories (or classes), by name, count or fraction; errors."""

import numpy as np
import pytest
import tensorflow as tf

from tfdml import data
from tfdml.data import LabelledImages, hold_out_validation


def _collection(labels, categories=None, category_names=None):
    labels = np.asarray(labels, dtype=np.int64)
    return LabelledImages(
        name="toy",
        labels=labels,
        load=lambda index: tf.reshape(tf.cast(index, tf.float32), [1, 1, 1]),
        categories=None if categories is None else np.asarray(categories, dtype=np.int64),
        class_names=[f"c{label}" for label in range(labels.max() + 1)],
        category_names=category_names,
    )


def test_named_categories_go_to_validation_whole():
    collection = _collection(np.repeat(np.arange(6), 2), np.repeat([0, 0, 1, 1, 2, -1], 2), ["A", "B", "C"])
    fit, validation = hold_out_validation(collection, ["B"])
    assert fit.name == "toy/fit" and validation.name == "toy/validation"
    np.testing.assert_array_equal(validation.labels, [2, 2, 3, 3])
    assert set(validation.categories) == {1}
    np.testing.assert_array_equal(fit.labels, [0, 0, 1, 1, 4, 4, 5, 5])  # unknown category stays in fit
    assert fit.load(tf.constant(4, tf.int64)).numpy().item() == 8  # subsets keep the images
    _, by_id = hold_out_validation(collection, [1, 2])
    assert set(by_id.categories) == {1, 2}


def test_counts_and_fractions_are_seeded_and_class_disjoint():
    collection = _collection(np.repeat(np.arange(20), 3))  # no categories: classes are held out
    fit, validation = hold_out_validation(collection, 0.25, seed=3)
    assert len(set(validation.labels)) == 5 and len(fit) + len(validation) == 60
    assert not set(fit.labels) & set(validation.labels)
    again = hold_out_validation(collection, 5, seed=3)[1]
    np.testing.assert_array_equal(again.labels, validation.labels)
    other = hold_out_validation(collection, 5, seed=4)[1]
    assert set(other.labels) != set(validation.labels)


def test_bad_holdouts_are_named():
    collection = _collection(np.repeat(np.arange(4), 2), np.repeat([0, 0, 1, 1], 2), ["A", "B"])
    with pytest.raises(ValueError, match=r"no category named 'Z'; known: \['A', 'B'\]"):
        hold_out_validation(collection, ["Z"])
    with pytest.raises(ValueError, match=r"validation categories \[7\] have no images"):
        hold_out_validation(collection, [7])
    with pytest.raises(ValueError, match="not all 2 categories"):
        hold_out_validation(collection, ["A", "B"])
    with pytest.raises(ValueError, match="leave at least one"):
        hold_out_validation(collection, 2)
    with pytest.raises(ValueError, match=r"in \(0, 1\)"):
        hold_out_validation(collection, 1.5)


def test_real_omniglot_latin_as_validation(omniglot_dir):
    train = data.load("omniglot", root=omniglot_dir, split="train")
    fit, validation = hold_out_validation(train, ["Latin"])
    assert {validation.category_names[c] for c in set(validation.categories)} == {"Latin"}
    assert len(set(validation.labels)) == 26 and len(set(fit.labels)) == 110
    assert not set(fit.labels) & set(validation.labels)


@pytest.mark.parametrize(
    "train_split, test_split, held_out",
    [("train", "test", True), ("all", "test", False), ("test", "test", False)],
)
def test_train_py_table_says_whether_its_classes_were_held_out(train_split, test_split, held_out):
    from tfdml.training.config import load_config
    from tfdml.run import test_split_heading

    config = load_config(None, [f"data.train_split={train_split}", f"data.test_split={test_split}"])
    heading = test_split_heading(config, _collection([0, 0, 1]))
    assert heading.startswith("Held-out classes (toy, 3 images)") == held_out
    assert ("NOT held out" in heading) != held_out
