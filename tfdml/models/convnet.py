"""A small convnet for 28–105 px grayscale images (digits, Omniglot) that trains fast on a CPU.

Four blocks of conv 3×3 → BatchNorm → ReLU → max-pool 2×2 (the "Conv-4"
architecture common in few-shot learning on Omniglot), with ``filters`` channels
each. Input: float images in ``[0, 255]`` of shape ``(h, w, c)``; they are
rescaled to ``[0, 1]`` inside the model. A block's pooling is skipped once the
feature map is 1 pixel wide, so tiny inputs (8×8 digits) also work.
"""

import keras

from tfdml.models.backbones import BACKBONES


def convnet(input_shape=(32, 32, 1), filters=64, blocks=4, synchronized_batchnorm=False, name="convnet"):
    """Conv-4 feature extractor: ``(h, w, c)`` images in ``[0, 255]`` → ``(h', w', filters)`` features.

    ``synchronized_batchnorm``: compute BatchNorm statistics over the global batch of all replicas
    (for distributed training: otherwise each replica's moving statistics drift apart).
    """
    if len(input_shape) != 3:
        raise ValueError(f"convnet input_shape must be (height, width, channels); got {input_shape}.")
    if filters <= 0 or blocks <= 0:
        raise ValueError(f"convnet needs filters > 0 and blocks > 0; got filters={filters}, blocks={blocks}.")
    inputs = keras.Input(shape=tuple(input_shape), name="images")
    x = keras.layers.Rescaling(1.0 / 255.0)(inputs)
    size = min(input_shape[0], input_shape[1])
    for block in range(blocks):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{block + 1}")(x)
        x = keras.layers.BatchNormalization(synchronized=synchronized_batchnorm, name=f"bn{block + 1}")(x)
        x = keras.layers.ReLU(name=f"relu{block + 1}")(x)
        if size >= 2:
            x = keras.layers.MaxPooling2D(2, name=f"pool{block + 1}")(x)
            size //= 2
    return keras.Model(inputs, x, name=name)


@BACKBONES.register("convnet")
def convnet_backbone(input_shape=None, *, weights=None, filters=64, blocks=4, synchronized_batchnorm=False, **_):
    """The ``"convnet"`` backbone: :func:`convnet`, default input ``(32, 32, 1)``; it has no pretrained weights."""
    if weights is not None:
        raise ValueError("The convnet backbone has no pretrained weights; use weights=None.")
    input_shape = input_shape or (32, 32, 1)
    return convnet(input_shape, filters=filters, blocks=blocks, synchronized_batchnorm=synchronized_batchnorm)
