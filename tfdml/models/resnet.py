"""ResNet50 backbone (``keras.applications``) with optional frozen BatchNorm.

Both papers' protocols fine-tune an ImageNet-pretrained ResNet50 with BatchNorm
frozen: statistics and affine parameters stay fixed (Roth et al. 2020 §4.1).
Keras 3 runs a ``BatchNormalization`` layer with ``trainable=False`` in inference
mode, which is exactly that.

ImageNet weights cannot be downloaded at run time where there is no network, so
``weights="imagenet"`` only uses a copy already in the Keras cache; otherwise it
raises an error that says where to put the file. ``weights`` may also be a path
to a local ``.h5``/``.weights.h5`` file.
"""

import os

import keras

from tfdml.models.backbones import BACKBONES
from tfdml.models.preprocessing import CaffePreprocessing

IMAGENET_NOTOP_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
IMAGENET_NOTOP_URL = f"https://storage.googleapis.com/tensorflow/keras-applications/resnet/{IMAGENET_NOTOP_FILE}"


def keras_cache_models_dir():
    home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    return os.path.join(home, "models")


def resolve_resnet50_weights(weights):
    """Map ``None`` / ``"imagenet"`` / a file path to what ``keras.applications.ResNet50`` accepts."""
    if weights is None:
        return None
    if weights == "imagenet":
        cached = os.path.join(keras_cache_models_dir(), IMAGENET_NOTOP_FILE)
        if not os.path.exists(cached):
            raise FileNotFoundError(
                "ResNet50 ImageNet weights were requested (weights='imagenet') but are not available offline: "
                f"{cached} does not exist. Download {IMAGENET_NOTOP_URL} on a machine with internet access and "
                f"either copy it to {cached} or pass its path as weights='/path/to/{IMAGENET_NOTOP_FILE}'."
            )
        return cached
    if not os.path.exists(weights):
        raise FileNotFoundError(f"ResNet50 weights file not found: {weights!r} (argument 'weights').")
    return weights


def freeze_batchnorm(model):
    """Fix statistics and affine parameters of every BatchNormalization layer of ``model``."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
        elif isinstance(layer, keras.Model):
            freeze_batchnorm(layer)
    return model


def resnet50(input_shape=(224, 224, 3), weights=None, frozen_batchnorm=True):
    """ResNet50 feature extractor: float RGB images in ``[0, 255]`` → ``(h/32, w/32, 2048)`` features.

    The ImageNet (Caffe-style) input preprocessing is part of the returned model, so
    the serving signature takes plain RGB pixels.
    """
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(f"ResNet50 needs RGB input of shape (h, w, 3); got input_shape={input_shape}.")
    base = keras.applications.ResNet50(
        include_top=False, weights=None, input_shape=tuple(input_shape), pooling=None
    )
    weights_path = resolve_resnet50_weights(weights)
    if weights_path is not None:
        base.load_weights(weights_path)
    if frozen_batchnorm:
        freeze_batchnorm(base)
    inputs = keras.Input(shape=tuple(input_shape), name="images")
    features = base(CaffePreprocessing()(inputs))
    return keras.Model(inputs, features, name="resnet50")


@BACKBONES.register("resnet50")
def resnet50_backbone(input_shape=None, *, weights=None, freeze_batchnorm=False, **_):
    """The ``"resnet50"`` backbone: :func:`resnet50`, default input ``(224, 224, 3)``."""
    return resnet50(input_shape or (224, 224, 3), weights=weights, frozen_batchnorm=freeze_batchnorm)
