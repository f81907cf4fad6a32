"""Class-expanding rotations: labels, categories, names, pixels and split disjointness."""

import numpy as np
import pytest
import tensorflow as tf

from tfdml import data
from tfdml.data import LabelledImages, with_rotations


def _collection(rng, labels, categories=None, shape=(5, 5, 1)):
    pixels = tf.constant(rng.integers(0, 256, size=(len(labels), *shape)).astype(np.uint8))
    return LabelledImages(
        name="toy",
        labels=np.asarray(labels, dtype=np.int64),
        load=lambda index: tf.gather(pixels, index),
        categories=None if categories is None else np.asarray(categories, dtype=np.int64),
        class_names=[f"c{label}" for label in range(max(labels) + 1)],
    ), pixels.numpy()


def _load(collection, index):
    return collection.load(tf.constant(index, tf.int64)).numpy()


def test_rotated_images_are_rot90_of_the_originals_as_new_classes(rng):
    collection, pixels = _collection(rng, [0, 0, 1, 2], categories=[0, 0, 0, 1])
    rotated = with_rotations(collection)
    assert len(rotated) == 16 and rotated.name == "toy+rotations"
    np.testing.assert_array_equal(rotated.labels[:8], [0, 1, 2, 3, 0, 1, 2, 3])
    np.testing.assert_array_equal(rotated.labels[8:], [4, 5, 6, 7, 8, 9, 10, 11])
    np.testing.assert_array_equal(rotated.categories, np.repeat([0, 0, 0, 1], 4))
    assert rotated.class_names[4:8] == ["c1", "c1/rot90", "c1/rot180", "c1/rot270"]
    for index in range(16):
        original, turns = divmod(index, 4)
        np.testing.assert_array_equal(_load(rotated, index), np.rot90(pixels[original], k=turns, axes=(0, 1)))
        np.testing.assert_array_equal(_load(rotated, index), tf.image.rot90(pixels[original], k=turns))
    assert len({_load(rotated, index).tobytes() for index in range(4)}) == 4  # four different orientations
    batch = next(iter(rotated.dataset(batch_size=16)))
    assert batch[0].shape == (16, 5, 5, 1)


def test_chosen_rotations_and_non_square_images(rng):
    collection, pixels = _collection(rng, [0, 1], shape=(3, 4, 2))
    rotated = with_rotations(collection, rotations=(180,))
    np.testing.assert_array_equal(rotated.labels, [0, 1, 2, 3])
    assert rotated.class_names == ["c0", "c0/rot180", "c1", "c1/rot180"]
    np.testing.assert_array_equal(_load(rotated, 3), pixels[1][::-1, ::-1])
    for bad in [(45,), (90, 90), (0,), (360,)]:
        with pytest.raises(ValueError, match="multiples of 90"):
            with_rotations(collection, rotations=bad)


def test_rotated_splits_stay_class_disjoint(rng):
    collection, _ = _collection(rng, list(range(6)) * 2, categories=[0, 0, 1, 1, 2, 2] * 2)
    train = with_rotations(collection.subset(np.flatnonzero(collection.labels < 4), "toy/train"))
    test = with_rotations(collection.subset(np.flatnonzero(collection.labels >= 4), "toy/test"))
    assert set(train.labels) == set(range(16)) and set(test.labels) == set(range(16, 24))
    assert not set(train.labels) & set(test.labels)


def test_real_omniglot_rotations_keep_train_and_test_disjoint(omniglot_dir):
    train = with_rotations(data.load("omniglot", root=omniglot_dir, split="train"))
    test = with_rotations(data.load("omniglot", root=omniglot_dir, split="test"))
    assert len(set(train.labels)) == 4 * 136 and len(set(test.labels)) == 4 * 106
    assert not set(train.labels) & set(test.labels)
    assert set(train.categories) == set(range(5)) and set(test.categories) == {5, 6, 7}
    image = _load(train, 4 * 7 + 1)
    np.testing.assert_array_equal(image, tf.image.rot90(_load(data.load("omniglot", root=omniglot_dir), 7)))
    assert train.class_names[train.labels[4 * 7 + 1]].endswith("/rot90")
