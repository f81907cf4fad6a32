import os

import pytest
import yaml

from tfdml.training.config import load_config
from tfdml.tune import tune

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_two_trial_search_on_digits_writes_summary_and_best_recipe_and_resumes(tmp_path, capsys):
    overrides = [
        f"run_dir={tmp_path}",
        "name=tiny",
        "steps_per_epoch=2",
        "model.filters=8",
        "tune={algorithm: random, max_trials: 2, epochs: 1, objective: val_recall_at_1, space: "
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

    capsys.readouterr()
    again, _ = tune(config, verbose=0)  # finished trials are reloaded, not retrained
    assert again == best


def test_empty_search_space_is_an_error(tmp_path):
    config = load_config(os.path.join(REPO, "pipelines", "digits_margin.yaml"), [f"run_dir={tmp_path}"])
    with pytest.raises(ValueError, match="tune.space is empty"):
        tune(config)


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
