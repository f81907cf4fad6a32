"""Embedding models: backbones (ResNet50, a small convnet), global pooling (GeM included) and an embedding head
(linear, MLP or BNNeck), L2-normalised."""

import importlib
import pkgutil

from tfdml.models.backbones import BACKBONES
from tfdml.models.convnet import convnet
from tfdml.models.embedding import build_embedding_model, embed, inference_function
from tfdml.models.heads import HEADS
from tfdml.models.pooling import POOLINGS, GeneralizedMeanPooling
from tfdml.models.preprocessing import CaffePreprocessing
from tfdml.models.resnet import freeze_batchnorm, resnet50

# Every module of the package, so each backbone module registers its builder in BACKBONES, listed here or not.
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "BACKBONES", "HEADS", "POOLINGS", "CaffePreprocessing", "GeneralizedMeanPooling", "build_embedding_model", "convnet",
    "embed", "freeze_batchnorm", "inference_function", "resnet50",
]
