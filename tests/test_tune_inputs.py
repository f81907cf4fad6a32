"""Issue 33 (reliability, round three), hyperparameter tuning: D3, D4, D5 and D28 of
reports/reliability-2026-12/REPORT.md. Tiny searches on digits (1 step per epoch, 4 filters)."""

import os

import keras
import keras_tuner
import pytest

from tfdml.training.config import ConfigError, load_config, read_config
from tfdml.tune import RecipeHyperModel, make_tuner, prepare_search_dir, summary_table, trial_config, tune

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def search_config(tmp_path, name, space, *overrides, max_trials=2, tune_epochs=1):
    tune_epochs = "null" if tune_epochs is None else tune_epochs
    return load_config(
        os.path.join(REPO, "pipelines", "digits_margin.yaml"),
        [
            f"run_dir={tmp_path}",
            f"name={name}",
            "epochs=1",
            "steps_per_epoch=1",
            "model.filters=4",
            f"tune={{algorithm: random, max_trials: {max_trials}, epochs: {tune_epochs}, "
            f"objective: val_recall_at_1, space: {space}}}",
            *overrides,
        ],
    )


def search_dir(config):
    return os.path.join(config["run_dir"], f"{config['name']}-tune")


def trials(config):
    """``{trial id: (values, score, status)}`` of the search saved for ``config``."""
    tuner = make_tuner(config, search_dir(config), 0)
    return {tid: (t.hyperparameters.values, t.score, t.status) for tid, t in tuner.oracle.trials.items()}


class InterruptTraining(keras.callbacks.Callback):
    """Stands in for ``kill -9``: interrupts the ``fit`` numbered ``at`` (0-based) of the process."""

    fits = 0

    def __init__(self, at):
        super().__init__()
        self.at = at

    def on_train_begin(self, logs=None):
        InterruptTraining.fits += 1  # a class counter: keras-tuner deep-copies callbacks per trial

    def on_train_batch_end(self, batch, logs=None):
        if InterruptTraining.fits - 1 == self.at:
            raise KeyboardInterrupt


class EpochCounter(keras.callbacks.Callback):
    """Records how many epochs each ``fit`` of the process trained (a class list survives deep copies)."""

    epochs = []

    def on_train_begin(self, logs=None):
        EpochCounter.epochs.append(0)

    def on_epoch_end(self, epoch, logs=None):
        EpochCounter.epochs[-1] += 1


MARGIN_AND_RATE = (
    "{loss.params.margin: {type: float, min: 0.1, max: 0.3}, "
    "optimizer.learning_rate: {type: float, min: 1.0e-3, max: 3.0e-3}}"
)


@pytest.mark.slow
def test_identical_and_resumed_searches_give_the_same_trials_and_scores(tmp_path):
    """D3: with the default seed 0, an identical search draws the same values and scores them the same,
    also when it is interrupted during its second trial and resumed."""
    first = search_config(tmp_path, "first", MARGIN_AND_RATE)
    tune(first, verbose=0)
    expected = trials(first)
    assert len(expected) == 2 and all(status == "COMPLETED" for _, _, status in expected.values())

    killed = search_config(tmp_path, "killed", MARGIN_AND_RATE)
    prepare_search_dir(killed, search_dir(killed))
    InterruptTraining.fits = 0
    with pytest.raises(KeyboardInterrupt):
        make_tuner(killed, search_dir(killed), 0).search(callbacks=[InterruptTraining(at=1)])
    assert trials(killed)["0"] == expected["0"] and trials(killed)["1"][2] == "RUNNING"
    tune(killed, verbose=0)
    assert trials(killed) == expected


@pytest.mark.slow
def test_a_resumed_bayesian_search_proposes_what_the_uninterrupted_one_proposes(tmp_path, monkeypatch):
    """D3, Bayesian optimisation: its oracle's random state (the optimiser's starting points) was not
    saved with the search, so a resumed search proposed other values (and its proposals, NumPy scalars,
    could not even be written to the trials' recipes). Training is replaced by a score of the values, so
    that only the oracle is compared (3 random trials, then Gaussian-process ones)."""
    fits = []
    interrupt = {"at": None}

    def build(self, hp):
        trial_config(self.config, hp)
        return keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])

    def fit(self, hp, model, *args, **kwargs):
        fits.append(hp.values)
        if len(fits) == interrupt["at"]:
            raise KeyboardInterrupt
        return -((hp.values["loss.params.margin"] - 0.17) ** 2)

    monkeypatch.setattr(RecipeHyperModel, "build", build)
    monkeypatch.setattr(RecipeHyperModel, "fit", fit)
    space = "{loss.params.margin: {type: float, min: 0.1, max: 0.3}}"
    uninterrupted = search_config(tmp_path, "bo", space, "tune.algorithm=bayesian", "seed=1", max_trials=5)
    tune(uninterrupted, verbose=0)
    killed = search_config(tmp_path, "bok", space, "tune.algorithm=bayesian", "seed=1", max_trials=5)
    fits.clear()
    interrupt["at"] = 4  # in trial 3, the first Gaussian-process one: trial 4 is drawn after the resumption
    with pytest.raises(KeyboardInterrupt):
        tune(killed, verbose=0)
    interrupt["at"] = None
    tune(killed, verbose=0)
    assert trials(killed) == trials(uninterrupted)


def test_epochs_in_tune_space_are_trained_and_reported(tmp_path):
    """D4: an ``epochs`` entry of tune.space is what each trial trains, and what the table reports."""
    config = search_config(tmp_path, "ep", "{epochs: {type: choice, values: [1, 2]}}", tune_epochs=None)
    prepare_search_dir(config, search_dir(config))
    tuner = make_tuner(config, search_dir(config), 0)
    EpochCounter.epochs = []
    tuner.search(callbacks=[EpochCounter()])
    ordered = [tuner.oracle.trials[tid] for tid in tuner.oracle.start_order]
    sampled = [trial.hyperparameters.values["epochs"] for trial in ordered]
    assert sorted(sampled) == [1, 2] and EpochCounter.epochs == sampled
    for trial in ordered:
        assert read_config(tuner.trial_config_path(trial.trial_id))["epochs"] == trial.hyperparameters.values["epochs"]
    table = summary_table(tuner, "val_recall_at_1", 2)
    rows = {line.split()[0]: int(line.split()[-1]) for line in table.splitlines()[1:]}
    assert rows == {trial.trial_id: trial.hyperparameters.values["epochs"] for trial in ordered}


def test_epochs_in_tune_space_and_tune_epochs_together_are_refused(tmp_path):
    """D4: both say how long a trial trains; neither silently wins."""
    config = search_config(tmp_path, "both", "{epochs: {type: choice, values: [1, 2]}}", tune_epochs=3)
    with pytest.raises(ConfigError, match=r"tune\.epochs.*tune\.space"):
        tune(config, verbose=0)
    assert not os.path.exists(search_dir(config))
    # The trained recipe holds the sampled value, whatever the recipe's own epochs.
    hp = keras_tuner.HyperParameters()
    hp.values["epochs"] = 2
    assert trial_config(search_config(tmp_path, "unit", "{epochs: {type: choice, values: [1, 2]}}", tune_epochs=None),
                        hp)["epochs"] == 2


@pytest.mark.parametrize(
    "space, culprit",
    [
        ("{epochs: {type: choice, values: [a, b]}}", r"tune\.space\['epochs'\].*epochs must be an integer; got 'a'"),
        ("{sampler.samples_per_class: {type: float, min: 2, max: 6}}",
         r"tune\.space\['sampler\.samples_per_class'\].*must be an integer or null; got 2\.0"),
        ("{model.normalize: {type: choice, values: [1, 0]}}", r"tune\.space\['model\.normalize'\].*boolean"),
        ("{optimizer.learning_rate: {type: float, min: 1.0e-3}}", r"tune\.space\['optimizer\.learning_rate'\].*max"),
        ("{bogus.key: {type: choice, values: [1, 2]}}", r"tune\.space key 'bogus\.key'"),
    ],
)
def test_tune_space_values_are_type_checked_before_anything_runs(tmp_path, space, culprit):
    """D4: a space value the recipe schema refuses is one error naming the space entry, before any folder
    is written (it was trained as if absent, or the table showed values never trained)."""
    config = search_config(tmp_path, "types", space, max_trials=1, tune_epochs=None)
    with pytest.raises(ConfigError, match=culprit):
        tune(config, verbose=0)
    assert not os.path.exists(search_dir(config))


def test_an_objective_nothing_logs_is_refused_at_the_first_epoch(tmp_path):
    """D5: tune.objective=val_bogus trained every trial, ranked nothing and wrote best.yaml."""
    config = search_config(tmp_path, "obj", MARGIN_AND_RATE, "tune.objective=val_bogus")
    with pytest.raises(ConfigError, match=r"tune\.objective='val_bogus'.*val_recall_at_1"):
        tune(config, verbose=0)
    assert not os.path.exists(os.path.join(search_dir(config), "best.yaml"))
    assert sorted(d for d in os.listdir(os.path.join(search_dir(config), "search")) if d.startswith("trial_")) == [
        "trial_0"
    ]
    # Nothing finished, so the corrected command takes the folder over (D28).
    best, _ = tune(search_config(tmp_path, "obj", MARGIN_AND_RATE, max_trials=1), verbose=0)
    assert read_config(os.path.join(search_dir(config), "best.yaml")) == best


def test_a_search_that_failed_at_start_up_does_not_block_its_name(tmp_path):
    """D28: the corrected command was refused as 'a search of a different config' although no trial ran."""
    space = "{loss.params.margin: {type: float, min: 0.1, max: 0.3}}"
    bogus = "{loss.params.bogus: {type: choice, values: [1, 2]}, loss.params.margin: {type: float, min: 0.1, max: 0.3}}"
    with pytest.raises(ConfigError, match="bogus"):
        tune(search_config(tmp_path, "tbk", bogus, max_trials=1), verbose=0)  # fails building the first model
    assert os.path.isdir(os.path.join(tmp_path, "tbk-tune", "search"))
    best, _ = tune(search_config(tmp_path, "tbk", space, max_trials=1), verbose=0)
    assert "bogus" not in best["loss"]["params"]
    assert read_config(os.path.join(tmp_path, "tbk-tune", "config.yaml"))["tune"]["space"] == {
        "loss.params.margin": {"type": "float", "min": 0.1, "max": 0.3}
    }
