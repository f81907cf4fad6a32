"""ViewsSampler: view-major batches of distinct images, their augmented views through ``batches``, and the
layout each self-supervised loss reads (pseudo-classes, VICReg's first-view-first pairing)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdml.data import Augmentation, LabelledImages
from tfdml.losses import DecoupledContrastiveLoss, NTXentLoss, SupConLoss, VICRegLoss
from tfdml.losses.vicreg import view_pairs
from tfdml.sampling import ViewsSampler, batches


def test_batches_hold_distinct_images_each_as_its_views_in_view_major_order():
    sampler = ViewsSampler(np.arange(50), batch_size=12, views=3, seed=4)
    plan = sampler.plan_epoch(0)
    assert sampler.batches_per_epoch == 50 // 4 and plan.shape == (12, 12) and plan.dtype == np.int64
    grid = plan.reshape(12, 3, 4)  # (batch, view, image)
    np.testing.assert_array_equal(grid, np.repeat(grid[:, :1], 3, axis=1))
    first_views = grid[:, 0].ravel()
    assert np.unique(first_views).size == first_views.size  # an epoch: each image at most once, 48 of 50
    np.testing.assert_array_equal(plan, ViewsSampler(np.arange(50), batch_size=12, views=3, seed=4).plan_epoch(0))
    assert not np.array_equal(plan, sampler.plan_epoch(1))
    assert not np.array_equal(plan, ViewsSampler(np.arange(50), batch_size=12, views=3, seed=5).plan_epoch(0))
    assert sampler.index_dataset().element_spec.shape == (12,)


def test_more_batches_than_an_epoch_of_images_never_repeat_an_image_within_a_batch():
    plan = ViewsSampler(np.arange(5), batch_size=4, batches_per_epoch=7, seed=0).plan_epoch(3)
    assert plan.shape == (7, 4)
    assert all(row[0] != row[1] and np.array_equal(row[:2], row[2:]) for row in plan)


def test_config_round_trip_plans_the_same_epochs():
    sampler = ViewsSampler(np.arange(20), batch_size=6, views=3, batches_per_epoch=4, seed=9)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(sampler))
    assert restored.get_config() == sampler.get_config()
    np.testing.assert_array_equal(restored.plan_epoch(2), sampler.plan_epoch(2))


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"views": 1}, "views must be an integer >= 2"),
        ({"batch_size": 7}, "not divisible by views=2"),
        ({"batch_size": 24}, "12 distinct images, but labels have 10"),
        ({"batches_per_epoch": 0}, "batches_per_epoch must be a positive integer"),
    ],
)
def test_bad_arguments_are_refused_naming_them(arguments, message):
    with pytest.raises(ValueError, match=message):
        ViewsSampler(np.arange(10), **{"batch_size": 8, **arguments})


@pytest.fixture(scope="module")
def view_batches():
    """The first two batches (4 images × 2 views) of 12 random 10×10 images, affine views of size 8, and the
    batch of a second pipeline resumed at batch 1."""
    pixels = tf.constant(np.random.default_rng(0).uniform(0, 255, (12, 10, 10, 1)), tf.float32)
    data = LabelledImages("random", np.arange(12), lambda index: tf.gather(pixels, index))
    sampler = ViewsSampler(data.labels, batch_size=8, seed=1)

    def stream(start=0):
        augment = Augmentation("affine", size=8, seed=3, affine={"probability": 1.0})
        stream = batches(data, sampler, preprocess=augment, start=start).take(2 - start)
        return [(images.numpy(), labels.numpy()) for images, labels in stream]

    return stream(), stream(start=1)


def test_the_views_of_an_image_share_its_label_and_differ_reproducibly(view_batches):
    (images, labels), (second_images, second_labels) = view_batches[0]
    np.testing.assert_array_equal(labels[:4], labels[4:])
    assert np.unique(labels).size == 4 and images.shape == (8, 8, 8, 1)
    assert all(not np.allclose(images[i], images[i + 4]) for i in range(4))  # different views
    resumed_images, resumed_labels = view_batches[1][0]  # another pipeline, seeded alike, started at batch 1
    np.testing.assert_array_equal(resumed_labels, second_labels)
    np.testing.assert_array_equal(resumed_images, second_images)


def test_vicreg_pairs_each_first_view_with_its_second():
    labels = tf.constant(ViewsSampler(np.arange(9), batch_size=6, seed=2).plan_epoch(0)[0])
    order, valid = view_pairs(labels)
    first = tf.boolean_mask(order, valid).numpy()
    second = tf.boolean_mask(tf.roll(order, -1, 0), valid).numpy()
    np.testing.assert_array_equal(np.sort(first), [0, 1, 2])
    np.testing.assert_array_equal(second, first + 3)


@pytest.mark.parametrize("loss", [NTXentLoss(), SupConLoss(), DecoupledContrastiveLoss(), VICRegLoss()],
                         ids=lambda loss: type(loss).__name__)
def test_each_self_supervised_loss_prefers_views_that_agree(loss):
    """On a views batch, embeddings whose two views agree score lower than the same embeddings with the
    second views shuffled among the images: the losses read the pseudo-classes as intended."""
    labels = tf.constant(ViewsSampler(np.arange(8), batch_size=8, seed=0).plan_epoch(0)[0])
    views = tf.constant(np.random.default_rng(1).normal(size=(4, 6)), tf.float32)
    agreeing = tf.concat([views, views + 0.01], axis=0)
    shuffled = tf.concat([views, tf.roll(views, 1, axis=0)], axis=0)
    assert float(loss(labels, agreeing)) < float(loss(labels, shuffled))
