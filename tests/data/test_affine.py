"""The "affine" protocol (Koch et al. 2015 distortions): shapes, seeding, identity, parameter ranges, geometry."""

import numpy as np
import pytest
import tensorflow as tf

from tfdml.data import Augmentation
from tfdml.data.augment import KOCH_AFFINE, _transform, affine_matrix

_NEUTRAL = [0, 0, 0, 1, 1, 0, 0]


def _stroke_image(size=28):
    image = np.zeros((size, size, 1), np.float32)
    image[6:20, 9:12] = 255.0
    image[17:20, 9:22] = 255.0
    return image


@pytest.mark.parametrize("shape, dtype", [((105, 105, 1), np.uint8), ((40, 30, 3), np.float32)])
def test_shape_dtype_and_range(shape, dtype, rng):
    image = rng.integers(0, 256, size=shape).astype(dtype)
    out = Augmentation("affine", size=28)(image, seed=tf.constant([3, 4]))
    assert out.shape == (28, 28, shape[-1]) and out.dtype == tf.float32
    assert 0 <= float(tf.reduce_min(out)) and float(tf.reduce_max(out)) <= 255 + 1e-3


def test_deterministic_for_a_seed_and_different_across_seeds():
    augment = Augmentation("affine", size=28, affine={"probability": 1.0})
    image = _stroke_image()
    first = augment(image, seed=tf.constant([1, 2])).numpy()
    np.testing.assert_array_equal(first, augment(image, seed=tf.constant([1, 2])).numpy())
    assert not np.allclose(first, augment(image, seed=tf.constant([1, 3])).numpy())
    dataset = tf.data.Dataset.from_tensor_slices(np.stack([image] * 4))
    run = [batch for batch in Augmentation("affine", size=28, seed=5).apply(dataset).batch(4)]
    again = [batch for batch in Augmentation("affine", size=28, seed=5).apply(dataset).batch(4)]
    np.testing.assert_array_equal(run[0], again[0])


def test_zero_ranges_or_zero_probability_is_the_identity():
    image = _stroke_image()
    still = {"rotation": 0, "shear": 0, "scale": (1, 1), "translation": 0, "probability": 1.0}
    for settings in (still, {"probability": 0.0}):
        for seed in range(5):
            out = Augmentation("affine", size=28, affine=settings)(image, seed=tf.constant([seed, 0]))
            np.testing.assert_allclose(out.numpy(), image, atol=1e-4)


def test_parameters_stay_in_koch_ranges_and_each_applies_with_its_probability():
    augment = Augmentation("affine", size=28)
    draws = np.stack([augment.affine_parameters(tf.constant([seed, 9])).numpy() for seed in range(600)])
    applied = draws != np.array(_NEUTRAL, np.float32)
    assert np.all(np.abs(draws[:, 0]) <= np.deg2rad(10) + 1e-6)
    assert np.all(np.abs(draws[:, 1:3]) <= 0.3 + 1e-6)
    assert np.all((draws[:, 3:5] >= 0.8 - 1e-6) & (draws[:, 3:5] <= 1.2 + 1e-6))
    assert np.all(np.abs(draws[:, 5:7]) <= 2 + 1e-6)
    np.testing.assert_allclose(applied.mean(axis=0), 0.5, atol=0.08)  # p = 0.5 per component
    # The applied values spread over their ranges (uniform draws, not constants).
    assert np.abs(draws[applied[:, 0], 0]).max() > np.deg2rad(9)
    assert draws[applied[:, 3], 3].min() < 0.82 and draws[applied[:, 3], 3].max() > 1.18
    assert len({tuple(np.sign(row)) for row in draws[:, 5:7]}) >= 4


def test_matrix_geometry_translation_and_rotation():
    image = _stroke_image()
    shift = tf.constant([0, 0, 0, 1, 1, 2, -1], tf.float32)  # right 2, up 1 pixel
    moved = _transform(tf.constant(image), affine_matrix(shift, 28), 0.0).numpy()
    np.testing.assert_allclose(moved[5:19, 11:14], 255.0)
    np.testing.assert_allclose(moved[:, :11], 0.0)
    quarter = tf.constant([np.pi / 2, 0, 0, 1, 1, 0, 0], tf.float32)
    turned = _transform(tf.constant(image), affine_matrix(quarter, 28), 0.0).numpy()
    # A 90° turn about the centre (in the (column, row) frame) equals a NumPy rot90 up to resampling.
    np.testing.assert_allclose(turned, np.rot90(image, k=-1, axes=(0, 1)), atol=1e-2)


def test_settings_are_checked_and_round_trip():
    augment = Augmentation("affine", size=28, seed=1, affine={"rotation": 15})
    config = augment.get_config()
    assert config["affine"] == {**KOCH_AFFINE, "rotation": 15.0, "scale": [0.8, 1.2]}
    assert Augmentation.from_config(config).affine == augment.affine
    with pytest.raises(ValueError, match="unknown settings"):
        Augmentation("affine", affine={"skew": 1})
    with pytest.raises(ValueError, match="scale"):
        Augmentation("affine", affine={"scale": (1.2, 0.8)})
    with pytest.raises(ValueError, match="'affine' protocol only"):
        Augmentation("base", affine={"rotation": 5})
