"""Class-expanding rotations: every class, rotated by 90°, 180° and 270°, becomes a new class.

The few-shot literature on Omniglot (Santoro et al. 2016, Vinyals et al. 2016,
Snell et al. 2017) multiplies the training characters by four this way: a rotated
character is a different character. Apply it to one split at a time (e.g. to the
training split only, after holding out validation classes), so that no rotated copy
of a class ends up on the other side of a class-disjoint split.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from tfdml.data.base import LabelledImages


def with_rotations(collection: LabelledImages, rotations=(90, 180, 270)) -> LabelledImages:
    """``collection`` with every image also rotated by each angle of ``rotations``, as new classes.

    With ``R = 1 + len(rotations)`` orientations (the upright one first), image
    ``i`` becomes images ``i·R … i·R + R − 1`` and label ``l`` becomes labels
    ``l·R + r`` for orientation ``r`` (0 = upright). Splits whose labels are disjoint
    therefore stay disjoint when both are rotated, and a split holding labels
    ``0 … C − 1`` holds ``0 … C·R − 1`` (an *unrotated* split's ids may then coincide
    with rotated ids of another: fine for splits evaluated on their own, as the test
    and validation splits are, but do not concatenate such splits). Categories are kept (a rotated character stays in its
    alphabet, so within-alphabet few-shot episodes still work); class names get
    ``"/rot90"``, ``"/rot180"``, … suffixes. Rotation is ``tf.image.rot90``
    (counter-clockwise) on load.

    Args:
        collection: any ``LabelledImages``.
        rotations: distinct angles in degrees, multiples of 90 in (0, 360).

    Example:

    >>> train = with_rotations(tfdml.data.load("omniglot", root=root, split="train"))
    >>> len(set(train.labels))
    544
    """
    angles = tuple(int(angle) for angle in rotations)
    if len(set(angles)) != len(angles) or any(angle % 90 or not 0 < angle < 360 for angle in angles):
        raise ValueError(f"{collection.name}: rotations must be distinct multiples of 90 in (0, 360); got {rotations!r}")
    orientations = 1 + len(angles)
    quarter_turns = tf.constant([0] + [angle // 90 for angle in angles], tf.int64)
    stored_load = collection.load

    def load(index):
        image = stored_load(index // orientations)
        rotated = tf.image.rot90(image, k=tf.cast(tf.gather(quarter_turns, index % orientations), tf.int32))
        if image.shape.rank == 3 and image.shape[0] is not None and image.shape[0] == image.shape[1]:
            rotated.set_shape(image.shape)  # square images keep their static shape under any rotation
        return rotated

    suffixes = [""] + [f"/rot{angle}" for angle in angles]
    class_names = None
    if collection.class_names is not None:
        class_names = [name + suffix for name in collection.class_names for suffix in suffixes]
    return dataclasses.replace(
        collection,
        name=f"{collection.name}+rotations",
        labels=(collection.labels[:, np.newaxis] * orientations + np.arange(orientations)).reshape(-1),
        load=load,
        categories=None if collection.categories is None else np.repeat(collection.categories, orientations),
        class_names=class_names,
    )
