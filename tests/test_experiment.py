"""tfdml.experiment.Experiment: a recipe built alike by every caller, and its one ``fit``."""

import keras
import numpy as np
import pytest

from tfdml.experiment import Experiment
from tfdml.training.config import load_config
from tfdml.training.model import MetricLearningModel
from tfdml.training.run_folder import RunFolder

TINY = ["model.filters=4", "model.embedding_dim=8", "steps_per_epoch=2", "epochs=2", "sampler.batch_size=15",
        "evaluation.every_n_epochs=1", "evaluation.metrics=[recall_at_k]", "evaluation.recall_k=[1]"]


def tiny(tmp_path, *overrides):
    return load_config(None, [f"run_dir={tmp_path / 'runs'}", f"export.dir={tmp_path / 'models'}", *TINY, *overrides])


def test_building_seeds_keras_from_the_recipe_so_every_caller_starts_alike(tmp_path):
    first, again = Experiment(tiny(tmp_path)), Experiment(tiny(tmp_path))
    other = Experiment(tiny(tmp_path, "seed=1"))
    for a, b in zip(first.embedder.get_weights(), again.embedder.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(first.embedder.get_weights(), other.embedder.get_weights()))


def test_the_dtype_policy_follows_each_recipe(tmp_path):
    try:
        assert Experiment(tiny(tmp_path, "model.mixed_precision=true")).embedder.dtype_policy.name == "mixed_float16"
        assert Experiment(tiny(tmp_path)).embedder.dtype_policy.name == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_the_recipe_selects_an_epoch_only_on_held_out_validation_classes(tmp_path):
    assert Experiment(tiny(tmp_path)).select_by is None
    held_out = Experiment(tiny(tmp_path, "data.validation=[0, 1]", "evaluation.select_by=val_recall_at_1"))
    assert held_out.select_by == "val_recall_at_1"


def test_fit_selects_with_the_key_it_is_given_and_a_finished_folder_is_not_trained_again(tmp_path, monkeypatch):
    config = tiny(tmp_path, "data.validation=[0, 1]")
    experiment = Experiment(config)
    folder = RunFolder(tmp_path / "run").prepare(config)
    fitted = experiment.fit(folder, select_by="val_recall_at_1", verbose=0)
    assert fitted.trained and [record["epoch"] for record in fitted.records] == [1, 2]
    assert fitted.selected_epoch == folder.best_epoch("val_recall_at_1") == folder.done()["best_epoch"]
    trained = experiment.embedder.get_weights()

    def no_training(*args, **kwargs):
        raise AssertionError("a finished folder was trained again")

    monkeypatch.setattr(MetricLearningModel, "fit", no_training)
    again = Experiment(config)
    refitted = again.fit(folder, verbose=0)
    assert not refitted.trained and refitted.selected_epoch == fitted.selected_epoch
    for a, b in zip(again.embedder.get_weights(), trained, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_selection_key_nothing_logs_is_named(tmp_path):
    config = tiny(tmp_path, "epochs=1")
    with pytest.raises(ValueError, match="select_by='val_nothing'"):
        Experiment(config).fit(RunFolder(tmp_path / "run").prepare(config), select_by="val_nothing", verbose=0)
