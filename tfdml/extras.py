"""Optional dependencies: which pip extra of tfdml provides each, imported only where used.

The core install (``pip install tfdml``) holds what the losses, miners, samplers, models,
evaluation and export need. Readers, plots and tools that need more import it through
:func:`require`, so a missing package is one error naming the extra that installs it:

| module                | pip package              | extra             |
|-----------------------|--------------------------|-------------------|
| ``tensorflow_datasets`` | ``tensorflow-datasets``  | ``tfdml[train]``  |
| ``matplotlib``        | ``matplotlib``           | ``tfdml[train]``  |
| ``tensorboard``       | ``tensorboard``          | ``tfdml[train]``  |
| ``keras_tuner``       | ``keras-tuner``          | ``tfdml[tune]``   |
| ``tensorflow_serving``| ``tensorflow-serving-api`` | ``tfdml[serving]`` |
| ``faiss``             | ``faiss-cpu``            | ``tfdml[faiss]``  |
| ``keras_hub``, ``kagglehub`` | ``keras-hub``      | ``tfdml[hub]``    |

``tfdml[all]`` installs every extra. Example:

>>> tfds = require("tensorflow_datasets", "reading CUB-200-2011")
"""

import importlib

#: Top-level module -> (pip package, extra).
OPTIONAL = {
    "tensorflow_datasets": ("tensorflow-datasets", "train"),
    "matplotlib": ("matplotlib", "train"),
    "tensorboard": ("tensorboard", "train"),
    "keras_tuner": ("keras-tuner", "tune"),
    "tensorflow_serving": ("tensorflow-serving-api", "serving"),
    "faiss": ("faiss-cpu", "faiss"),
    "keras_hub": ("keras-hub", "hub"),
    "kagglehub": ("keras-hub", "hub"),
}


class MissingExtraError(ModuleNotFoundError):
    """An optional package is not installed; the message names the extra that installs it."""


def require(module, purpose):
    """Imports and returns ``module`` (e.g. ``"matplotlib.figure"``), an optional dependency.

    Args:
        module: a module whose top-level package is a key of ``OPTIONAL``.
        purpose: what needs it, for the error message (e.g. ``"writing evaluation plots"``).

    Raises:
        MissingExtraError: the package is not installed; the message names the pip package and
            the extra, e.g. ``pip install 'tfdml[train]'``.
    """
    top = module.split(".")[0]
    if top not in OPTIONAL:
        raise ValueError(f"require: {top!r} is not an optional dependency of tfdml; expected one of {sorted(OPTIONAL)}")
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name is None or error.name.split(".")[0] != top:
            raise
        package, extra = OPTIONAL[top]
        raise MissingExtraError(
            f"{purpose} needs {package}, which is not installed: pip install 'tfdml[{extra}]' "
            f"(or pip install {package})",
            name=error.name,
        ) from None
