"""Embedding models: ``images → backbone → global pooling → embedding head → L2 normalisation``.

Both papers use this head on ResNet50 with embedding dimension 128 (Wu et al.
2017 §5; Roth et al. 2020 §4.1). ``normalize=False`` keeps raw embeddings for
losses defined on unnormalised vectors (N-pair, lifted structure); metrics and
serving then see the raw vectors too.

Example:

>>> model = build_embedding_model("convnet", input_shape=(32, 32, 1), embedding_dim=64)
>>> model(np.zeros((2, 32, 32, 1), "float32")).shape
TensorShape([2, 64])
>>> resnet = build_embedding_model("resnet50", weights=None, freeze_batchnorm=True)
"""

import keras
import numpy as np
import tensorflow as tf

from tfdml.models.backbones import BACKBONES
from tfdml.models.heads import embedding_head
from tfdml.models.pooling import global_pool


def build_embedding_model(
    backbone="resnet50",
    *,
    input_shape=None,
    embedding_dim=128,
    pooling="avg",
    head="linear",
    head_hidden=None,
    gem_p=3.0,
    normalize=True,
    weights=None,
    backbone_config=None,
    freeze_batchnorm=False,
    filters=64,
    blocks=4,
    synchronized_batchnorm=False,
    name="embedding_model",
):
    """Build a Keras model ``float images in [0, 255] → embeddings (b, embedding_dim)``.

    Args:
        backbone: a name in :data:`~tfdml.models.backbones.BACKBONES` (``"resnet50"``, ``"convnet"``), or a
            ``keras.Model`` mapping images to a feature map.
        input_shape: image shape ``(h, w, c)``; defaults to the backbone's own: ``(224, 224, 3)`` for
            ResNet50, ``(32, 32, 1)`` for the convnet.
        embedding_dim: size of the linear embedding layer (default 128).
        pooling: a pooling in :data:`~tfdml.models.pooling.POOLINGS`: ``"avg"`` (default), ``"max"``,
            ``"avgmax"``, ``"gem"`` (learned-exponent GeM), ``"flatten"``, or ``"cls"`` (a ViT's class token).
        head: an embedding head in :data:`~tfdml.models.heads.HEADS`: ``"linear"`` (default), ``"mlp"`` or
            ``"bnneck"``.
        head_hidden: the ``"mlp"`` head's hidden width (default ``None``: the pooled features' width).
        gem_p: GeM's initial exponent (default 3, Radenović et al. 2018).
        normalize: L2-normalise the output (default ``True``).
        weights: pretrained backbones only: ``None``, ``"imagenet"`` (from the local Keras cache), ``"preset"``
            (a KerasHub preset's) or a weights file (:mod:`~tfdml.models.applications`, :mod:`~tfdml.models.hub`).
        backbone_config: constructor arguments of a ``keras.applications`` or KerasHub backbone.
        freeze_batchnorm: pretrained backbones only: fix BatchNorm statistics and parameters.
        filters: convnet only: channels per block.
        blocks: convnet only: number of conv blocks (each halves the resolution).
        synchronized_batchnorm: convnet only: BatchNorm statistics over the global batch of all
            replicas (use under ``tf.distribute``; ResNet50's BatchNorm is usually frozen instead).
    """
    if int(embedding_dim) != embedding_dim or embedding_dim <= 0:
        raise ValueError(f"embedding_dim must be a positive integer; got {embedding_dim!r}.")
    if isinstance(backbone, keras.Model):
        features_model = backbone
    else:
        features_model = BACKBONES.get(backbone)(
            None if input_shape is None else tuple(input_shape),
            weights=weights,
            freeze_batchnorm=freeze_batchnorm,
            backbone_config=backbone_config,
            filters=filters,
            blocks=blocks,
            synchronized_batchnorm=synchronized_batchnorm,
        )
    inputs = keras.Input(shape=tuple(features_model.input_shape[1:]), name="images")
    features = features_model(inputs)
    pooled = global_pool(features, pooling, gem_p=gem_p)
    embeddings = embedding_head(pooled, head, embedding_dim=embedding_dim, head_hidden=head_hidden)
    if normalize:
        embeddings = keras.layers.UnitNormalization(axis=-1, name="l2_normalize")(embeddings)
    # Float32 outputs even under mixed precision: distances and losses need the precision.
    embeddings = keras.layers.Activation("linear", dtype="float32", name="embeddings")(embeddings)
    return keras.Model(inputs, embeddings, name=name)


def inference_function(model):
    """``model(images, training=False)`` as one ``tf.function`` traced once for every batch size: its input
    signature leaves the batch dimension unknown (images are cast to the model's input dtype), so a split's
    last, smaller batch does not trace it again. A model without a declared input is traced with
    ``reduce_retracing``. A plain call, not ``predict``, which under ``MultiWorkerMirroredStrategy`` returns
    every worker's batch.

    >>> infer = inference_function(model)
    >>> embed(infer, images_dataset)  # embeddings of every batch, concatenated
    """

    def infer(images):
        return model(images, training=False)

    try:
        spec = tf.TensorSpec((None, *model.input_shape[1:]), model.inputs[0].dtype)
    except (AttributeError, ValueError, TypeError):  # a subclassed model called before it declares an input
        return tf.function(infer, reduce_retracing=True)
    traced = tf.function(infer, input_signature=[spec])
    return lambda images: traced(tf.cast(images, spec.dtype))


def embed(function, batches):
    """``function``'s outputs (e.g. an :func:`inference_function`) over ``batches`` of images, concatenated
    into one NumPy array, in order."""
    return np.concatenate([keras.ops.convert_to_numpy(function(images)) for images in batches])
