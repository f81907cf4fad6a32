"""Any ``keras.applications`` image model as a backbone, by its Keras name (``model.backbone: EfficientNetV2B0``).

Names resolve generically (a :data:`~tfdml.models.backbones.BACKBONES` fallback over the constructors
``keras.applications`` exports: ``ConvNeXtTiny``, ``EfficientNetV2B0``, ``MobileNetV3Small``, ``ResNet50V2``,
…); a misspelt one is an error listing the close names. The backbone is the model without its top,
``pooling=None``: float RGB images in ``[0, 255]`` → feature map. Its own input preprocessing is part of it,
so serving takes plain pixels: the constructor's ``include_preprocessing=True`` where it has one
(ConvNeXt, EfficientNetV2, MobileNetV3), otherwise its module's ``preprocess_input`` in an
:class:`~tfdml.models.preprocessing.ApplicationPreprocessing` layer (``"tf"``, ``"torch"`` or ``"caffe"``
scaling, as Keras defines it for that family).

``backbone_config`` (``model.backbone_config`` in a recipe) passes further constructor arguments
(``{alpha: 0.75, minimalistic: true}`` for MobileNetV3). ``weights`` is ``None`` (random
initialisation), ``"imagenet"`` — read from the Keras cache only (``$KERAS_HOME/models``, default
``~/.keras/models``), never downloaded; a missing file is one error naming the file, its URL and where to
put it — or the path of a weights file of the model without its top (Keras' own ``*_notop.h5`` or a
``save_weights`` file).

Example:

>>> backbone = BACKBONES.get("MobileNetV3Small")((32, 32, 3), backbone_config={"minimalistic": True})
>>> backbone(np.zeros((1, 32, 32, 3), "float32")).shape
TensorShape([1, 1, 1, 576])
"""

import contextlib
import difflib
import inspect
import os
from unittest import mock

import keras
from keras.src.utils import file_utils

from tfdml.models.backbones import BACKBONES
from tfdml.models.preprocessing import ApplicationPreprocessing
from tfdml.models.resnet import freeze_batchnorm, keras_cache_models_dir

# Arguments the backbone sets itself: a recipe cannot override them in backbone_config.
FIXED_ARGUMENTS = ("include_top", "weights", "input_tensor", "input_shape", "pooling", "classes",
                   "classifier_activation", "include_preprocessing", "name")


def application_names():
    """The image-model constructors ``keras.applications`` exports, by Keras name (sorted)."""
    return tuple(sorted(name for name in dir(keras.applications) if name[:1].isupper()))


@contextlib.contextmanager
def offline_weights(name):
    """Within it, a ``keras.applications`` constructor reads its weight file from the Keras cache or raises
    ``FileNotFoundError`` naming the file, its URL and the cache path (Keras would download it)."""

    def cached(fname, origin=None, cache_subdir="models", **_):
        path = os.path.join(os.path.dirname(keras_cache_models_dir()), cache_subdir, fname)
        if os.path.exists(path):
            return path
        raise FileNotFoundError(
            f"{name} ImageNet weights were requested (model.weights='imagenet') but are not available offline: "
            f"{path} does not exist. Download {origin} on a machine with internet access and either copy it to "
            f"{path} or set model.weights to its path."
        )

    with mock.patch.object(file_utils, "get_file", cached):
        yield


def application(name, input_shape=(224, 224, 3), weights=None, frozen_batchnorm=False, backbone_config=None):
    """``keras.applications.<name>`` without its top, preprocessing included: float RGB images in ``[0, 255]``
    → feature map ``(h', w', c)``. See the module docstring for ``weights`` and ``backbone_config``."""
    constructor = getattr(keras.applications, name)
    accepted = inspect.signature(constructor).parameters
    options = dict(backbone_config or {})
    refused = sorted(set(options) & set(FIXED_ARGUMENTS))
    unknown = sorted(set(options) - set(accepted))
    if refused or unknown:
        problems = [f"{', '.join(refused)} set by tfdml"] * bool(refused) + [f"{', '.join(unknown)} unknown"] * bool(unknown)
        raise ValueError(
            f"model.backbone_config for {name}: {'; '.join(problems)}; "
            f"{name} accepts {', '.join(sorted(set(accepted) - set(FIXED_ARGUMENTS)))}."
        )
    if weights not in (None, "imagenet") and not os.path.exists(weights):
        raise FileNotFoundError(f"{name} weights file not found: {weights!r} (model.weights).")
    if "include_preprocessing" in accepted:
        options["include_preprocessing"] = True
    with offline_weights(name):
        base = constructor(include_top=False, weights=weights, input_shape=tuple(input_shape), pooling=None, **options)
    if frozen_batchnorm:
        freeze_batchnorm(base)
    inputs = keras.Input(shape=tuple(input_shape), name="images")
    images = inputs
    if "include_preprocessing" not in accepted:
        images = ApplicationPreprocessing(constructor.__module__.rsplit(".", 1)[1])(inputs)
    return keras.Model(inputs, base(images), name=name.lower())


@BACKBONES.fallback("a keras.applications model by its Keras name (e.g. EfficientNetV2B0, ConvNeXtTiny)")
def resolve_application(name):
    """The builder of ``keras.applications.<name>``; ``None`` for a name that is none of them, except one
    close to a Keras name: then a ``ValueError`` listing the close names."""
    names = application_names()
    if name in names:

        def builder(input_shape=None, *, weights=None, freeze_batchnorm=False, backbone_config=None, **_):
            return application(name, input_shape or (224, 224, 3), weights, freeze_batchnorm, backbone_config)

        return builder
    lowered = {candidate.lower(): candidate for candidate in names}
    close = [lowered[c] for c in difflib.get_close_matches(str(name).lower(), lowered, n=5, cutoff=0.8)]
    if close:
        raise ValueError(f"unknown backbone {name!r}; close keras.applications names: {', '.join(close)}.")
    return None
