"""Validation classes held out of training choose the exported epoch; the test split is touched once."""

import json

import numpy as np
import pytest

from tfdml import run
from tfdml.experiment import Experiment
from tfdml.training.run_folder import RunFolder, best_epoch, read_records
from tfdml.training.config import ConfigError, load_config

QUICK = ["epochs=3", "steps_per_epoch=2", "model.filters=8", "evaluation.every_n_epochs=1", "sampler.batch_size=15",
         "evaluation.figures=false"]  # the run's pictures (t-SNE of the test split) are tested in test_first_run.py


def quick_config(tmp_path, *overrides):
    return load_config(None, [f"run_dir={tmp_path / 'runs'}", f"export.dir={tmp_path / 'models'}", *QUICK, *overrides])


def test_best_epoch_is_the_highest_score_first_on_ties(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    scores = [0.2, 0.5, float("nan"), 0.5, 0.4]
    metrics.write_text("".join(json.dumps({"epoch": e + 1, "val_recall_at_1": s}) + "\n" for e, s in enumerate(scores)))
    assert best_epoch(read_records(metrics), "val_recall_at_1") == 2
    with pytest.raises(ConfigError, match="val_nmi"):
        best_epoch(read_records(metrics), "val_nmi")


def test_validation_classes_are_held_out_of_training_and_evaluated_during_it(tmp_path):
    experiment = Experiment(quick_config(tmp_path, "data.validation=[0, 1]"))
    assert sorted(set(experiment.train_data.labels)) == [2, 3, 4]
    assert sorted(set(experiment.validation_data.labels)) == [0, 1]
    labels = np.concatenate([batch[1].numpy() for batch in experiment.evaluation_data.dataset(batch_size=256)])
    assert set(labels) == {0, 1}


def test_rotation_classes_are_added_to_training_only(tmp_path):
    experiment = Experiment(quick_config(tmp_path, "data.validation=[0, 1]", "data.rotations=true"))
    assert len(set(experiment.train_data.labels)) == 3 * 4
    assert sorted(set(experiment.validation_data.labels)) == [0, 1]
    assert sorted(set(experiment.test_data.labels)) == [5, 6, 7, 8, 9]


def test_exported_weights_are_the_best_validation_epochs(tmp_path):
    config = quick_config(tmp_path, "data.validation=[0, 1]")
    result = run.train(config, verbose=0)
    run_dir = tmp_path / "runs" / config["name"]
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    scores = [r["val_recall_at_1"] for r in records]
    done = json.loads((run_dir / "done.json").read_text())
    assert done["best_epoch"] == int(np.argmax(scores)) + 1 and done["select_by"] == "val_recall_at_1"

    chosen = Experiment(config)
    chosen.model.load_weights(RunFolder(run_dir).checkpoint(done["best_epoch"]))
    final = Experiment(config)
    final.embedder.load_weights(RunFolder(run_dir).final_weights)
    for a, b in zip(chosen.embedder.get_weights(), final.embedder.get_weights()):
        np.testing.assert_array_equal(a, b)
    # The printed test scores are those of the chosen weights.
    assert result["metrics"]["trained"] == pytest.approx(final.evaluate(), nan_ok=True)


@pytest.mark.parametrize("holdout", ["[]", "0", "1.5", "true", "'Latin'"])
def test_bad_validation_settings_name_the_key(tmp_path, holdout):
    with pytest.raises(ConfigError, match="data.validation"):
        Experiment(quick_config(tmp_path, f"data.validation={holdout}"))
