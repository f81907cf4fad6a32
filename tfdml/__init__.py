"""tfdml: deep metric learning for TensorFlow/Keras.

Layers, lowest first (docs/developing.md): ``distances``/``masks``/``checks``/``io``/``neighbors``
and the input pipelines ``data``/``sampling`` → ``mining`` → ``losses`` → ``models`` →
``training``/``evaluation`` → ``export``/``index`` → ``experiment``/``run``/``tune``/``evaluate``.
Subpackages are imported on first attribute access (``tfdml.losses``).
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "checks",
    "data",
    "distances",
    "evaluation",
    "experiment",
    "export",
    "index",
    "neighbors",
    "losses",
    "masks",
    "mining",
    "models",
    "sampling",
    "training",
    "tune",
)


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"tfdml.{name}")
    raise AttributeError(f"module 'tfdml' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SUBMODULES))
