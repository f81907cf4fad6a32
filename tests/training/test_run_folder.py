"""tfdml.training.run_folder: a run's files by name, its lock, progress, takeover rules and best epoch."""

import json
import os

import pytest

from tfdml.training.config import ConfigError, load_config, read_config
from tfdml.training.run_folder import RunFolder, best_epoch, read_records


def config(tmp_path, *overrides):
    return load_config(None, [f"run_dir={tmp_path / 'runs'}", f"export.dir={tmp_path / 'models'}", *overrides])


def write_records(folder, *records):
    with open(folder.metrics_file, "w") as f:
        f.writelines(json.dumps(record) + "\n" for record in records)


def test_files_are_named_once_under_the_folder(tmp_path):
    folder = RunFolder(tmp_path / "run")
    assert folder.path == str(tmp_path / "run")
    named = {
        folder.config_file: "config.yaml", folder.metrics_file: "metrics.jsonl", folder.logs_dir: "logs",
        folder.backup_dir: "backup", folder.final_weights: "final.weights.h5", folder.done_file: "done.json",
        folder.diverged_file: "diverged.json", folder.exports_file: "exports.json", folder.lock_file: ".lock",
        folder.checkpoint(7): os.path.join("checkpoints", "epoch007.weights.h5"),
    }
    for path, name in named.items():
        assert path == os.path.join(folder.path, name)


def test_of_names_the_run_after_the_recipe(tmp_path):
    recipe = config(tmp_path, "name=abc")
    assert RunFolder.of(recipe).path == os.path.join(str(tmp_path / "runs"), "abc")


def test_best_epoch_skips_null_takes_the_first_on_ties_and_names_the_source_when_nothing_logged_it():
    records = [{"epoch": 1, "val": 0.2}, {"epoch": 2, "val": 0.5}, {"epoch": 3, "val": None}, {"epoch": 4, "val": 0.5}]
    assert best_epoch(records, "val") == 2
    with pytest.raises(ConfigError, match=r"evaluation.select_by='val_nmi': no epoch in somewhere logged it"):
        best_epoch(records, "val_nmi", "somewhere")


def test_records_progress_and_done_marker(tmp_path):
    folder = RunFolder(tmp_path / "run")
    os.makedirs(folder.path)
    assert folder.records() == [] and read_records(folder.metrics_file) == []
    assert not folder.has_progress() and not folder.is_done() and folder.finished_epochs() == 0
    write_records(folder, {"epoch": 1, "loss": 0.5, "val_nmi": 0.1}, {"epoch": 2, "loss": 0.4, "val_nmi": 0.3})
    assert folder.has_progress() and folder.best_epoch("val_nmi") == 2
    os.makedirs(folder.backup_dir)
    with open(os.path.join(folder.backup_dir, "training_metadata.json"), "w") as f:
        json.dump({"epoch": 2, "batch": -1}, f)
    assert folder.finished_epochs() == 2
    with open(folder.done_file, "w") as f:
        json.dump({"finished": 1.0, "best_epoch": 2, "select_by": "val_nmi"}, f)
    assert folder.is_done() and folder.done()["best_epoch"] == 2


def test_a_held_folder_is_refused_to_a_second_holder_naming_the_first(tmp_path):
    folder = RunFolder(tmp_path / "run")
    with folder.hold():
        with pytest.raises(ConfigError, match=rf"{folder.path} is in use by another run \(pid {os.getpid()} on "):
            with RunFolder(tmp_path / "run").hold():
                pass
    with folder.hold():  # released when the block ends
        pass


def test_prepare_writes_the_recipe_and_a_fresh_start_drops_stale_records(tmp_path):
    recipe = config(tmp_path)
    folder = RunFolder.of(recipe)
    os.makedirs(folder.path)
    # A run that never finished an epoch: records without backup or done marker are not progress to keep.
    with open(folder.exports_file, "w") as f:
        f.write("{}")
    assert folder.prepare(recipe) is folder
    assert read_config(folder.config_file) == recipe and not os.path.exists(folder.exports_file)


def test_prepare_refuses_another_config_over_progress_but_lets_export_settings_change(tmp_path):
    recipe = config(tmp_path)
    folder = RunFolder.of(recipe).prepare(recipe)
    write_records(folder, {"epoch": 1, "loss": 0.5})
    os.makedirs(folder.backup_dir)
    with pytest.raises(ConfigError, match="holds a run of a different config"):
        folder.prepare(config(tmp_path, "epochs=3"))
    exported_elsewhere = config(tmp_path, f"export.dir={tmp_path / 'elsewhere'}")
    folder.prepare(exported_elsewhere)
    assert read_config(folder.config_file) == exported_elsewhere and folder.records() == [{"epoch": 1, "loss": 0.5}]


def test_a_diverged_run_is_taken_over_by_a_corrected_config_from_scratch(tmp_path):
    recipe = config(tmp_path)
    folder = RunFolder.of(recipe).prepare(recipe)
    write_records(folder, {"epoch": 1, "loss": None})
    os.makedirs(folder.backup_dir)
    with open(folder.diverged_file, "w") as f:
        json.dump({"epoch": 2, "diverged": "the loss is nan"}, f)
    corrected = config(tmp_path, "optimizer.learning_rate=0.0001")
    folder.prepare(corrected)
    assert not os.path.exists(folder.diverged_file) and not os.path.exists(folder.backup_dir)
    assert folder.records() == [] and read_config(folder.config_file) == corrected


def test_exports_are_recorded_and_only_a_finished_run_of_the_same_settings_keeps_them(tmp_path):
    recipe = config(tmp_path, "export.version=3")
    folder = RunFolder.of(recipe).prepare(recipe)
    target = os.path.join(recipe["export"]["dir"], recipe["name"], "3")
    folder.record_export(target, recipe["export"])
    assert folder.earlier_exports(recipe) == set()  # training has not finished
    with open(folder.done_file, "w") as f:
        json.dump({"finished": 1.0}, f)
    assert folder.earlier_exports(recipe) == {os.path.abspath(target)}
    assert folder.earlier_exports(config(tmp_path, "export.version=3", "export.gallery=test")) == set()
    assert folder.earlier_exports(config(tmp_path, "export.version=3", "epochs=7")) == set()
