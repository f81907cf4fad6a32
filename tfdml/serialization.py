"""Configs read from constructor signatures: the one ``get_config``/``from_config`` of tfdml's classes.

Losses, miners, samplers, the memory bank and augmentations store each constructor argument
under its own attribute name (``self.margin = float(margin)``, ``self.miner``, the resolved
default ``self.batches_per_epoch``), so their config is their signature read back from the
instance: :func:`constructor_config`. A class never writes its config by hand, so it cannot
forget an argument (and reload silently with its default): an argument that is not stored under
its own name is a ``TypeError`` naming the class and the argument when the config is built.

Values are made JSON-ready: a nested tfdml object (a loss's ``miner``, a sampler's ``bank``) becomes
its Keras serialisation, NumPy arrays and scalars become lists and Python numbers, tuples become
lists. :func:`from_constructor_config` rebuilds an object from such a config, nested objects included.

Example:

>>> class Scaled:
...     def __init__(self, factor=2.0):
...         self.factor = float(factor)
>>> constructor_config(Scaled(3))
{'factor': 3.0}
"""

import inspect

import keras
import numpy as np


def constructor_arguments(cls):
    """Names of ``cls``'s constructor arguments, following ``**kwargs`` to the base constructors they reach.

    ``self`` and ``*args`` are not arguments; a constructor that forwards ``**kwargs`` adds the
    arguments of the next constructor up the method resolution order.
    """
    names = []
    for owner in cls.__mro__:
        if "__init__" not in vars(owner) or owner is object:
            continue
        parameters = list(inspect.signature(owner.__init__).parameters.values())[1:]
        names += [p.name for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name not in names]
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            break
    return names


def to_config_value(value):
    """``value`` as a config holds it: nested objects serialised by Keras, NumPy and tuples as plain Python."""
    if isinstance(value, dict):
        return {key: to_config_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_config_value(item) for item in value]
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    if hasattr(value, "get_config"):
        return keras.saving.serialize_keras_object(value)
    return value


def from_config_value(value):
    """The inverse of :func:`to_config_value` for nested objects: a Keras serialisation is deserialised."""
    if isinstance(value, dict) and {"class_name", "config"} <= value.keys():
        return keras.saving.deserialize_keras_object(value)
    return value


def constructor_config(instance, exclude=()):
    """``{argument: config value}`` for each constructor argument of ``instance``'s class but ``exclude``,
    read from the attribute of the same name.

    Raises:
        TypeError: an argument is not stored under its own name (the config would reload with its default).
    """
    owner = type(instance).__name__
    config = {}
    for name in constructor_arguments(type(instance)):
        if name in exclude:
            continue
        if not hasattr(instance, name):
            raise TypeError(
                f"{owner}.get_config: constructor argument {name!r} is not stored as self.{name}, so its config "
                f"would reload {owner} with the default {name}. Store each argument under its own name."
            )
        config[name] = to_config_value(getattr(instance, name))
    return config


def from_constructor_config(cls, config):
    """``cls`` built from a :func:`constructor_config`, nested Keras serialisations deserialised."""
    return cls(**{name: from_config_value(value) for name, value in config.items()})
