"""Issue 33, a run's lifecycle: run-name locks, atomic epoch backups, validating the last epoch,
resuming a pinned export, divergence, multi_worker without a cluster, unwritable export folders
and strict JSON in metrics.jsonl (defects D6, D7, D21, D22, D23, D27, D29, D37)."""

import json
import math
import os
import subprocess
import sys

import h5py
import keras
import numpy as np
import pytest

from tfdml import run
from tfdml.training import callbacks
from tfdml.training.model import MetricLearningModel
from tfdml.training.run_folder import RunFolder, best_epoch, read_records
from tfdml.training.config import ConfigError, load_config, read_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIGITS = os.path.join(REPO, "pipelines", "digits_margin.yaml")
TINY = ["model.filters=8", "model.embedding_dim=16", "steps_per_epoch=2", "evaluation.every_n_epochs=100",
        "evaluation.figures=false"]


def tiny_config(tmp_path, *overrides):
    return load_config(DIGITS, [*TINY, f"run_dir={tmp_path}/runs", f"export.dir={tmp_path}/models", *overrides])


class Killed(Exception):
    """Stands in for a ``kill -9`` at a chosen moment."""


def no_training(*args, **kwargs):
    raise AssertionError("fit was called")


@pytest.fixture
def no_export(monkeypatch):
    """Skips the SavedModel exports, for speed where they are not under test."""
    monkeypatch.setattr(run, "export_once", lambda *args: None)


def records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def final_weights(run_dir):
    with h5py.File(run_dir / "final.weights.h5") as f:
        arrays = []
        f.visititems(lambda _, item: arrays.append(item[()]) if isinstance(item, h5py.Dataset) else None)
    return arrays


# D6: a run name is locked while its run lives; a killed holder frees it.
HOLDER = """
import sys, time
from tfdml.training.run_folder import RunFolder
with RunFolder(sys.argv[1]).hold():
    print("holding", flush=True)
    time.sleep(600)
"""


def test_a_busy_run_name_is_refused_naming_folder_and_holder_and_a_killed_holder_frees_it(tmp_path):
    config = tiny_config(tmp_path, "name=busy", "epochs=1")
    run_dir = tmp_path / "runs" / "busy"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(ConfigError) as refused:
            run.train(config, verbose=0)
        assert str(run_dir) in str(refused.value) and f"pid {holder.pid}" in str(refused.value)
        assert not (run_dir / "config.yaml").exists()  # refused before anything of the run was written
    finally:
        holder.kill()  # SIGKILL: the lock must not outlive its process
        holder.wait()
    with RunFolder(run_dir).hold():
        pass


# D7: a kill between the backup's weights and its metadata resumes to the uninterrupted result.
@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("whole")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(run, "export_once", lambda *args: None)
        run.train(tiny_config(tmp_path, "name=whole", "epochs=2"), verbose=0)
    return tmp_path / "runs" / "whole"


@pytest.mark.slow
@pytest.mark.parametrize("kill_epoch", [1, 2])
def test_a_kill_between_the_backups_weights_and_metadata_resumes_to_the_uninterrupted_result(
    kill_epoch, uninterrupted, tmp_path, monkeypatch, no_export
):
    """Epoch 1: no backup was committed, so the rerun starts afresh; epoch 2: it resumes after epoch 1."""
    config = tiny_config(tmp_path, "name=parts", "epochs=2")
    write = callbacks.write_file_atomically

    def killed_before_the_metadata(path, content):
        if path.endswith("training_metadata.json") and json.loads(content)["epoch"] == kill_epoch:
            raise Killed()
        return write(path, content)

    with monkeypatch.context() as patch:
        patch.setattr(callbacks, "write_file_atomically", killed_before_the_metadata)
        with pytest.raises(Killed):
            run.train(config, verbose=0)
    run.train(config, verbose=0)
    run_dir = tmp_path / "runs" / "parts"
    assert [r["loss"] for r in records(run_dir)] == [r["loss"] for r in records(uninterrupted)]
    for a, b in zip(final_weights(run_dir), final_weights(uninterrupted), strict=True):
        np.testing.assert_array_equal(a, b)


# D21: with fewer epochs than evaluation.every_n_epochs, the last epoch is still validated.
def test_the_last_epoch_is_evaluated_even_off_the_every_n_epochs_grid(tmp_path, no_export):
    from tfdml.evaluation import RetrievalEvaluation

    rng = np.random.default_rng(0)
    x, labels = rng.normal(size=(12, 3)).astype("float32"), np.repeat(np.arange(4), 3)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    evaluated = []

    class Evaluated(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if "val_recall_at_1" in logs:
                evaluated.append(epoch + 1)

    evaluation = RetrievalEvaluation((x, labels), every_n_epochs=2, metrics=("recall_at_k",), k=(1,))
    model.fit(x, np.zeros((12, 2)), epochs=3, callbacks=[evaluation, Evaluated()], verbose=0)
    assert evaluated == [2, 3]

    config = tiny_config(
        tmp_path, "name=fewer", "epochs=1", "evaluation.every_n_epochs=2", "data.validation=[0, 1]",
        "sampler.batch_size=36",
    )
    run.train(config, verbose=0)
    run_dir = tmp_path / "runs" / "fewer"
    assert "val_recall_at_1" in records(run_dir)[-1]
    assert json.loads((run_dir / "done.json").read_text())["best_epoch"] == 1


# D22: a pinned export.version interrupted during the export is completed by the rerun.
def test_a_rerun_completes_an_interrupted_export_with_a_pinned_version(tmp_path, monkeypatch):
    config = tiny_config(tmp_path, "name=pinned", "epochs=1", "export.version=1", "export.gallery=test")

    def killed(*args, **kwargs):
        raise Killed()

    with monkeypatch.context() as patch:
        patch.setattr(run, "export_retrieval_model", killed)
        with pytest.raises(Killed):
            run.train(config, verbose=0)
    embedding = tmp_path / "models" / "pinned" / "1"
    search = tmp_path / "models" / "pinned-search" / "1"
    assert (embedding / "saved_model.pb").exists() and not search.exists()
    written = (embedding / "saved_model.pb").stat().st_mtime_ns

    monkeypatch.setattr(MetricLearningModel, "fit", no_training)
    result = run.train(config, verbose=0)
    assert os.path.abspath(result["export_path"]) == str(embedding) and (search / "saved_model.pb").exists()
    assert (embedding / "saved_model.pb").stat().st_mtime_ns == written  # this run's own version is kept
    # A version written with other export settings (or by another run) is still refused before anything.
    other = tiny_config(tmp_path, "name=pinned", "epochs=1", "export.version=1", "export.max_image_pixels=1000")
    with pytest.raises(ConfigError, match="already exists"):
        run.train(other, verbose=0)


# D23: divergence stops at the first non-finite loss with one error; the corrected command takes the name.
def test_divergence_the_loss_hides_is_one_error_naming_the_epoch_and_the_learning_rate(tmp_path):
    """One step per epoch: its loss is finite (BatchNorm uses batch statistics), but the update makes
    the inference embeddings non-finite; the run stops before the epoch is evaluated or recorded."""
    config = tiny_config(
        tmp_path, "name=div", "epochs=3", "steps_per_epoch=1", "optimizer.learning_rate=1e30",
        "evaluation.every_n_epochs=1",
    )
    with pytest.raises(ConfigError, match=r"diverged: the embeddings .* epoch 1\b.*optimizer\.learning_rate=1e\+30"):
        run.train(config, verbose=0)
    run_dir = tmp_path / "runs" / "div"
    assert not (run_dir / "done.json").exists() and not (run_dir / "metrics.jsonl").exists()


def blow_up_in_epoch(epoch):
    class BlowUp(keras.callbacks.Callback):
        def on_epoch_begin(self, index, logs=None):
            if index + 1 == epoch:
                self.model.optimizer.learning_rate.assign(1e30)

    return BlowUp()


def test_a_run_diverging_after_finished_epochs_stops_at_the_nan_loss_and_does_not_block_its_name(tmp_path, no_export):
    diverging = tiny_config(tmp_path, "name=div", "epochs=3", "evaluation.every_n_epochs=1")
    with pytest.raises(ConfigError, match=r"diverged: the loss is \S+ at step \d+ of epoch 2\b"):
        run.train(diverging, verbose=0, callbacks=[blow_up_in_epoch(2)])
    run_dir = tmp_path / "runs" / "div"
    assert [r["epoch"] for r in records(run_dir)] == [1] and not (run_dir / "done.json").exists()
    corrected = tiny_config(tmp_path, "name=div", "epochs=2", "optimizer.learning_rate=5e-4")
    run.train(corrected, verbose=0)
    assert read_config(str(run_dir / "config.yaml")) == corrected
    assert [r["epoch"] for r in records(run_dir)] == [1, 2] and (run_dir / "done.json").exists()
    assert all(math.isfinite(r["loss"]) for r in records(run_dir))


# D29: an export folder that cannot be written is refused before training.
def test_an_unwritable_export_dir_is_refused_before_training(tmp_path, monkeypatch):
    monkeypatch.setattr(MetricLearningModel, "fit", no_training)
    (tmp_path / "a_file").write_text("")
    config = tiny_config(tmp_path, "name=ro", "epochs=1", f"export.dir={tmp_path / 'a_file' / 'models'}")
    with pytest.raises(ConfigError, match="export.dir") as error:
        run.train(config, verbose=0)
    assert "a_file" in str(error.value) and not (tmp_path / "runs").exists()
    if os.geteuid() != 0:  # root writes through permission bits
        (tmp_path / "read_only").mkdir(mode=0o555)
        config = tiny_config(tmp_path, "name=ro", "epochs=1", f"export.dir={tmp_path / 'read_only' / 'models'}")
        with pytest.raises(ConfigError, match="export.dir"):
            run.train(config, verbose=0)


# D37: metrics.jsonl is strict JSON; non-finite numbers are null and readers skip them.
def test_metrics_jsonl_is_strict_json_with_null_for_non_finite_numbers(tmp_path):
    path = tmp_path / "metrics.jsonl"
    logger = callbacks.EpochJSONLogger(str(path))
    logger.on_epoch_end(0, {"loss": 0.5, "val_nmi": float("nan")})
    logger.on_epoch_end(1, {"loss": float("inf"), "val_nmi": 0.3})

    def not_json(constant):
        raise ValueError(f"{constant} is not JSON")

    strict = [json.loads(line, parse_constant=not_json) for line in path.read_text().splitlines()]
    assert strict == [{"epoch": 1, "loss": 0.5, "val_nmi": None}, {"epoch": 2, "loss": None, "val_nmi": 0.3}]
    assert best_epoch(read_records(path), "val_nmi") == 2


# D27: multi_worker without a cluster. Last in the file: the old code built a collective strategy here.
ONE_WORKER = json.dumps({"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 0}})


@pytest.mark.parametrize("tf_config", [None, ONE_WORKER])
def test_multi_worker_without_a_cluster_is_one_clear_error_before_anything_is_written(tf_config, tmp_path, monkeypatch):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    config = tiny_config(tmp_path, "name=mw", "epochs=1", "distribute.strategy=multi_worker")
    with pytest.raises(ConfigError, match="TF_CONFIG"):
        run.train(config, verbose=0)
    assert not (tmp_path / "runs").exists()
