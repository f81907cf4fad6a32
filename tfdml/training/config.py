"""Experiment recipes: YAML files validated into a nested config.

A recipe (``pipelines/*.yaml``) is read with ``yaml.safe_load`` and merged over
:data:`DEFAULTS`; every key must be known (a typo is an error that names the key
path), and ``--set a.b=value`` overrides any key (``value`` is parsed as YAML, so
``--set loss.beta=0.6`` gives a float and ``--set model.weights=null`` gives None).
A recipe may name another with ``extends: other.yaml`` (relative to itself); its keys
are merged over that one's. Open-ended sections hold the constructor arguments of a tfdml class:
``loss.params``, ``miner.params``, ``sampler.params``, ``tune.space``.

Example:

>>> config = load_config("pipelines/digits_margin.yaml", overrides=["epochs=3", "loss.params.beta=0.6"])
>>> config["loss"]["params"]["beta"]
0.6
"""

import copy
import os

import yaml

# Sections whose keys are free-form (arguments of a class): not validated here but by the class.
OPEN_SECTIONS = ("loss.params", "miner.params", "sampler.params", "tune.space", "data.params")

DEFAULTS = {
    "extends": None,
    "name": "digits_margin",
    "seed": 0,
    "epochs": 20,
    "steps_per_epoch": None,
    "run_dir": "runs",
    # XLA for the training step: auto (Keras: on with one GPU, off on CPU or under tf.distribute), true, false.
    "jit_compile": "auto",
    "data": {
        "name": "digits",
        "root": None,
        "image_size": 32,
        "channels": 1,
        "train_split": "train",
        "test_split": "test",
        "augmentation": None,
        "params": {},
    },
    "model": {
        "backbone": "convnet",
        "embedding_dim": 128,
        "pooling": "avg",
        "normalize": True,
        "weights": None,
        "freeze_batchnorm": False,
        "filters": 64,
        "blocks": 4,
        "mixed_precision": False,
    },
    "loss": {"class": "MarginLoss", "params": {}},
    "miner": {"class": None, "params": {}},
    "sampler": {"class": "SPCSampler", "batch_size": 60, "samples_per_class": 5, "params": {}},
    "optimizer": {"name": "adam", "learning_rate": 1e-3, "weight_decay": 0.0},
    "evaluation": {
        "every_n_epochs": 5,
        "recall_k": [1, 2, 4, 8],
        "metrics": ["recall_at_k", "map_at_r", "nmi"],
    },
    "distribute": {"strategy": "none"},
    "export": {"dir": "models", "version": None, "gallery": None, "gallery_k": 10},
    "tune": {
        "algorithm": "random",
        "max_trials": 10,
        "objective": "val_recall_at_1",
        "epochs": None,
        "space": {},
    },
}


class ConfigError(ValueError):
    """A recipe or override names an unknown key or has a value of the wrong kind."""


def _check_known(config, defaults, path=""):
    for key, value in config.items():
        key_path = f"{path}{key}"
        if key not in defaults:
            known = ", ".join(sorted(defaults))
            raise ConfigError(f"Unknown config key {key_path!r}; known keys here: {known}.")
        if isinstance(defaults[key], dict) and key_path not in OPEN_SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"Config key {key_path!r} must be a mapping; got {value!r}.")
            _check_known(value, defaults[key], key_path + ".")


def _merge(base, update, path=""):
    """``update`` over ``base``; open sections (class arguments) are replaced, not merged, since the
    arguments of one class mean nothing to another."""
    merged = copy.deepcopy(base)
    for key, value in update.items():
        key_path = f"{path}{key}"
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key_path not in OPEN_SECTIONS:
            merged[key] = _merge(merged[key], value, key_path + ".")
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def parse_override(text):
    """``"a.b=value"`` → ``(["a", "b"], parsed value)``."""
    if "=" not in text:
        raise ConfigError(f"Override {text!r} must look like key.path=value.")
    path, raw = text.split("=", 1)
    keys = path.strip().split(".")
    if not all(keys):
        raise ConfigError(f"Override {text!r} has an empty key.")
    return keys, yaml.safe_load(raw)


def apply_override(config, keys, value):
    """Set the key at ``keys`` to ``value``: a mapping value replaces the whole section
    (``--set loss.params={margin: 0.1}``), ``--set loss.params.margin=0.1`` changes one key."""
    nested = value
    for key in reversed(keys):
        nested = {key: nested}
    _check_known(nested, DEFAULTS)
    config = copy.deepcopy(config)
    node = config
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = copy.deepcopy(value)
    return config


def validate(config):
    """Check value ranges the trainer relies on; errors name the key."""
    dim = config["model"]["embedding_dim"]
    if not isinstance(dim, int) or dim <= 0:
        raise ConfigError(f"model.embedding_dim must be a positive integer; got {dim!r}.")
    sampler = config["sampler"]
    batch, spc = sampler["batch_size"], sampler["samples_per_class"]
    if not isinstance(batch, int) or batch <= 0:
        raise ConfigError(f"sampler.batch_size must be a positive integer; got {batch!r}.")
    if spc is not None and (not isinstance(spc, int) or spc <= 0 or batch % spc):
        raise ConfigError(
            f"sampler.batch_size={batch} must be divisible by sampler.samples_per_class={spc} (a positive integer)."
        )
    for key in ("epochs",):
        if not isinstance(config[key], int) or config[key] <= 0:
            raise ConfigError(f"{key} must be a positive integer; got {config[key]!r}.")
    if config["steps_per_epoch"] is not None and (
        not isinstance(config["steps_per_epoch"], int) or config["steps_per_epoch"] <= 0
    ):
        raise ConfigError(f"steps_per_epoch must be a positive integer or null; got {config['steps_per_epoch']!r}.")
    if config["distribute"]["strategy"] not in ("none", "mirrored", "multi_worker"):
        raise ConfigError(
            f"distribute.strategy must be 'none', 'mirrored' or 'multi_worker'; got {config['distribute']['strategy']!r}."
        )
    return config


def read_recipe(recipe, seen=()):
    """The recipe's mapping, merged over the recipe it ``extends`` (a path relative to it)."""
    if recipe in seen:
        raise ConfigError(f"Recipe {recipe} extends itself (through {' -> '.join(seen)}).")
    try:
        with open(recipe) as f:
            loaded = yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise ConfigError(f"Recipe file not found: {recipe}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"Recipe {recipe} must hold a mapping at the top level.")
    _check_known(loaded, DEFAULTS)
    parent = loaded.pop("extends", None)
    if parent is None:
        return loaded
    base = read_recipe(os.path.join(os.path.dirname(recipe), parent), (*seen, recipe))
    return _merge(base, loaded)


def load_config(recipe=None, overrides=()):
    """Defaults, then the recipe file (and the recipes it ``extends``), then each
    ``key.path=value`` override, validated."""
    config = copy.deepcopy(DEFAULTS)
    if recipe is not None:
        config = _merge(config, read_recipe(recipe))
    for text in overrides:
        config = apply_override(config, *parse_override(text))
    return validate(config)


def dump_config(config, path):
    with open(path, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
