"""Embedding models: backbones (ResNet50, a small convnet) with a pooled linear L2-normalised head."""

from tfdml.models.convnet import convnet
from tfdml.models.embedding import BACKBONES, build_embedding_model
from tfdml.models.preprocessing import CaffePreprocessing
from tfdml.models.resnet import freeze_batchnorm, resnet50
