"""The study's experiments and protocols, read from ``pipelines/studies/omniglot_claims.yaml``.

An experiment maps row labels to *overrides* (``"key=value"`` strings of the base recipe, built
from the YAML's named components); a protocol (``ten_epoch``, ``converged``) adds its own
overrides, per-experiment ones, and where it is tuned the configuration's tuned values. A run is
keyed by its resolved config without seed, name, data location, run folder, export and tune
sections (:func:`config_key`), so identical configurations of several experiments train once.
"""

import dataclasses
import functools
import hashlib
import json
import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFINITIONS = os.path.join(REPO, "pipelines", "studies", "omniglot_claims.yaml")
METRICS = ("recall_at_1", "map_at_r", "nmi")
METRIC_NAMES = {
    "recall_at_1": "R@1", "map_at_r": "MAP@R", "nmi": "NMI", "rho_train": "ρ train", "rho_test": "ρ test",
    "rank_train": "rank train",
}


def as_overrides(settings):
    """``{"dotted.key": value}`` → ``["dotted.key=<value as JSON>"]`` (JSON is YAML the config reads back)."""
    return tuple(f"{key}={json.dumps(value, ensure_ascii=False)}" for key, value in settings.items())


@dataclasses.dataclass(frozen=True)
class Protocol:
    """How every configuration of the study is trained and where its runs are recorded."""

    name: str
    results: str  # the .jsonl of recorded runs
    overrides: tuple
    experiment_overrides: dict  # experiment → overrides applied after the protocol's own
    tuned: str = None  # the .jsonl of tuned values (tuned protocols only)
    tuning: dict = None
    seeds: tuple = (0, 1, 2)
    extra_seeds: tuple = ()  # for the rows of a decisive comparison still within 2 SE after ``seeds``
    budget_rule: str = ""
    flat_tolerance: float = 0.01
    curves: tuple = ()  # (experiment, label) of the configurations whose validation curves are shown

    def run_overrides(self, experiment, row, tuned=None):
        """The overrides of ``row`` of ``experiment`` under this protocol, tuned values last."""
        tuned_overrides = as_overrides(tuned) if tuned else ()
        return (*row, *self.overrides, *self.experiment_overrides.get(experiment, ()), *tuned_overrides)


def load_definitions(path=DEFINITIONS):
    """``(base_recipe, experiments, protocols)``: ``experiments[name] = {"title", "rows": {label: overrides}}``."""
    from tfdml.training.config import parse_yaml

    with open(path) as f:
        spec = parse_yaml(f, path)
    components = spec["components"]
    experiments = {
        name: {
            "title": experiment["title"],
            "rows": {
                label: sum((as_overrides(components[part]) for part in parts), ())
                for label, parts in experiment["rows"].items()
            },
        }
        for name, experiment in spec["experiments"].items()
    }
    protocols = {}
    for name, protocol in spec["protocols"].items():
        protocols[name] = Protocol(
            name=name,
            results=os.path.join(REPO, protocol["results"]),
            overrides=as_overrides(protocol["overrides"]),
            experiment_overrides={e: as_overrides(s) for e, s in protocol.get("experiments", {}).items()},
            tuned=os.path.join(REPO, protocol["tuned"]) if "tuned" in protocol else None,
            tuning=protocol.get("tuning"),
            seeds=tuple(protocol.get("seeds", (0, 1, 2))),
            extra_seeds=tuple(protocol.get("extra_seeds", ())),
            budget_rule=protocol.get("budget_rule", ""),
            flat_tolerance=protocol.get("flat_tolerance", 0.01),
            curves=tuple(tuple(pair) for pair in protocol.get("curves", ())),
        )
    return os.path.normpath(os.path.join(os.path.dirname(path), spec["base_recipe"])), experiments, protocols


BASE_RECIPE, EXPERIMENTS, PROTOCOLS = load_definitions()


def resolved_config(overrides, seed, data_root):
    from tfdml.training.config import load_config

    return load_config(BASE_RECIPE, [*overrides, f"seed={seed}", f"data.root={os.path.abspath(data_root)}"])


# Recipe keys added to the schema after the first runs were recorded: left out of the key
# while they hold their default, so a schema addition does not re-key the runs recorded before it.
# A key added to tfdml.training.config.DEFAULTS later belongs here too.
KEYED_WHEN_CHANGED = {
    ("jit_compile",): "auto",
    ("data", "validation"): None,
    ("data", "rotations"): False,
    ("data", "labels"): True,
    ("evaluation", "data"): {"name": None, "root": None, "split": "test", "params": {}},
    ("evaluation", "select_by"): "val_recall_at_1",
    ("evaluation", "figures"): True,
    ("model", "backbone_config"): {},
    ("model", "head"): "linear",
    ("model", "head_hidden"): None,
    ("model", "gem_p"): 3.0,
    ("optimizer", "schedule"): {},
    ("optimizer", "backbone_lr_multiplier"): 1.0,
    ("optimizer", "backbone_frozen_epochs"): 0,
    ("optimizer", "backbone_frozen_until"): None,
    ("optimizer", "clipnorm"): None,
    ("optimizer", "global_clipnorm"): None,
    ("memory",): {"size": 0, "start_epoch": 0},
}


@functools.cache  # a report keys every row of every experiment several times; each key loads the recipe
def config_key(overrides, data_root):
    """Identity of a configuration: its resolved recipe without seed, name, data location, run dir,
    export and tune sections, and without the :data:`KEYED_WHEN_CHANGED` keys at their default.
    ``overrides``: a tuple (it is the cache key)."""
    config = resolved_config(overrides, 0, data_root)
    for key in ("seed", "name", "run_dir", "export", "tune"):
        config.pop(key)
    config["data"].pop("root")
    for (*sections, key), default in KEYED_WHEN_CHANGED.items():
        section = config
        for name in sections:
            section = section[name]
        if section[key] == default:
            section.pop(key)
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def row_runs(experiment, protocol, data_root, tuned=None):
    """``{label: (key, overrides)}`` of ``experiment``'s rows under ``protocol``.

    ``tuned``: ``{untuned key: values}`` of a tuned protocol; rows are then run with their tuned
    values and a row not tuned yet is left out (a tuned protocol never trains an untuned row).
    Without ``tuned`` every row comes untuned (the tuning stage's view).
    """
    runs = {}
    for label, row in EXPERIMENTS[experiment]["rows"].items():
        overrides = protocol.run_overrides(experiment, row)
        if tuned is not None and protocol.tuning is not None:
            values = tuned.get(config_key(overrides, data_root))
            if values is None:
                continue
            overrides = protocol.run_overrides(experiment, row, values)
        runs[label] = (config_key(overrides, data_root), overrides)
    return runs


def configurations(experiments, protocol, data_root, tuned=None):
    """``{key: (experiment, label, overrides)}`` of the unique configurations of ``experiments``
    (the first experiment naming one gives its label)."""
    found = {}
    for experiment in experiments:
        for label, (key, overrides) in row_runs(experiment, protocol, data_root, tuned).items():
            found.setdefault(key, (experiment, label, overrides))
    return found


def planned_runs(experiments, seeds, data_root, protocol=None, tuned=None):
    """Unique ``(key, overrides, seed)`` runs, seed-major so every configuration gets its first seed first."""
    found = configurations(experiments, protocol or PROTOCOLS["ten_epoch"], data_root, tuned)
    return [(key, overrides, seed) for seed in seeds for key, (_, _, overrides) in found.items()]
