"""Image augmentation protocols of Roth et al. 2020 (§4.2) and Wu et al. 2017 (§5), for tf.data.

Every protocol maps one ``(h, w, c)`` image (uint8 or float32 in [0, 255], any size)
to a float32 ``(size, size, c)`` image in [0, 255]; mean/std normalisation belongs to
the model.

| protocol | training transform (``size`` default)                                      |
|----------|-----------------------------------------------------------------------------|
| ``base`` | random resized crop to ``size`` (224), horizontal flip p = 0.5 — Roth §4.1   |
| ``big``  | ``base`` with ``size`` 256 — Roth "Big"                                       |
| ``red``  | resize shorter side to ``size·256/224``, random crop ``size`` (224), flip    |
| ``adv``  | ``base`` + colour jitter: brightness, contrast, saturation, hue — Roth "Adv." |
| ``wu``   | resize to ``size·256/224`` square, random crop ``size`` (224), mirror — Wu §5 |
| ``eval`` | resize shorter side to ``size·256/224``, centre crop ``size`` (224)          |
| ``affine``| resize to ``size`` square, random affine distortion — Koch et al. 2015 §3.3  |

The random resized crop samples, as torchvision's ``RandomResizedCrop`` that Roth
used, an area fraction in [0.08, 1] and an aspect ratio in [3/4, 4/3] (up to 10
tries, else the whole image). Roth give no jitter strengths; ``adv`` uses
brightness ±0.2, contrast and saturation ×[0.8, 1.2] and hue ±0.05 (on [0, 1]
values); saturation and hue only apply to 3-channel images. Wu scale CARS196 images
to 256×256 as ``wu`` does; their CUB variant (longer side to 256, then padding) is
not implemented.

``affine`` distorts handwritten characters as Koch et al. 2015 did on Omniglot
(no crop, no flip: a mirrored character is another character). Each of the seven
components is drawn with probability ``probability`` (0.5), else left neutral:
rotation θ ∈ [−10°, 10°], shears ρx, ρy ∈ [−0.3, 0.3], scales sx, sy ∈ [0.8, 1.2],
translations tx, ty ∈ [−2, 2] output pixels. The image is mapped about its centre
by ``R(θ) · [[1, ρx], [ρy, 1]] · diag(sx, sy)``, then shifted by ``(tx, ty)``
(bilinear, outside filled with ``fill`` = 0, the background of Omniglot's
default inverted images). The resize before it averages areas, which keeps thin
strokes. ``Augmentation("affine", size, seed, affine={...})``
overrides any of ``rotation`` (degrees), ``shear``, ``scale`` (a range),
``translation`` (pixels), ``probability`` and ``fill``.

Every protocol is "a window of the source image, resized to ``size × size``"
(bilinear, without antialiasing, which costs about half a JPEG decode on CPU while
antialiasing costs several): a resize-then-crop is done as the equivalent
crop-then-resize, with the window rounded to whole source pixels, so only the
window is resized. Random protocols use stateless ops driven by an explicit per-image
seed, so a pipeline is reproducible under a parallel ``map`` (Keras 3.15's
preprocessing layers keep their random state in a variable, which a parallel map
consumes in a nondeterministic order, and it has no random-resized-crop layer).

Example:

>>> augment = Augmentation("base", size=28, seed=0)
>>> pipeline = augment.apply(tf.data.Dataset.from_tensor_slices(images))
"""

import keras
import numpy as np
import tensorflow as tf

from tfdml.serialization import constructor_config, from_constructor_config

PROTOCOLS = ("base", "big", "red", "adv", "wu", "eval", "affine")
_DEFAULT_SIZES = {"big": 256}
_RESIZE_RATIO = 256 / 224
_CROP_AREA_RANGE = (0.08, 1.0)
_CROP_ASPECT_RANGE = (3 / 4, 4 / 3)
_CROP_ATTEMPTS = 10
_BRIGHTNESS_DELTA = 0.2
_CONTRAST_RANGE = (0.8, 1.2)
_SATURATION_RANGE = (0.8, 1.2)
_HUE_DELTA = 0.05
#: Koch et al. 2015's distortion ranges (rotation in degrees, translation in output pixels).
KOCH_AFFINE = {"rotation": 10.0, "shear": 0.3, "scale": (0.8, 1.2), "translation": 2.0, "probability": 0.5, "fill": 0.0}


@keras.saving.register_keras_serializable(package="tfdml")
class Augmentation:
    """A named augmentation protocol with an output size and a seed.

    Args:
        protocol: one of ``"base"``, ``"big"``, ``"red"``, ``"adv"``, ``"wu"``, ``"eval"``,
            ``"affine"`` (see the module docstring for each transform).
        size: output height and width; defaults to 256 for ``"big"`` and 224 otherwise.
            Small-image recipes pass e.g. ``size=28``; the resize side of ``red``,
            ``wu`` and ``eval`` scales with it (``round(size·256/224)``).
        seed: seed of the per-image seed stream used by ``apply``; ``None`` draws a
            fresh stream each run.
        affine: for ``"affine"`` only, overrides of :data:`KOCH_AFFINE` (e.g. ``{"rotation": 15}``).

    Example:

    >>> Augmentation("red", size=224, seed=1)(tf.zeros((300, 400, 3), tf.uint8), seed=[0, 7]).shape
    TensorShape([224, 224, 3])
    """

    def __init__(self, protocol="base", size=None, seed=None, affine=None):
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        if affine is not None and protocol != "affine":
            raise ValueError(f"affine= applies to the 'affine' protocol only, not {protocol!r}")
        self.affine = _affine_ranges(affine) if protocol == "affine" else None
        size = _DEFAULT_SIZES.get(protocol, 224) if size is None else size
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive int, got {size!r}")
        self.protocol = protocol
        self.size = size
        self.seed = seed
        self.resize_side = round(size * _RESIZE_RATIO)

    @property
    def is_random(self):
        return self.protocol != "eval"

    def __call__(self, image, seed=None):
        """Augments one decoded image; ``seed`` is a shape-(2,) integer tensor (ignored by ``"eval"``)."""
        image = tf.convert_to_tensor(image)
        window_seed, finish_seed = self._split_seed(seed)
        top_left, extent = self._window(tf.shape(image)[:2], window_seed)
        bottom_right = top_left + extent
        window = image[top_left[0]:bottom_right[0], top_left[1]:bottom_right[1]]
        return self._finish(window, finish_seed)

    def seeds(self):
        """An endless dataset of shape-(2,) int64 seeds, re-drawn each iteration (epoch)."""
        return tf.data.Dataset.random(seed=self.seed, rerandomize_each_iteration=True).batch(2)

    def apply(self, dataset):
        """Augments the first component of each element of ``dataset`` (an image, or ``(image, ...)``)."""
        if self.is_random:
            return tf.data.Dataset.zip(dataset, self.seeds()).map(
                lambda element, seed: _replace_image(element, self(_image_of(element), seed)),
                num_parallel_calls=tf.data.AUTOTUNE,
            )
        return dataset.map(
            lambda *element: _replace_image(_unpack(element), self(_image_of(_unpack(element)))),
            num_parallel_calls=tf.data.AUTOTUNE,
        )

    def get_config(self):
        return constructor_config(self)

    @classmethod
    def from_config(cls, config):
        return from_constructor_config(cls, config)

    def __repr__(self):
        return f"Augmentation(protocol={self.protocol!r}, size={self.size}, seed={self.seed})"

    def _split_seed(self, seed):
        if not self.is_random:
            return None, None
        if seed is None:
            raise ValueError(
                f"Augmentation({self.protocol!r}) is random and needs a per-image seed; "
                "use Augmentation.apply(dataset) or LabelledImages.map_indices"
            )
        return tf.unstack(tf.random.experimental.stateless_split(seed, num=2))

    def _window(self, shape, seed):
        """``(top_left, extent)`` (int32 ``(2,)`` each) of the source region that becomes the output.

        For the resize-then-crop protocols the crop of the resized image is mapped
        back to the source (rounded to whole pixels), so only that region is resized.
        """
        if self.protocol == "affine":
            return tf.zeros([2], tf.int32), shape
        if self.protocol in ("base", "big", "adv"):
            begin, extent, _ = tf.image.stateless_sample_distorted_bounding_box(
                tf.concat([shape, [1]], 0),
                bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
                seed=seed,
                min_object_covered=0.0,
                aspect_ratio_range=_CROP_ASPECT_RANGE,
                area_range=_CROP_AREA_RANGE,
                max_attempts=_CROP_ATTEMPTS,
                use_image_if_no_bounding_boxes=True,
            )
            return begin[:2], extent[:2]
        source = tf.cast(shape, tf.float32)
        if self.protocol == "wu":
            scale = self.resize_side / source
        else:
            scale = tf.fill([2], self.resize_side / tf.reduce_min(source))
        # Room for the crop inside the resized image; ceil keeps the shorter side at resize_side.
        room = tf.cast(tf.math.ceil(source * scale - 1e-3), tf.int32) - self.size
        if self.is_random:
            uniform = tf.random.stateless_uniform([2], seed)
            offset = tf.minimum(tf.cast(uniform * tf.cast(room + 1, tf.float32), tf.int32), room)
        else:
            offset = room // 2
        extent = tf.clip_by_value(tf.cast(tf.round(self.size / scale), tf.int32), 1, shape)
        top_left = tf.clip_by_value(tf.cast(tf.round(tf.cast(offset, tf.float32) / scale), tf.int32), 0, shape - extent)
        return top_left, extent

    def _finish(self, window, seed):
        """Resizes the source window to ``size × size``, then flips and jitters (random protocols), or distorts."""
        # Area averaging keeps thin pen strokes that bilinear sampling drops when shrinking 105 → 28.
        method = "area" if self.protocol == "affine" else "bilinear"
        image = tf.image.resize(window, [self.size, self.size], method=method)
        if not self.is_random:
            return image
        if self.protocol == "affine":
            return _transform(image, affine_matrix(self.affine_parameters(seed), self.size), self.affine["fill"])
        flip_seed, jitter_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
        image = tf.image.stateless_random_flip_left_right(image, flip_seed)
        return _colour_jitter(image, jitter_seed) if self.protocol == "adv" else image


    def affine_parameters(self, seed):
        """The ``"affine"`` draw for a shape-(2,) seed: float32 ``(7,)`` ``[θ (radians), ρx, ρy, sx, sy, tx, ty]``."""
        value_seed, apply_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
        ranges = self.affine
        low_scale, high_scale = ranges["scale"]
        rotation, shear, translation = ranges["rotation"] * np.pi / 180, ranges["shear"], ranges["translation"]
        low = tf.constant([-rotation, -shear, -shear, low_scale, low_scale, -translation, -translation], tf.float32)
        high = tf.constant([rotation, shear, shear, high_scale, high_scale, translation, translation], tf.float32)
        values = low + (high - low) * tf.random.stateless_uniform([7], value_seed)
        applied = tf.random.stateless_uniform([7], apply_seed) < ranges["probability"]
        return tf.where(applied, values, tf.constant([0, 0, 0, 1, 1, 0, 0], tf.float32))


def augmentation(protocol, size=None, seed=None, affine=None):
    """Shorthand for ``Augmentation(protocol, size, seed, affine)``, e.g. ``augmentation("base", size=28)``."""
    return Augmentation(protocol, size, seed, affine)


def affine_matrix(parameters, size):
    """The 8 projective-transform coefficients (output → input pixel) of ``Augmentation.affine_parameters``.

    The forward map about the centre ``c`` of a ``size × size`` image is
    ``p ↦ A (p − c) + c + t`` with ``A = R(θ) · [[1, ρx], [ρy, 1]] · diag(sx, sy)``
    on ``(x, y)`` = (column, row); the op wants its inverse ``p ↦ A⁻¹ (p − c − t) + c``.
    """
    theta, shear_x, shear_y, scale_x, scale_y, shift_x, shift_y = tf.unstack(parameters)
    cos, sin = tf.cos(theta), tf.sin(theta)
    rotation = tf.reshape(tf.stack([cos, -sin, sin, cos]), [2, 2])
    shear = tf.reshape(tf.stack([1.0, shear_x, shear_y, 1.0]), [2, 2])
    forward = rotation @ shear @ tf.linalg.diag(tf.stack([scale_x, scale_y]))
    inverse = tf.linalg.inv(forward)
    centre = tf.fill([2], (size - 1) / 2)
    offset = centre - tf.linalg.matvec(inverse, centre + tf.stack([shift_x, shift_y]))
    return tf.concat([inverse[0], offset[:1], inverse[1], offset[1:], tf.zeros([2])], axis=0)


def _transform(image, matrix, fill):
    """Bilinear projective warp of one ``(h, w, c)`` float32 image by 8 output → input coefficients."""
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=image[tf.newaxis],
        transforms=matrix[tf.newaxis],
        output_shape=tf.shape(image)[:2],
        fill_value=tf.constant(fill, tf.float32),
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )[0]


def _affine_ranges(overrides):
    """:data:`KOCH_AFFINE` updated by ``overrides``, checked."""
    unknown = sorted(set(overrides or {}) - set(KOCH_AFFINE))
    if unknown:
        raise ValueError(f"affine: unknown settings {unknown}; expected names from {sorted(KOCH_AFFINE)}")
    ranges = {**KOCH_AFFINE, **(overrides or {})}
    ranges["scale"] = tuple(float(bound) for bound in ranges["scale"])
    for name in ("rotation", "shear", "translation", "probability", "fill"):
        ranges[name] = float(ranges[name])
    low_scale, high_scale = ranges["scale"]
    if not 0 < low_scale <= high_scale:
        raise ValueError(f"affine: scale must be a range 0 < low <= high; got {ranges['scale']}")
    if not 0 <= ranges["shear"] < 1 or ranges["rotation"] < 0 or ranges["translation"] < 0:
        raise ValueError(f"affine: rotation, translation must be >= 0 and shear in [0, 1); got {ranges}")
    if not 0 <= ranges["probability"] <= 1:
        raise ValueError(f"affine: probability must be in [0, 1]; got {ranges['probability']}")
    return ranges


def _colour_jitter(image, seed):
    brightness_seed, contrast_seed, saturation_seed, hue_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, num=4)
    )
    unit = image / 255.0
    unit = tf.image.stateless_random_brightness(unit, _BRIGHTNESS_DELTA, brightness_seed)
    unit = tf.image.stateless_random_contrast(unit, *_CONTRAST_RANGE, contrast_seed)
    if image.shape[-1] == 3:
        unit = tf.image.stateless_random_saturation(unit, *_SATURATION_RANGE, saturation_seed)
        unit = tf.image.stateless_random_hue(unit, _HUE_DELTA, hue_seed)
    return tf.clip_by_value(unit, 0.0, 1.0) * 255.0


def _unpack(element):
    return element[0] if len(element) == 1 else element


def _image_of(element):
    return element[0] if isinstance(element, tuple) else element


def _replace_image(element, image):
    return (image, *element[1:]) if isinstance(element, tuple) else image
