"""Experiment recipes: YAML files validated into a nested config.

A recipe (``pipelines/*.yaml``) is read as safe YAML and merged over :data:`DEFAULTS`;
every key must be known (a typo is an error that names the key path), and ``--set
a.b=value`` overrides any key (``value`` is parsed as YAML, so ``--set loss.beta=0.6``
gives a float and ``--set model.weights=null`` gives None). Recipes and overrides are
read with YAML 1.2 scalars: ``1e-3`` is a float and ``yes``/``on`` are strings (PyYAML's
YAML 1.1 reads ``1e-3`` as a string and ``on`` as true). Every value's type is checked
against the schema (:data:`DEFAULTS`; a float key accepts integers), so ``epochs=true``
is an error naming the key. YAML syntax errors, duplicate keys and unsafe tags are a
:class:`ConfigError` naming the file (or override), line and problem. :func:`validate` then checks
value ranges, the names of the dataset, backbone, pooling and metrics, and that ``run_dir`` can be
written, so such mistakes fail before TensorFlow builds anything or a run folder is created.
A recipe file may name another with ``extends: other.yaml`` (relative to itself); its keys
are merged over that one's (``--set extends=...`` is an error). Open-ended sections hold the
constructor arguments of a tfdml class: ``loss.params``, ``miner.params``, ``sampler.params``, ``tune.space``.

Example:

>>> config = load_config("pipelines/digits_margin.yaml", overrides=["epochs=3", "loss.params.beta=0.6"])
>>> config["loss"]["params"]["beta"]
0.6
"""

import collections.abc
import copy
import math
import os
import re

import yaml

from tfdml.io import unwritable_reason, write_file_atomically

# Sections whose keys are free-form (arguments of a class): not validated here but by the class.
OPEN_SECTIONS = ("loss.params", "miner.params", "sampler.params", "tune.space", "data.params", "optimizer.schedule",
                 "model.backbone_config", "evaluation.data.params")

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
        # Classes held out of the training split for model selection: category/class names or ids, a
        # count, or a fraction (tfdml.data.hold_out_validation); null: select nothing, keep the last epoch.
        "validation": None,
        # Each class rotated by 90/180/270 degrees becomes a new training class (tfdml.data.with_rotations).
        "rotations": False,
        # false: train on instance ids, each training image its own class (self-supervised, with ViewsSampler);
        # held-out classes are still evaluated by their labels. docs/self_supervised.md.
        "labels": True,
        "params": {},
    },
    "model": {
        # convnet, resnet50, a keras.applications name (EfficientNetV2B0) or hub:<KerasHub class or preset>;
        # backbone_config: the keras.applications/KerasHub constructor's arguments (tfdml/models/applications.py, hub.py).
        "backbone": "convnet",
        "backbone_config": {},
        "embedding_dim": 128,
        "pooling": "avg",
        # Embedding head (tfdml.models.heads): linear, mlp or bnneck; head_hidden: the mlp's hidden width
        # (null: the pooled features' width). gem_p: GeM pooling's initial exponent (Radenović et al. 2018).
        "head": "linear",
        "head_hidden": None,
        "gem_p": 3.0,
        "normalize": True,
        "weights": None,
        "freeze_batchnorm": False,
        "filters": 64,
        "blocks": 4,
        "mixed_precision": False,
    },
    "loss": {"class": "MarginLoss", "params": {}},
    # A cross-batch memory of the last `size` training embeddings around the loss (0: none), used and filled from
    # epoch `start_epoch` on (tfdml.losses.CrossBatchMemory, docs/memory.md).
    "memory": {"size": 0, "start_epoch": 0},
    "miner": {"class": None, "params": {}},
    "sampler": {"class": "SPCSampler", "batch_size": 60, "samples_per_class": 5, "params": {}},
    # Fine-tuning keys (schedule in epochs, backbone rate, clipping): tfdml/training/optimizers.py.
    "optimizer": {
        "name": "adam",
        "learning_rate": 1e-3,
        "weight_decay": 0.0,
        "schedule": {},
        "backbone_lr_multiplier": 1.0,
        "backbone_frozen_epochs": 0,
        "backbone_frozen_until": None,
        "clipnorm": None,
        "global_clipnorm": None,
    },
    "evaluation": {
        "every_n_epochs": 5,
        "recall_k": [1, 2, 4, 8],
        "metrics": ["recall_at_k", "map_at_r", "nmi"],
        # With data.validation: the validation score (a key the evaluation callback logs) whose best
        # epoch is exported.
        "select_by": "val_recall_at_1",
        # train.py's pictures of the test split in the run folder: retrieval.png and embedding_map.png.
        "figures": True,
        # A labelled dataset to evaluate on instead of data's test split (needed after an unlabelled_folder):
        # read as data is (name, root, split, params), at data.image_size with data's eval preprocessing.
        "data": {"name": None, "root": None, "split": "test", "params": {}},
    },
    "distribute": {"strategy": "none"},
    "export": {"dir": "models", "version": None, "gallery": None, "gallery_k": 10, "max_image_pixels": 4096 * 4096},
    "tune": {
        "algorithm": "random",
        "max_trials": 10,
        "objective": "val_recall_at_1",
        "epochs": None,
        "space": {},
    },
}


# Keys whose default is not null but that accept null (the default's type otherwise).
NULLABLE = ("sampler.samples_per_class", "optimizer.weight_decay")
# Types of the keys whose default is null.
NULL_DEFAULT_TYPES = {
    "extends": str,
    "steps_per_epoch": int,
    "data.root": str,
    "data.augmentation": str,
    "model.weights": str,
    "model.head_hidden": int,
    "miner.class": str,
    "export.version": int,
    "export.gallery": str,
    "evaluation.data.name": str,
    "evaluation.data.root": str,
    "tune.epochs": int,
    "optimizer.clipnorm": float,
    "optimizer.global_clipnorm": float,
    "optimizer.backbone_frozen_until": str,
}
TYPE_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list"}
# Run names become folder names under run_dir and export.dir: one path component, no hidden or parent
# folder, short enough for any file system with the export's suffixes.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
# Keys that must hold an integer >= 1.
POSITIVE_INTS = (
    "epochs", "data.image_size", "model.embedding_dim", "model.filters", "model.blocks", "sampler.batch_size",
    "evaluation.every_n_epochs",
)
SEED_MAX = 2**32 - 1  # keras.utils.set_random_seed's largest seed
# Datasets whose readers give no categories: within-category few-shot episodes cannot be drawn from them.
UNCATEGORISED_DATASETS = ("digits", "cub200", "caltech_birds2011", "cars196")


class ConfigError(ValueError):
    """A recipe or override names an unknown key or has a value of the wrong kind."""


class Yaml12Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with YAML 1.2 core-schema scalars.

    PyYAML implements YAML 1.1: ``1e-3`` (no dot) is a string, ``yes``/``no``/``on``/``off``
    are booleans, ``010`` is octal and ``1:30`` is sexagesimal. YAML 1.2 reads ``1e-3`` as a
    float, only ``true``/``false`` as booleans and ``010`` as ten. A key repeated in a mapping is an
    error (YAML requires unique keys; PyYAML would keep the last value silently).
    """

    def construct_mapping(self, node, deep=False):
        # Keys a merge (``<<``) brings in are the mapping's defaults, not duplicates: compare the explicit ones.
        first_lines = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node)
            if not isinstance(key, collections.abc.Hashable):
                continue  # the base class reports it
            if key in first_lines:
                raise yaml.MarkedYAMLError(
                    problem=f"duplicate key {key!r} (first on line {first_lines[key]})", problem_mark=key_node.start_mark
                )
            first_lines[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


_INT, _FLOAT, _BOOL = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool"
Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_INT, _FLOAT, _BOOL)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Yaml12Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
Yaml12Loader.add_implicit_resolver(
    _INT, re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789")
)
Yaml12Loader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def _construct_int(loader, node):
    text = loader.construct_scalar(node)
    if text.startswith(("0o", "0x")):
        return int(text[2:], 8 if text[1] == "o" else 16)
    return int(text, 10)


Yaml12Loader.add_constructor(_INT, _construct_int)



class QuotingDumper(yaml.SafeDumper):
    """Quotes every string that YAML 1.1 or 1.2 would read as another type (``"1e-3"``, ``"yes"``),
    so a written config reads back equal with either."""


QuotingDumper.yaml_implicit_resolvers = {
    first: yaml.SafeDumper.yaml_implicit_resolvers.get(first, []) + Yaml12Loader.yaml_implicit_resolvers.get(first, [])
    for first in set(yaml.SafeDumper.yaml_implicit_resolvers) | set(Yaml12Loader.yaml_implicit_resolvers)
}


def parse_yaml(text, source):
    """``text`` (a str or file) read as YAML 1.2 safe YAML; errors become one :class:`ConfigError`
    line naming ``source``, the line and column, and the problem."""
    try:
        return yaml.load(text, Loader=Yaml12Loader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{source}, line {mark.line + 1}, column {mark.column + 1}" if mark else source
        problem = error.problem or error.context or "invalid YAML"
        if isinstance(error, yaml.constructor.ConstructorError):
            problem += " (only plain YAML is read: tags such as !!python/... are not allowed)"
        raise ConfigError(f"{where}: {problem}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{source}: invalid YAML: {error}") from None


def _expected_types(key_path, default):
    """``(types, nullable)`` that ``key_path`` accepts, from its default value."""
    if default is None:
        return NULL_DEFAULT_TYPES[key_path], True
    kind = type(default)
    return kind, key_path in NULLABLE


def check_types(config, defaults=DEFAULTS, path=""):
    """Every value has its key's type: bool, int, float (integers accepted), str or list; null
    where the default is null or the key is in :data:`NULLABLE`; open sections are not checked."""
    for key, value in config.items():
        key_path = f"{path}{key}"
        default = defaults[key]
        if isinstance(default, dict):
            if key_path not in OPEN_SECTIONS:
                check_types(value, default, key_path + ".")
            continue
        if key_path in ("jit_compile", "data.validation"):
            continue  # several types: checked by value in validate()
        kind, nullable = _expected_types(key_path, default)
        if value is None and nullable:
            continue
        ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            expected = TYPE_NAMES[kind] + (" or null" if nullable else "")
            raise ConfigError(f"{key_path} must be {expected}; got {value!r} ({type(value).__name__}).")


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
    return keys, parse_yaml(raw, f"override {text!r}")


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


def _value(config, key_path):
    for key in key_path.split("."):
        config = config[key]
    return config


def _check_choice(key_path, value, choices):
    if value not in choices:
        raise ConfigError(f"{key_path} must be one of {', '.join(map(str, choices))}; got {value!r}.")


def validate(config):
    """Check types, value ranges and names the trainer relies on, and that ``run_dir`` can be
    written; errors name the key and the value."""
    check_types(config)
    if config["extends"] is not None:
        raise ConfigError(
            f"extends={config['extends']!r} can only be set in a recipe file (it is resolved when the file is "
            "read, relative to it), not overridden: pass that recipe as the recipe file instead."
        )
    name = config["name"]
    if not NAME_PATTERN.fullmatch(name):
        raise ConfigError(
            f"name={name!r} must be one folder name (letters, digits, '.', '_', '-'; starting with a letter "
            "or digit; at most 100 characters): it names runs/<name>/ and models/<name>/."
        )
    for key_path in POSITIVE_INTS:
        if _value(config, key_path) <= 0:
            raise ConfigError(f"{key_path} must be a positive integer; got {_value(config, key_path)!r}.")
    if not 0 <= config["seed"] <= SEED_MAX:
        raise ConfigError(f"seed must be an integer in 0..{SEED_MAX} (2**32 - 1); got {config['seed']!r}.")
    sampler = config["sampler"]
    batch, spc = sampler["batch_size"], sampler["samples_per_class"]
    if spc is not None and (spc <= 0 or batch % spc):
        raise ConfigError(
            f"sampler.batch_size={batch} must be divisible by sampler.samples_per_class={spc} (a positive integer)."
        )
    optimizer = config["optimizer"]
    if not (math.isfinite(optimizer["learning_rate"]) and optimizer["learning_rate"] > 0):
        raise ConfigError(f"optimizer.learning_rate must be a finite number > 0; got {optimizer['learning_rate']!r}.")
    decay = optimizer["weight_decay"]
    if decay is not None and not (math.isfinite(decay) and decay >= 0):
        raise ConfigError(f"optimizer.weight_decay must be null or a finite number >= 0; got {decay!r}.")
    recall_k = config["evaluation"]["recall_k"]
    if not all(isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in recall_k):
        raise ConfigError(f"evaluation.recall_k must be a list of positive integers; got {recall_k!r}.")
    _check_choice("data.channels", config["data"]["channels"], (1, 3))
    if config["jit_compile"] not in ("auto", True, False):
        raise ConfigError(f"jit_compile must be auto, true or false; got {config['jit_compile']!r}.")
    holdout = config["data"]["validation"]
    if not (
        holdout is None
        or (isinstance(holdout, list) and holdout)
        or (isinstance(holdout, int) and not isinstance(holdout, bool) and holdout > 0)
        or (isinstance(holdout, float) and 0.0 < holdout < 1.0)
    ):
        raise ConfigError(
            "data.validation must be null, a non-empty list of category/class names or ids, a positive count "
            f"or a fraction in (0, 1); got {holdout!r}."
        )
    model = config["model"]
    if model["head_hidden"] is not None and model["head_hidden"] <= 0:
        raise ConfigError(f"model.head_hidden must be a positive integer or null; got {model['head_hidden']!r}.")
    if model["head_hidden"] is not None and model["head"] != "mlp":
        raise ConfigError(
            f"model.head_hidden={model['head_hidden']!r} is the width of the mlp head's hidden layer; "
            f"model.head={model['head']!r} has none (set model.head=mlp, or head_hidden=null)."
        )
    if not (math.isfinite(model["gem_p"]) and model["gem_p"] > 0):
        raise ConfigError(
            f"model.gem_p (GeM pooling's initial exponent) must be a finite number > 0; got {model['gem_p']!r}."
        )
    for key, value in config["memory"].items():
        if value < 0:
            raise ConfigError(f"memory.{key} must be an integer >= 0; got {value!r}.")
    if config["steps_per_epoch"] is not None and config["steps_per_epoch"] <= 0:
        raise ConfigError(f"steps_per_epoch must be a positive integer or null; got {config['steps_per_epoch']!r}.")
    _check_choice("distribute.strategy", config["distribute"]["strategy"], ("none", "mirrored", "multi_worker"))
    _check_names(config)
    _check_run_dir(config)
    return config


def _check_names(config):
    """Names looked up in tfdml's registries: dataset, backbone, optimizer, pooling, metrics.

    Imported here rather than at the top because those modules load TensorFlow, and a recipe's
    syntax, types and ranges are checked without it (this module is imported before TensorFlow)."""
    from tfdml.data import READERS, UNLABELLED_READERS
    from tfdml.evaluation.fewshot import PROTOCOLS
    from tfdml.evaluation.report import FEWSHOT_METRICS, METRICS, PRECISION_METRICS
    from tfdml.models import BACKBONES, HEADS, POOLINGS
    from tfdml.training.optimizers import OPTIMIZERS, check_optimizer

    data_name = config["data"]["name"]
    _check_choice("data.name", data_name, READERS.names)
    _check_self_supervision(config, [name for name in READERS.names if name not in UNLABELLED_READERS])
    try:
        BACKBONES.get(config["model"]["backbone"])
    except ValueError as error:
        raise ConfigError(f"model.backbone: {error}") from None
    _check_choice("optimizer.name", config["optimizer"]["name"].lower(), OPTIMIZERS.names)
    try:
        check_optimizer(config["optimizer"], config["epochs"])
    except ValueError as error:
        raise ConfigError(str(error)) from None
    _check_choice("model.pooling", config["model"]["pooling"], POOLINGS)
    _check_choice("model.head", config["model"]["head"], HEADS)
    metrics = config["evaluation"]["metrics"]
    known = METRICS + PRECISION_METRICS + FEWSHOT_METRICS
    if not all(isinstance(metric, str) and metric in known for metric in metrics):
        raise ConfigError(f"evaluation.metrics must name metrics among {', '.join(known)}; got {metrics!r}.")
    within = [metric for metric in metrics if metric in PROTOCOLS and PROTOCOLS[metric]["within_category"]]
    if within and data_name in UNCATEGORISED_DATASETS:
        raise ConfigError(
            f"evaluation.metrics={metrics!r}: {', '.join(within)} draws each episode from one category, but "
            f"data.name={data_name!r} has no categories."
        )


def _check_self_supervision(config, labelled_readers):
    """``evaluation.data`` names a labelled dataset, an unlabelled one holds no validation classes, and
    ``ViewsSampler``'s repeated images are made into different views by a random augmentation."""
    data_config, evaluation_data = config["data"], config["evaluation"]["data"]
    unlabelled = data_config["name"] not in labelled_readers
    if evaluation_data["name"] is not None:
        _check_choice("evaluation.data.name", evaluation_data["name"], labelled_readers)
        _check_choice("evaluation.data.split", evaluation_data["split"], ("train", "test", "all"))
    if unlabelled and data_config["validation"] is not None:
        raise ConfigError(
            f"data.validation={data_config['validation']!r}: data.name={data_config['name']!r} is unlabelled and has "
            "no classes to hold out; select nothing (null) and evaluate on a labelled evaluation.data."
        )
    if unlabelled and evaluation_data["name"] is None and config["export"]["gallery"] == "test":
        raise ConfigError(
            f"export.gallery='test': data.name={data_config['name']!r} is unlabelled and has no test split; name a "
            "labelled evaluation.data, or a gallery folder."
        )
    if config["sampler"]["class"] == "ViewsSampler" and data_config["augmentation"] in (None, "eval"):
        raise ConfigError(
            f"sampler.class=ViewsSampler repeats each image as its views, which only a random data.augmentation "
            f"(e.g. affine, base, adv) makes different; got data.augmentation={data_config['augmentation']!r}."
        )


def _check_run_dir(config):
    """``<run_dir>/<name>`` is a folder this process can write, or can create (nothing is written)."""
    target = os.path.join(config["run_dir"], config["name"])
    problem = unwritable_reason(target)
    if problem:
        raise ConfigError(
            f"run_dir={config['run_dir']!r}: {problem}; the run is written to {target}/ (choose another run_dir)."
        )


def read_recipe(recipe, seen=()):
    """The recipe's mapping, merged over the recipe it ``extends`` (a path relative to it)."""
    if recipe in seen:
        raise ConfigError(f"Recipe {recipe} extends itself (through {' -> '.join(seen)}).")
    try:
        with open(recipe) as f:
            loaded = parse_yaml(f, recipe) or {}
    except FileNotFoundError:
        raise ConfigError(f"Recipe file not found: {recipe}") from None
    except IsADirectoryError:
        raise ConfigError(f"Recipe {recipe} is a folder; name a YAML file in it (e.g. {recipe}/<name>.yaml).") from None
    except OSError as error:
        raise ConfigError(f"Recipe file {recipe} cannot be read: {error.strerror}.") from None
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


def config_yaml(config):
    """``config`` as YAML text (keys in schema order) that :func:`parse_yaml` reads back equal."""
    return yaml.dump(config, Dumper=QuotingDumper, sort_keys=False)


def read_config(path):
    """A config written by :func:`dump_config` (``runs/<name>/config.yaml``, ``best.yaml``)."""
    with open(path) as f:
        return parse_yaml(f, path)


def dump_config(config, path):
    """Write ``config`` to ``path`` atomically (a reader sees the old file or the new one)."""
    write_file_atomically(path, config_yaml(config))
