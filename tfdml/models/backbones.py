"""The backbones an embedding model can be built on, by name (``model.backbone`` in a recipe).

A backbone module registers a builder in :data:`BACKBONES` under its name::

    builder(input_shape=None, *, weights=None, freeze_batchnorm=False, filters=64, blocks=4,
            synchronized_batchnorm=False) -> keras.Model   # float images in [0, 255] -> feature map

``input_shape=None`` takes the backbone's own default; a builder ignores the options that belong
to other backbones and refuses those it cannot honour. Every module of :mod:`tfdml.models` is
imported with the package, so a new backbone is one module there.
"""

from tfdml.registry import Registry

BACKBONES = Registry("backbone")
