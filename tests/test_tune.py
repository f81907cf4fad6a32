import os

import pytest
import yaml

from tfdml.training.config import load_config
from tfdml.training.run_folder import RunFolder
from tfdml.tune import make_tuner, trial_seconds, tune

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_two_trial_search_on_digits_writes_summary_and_best_recipe_and_resumes(tmp_path, capsys):
    overrides = [
        f"run_dir={tmp_path}",
        "name=tiny",
        "steps_per_epoch=2",
        "model.filters=8",
        "tune={algorithm: random, max_trials: 2, epochs: 2, objective: val_recall_at_1, space: "
        "{loss.params.margin: {type: float, min: 0.1, max: 0.3}, "
        "loss.class: {type: choice, values: [MarginLoss, TripletLoss]}}}",
    ]
    config = load_config(os.path.join(REPO, "pipelines", "digits_margin.yaml"), overrides)
    best, table = tune(config, verbose=0)
    assert "val_recall_at_1" in table and len(table.strip().splitlines()) == 3
    with open(tmp_path / "tiny-tune" / "best.yaml") as f:
        written = yaml.safe_load(f)
    assert written == best and best["loss"]["class"] in ("MarginLoss", "TripletLoss")
    assert 0.1 <= best["loss"]["params"]["margin"] <= 0.3
    # Each trial trained as train.py trains, in its run folder: its score is the objective at the epoch it selected.
    tuner = make_tuner(config, str(tmp_path / "tiny-tune"), 0)
    for trial in tuner.oracle.trials.values():
        folder = RunFolder(os.path.join(tuner.get_trial_dir(trial.trial_id), "run"))
        done = folder.done()
        assert done["select_by"] == "val_recall_at_1" and done["best_epoch"] == folder.best_epoch("val_recall_at_1")
        assert [record["epoch"] for record in folder.records()] == [1, 2]
        assert trial.score == folder.records()[done["best_epoch"] - 1]["val_recall_at_1"]

    capsys.readouterr()
    again, _ = tune(config, verbose=0)  # finished trials are reloaded, not retrained
    assert again == best


def test_empty_search_space_is_an_error(tmp_path):
    config = load_config(os.path.join(REPO, "pipelines", "digits_margin.yaml"), [f"run_dir={tmp_path}"])
    with pytest.raises(ValueError, match="tune.space is empty"):
        tune(config)


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["bayesian", "hyperband"])
def test_other_search_algorithms_run_on_digits(algorithm, tmp_path):
    overrides = [
        f"run_dir={tmp_path}",
        "name=alg",
        "steps_per_epoch=1",
        "model.filters=4",
        f"tune={{algorithm: {algorithm}, max_trials: 2, epochs: 2, objective: val_recall_at_1, space: "
        "{optimizer.learning_rate: {type: float, min: 1.0e-4, max: 1.0e-2, sampling: log}}}",
    ]
    config = load_config(os.path.join(REPO, "pipelines", "digits_margin.yaml"), overrides)
    best, table = tune(config, verbose=0)
    assert 1e-4 <= best["optimizer"]["learning_rate"] <= 1e-2
    assert os.path.exists(tmp_path / "alg-tune" / "best.yaml")
    # Hyperband's budget is honoured: a trial trains from its initial epoch to its epochs, no further.
    tuner = make_tuner(config, str(tmp_path / "alg-tune"), 0)
    for trial in tuner.oracle.trials.values():
        values = trial.hyperparameters.values
        first, last = values.get("tuner/initial_epoch", 0) + 1, values.get("tuner/epochs", 2)
        records = RunFolder(os.path.join(tuner.get_trial_dir(trial.trial_id), "run")).records()
        assert [record["epoch"] for record in records] == list(range(first, last + 1))


def tiny_search(tmp_path, space, max_trials=1):
    overrides = [
        f"run_dir={tmp_path}",
        "name=rerun",
        "steps_per_epoch=1",
        "model.filters=4",
        f"tune={{algorithm: random, max_trials: {max_trials}, epochs: 1, objective: val_recall_at_1, space: {space}}}",
    ]
    return load_config(os.path.join(REPO, "pipelines", "digits_margin.yaml"), overrides)


def test_rerun_with_a_changed_search_is_refused_and_best_yaml_is_the_best_trials_config(tmp_path):
    """Issue 14, item 2: a changed recipe or tune.space must not resume the old search; best.yaml is
    exactly the recipe the best trial trained with."""
    from tfdml.training.config import ConfigError, read_config

    space = "{loss.params.margin: {type: float, min: 0.25, max: 0.35}, optimizer.learning_rate: {type: choice, values: [0.002]}}"
    best, _ = tune(tiny_search(tmp_path, space), verbose=0)
    trial_dirs = [d for d in os.listdir(tmp_path / "rerun-tune" / "search") if d.startswith("trial_")]
    assert len(trial_dirs) == 1
    trained = read_config(tmp_path / "rerun-tune" / "search" / trial_dirs[0] / "config.yaml")
    assert best == trained and 0.25 <= best["loss"]["params"]["margin"] <= 0.35
    assert best["optimizer"]["learning_rate"] == 0.002

    for changed in (
        tiny_search(tmp_path, "{loss.params.margin: {type: float, min: 0.1, max: 0.2}}"),
        tiny_search(tmp_path, space) | {"seed": 1},
    ):
        with pytest.raises(ConfigError, match="rerun-tune holds a search of a different config"):
            tune(changed, verbose=0)
    with open(tmp_path / "rerun-tune" / "best.yaml") as f:
        assert yaml.safe_load(f) == trained

    first_seconds = trial_seconds(make_tuner(tiny_search(tmp_path, space), str(tmp_path / "rerun-tune"), 0))
    more, table = tune(tiny_search(tmp_path, space, max_trials=2), verbose=0)  # more trials extend the same search
    assert len([d for d in os.listdir(tmp_path / "rerun-tune" / "search") if d.startswith("trial_")]) == 2
    # The resumed search still knows the first trial's time, and times the trial it added.
    seconds = trial_seconds(make_tuner(tiny_search(tmp_path, space, max_trials=2), str(tmp_path / "rerun-tune"), 0))
    assert len(first_seconds) == 1 and len(seconds) == 2 and all(value > 0 for value in seconds.values())
    assert {trial: seconds[trial] for trial in first_seconds} == first_seconds
    assert table.splitlines()[0].split()[2] == "seconds"
    assert {round(float(line.split()[2])) for line in table.splitlines()[1:]} == {round(value) for value in seconds.values()}
    assert 0.25 <= more["loss"]["params"]["margin"] <= 0.35
