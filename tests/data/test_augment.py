"""Augmentation protocols (Roth §4.2, Wu §5): shapes, crops checked against the source pixels, seeding."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdml.data import PROTOCOLS, Augmentation, augmentation


def _coordinate_image(height, width):
    """float32 image whose channels are the row and column of each pixel, plus a constant 7."""
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    return np.stack([rows, cols, np.full_like(rows, 7)], axis=-1).astype(np.float32)


def _find_window(source, window):
    """(top, left, flipped) of the size×size window of `source` equal to `window`, else None."""
    size = window.shape[0]
    for flipped, candidate in ((False, window), (True, window[:, ::-1])):
        for top in range(source.shape[0] - size + 1):
            for left in range(source.shape[1] - size + 1):
                if np.allclose(source[top:top + size, left:left + size], candidate, atol=1e-3):
                    return top, left, flipped
    return None


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("shape", [(40, 60, 3), (50, 30, 1), (16, 16, 3)])
def test_every_protocol_gives_size_by_size_float_images_in_range(protocol, shape, rng):
    image = rng.integers(0, 256, size=shape).astype(np.uint8)
    out = Augmentation(protocol, size=24)(image, seed=tf.constant([1, 2]))
    assert out.shape == (24, 24, shape[-1])
    assert out.dtype == tf.float32
    assert 0.0 <= float(tf.reduce_min(out)) and float(tf.reduce_max(out)) <= 255.0 + 1e-3


def test_default_sizes_follow_roth():
    assert {p: Augmentation(p).size for p in PROTOCOLS} == {
        "base": 224, "big": 256, "red": 224, "adv": 224, "wu": 224, "eval": 224, "affine": 224
    }
    assert Augmentation("eval").resize_side == 256
    assert Augmentation("red", size=28).resize_side == 32


def test_eval_is_resize_shorter_side_then_centre_crop():
    # Shorter side already equals resize_side (32 for size 28): the resize is the identity along it.
    image = _coordinate_image(32, 32)
    out = Augmentation("eval", size=28)(image).numpy()
    np.testing.assert_allclose(out, image[2:30, 2:30], atol=1e-3)
    # Non-square: the shorter side goes to 32, keeping the aspect ratio; then the centre 28×28.
    image = _coordinate_image(64, 96)
    out = Augmentation("eval", size=28)(image).numpy()
    resized = tf.image.resize(image, [32, 48], antialias=False).numpy()
    np.testing.assert_allclose(out, resized[2:30, 10:38], atol=1e-3)


def test_eval_needs_no_seed_and_is_deterministic():
    image = _coordinate_image(40, 50)
    np.testing.assert_array_equal(Augmentation("eval", size=20)(image), Augmentation("eval", size=20)(image))


@pytest.mark.parametrize("protocol", ["red", "wu"])
def test_red_and_wu_are_a_crop_of_the_resized_image_possibly_mirrored(protocol):
    # 32 = resize_side for size 28, so `red` (shorter side) and `wu` (square) resizes are identities.
    image = _coordinate_image(32, 32)
    flips, positions = set(), set()
    for seed in range(12):
        out = Augmentation(protocol, size=28)(image, seed=tf.constant([seed, 3])).numpy()
        found = _find_window(image, out)
        assert found is not None, f"seed {seed}: output is not a 28×28 window of the input"
        positions.add(found[:2])
        flips.add(found[2])
    assert flips == {False, True}
    assert len(positions) > 3


def test_red_keeps_the_aspect_ratio_before_cropping():
    image = _coordinate_image(64, 128)
    out = Augmentation("red", size=28)(image, seed=tf.constant([0, 0])).numpy()
    resized = tf.image.resize(image, [32, 64], antialias=False).numpy()
    assert _find_window(resized, out) is not None


def test_wu_squashes_to_a_square_before_cropping():
    image = _coordinate_image(64, 128)
    out = Augmentation("wu", size=28)(image, seed=tf.constant([0, 0])).numpy()
    resized = tf.image.resize(image, [32, 32], antialias=False).numpy()
    assert _find_window(resized, out) is not None


def test_random_resized_crop_boxes_follow_torchvision_ranges():
    """Area fraction in [0.08, 1], aspect ratio in [3/4, 4/3], read off the row/column channels."""
    height, width = 120, 160
    image = _coordinate_image(height, width)
    areas, flips = [], []
    for seed in range(64):
        out = Augmentation("base", size=32)(image, seed=tf.constant([seed, 11])).numpy()
        rows, cols = out[..., 0], out[..., 1]
        crop_height = rows[-1, 0] - rows[0, 0] + 1
        crop_width = abs(cols[0, -1] - cols[0, 0]) + 1
        flips.append(cols[0, -1] < cols[0, 0])
        # Row values must only depend on the row (no rotation), bilinear resampling blurs edges by < 1 px.
        assert np.allclose(rows, rows[:, :1], atol=1e-3)
        area = crop_height * crop_width / (height * width)
        aspect = crop_width / crop_height
        assert 0.08 * 0.8 <= area <= 1.0 + 1e-6, area
        assert 0.75 * 0.85 <= aspect <= (4 / 3) / 0.85, aspect
        areas.append(area)
    assert 16 < sum(flips) < 48
    assert min(areas) < 0.4 and max(areas) > 0.6


def test_adv_jitters_colour_on_top_of_base():
    image = np.random.default_rng(1).integers(0, 256, size=(48, 48, 3)).astype(np.float32)
    seed = tf.constant([4, 2])
    base = Augmentation("base", size=24)(image, seed).numpy()
    adv = Augmentation("adv", size=24)(image, seed).numpy()
    assert not np.allclose(base, adv, atol=1.0)
    # The geometry is shared: jitter is monotone per channel, so pixel rankings mostly survive.
    correlation = np.corrcoef(base.ravel(), adv.ravel())[0, 1]
    assert correlation > 0.8
    grey = Augmentation("adv", size=24)(image[..., :1], seed)
    assert grey.shape == (24, 24, 1)


def test_adv_changes_saturation_or_hue_of_colour_images():
    """A flat colour stays flat under crop/flip/brightness/contrast; only saturation and hue change its chroma."""
    colour = np.array([200.0, 80.0, 40.0], np.float32)
    image = np.broadcast_to(colour, (32, 32, 3))
    chroma = []
    for seed in range(6):
        out = Augmentation("adv", size=8)(image, tf.constant([seed, 0])).numpy()
        np.testing.assert_allclose(out, np.broadcast_to(out[0, 0], out.shape), atol=1e-3)
        pixel = out[0, 0]
        chroma.append((pixel - pixel.min()) / max(pixel.max() - pixel.min(), 1e-6))
    base_chroma = (colour - colour.min()) / (colour.max() - colour.min())
    assert max(np.abs(c - base_chroma).max() for c in chroma) > 0.02


def test_same_seed_same_image_other_seed_other_image():
    image = _coordinate_image(60, 80)
    augment = Augmentation("base", size=24)
    np.testing.assert_array_equal(augment(image, tf.constant([5, 5])), augment(image, tf.constant([5, 5])))
    assert not np.allclose(augment(image, tf.constant([5, 5])), augment(image, tf.constant([5, 6])))


def test_apply_is_reproducible_for_a_seed_and_changes_every_epoch():
    images = tf.data.Dataset.from_tensor_slices(np.stack([_coordinate_image(40, 40)] * 6))
    labelled = tf.data.Dataset.zip(images, tf.data.Dataset.range(6))

    def epochs(seed):
        pipeline = Augmentation("base", size=16, seed=seed).apply(labelled).batch(6)
        return [next(iter(pipeline)) for _ in range(2)]

    (first_a, labels_a), (second_a, _) = epochs(seed=3)
    (first_b, _), _ = epochs(seed=3)
    np.testing.assert_array_equal(first_a, first_b)
    np.testing.assert_array_equal(labels_a, np.arange(6))
    assert not np.allclose(first_a, second_a)
    assert first_a.shape == (6, 16, 16, 3)


def test_apply_eval_maps_plain_image_datasets():
    images = tf.data.Dataset.from_tensor_slices(np.zeros((3, 40, 50, 1), np.uint8))
    out = list(Augmentation("eval", size=20).apply(images).as_numpy_iterator())
    assert len(out) == 3 and out[0].shape == (20, 20, 1)


def test_random_protocol_without_seed_says_how_to_seed():
    with pytest.raises(ValueError, match="per-image seed"):
        Augmentation("base")(np.zeros((8, 8, 3), np.uint8))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="protocol"):
        Augmentation("flip")
    with pytest.raises(ValueError, match="size"):
        augmentation("base", size=0)


def test_config_round_trip():
    augment = augmentation("wu", size=64, seed=9)
    assert augment.get_config() == {"protocol": "wu", "size": 64, "seed": 9, "affine": None}
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(augment))
    assert isinstance(restored, Augmentation) and restored.get_config() == augment.get_config()

