"""SharedLabelSampler: labels per batch, each with samples_per_label images carrying it, seeded."""

import numpy as np
import pytest

from tfdml.sampling import SharedLabelSampler

LABEL_SETS = (np.random.default_rng(0).random((90, 12)) < 0.2).astype(np.int64)


def test_each_batch_draws_labels_each_carried_by_its_images():
    sampler = SharedLabelSampler(LABEL_SETS, batch_size=16, samples_per_label=4, seed=3)
    plan = sampler.plan_epoch(0)
    assert plan.shape == (sampler.batches_per_epoch, 16) == (6, 16)
    for batch in plan:
        groups = LABEL_SETS[batch].reshape(4, 4, -1)
        assert np.all(groups.min(axis=1).sum(axis=1) >= 1)  # the images of a group share a label
    np.testing.assert_array_equal(plan, SharedLabelSampler(LABEL_SETS, batch_size=16, samples_per_label=4, seed=3).plan_epoch(0))
    assert not np.array_equal(plan, sampler.plan_epoch(1))


def test_a_label_cycles_through_its_images_before_repeating_one():
    labels = np.zeros((12, 2), np.int64)
    labels[:6, 0] = labels[6:, 1] = 1
    plan = SharedLabelSampler(labels, batch_size=6, samples_per_label=3, seed=0).plan_epoch(0)
    assert plan.shape == (2, 6)
    for label, rows in ((0, range(6)), (1, range(6, 12))):
        taken = plan[np.isin(plan, list(rows))]
        assert sorted(taken) == list(rows)  # two draws of 3 cover the label's 6 images once each


def test_class_ids_are_one_label_per_image():
    ids = np.repeat(np.arange(6), 4)
    plan = SharedLabelSampler(ids, batch_size=8, samples_per_label=4, seed=0).plan_epoch(0)
    assert all(len(set(ids[group])) == 1 for group in plan.reshape(-1, 4))


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"batch_size": 10, "samples_per_label": 4}, r"batch_size \(10\) must be a multiple of samples_per_label \(4\)"),
        ({"batch_size": 8, "samples_per_label": 1}, "samples_per_label must be an integer >= 2"),
        ({"batch_size": 64, "samples_per_label": 2}, "draws 32 distinct labels, but only 12 labels"),
    ],
)
def test_bad_arguments_are_named(arguments, message):
    with pytest.raises(ValueError, match=message):
        SharedLabelSampler(LABEL_SETS, **arguments)
    with pytest.raises(ValueError, match="got the value 2"):
        SharedLabelSampler(LABEL_SETS * 2, batch_size=8)
