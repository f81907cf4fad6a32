"""train.py: argument errors name the argument; a short run trains, logs, exports and resumes."""

import json
import os
import runpy
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import tensorflow as tf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(REPO, "train.py")
# The digits recipe keeps these command-line tests fast; the default (Omniglot) run is tested in test_first_run.py.
DIGITS = os.path.join(REPO, "pipelines", "digits_margin.yaml")
# The run's pictures (t-SNE) are tested in test_first_run.py; here they would only cost time.
QUICK = [DIGITS, "--epochs", "2", "--set", "steps_per_epoch=3", "--set", "model.filters=8", "--set", "evaluation.every_n_epochs=1",
         "--set", "evaluation.figures=false"]


def run_train(args, cwd, **kwargs):
    return subprocess.run([sys.executable, TRAIN, *args], cwd=cwd, capture_output=True, text=True, **kwargs)


def refused_in_process(args, cwd, monkeypatch, capsys):
    """Exit status and stderr of train.py's ``main(args)`` run in this process, for a command that must
    fail: a fresh interpreter would spend most of the test importing TensorFlow. The exit status of a
    real process is tested with the run-name and YAML errors below."""
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # main replaces it
    with pytest.raises(SystemExit) as exited:
        runpy.run_path(TRAIN)["main"](args)
    return exited.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--no-such-option"], "--no-such-option"),
        (["--data-root", "/nonexistent/omniglot"], "/nonexistent/omniglot"),
        (["--embedding-dim", "0"], "model.embedding_dim"),
        (["--embedding-dim", "-4"], "model.embedding_dim"),
        (["--batch-size", "50", "--samples-per-class", "12"], "divisible by sampler.samples_per_class=12"),
        (["--set", "loss.class=NoSuchLoss"], "NoSuchLoss"),
        (["--set", "model.embeding_dim=3"], "model.embeding_dim"),
    ],
)
def test_bad_arguments_fail_at_once_naming_the_argument(args, message, tmp_path, monkeypatch, capsys):
    status, stderr = refused_in_process(args, tmp_path, monkeypatch, capsys)
    assert status != 0
    assert message in stderr
    assert not os.path.exists(tmp_path / "models")


def test_help_documents_the_options(tmp_path):
    out = run_train(["--help"], tmp_path, timeout=60).stdout
    for option in ("--epochs", "--batch-size", "--samples-per-class", "--embedding-dim", "--data-root", "--set", "--tune"):
        assert option in out


@pytest.mark.slow
def test_short_run_trains_reports_exports_and_logs_then_reruns_export_a_gallery_or_refuse_a_new_config(
    tmp_path, monkeypatch, capsys
):
    """One short training, then the two reruns a user makes of a finished run:
    the same command with ``--export-gallery test`` exports the search model without retraining
    (README's flow, issue 14 item 7), and the same name with a changed config is refused.
    The run uses a memory-bank sampler, the command line's most involved path (the bank is embedded
    by callbacks); the kill -9 test below runs the default sampler from the command line."""
    quick = QUICK + ["--name", "quick", "--set", "sampler.class=FRDSampler", "--set", "sampler.samples_per_class=2"]
    result = run_train(quick, tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "raw pixels" in result.stdout and "untrained" in result.stdout and "trained" in result.stdout
    assert os.path.exists(tmp_path / "models" / "quick" / "1" / "saved_model.pb")
    run_dir = tmp_path / "runs" / "quick"
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert "val_recall_at_1" in records[-1] and "val_map_at_r" in records[-1]
    assert (run_dir / "config.yaml").exists() and (run_dir / "logs").is_dir()
    assert sorted(os.listdir(run_dir / "checkpoints")) == ["epoch001.weights.h5", "epoch002.weights.h5"]
    weights = (run_dir / "final.weights.h5").read_bytes()

    result = run_train(quick + ["--export-gallery", "test"], tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "finished earlier" in result.stdout
    search = tf.saved_model.load(str(tmp_path / "models" / "quick-search" / "1")).signatures["serving_default"]
    answer = search(images=tf.zeros((2, 16, 16, 1)))
    assert answer["ids"].shape == (2, 10) and answer["labels"].numpy().min() >= 5  # test split: digits 5-9
    assert (run_dir / "final.weights.h5").read_bytes() == weights
    assert (run_dir / "metrics.jsonl").read_text().count("\n") == 2

    status, stderr = refused_in_process(quick + ["--set", "loss.params.beta=0.6"], tmp_path, monkeypatch, capsys)
    assert status != 0 and "different config" in stderr


@pytest.mark.slow
def test_kill_9_mid_training_then_rerun_resumes_without_losing_epochs(tmp_path):
    args = [DIGITS, "--epochs", "4", "--set", "steps_per_epoch=12", "--set", "model.filters=8", "--set",
            "evaluation.figures=false", "--name", "resume", "--quiet"]
    metrics = tmp_path / "runs" / "resume" / "metrics.jsonl"
    process = subprocess.Popen([sys.executable, TRAIN, *args], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 400
    while time.time() < deadline and not (metrics.exists() and metrics.read_text().count("\n") >= 1):
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished_before_kill = [json.loads(line)["epoch"] for line in metrics.read_text().splitlines()]
    assert finished_before_kill and finished_before_kill[0] == 1
    assert finished_before_kill != [1, 2, 3, 4], "the run finished before it could be interrupted"
    result = run_train(args, tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    epochs = [json.loads(line)["epoch"] for line in metrics.read_text().splitlines()]
    assert epochs == [1, 2, 3, 4]


@pytest.mark.slow
def test_digits_recipe_beats_raw_pixels_and_the_untrained_network_on_unseen_digits(tmp_path):
    """The digits recipe's bar: MAP@R and NMI on digits 5-9 above raw pixels and the untrained net."""
    sys.path.insert(0, REPO)
    from tfdml.training.config import load_config
    from tfdml.run import train

    config = load_config(os.path.join(REPO, "pipelines", "digits_margin.yaml"),
                         [f"run_dir={tmp_path}/runs", f"export.dir={tmp_path}/models", "evaluation.figures=false"])
    rows = train(config, verbose=0)["metrics"]
    for metric in ("map_at_r", "nmi"):
        assert rows["trained"][metric] > rows["raw pixels"][metric] + 0.02, (metric, rows)
        assert rows["trained"][metric] > rows["untrained"][metric] + 0.05, (metric, rows)


@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["FRDSampler", "DDMSampler", "CoresetSampler"])
def test_memory_bank_recipes_train_and_keep_the_bank_equal_to_the_current_embeddings(sampler, tmp_path):
    sys.path.insert(0, REPO)
    from tfdml.sampling import indexed_batches
    from tfdml.training.config import load_config
    from tfdml.experiment import Experiment
    from tfdml.training.run_folder import RunFolder

    config = load_config(
        os.path.join(REPO, "pipelines", "digits_margin.yaml"),
        [f"sampler.class={sampler}", "sampler.samples_per_class=2", "sampler.params={pool_size: 200}",
         "model.filters=8", f"run_dir={tmp_path}", "epochs=2", "steps_per_epoch=2", "data.validation=null"],
    )
    experiment = Experiment(config)
    assert experiment.bank is not None and experiment.bank.num_samples == len(experiment.train_data)
    folder = RunFolder(tmp_path / "bank").prepare(config)
    experiment.fit(folder, verbose=0)
    expected = experiment.embedder.predict(
        indexed_batches(experiment.train_data, 256).map(lambda images, _: images), verbose=0
    )
    np.testing.assert_allclose(experiment.bank.embeddings, expected, atol=1e-5)


# Issue 14: runs, resuming and run names.
TINY = ["model.filters=8", "model.embedding_dim=16", "steps_per_epoch=3", "evaluation.every_n_epochs=100",
        "evaluation.figures=false"]


def tiny_config(tmp_path, *overrides):
    sys.path.insert(0, REPO)
    from tfdml.training.config import load_config

    return load_config(
        os.path.join(REPO, "pipelines", "digits_margin.yaml"),
        [*TINY, f"run_dir={tmp_path}/runs", f"export.dir={tmp_path}/models", *overrides],
    )


class Interrupt(Exception):
    pass


def interrupt_after(epochs):
    import keras

    class InterruptAfter(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 == epochs:
                raise Interrupt()

    return InterruptAfter()


def epoch_losses(run_dir):
    return [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_interrupted_and_resumed_run_equals_the_uninterrupted_run(tmp_path, monkeypatch):
    """Item 3: with a fixed seed, a run interrupted after epoch 2 of 4 and resumed gives the same
    per-epoch losses and final weights, bit for bit (miner random counter, cross-batch memory and input
    position restored), with the fine-tuning controls on: warm-up and frozen backbone span the interruption,
    and a cross-batch memory (docs/memory.md) filled from epoch 1 on holds batches of both parts."""
    import h5py

    from tfdml import run
    from tfdml.run import train

    monkeypatch.setattr(run, "export_once", lambda *args: None)  # the SavedModels are not compared here

    # 5 batches per sampler epoch and 3 steps per Keras epoch: the resumed input starts mid sampler epoch.
    fine_tuning = [
        "optimizer.name=adamw", "optimizer.weight_decay=0.01", "optimizer.backbone_lr_multiplier=0.1",
        "optimizer.backbone_frozen_epochs=3", "optimizer.schedule={name: cosine, warmup_epochs: 3}",
        "memory={size: 100, start_epoch: 1}",
    ]
    whole = tiny_config(tmp_path, "name=whole", "epochs=4", *fine_tuning)
    train(whole, verbose=0)
    parts = tiny_config(tmp_path, "name=parts", "epochs=4", *fine_tuning)
    with pytest.raises(Interrupt):
        train(parts, verbose=0, callbacks=[interrupt_after(2)])
    assert len(epoch_losses(tmp_path / "runs" / "parts")) == 2
    train(parts, verbose=0)
    expected, resumed = epoch_losses(tmp_path / "runs" / "whole"), epoch_losses(tmp_path / "runs" / "parts")
    assert len(expected) == 4 and resumed == expected

    def final_weights(name):
        with h5py.File(tmp_path / "runs" / name / "final.weights.h5") as f:
            arrays = []
            f.visititems(lambda _, item: arrays.append(item[()]) if isinstance(item, h5py.Dataset) else None)
        return arrays

    for a, b in zip(final_weights("whole"), final_weights("parts"), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_finished_training_is_not_redone_when_the_export_was_interrupted(tmp_path, monkeypatch):
    """Item 4: killed after the last epoch but before the export ended, the rerun goes straight to export."""
    from tfdml import run
    from tfdml.training.model import MetricLearningModel

    config = tiny_config(tmp_path, "name=fin", "epochs=2")

    def killed_during_export(*args, **kwargs):
        raise Interrupt()

    with monkeypatch.context() as patch:
        patch.setattr(run, "export_embedding_model", killed_during_export)
        with pytest.raises(Interrupt):
            run.train(config, verbose=0)
    run_dir = tmp_path / "runs" / "fin"
    assert (run_dir / "done.json").exists() and not (run_dir / "backup").exists()
    records = (run_dir / "metrics.jsonl").read_text()

    def no_training(*args, **kwargs):
        raise AssertionError("a finished training was trained again")

    monkeypatch.setattr(MetricLearningModel, "fit", no_training)
    result = run.train(config, verbose=0)
    assert os.path.exists(os.path.join(result["export_path"], "saved_model.pb"))
    assert (run_dir / "metrics.jsonl").read_text() == records


def test_a_run_that_never_finished_an_epoch_does_not_block_its_name(tmp_path):
    """Item 6: a run that failed in its first epoch leaves a directory; the corrected command may use it."""
    from tfdml.training.config import ConfigError
    from tfdml.run import train
    from tfdml.training.run_folder import RunFolder

    failing = tiny_config(tmp_path, "name=lc", "epochs=1", "loss.params={beta: 1.2, margin: 0.2, no_such_argument: 1}")
    with pytest.raises(ConfigError, match="no_such_argument"):
        train(failing, verbose=0)
    corrected = tiny_config(tmp_path, "name=lc", "epochs=1")
    run_dir = RunFolder.of(corrected).prepare(corrected).path
    from tfdml.training.config import read_config

    assert read_config(os.path.join(run_dir, "config.yaml")) == corrected
    # A run with a finished epoch still blocks a different config.
    (tmp_path / "runs" / "lc" / "metrics.jsonl").write_text('{"epoch": 1, "loss": 0.5}\n')
    with pytest.raises(ConfigError, match="different config"):
        RunFolder.of(failing).prepare(failing)


def test_run_name_outside_the_run_dir_is_refused_before_anything_is_written(tmp_path):
    """Item 5."""
    (tmp_path / "work").mkdir()
    result = run_train(["--epochs", "1", "--set", "name=../../evil"], tmp_path / "work", timeout=120)
    assert result.returncode == 2 and "name='../../evil'" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(os.listdir(tmp_path)) == ["work"] and os.listdir(tmp_path / "work") == []


def test_yaml_errors_are_one_line_without_a_traceback(tmp_path):
    """Item 9: train.py prints ConfigError's file/line message and exits with status 2."""
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("epochs: [1, 2\n")
    result = run_train([str(recipe)], tmp_path, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{recipe}, line 2" in result.stderr
    unsafe = tmp_path / "unsafe.yaml"
    unsafe.write_text("seed: !!python/object/apply:os.system ['echo hi']\n")
    result = run_train([str(unsafe)], tmp_path, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr and "line 1" in result.stderr


def test_recipe_checks_load_no_tensorflow():
    """A bad recipe is reported before TensorFlow's ten-second import, not after it."""
    code = "import sys, tfdml.training.config; assert 'tensorflow' not in sys.modules, sorted(m for m in sys.modules if 'tensorflow' in m)[:5]"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
