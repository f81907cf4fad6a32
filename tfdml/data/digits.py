"""scikit-learn's handwritten digits as a tiny class-disjoint metric-learning set."""

import numpy as np
import sklearn.datasets
import tensorflow as tf

from tfdml.data.base import READERS, EncodedImages, LabelledImages, class_disjoint_split

_MAX_PIXEL = 16
_FIRST_TEST_DIGIT = 5


def digits(*, split="train", image_size=32, channels=1):
    """The 1,797 8×8 digits of ``sklearn.datasets.load_digits``, split by class.

    ``"train"`` holds digits 0–4, ``"test"`` digits 5–9 (class-disjoint, as in DML
    benchmarks), ``"all"`` every digit. Labels are the digits themselves; there are
    no categories. Pixel values 0–16 are scaled to float32 in [0, 255], with ``channels``
    channels (1, or 3: the gray value in each, for models that take RGB), and resized
    (bilinear, antialiased) to ``image_size × image_size``; ``image_size=None`` keeps 8×8.

    The digits come as arrays, not files: each image's "original file" (``encoded``)
    is the lossless 8×8 grayscale PNG of scikit-learn's integer values 0–16, and
    ``preprocess`` (× 255/16, then the resize) is the reader's eval preprocessing. A
    model trained on digits therefore expects, through an exported ``serving_bytes``
    signature, PNGs on that 0–16 scale.

    Example:

    >>> train = digits(split="train", image_size=32)
    >>> len(train), train.load(tf.constant(0, tf.int64)).shape
    (901, TensorShape([32, 32, 1]))
    """
    if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
        raise ValueError(f"digits: image_size must be a positive int or None, got {image_size!r}")
    if channels not in (1, 3):
        raise ValueError(f"digits: channels must be 1 or 3; got {channels!r}")
    bunch = sklearn.datasets.load_digits()
    labels = bunch.target.astype(np.int64)
    indices = class_disjoint_split(labels, split, _FIRST_TEST_DIGIT, "digits")
    stored = tf.constant(bunch.images[indices, :, :, None].astype(np.uint8))
    png_files = tf.map_fn(tf.io.encode_png, stored, fn_output_signature=tf.string)

    def preprocess(image):
        image = tf.cast(image, tf.float32) * (255.0 / _MAX_PIXEL)
        if image_size is not None:
            image = tf.image.resize(image, [image_size, image_size], antialias=True)
        return image

    return LabelledImages(
        name=f"digits/{split}",
        labels=labels[indices],
        load=EncodedImages(lambda index: tf.gather(png_files, index), channels=channels, preprocess=preprocess),
        class_names=[str(digit) for digit in range(10)],
    )


@READERS.register("digits")
def _digits_reader(root, *, split, image_size, **options):
    """``load("digits")``: read from scikit-learn, so ``root`` is unused."""
    return digits(split=split, image_size=image_size, **options)
