"""Hyperparameter search over a recipe with keras-tuner: ``python train.py RECIPE --tune``.

The recipe's ``tune`` section declares the search (``python -m tfdml.tune RECIPE`` does the same)::

    tune:
      algorithm: random          # random | bayesian | hyperband
      max_trials: 10
      objective: val_recall_at_1 # any key the evaluation callback logs; maximised
      epochs: 5                  # per trial (default: the recipe's epochs, or an epochs entry of space)
      space:                     # config key path -> hyperparameter
        loss.params.margin: {type: float, min: 0.1, max: 0.4}
        loss.params.beta: {type: choice, values: [0.6, 1.2]}
        optimizer.learning_rate: {type: float, min: 1.0e-4, max: 1.0e-2, sampling: log}
        sampler.samples_per_class: {type: choice, values: [2, 4, 5]}
        model.embedding_dim: {type: choice, values: [64, 128]}
        loss.class: {type: choice, values: [MarginLoss, TripletLoss]}

A ``*.class`` choice other than the recipe's own starts that section's ``params``
empty, so the recipe's ``MarginLoss`` arguments are not passed to ``TripletLoss``.
``epochs`` may be searched too (``epochs: {type: choice, values: [5, 10]}``, with ``tune.epochs``
left null). Before anything is written, every value a space entry can give (its bounds or
choices) is checked against the recipe schema, so ``epochs: {type: choice, values: [a, b]}`` is an
error naming the entry; a ``tune.objective`` that the trials do not log stops the search at the
end of the first trial's first epoch, naming the keys they log.
Each trial is the recipe with the sampled values substituted, built and trained by
the same code as ``train.py``; the objective comes from the evaluation callback
(``val_recall_at_1``, ``val_map_at_r``, …). Results live in
``<run_dir>/<name>-tune/``, beside the resolved recipe of the search (``config.yaml``):
rerunning the same command resumes the search (finished trials are reloaded, not
retrained; a larger ``tune.max_trials`` adds trials). Rerunning with any other change
(recipe, ``tune.space``, algorithm, …) is refused with an error naming the folder, since
its trials were trained with other settings: choose another ``name`` or delete the folder.
A search none of whose trials finished training (it failed at start-up or in its first trial)
does not block its name: the corrected command takes the folder over and starts afresh.
A search is reproducible: its values are drawn from the recipe's ``seed`` (keras-tuner alone reads
seed 0 as "draw a random seed"), and each trial seeds its training from it as ``train.py`` does
(``keras.utils.set_random_seed``). Identical searches give the same trials, values and scores,
and a search interrupted (even by ``kill -9``) and rerun equals the uninterrupted one: finished
trials are reloaded and the interrupted trial resumes after its last finished epoch.
Each trial trains as ``train.py`` does (:meth:`tfdml.experiment.Experiment.fit`), in
``search/trial_*/run/``: it stops at once if training diverges, and its score is
``tune.objective`` at its best epoch (the first on ties), whose weights the trial keeps.
Each trial's full recipe is written to its trial folder (``search/trial_*/config.yaml``)
before it trains, and its training time after (``search/trial_*/seconds.txt``), so a resumed
search still knows what its earlier trials cost (:func:`trial_seconds`); the search ends with a
summary table (score, time and values per trial) and the best trial's recipe, exactly as that
trial was trained, copied to ``<run_dir>/<name>-tune/best.yaml``.
"""

import argparse
import copy
import os
import shutil
import time

import keras
import keras_tuner
import numpy as np

from tfdml.io import check_replaceable, write_file_atomically
from tfdml.training.config import ConfigError, check_types, dump_config, load_config, read_config, validate
from tfdml.experiment import Experiment
from tfdml.training.run_folder import RunFolder

ALGORITHMS = ("random", "bayesian", "hyperband")


def set_path(config, path, value):
    node = config
    keys = path.split(".")
    for key in keys[:-1]:
        if not isinstance(node.get(key), dict):
            raise ConfigError(f"tune.space key {path!r} does not name a config key.")
        node = node[key]
    if keys[-1] not in node and not path.split(".")[-2:-1] == ["params"]:
        raise ConfigError(f"tune.space key {path!r} does not name a config key.")
    node[keys[-1]] = value


def declare(hp, path, spec):
    """Declare one hyperparameter named ``path`` from its ``spec`` mapping; return its value in ``hp``."""
    kind = spec.get("type") if isinstance(spec, dict) else None
    if kind not in ("float", "int", "choice", "boolean"):
        raise ConfigError(f"tune.space[{path!r}].type must be float, int, choice or boolean; got {spec!r}.")
    try:
        if kind == "float":
            value = hp.Float(path, spec["min"], spec["max"], sampling=spec.get("sampling", "linear"))
        elif kind == "int":
            value = hp.Int(path, spec["min"], spec["max"], step=spec.get("step", 1))
        elif kind == "choice":
            value = hp.Choice(path, spec["values"])
        else:
            value = hp.Boolean(path)
    except KeyError as missing:
        raise ConfigError(f"tune.space[{path!r}] of type {kind} needs {missing}; got {spec!r}.") from None
    except (TypeError, ValueError) as error:
        raise ConfigError(f"tune.space[{path!r}]: {error}") from None
    # The Bayesian oracle proposes NumPy scalars; a recipe holds plain values (YAML cannot write NumPy's).
    return value.item() if isinstance(value, np.generic) else value


def space_values(path, spec):
    """The values of each type that ``spec`` can give ``path``: its bounds (as sampled) or its choices."""
    declare(keras_tuner.HyperParameters(), path, spec)
    kind = spec["type"]
    if kind == "float":
        return [float(spec["min"]), float(spec["max"])]
    if kind == "int":
        return [spec["min"], spec["max"]]
    return spec["values"] if kind == "choice" else [True, False]


def trial_config(config, hp):
    """The recipe with ``tune.epochs`` (if set) and this trial's values. A ``*.class`` choice that
    differs from the recipe's class starts that section's ``params`` empty (the recipe's params belong
    to its own class); ``*.params.*`` entries of the space then apply on top."""
    trial = copy.deepcopy(config)
    if config["tune"]["epochs"] is not None:
        trial["epochs"] = config["tune"]["epochs"]
    if "tuner/epochs" in hp.values:  # Hyperband's budget for this trial
        trial["epochs"] = hp.values["tuner/epochs"]
    space = config["tune"]["space"]
    for path in sorted(space, key=lambda p: not p.endswith(".class")):
        value = declare(hp, path, space[path])
        if path.endswith(".class"):
            section = trial[path.split(".")[0]]
            if value != section.get("class"):
                section["params"] = {}
        set_path(trial, path, value)
    return validate(trial)


class ObjectiveNotLogged(ConfigError, keras_tuner.errors.FatalError):
    """``tune.objective`` is no key the trials log. Fatal: keras-tuner would record a failed trial and go on."""


class CheckObjectiveLogged(keras.callbacks.Callback):
    """Stops the search at the first epoch whose logs lack ``objective``, rather than training every
    trial and ranking none (placed after the evaluation callback, which logs every epoch here)."""

    def __init__(self, objective):
        super().__init__()
        self.objective = objective

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.objective not in logs:
            raise ObjectiveNotLogged(
                f"tune.objective={self.objective!r} is not logged by the trials; they log: {', '.join(sorted(logs))}."
            )


class RecipeHyperModel(keras_tuner.HyperModel):
    """Builds and trains one trial of the recipe (data, sampler, model and loss are all per trial).

    A trial is an :class:`~tfdml.experiment.Experiment` of its recipe trained by the same
    :meth:`~tfdml.experiment.Experiment.fit` as ``train.py``, in the run folder ``run/`` of its trial
    folder: it stops on divergence, evaluates every epoch, and keeps the weights of its epoch with the best
    ``tune.objective`` (the first on ties), whose value is the trial's score. Hyperband's budget
    (``epochs``, ``initial_epoch``) is honoured.
    """

    def __init__(self, config, verbose):
        super().__init__(name=config["name"])
        self.config = config
        self.verbose = verbose
        self.experiment = None
        self.trial_dir = None  # set by the tuner before each trial (RecordsTrialConfigs.run_trial)

    def build(self, hp):
        # Each trial starts from the seed, as a train.py run does: its result does not depend on the trials before it.
        self.experiment = Experiment(trial_config(self.config, hp))
        return self.experiment.model

    def fit(self, hp, model, *args, callbacks=None, initial_epoch=0, **kwargs):
        experiment = self.experiment
        objective = self.config["tune"]["objective"]
        folder = RunFolder(os.path.join(self.trial_dir, "run"))
        with folder.hold():
            folder.prepare(experiment.config)
            fitted = experiment.fit(
                folder,
                select_by=objective,
                evaluate_every=1,
                callbacks=[CheckObjectiveLogged(objective), *(callbacks or [])],
                verbose=self.verbose,
                initial_epoch=initial_epoch,
            )
        selected = next(record for record in fitted.records if record["epoch"] == fitted.selected_epoch)
        return {objective: selected[objective]}


TRIAL_SECONDS = "seconds.txt"


class RecordsTrialConfigs:
    """Tuner mixin: writes each trial's full recipe to ``<trial dir>/config.yaml`` before training it
    and its training time in seconds to ``<trial dir>/seconds.txt`` after."""

    def run_trial(self, trial, *args, **kwargs):
        self.hypermodel.trial_dir = self.get_trial_dir(trial.trial_id)
        dump_config(trial_config(self.hypermodel.config, trial.hyperparameters), self.trial_config_path(trial.trial_id))
        started = time.perf_counter()
        result = super().run_trial(trial, *args, **kwargs)
        write_file_atomically(self.trial_seconds_path(trial.trial_id), f"{time.perf_counter() - started:.3f}\n")
        return result

    def trial_config_path(self, trial_id):
        return os.path.join(self.get_trial_dir(trial_id), "config.yaml")

    def trial_seconds_path(self, trial_id):
        return os.path.join(self.get_trial_dir(trial_id), TRIAL_SECONDS)


class SeededSearch:
    """Tuner mixin: the values a search draws depend only on the recipe's ``seed``, resumed or not.

    keras-tuner reads seed 0 as "draw a random seed" (``seed or random.randint(1, 10000)``), so a new
    search's oracle is given the seed itself (a resumed one reloads its random state). The Bayesian
    oracle's own random state is not saved with the search: it restarts from the seed and the trial
    number before each trial. Reloaded trials come in the filesystem's order; they are put back in
    the order they started, which the Bayesian fit and ties between scores depend on."""

    def __init__(self, *, seed, **kwargs):
        super().__init__(seed=seed, **kwargs)
        oracle = self.oracle
        oracle.trials = {trial_id: oracle.trials[trial_id] for trial_id in sorted(oracle.trials, key=int)}
        if not oracle.start_order:
            oracle.seed = oracle._seed_state = seed
            if isinstance(oracle, keras_tuner.oracles.BayesianOptimizationOracle):
                oracle.gpr = oracle._make_gpr()

    def pre_create_trial(self):
        super().pre_create_trial()
        if isinstance(self.oracle, keras_tuner.oracles.BayesianOptimizationOracle):
            self.oracle._random_state = np.random.RandomState([self.oracle.seed, len(self.oracle.trials)])


def trial_seconds(tuner):
    """``{trial_id: seconds}``: the training time of each trial of ``tuner``'s search that recorded one
    (every trial finished since the search began, also before an interruption)."""
    seconds = {}
    for trial_id in tuner.oracle.trials:
        path = tuner.trial_seconds_path(trial_id)
        if os.path.exists(path):
            with open(path) as f:
                seconds[trial_id] = float(f.read())
    return seconds


TUNERS = {
    name: type(f"Recipe{cls.__name__}", (RecordsTrialConfigs, SeededSearch, cls), {})
    for name, cls in (
        ("random", keras_tuner.RandomSearch),
        ("bayesian", keras_tuner.BayesianOptimization),
        ("hyperband", keras_tuner.Hyperband),
    )
}


def search_part(config):
    """What a search's trials depend on: the config without ``export`` and ``tune.max_trials``
    (more trials extend the same search)."""
    part = {key: value for key, value in config.items() if key != "export"}
    part["tune"] = {key: value for key, value in config["tune"].items() if key != "max_trials"}
    return part


def has_finished_trial(search):
    """Whether the keras-tuner folder ``search`` holds a trial that finished training (``seconds.txt``)."""
    return os.path.isdir(search) and any(
        os.path.exists(os.path.join(search, entry, TRIAL_SECONDS)) for entry in os.listdir(search)
    )


def prepare_search_dir(config, directory):
    """Create ``directory`` holding ``config.yaml``, or check that an existing search used this config.

    A search without a finished trial (it failed at start-up or in its first trial) has nothing to
    resume: its keras-tuner folder is removed and the new config takes the directory over."""
    saved = os.path.join(directory, "config.yaml")
    search = os.path.join(directory, "search")
    if has_finished_trial(search):
        if not os.path.exists(saved) or search_part(read_config(saved)) != search_part(config):
            raise ConfigError(
                f"{directory} holds a search of a different config ({saved}); its trials were trained with other "
                "settings. Resume it with the same recipe and overrides (only tune.max_trials and export.* may "
                "differ), or choose another name (--set name=...) or delete the directory."
            )
    elif os.path.isdir(search):
        # keras-tuner writes oracle.json, tuner0.json and trial_* folders; anything else is not ours to delete.
        trial_dirs = [entry for entry in os.listdir(search) if entry.startswith("trial_")]
        try:
            check_replaceable(search, {"oracle.json", "tuner0.json", *trial_dirs})
        except FileExistsError as error:
            raise ConfigError(str(error)) from None
        shutil.rmtree(search)
    dump_config(config, saved)


def check_tune_section(config):
    """Fail before anything is written on a search that could not run as declared."""
    tune_config, space = config["tune"], config["tune"]["space"]
    if tune_config["algorithm"] not in ALGORITHMS:
        raise ConfigError(f"tune.algorithm must be one of {ALGORITHMS}; got {tune_config['algorithm']!r}.")
    if not space:
        raise ConfigError("tune.space is empty: declare at least one hyperparameter in the recipe.")
    for key in ("max_trials", "epochs"):  # their types are checked with the recipe's
        if tune_config[key] is not None and tune_config[key] <= 0:
            raise ConfigError(f"tune.{key} must be a positive integer; got {tune_config[key]}.")
    if "epochs" in space and tune_config["epochs"] is not None:
        raise ConfigError(
            f"tune.epochs={tune_config['epochs']} and tune.space['epochs'] both set how long a trial trains; keep one."
        )
    for path, spec in space.items():
        for value in space_values(path, spec):
            trial = copy.deepcopy(config)
            set_path(trial, path, value)
            try:
                check_types(trial)
            except ConfigError as error:
                raise ConfigError(f"tune.space[{path!r}]: {error}") from None


def make_tuner(config, directory, verbose):
    check_tune_section(config)
    tune_config = config["tune"]
    algorithm = tune_config["algorithm"]
    common = dict(
        hypermodel=RecipeHyperModel(config, verbose),
        objective=keras_tuner.Objective(tune_config["objective"], direction="max"),
        directory=directory,
        project_name="search",
        overwrite=False,
        seed=config["seed"],
    )
    if algorithm == "hyperband":
        return TUNERS[algorithm](max_epochs=tune_config["epochs"] or config["epochs"], **common)
    return TUNERS[algorithm](max_trials=tune_config["max_trials"], **common)


def summary_table(tuner, objective, num_trials):
    trials = tuner.oracle.get_best_trials(num_trials)
    seconds = trial_seconds(tuner)
    paths = list(tuner.hypermodel.config["tune"]["space"])
    header = f"{'trial':<8}{objective:>18}{'seconds':>9}  " + "  ".join(paths)
    lines = [header]
    for trial in trials:
        score = trial.score if trial.score is not None else float("nan")
        values = "  ".join(f"{trial.hyperparameters.values.get(p)!s:>{len(p)}}" for p in paths)
        lines.append(f"{trial.trial_id:<8}{score:>18.4f}{seconds.get(trial.trial_id, float('nan')):>9.0f}  {values}")
    return "\n".join(lines)


def tune(config, verbose=1):
    """Run (or resume) the recipe's search; return ``(best_config, summary_table_text)``."""
    directory = os.path.join(config["run_dir"], f"{config['name']}-tune")
    check_tune_section(config)
    prepare_search_dir(config, directory)
    tuner = make_tuner(config, directory, verbose)
    tuner.search()
    best_trial = tuner.oracle.get_best_trials(1)[0]
    best = read_config(tuner.trial_config_path(best_trial.trial_id))
    dump_config(best, os.path.join(directory, "best.yaml"))
    table = summary_table(tuner, config["tune"]["objective"], config["tune"]["max_trials"])
    print(table)
    print(f"\nBest recipe written to {os.path.join(directory, 'best.yaml')}")
    return best, table


def main(argv=None):
    parser = argparse.ArgumentParser(description="keras-tuner search over a tfdml recipe's tune.space.")
    parser.add_argument("recipe")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    try:
        tune(load_config(args.recipe, args.overrides))
    except ConfigError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")


if __name__ == "__main__":
    main()
