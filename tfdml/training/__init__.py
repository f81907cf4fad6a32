"""Training: ``MetricLearningModel`` (what ``model.fit`` trains), recipes, their factory, callbacks and the run folder.

The run that puts them together is :class:`tfdml.experiment.Experiment` (an application module above
``export`` and ``index``, which ``training`` never imports).

``MetricLearningModel`` and ``gather_global_batch`` load TensorFlow on first access, so that importing
``tfdml.training.config`` stays light (validating a recipe's names loads the readers and models, and
with them TensorFlow).
"""

import importlib

__all__ = ["MetricLearningModel", "gather_global_batch"]


def __getattr__(name):
    if name in __all__:
        return getattr(importlib.import_module("tfdml.training.model"), name)
    raise AttributeError(f"module 'tfdml.training' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
