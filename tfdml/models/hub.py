"""KerasHub image backbones (ViT, DINOv2, …) by class and config or by preset: ``model.backbone: hub:<…>``.

KerasHub is optional (``pip install 'tfdml[hub]'``, keras-hub 0.32). Two forms:

- ``hub:<Backbone class>`` (a class of ``keras_hub.models``, e.g. ``hub:ViTBackbone``) with its constructor
  arguments in ``model.backbone_config``; ``image_shape`` defaults to the recipe's input shape. Its input
  preprocessing is the class's KerasHub image converter (``ViTImageConverter``, …) built from
  ``backbone_config["image_converter"]`` (e.g. ``{scale: 0.00784313725490196, offset: -1.0}``; its
  defaults otherwise). Random initialisation, or ``model.weights`` a weights file.
- ``hub:<preset>``: a KerasHub preset name (``vit_base_patch16_224_imagenet``) or a local preset folder
  (``Backbone.save_to_preset``); the preprocessing is the preset's image converter (its scale, offset,
  mean/std). ``model.weights: preset`` loads the preset's weights, ``null`` initialises at random,
  a path loads a weights file. A preset name is read from the local KerasHub/Kaggle cache; where it is not
  there, one error says to download it or to name a local preset folder.

The converter never resizes (the input pipeline gives the recipe's size), so the backbone takes float RGB
images in ``[0, 255]`` like every backbone; ViTs give a token sequence ``(b, tokens, d)`` to the pooling.
A CLIP or SigLIP backbone (an image and a text tower, e.g. ``hub:clip_vit_base_patch16``) embeds with its
image tower (``vision_encoder``) after the preset's image converter.

Example (a tiny random ViT):

>>> builder = BACKBONES.get("hub:ViTBackbone")
>>> vit = builder((32, 32, 3), backbone_config={"patch_size": 8, "num_layers": 1, "num_heads": 2,
...                                             "hidden_dim": 8, "mlp_dim": 16})
>>> vit.output_shape
(None, 17, 8)
"""

import contextlib
import inspect
import os
from unittest import mock

import keras

from tfdml.extras import require
from tfdml.models.backbones import BACKBONES
from tfdml.models.resnet import freeze_batchnorm

PREFIX = "hub:"


class PresetNotCached(LookupError):
    """A preset is not in the local cache (not a ``FileNotFoundError``: KerasHub reads that as "no such file in
    the preset" and goes on)."""


def _keras_hub():
    return require("keras_hub", "a KerasHub backbone (model.backbone: hub:...)")


def backbone_class(keras_hub, name):
    """The ``keras_hub.models`` Backbone class called ``name``, or ``None``."""
    cls = getattr(keras_hub.models, name, None)
    return cls if inspect.isclass(cls) and issubclass(cls, keras_hub.models.Backbone) else None


def image_converter_class(keras_hub, cls):
    """The KerasHub image converter made for Backbone class ``cls`` (plain ``ImageConverter`` if none is)."""
    converters = [keras_hub.layers.ImageConverter]
    while converters:
        converter = converters.pop()
        if getattr(converter, "backbone_cls", None) is cls:
            return converter
        converters += converter.__subclasses__()
    return keras_hub.layers.ImageConverter


@contextlib.contextmanager
def kaggle_cache_only(preset):
    """Within it, KerasHub reads a Kaggle preset (the built-in presets' home) from the local KaggleHub cache
    (``$KAGGLEHUB_CACHE``, default ``~/.cache/kagglehub``) only; one that is not there is
    :class:`PresetNotCached`, naming the cache path and the model's page (KerasHub would download it)."""
    kagglehub = require("kagglehub", "a KerasHub preset (model.backbone: hub:<preset>)")
    from kagglehub.cache import Cache, get_cached_path
    from kagglehub.handle import parse_model_handle

    def cached(handle, path=None, **_):
        parsed = parse_model_handle(handle)
        found = Cache().load_from_cache(parsed, path) if parsed.is_versioned() else None
        if found is None:
            raise PresetNotCached(
                f"KerasHub preset {preset!r} is not in the local KaggleHub cache: {get_cached_path(parsed, path)} "
                f"does not exist (downloads are not attempted). Download it from {parsed.to_url()} on a machine "
                "with internet access (keras_hub.models.Backbone.from_preset caches it there), or save it with "
                "save_to_preset('<folder>'), copy the folder here and set model.backbone=hub:<folder>."
            )
        return found

    with mock.patch.object(kagglehub, "model_download", cached):
        yield


def _check_weights_file(name, weights):
    if weights is not None and not os.path.exists(weights):
        raise FileNotFoundError(f"{name} weights file not found: {weights!r} (model.weights).")


def from_class(keras_hub, cls, input_shape, weights, backbone_config):
    """``cls(**backbone_config)`` and its image converter; ``weights`` ``None`` or a file path."""
    options = dict(backbone_config or {})
    converter_options = options.pop("image_converter", None) or {}
    if weights == "preset":
        raise ValueError(f"model.weights='preset' needs a preset (model.backbone: hub:<preset>), not a class ({cls.__name__}).")
    _check_weights_file(cls.__name__, weights)
    if "image_shape" in inspect.signature(cls).parameters and input_shape is not None:
        options.setdefault("image_shape", tuple(input_shape))
    try:
        backbone = cls(**options)
    except TypeError as error:
        raise ValueError(f"model.backbone_config for hub:{cls.__name__}: {error}") from None
    if weights is not None:
        backbone.load_weights(weights)
    converter = image_converter_class(keras_hub, cls)(**{**converter_options, "image_size": None})
    return backbone, converter


def from_preset(keras_hub, preset, input_shape, weights):
    """The preset's backbone (its weights with ``weights="preset"``) and its image converter."""
    if weights not in (None, "preset"):
        _check_weights_file(preset, weights)
    config = {} if input_shape is None else {"image_shape": tuple(input_shape)}
    try:
        with kaggle_cache_only(preset):
            try:
                backbone = keras_hub.models.Backbone.from_preset(preset, load_weights=weights == "preset", **config)
            except TypeError:  # a backbone without an image_shape argument keeps its own
                backbone = keras_hub.models.Backbone.from_preset(preset, load_weights=weights == "preset")
            converter = keras_hub.layers.ImageConverter.from_preset(preset, image_size=None)
    except PresetNotCached as error:
        raise FileNotFoundError(f"model.backbone=hub:{preset}: {error}") from None
    except (OSError, ValueError) as error:
        raise ValueError(
            f"model.backbone=hub:{preset}: not a KerasHub image backbone preset name nor a preset folder: {error}"
        ) from None
    if weights not in (None, "preset"):
        backbone.load_weights(weights)
    return backbone, converter


def hub_backbone(spec, input_shape=None, weights=None, frozen_batchnorm=False, backbone_config=None):
    """The KerasHub backbone ``hub:<spec>`` with its image converter in front: float RGB images in
    ``[0, 255]`` → features (a token sequence for ViTs). See the module docstring."""
    keras_hub = _keras_hub()
    cls = backbone_class(keras_hub, spec)
    if cls is not None:
        backbone, converter = from_class(keras_hub, cls, input_shape, weights, backbone_config)
    else:
        if backbone_config:
            raise ValueError(f"model.backbone_config applies to a KerasHub class, not to the preset {spec!r}.")
        backbone, converter = from_preset(keras_hub, spec, input_shape, weights)
    # CLIP and SigLIP pair an image tower with a text tower: images are embedded by the image tower.
    backbone = getattr(backbone, "vision_encoder", backbone)
    image_input = backbone.input
    if isinstance(backbone.input, dict):  # DINOv2 and the CLIP/SigLIP towers name their one input: {"images": …}
        if len(backbone.input) != 1:
            raise ValueError(
                f"model.backbone=hub:{spec}: {type(backbone).__name__} takes several inputs "
                f"({', '.join(backbone.input)}); tfdml needs an image backbone (one image input)."
            )
        ((key, image_input),) = backbone.input.items()
    if frozen_batchnorm:
        freeze_batchnorm(backbone)
    inputs = keras.Input(shape=tuple(image_input.shape[1:]), name="images")
    images = converter(inputs)
    features = backbone({key: images} if isinstance(backbone.input, dict) else images)
    return keras.Model(inputs, features, name=f"hub_{type(backbone).__name__.lower()}")


@BACKBONES.fallback("hub:<KerasHub Backbone class or preset> (pip install 'tfdml[hub]')")
def resolve_hub(name):
    """The builder of ``hub:<spec>``; ``None`` for a name without the ``hub:`` prefix."""
    if not (isinstance(name, str) and name.startswith(PREFIX) and len(name) > len(PREFIX)):
        return None
    spec = name[len(PREFIX):]

    def builder(input_shape=None, *, weights=None, freeze_batchnorm=False, backbone_config=None, **_):
        return hub_backbone(spec, input_shape, weights, freeze_batchnorm, backbone_config)

    return builder
