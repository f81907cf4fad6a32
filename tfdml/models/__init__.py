"""Embedding models: backbones (ResNet50, a small convnet) with a pooled linear L2-normalised head."""

from tfdml.models.convnet import convnet
from tfdml.models.embedding import BACKBONES, POOLINGS, build_embedding_model
from tfdml.models.preprocessing import CaffePreprocessing
from tfdml.models.resnet import freeze_batchnorm, resnet50

__all__ = ["BACKBONES", "POOLINGS", "CaffePreprocessing", "build_embedding_model", "convnet", "freeze_batchnorm", "resnet50"]
