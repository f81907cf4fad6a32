"""Training: ``MetricLearningModel`` (what ``model.fit`` trains), recipes, and the runner behind ``train.py``.

``MetricLearningModel`` and ``gather_global_batch`` load TensorFlow on first access, so that
``tfdml.training.config`` checks a recipe (and ``train.py`` reports a bad one) in well under a second.
"""

import importlib

__all__ = ["MetricLearningModel", "gather_global_batch"]


def __getattr__(name):
    if name in __all__:
        return getattr(importlib.import_module("tfdml.training.model"), name)
    raise AttributeError(f"module 'tfdml.training' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
