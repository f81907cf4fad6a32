"""train.py: argument errors name the argument; a short run trains, logs, exports and resumes."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(REPO, "train.py")
QUICK = ["--epochs", "2", "--set", "steps_per_epoch=3", "--set", "model.filters=8", "--set", "evaluation.every_n_epochs=1"]


def run_train(args, cwd, **kwargs):
    return subprocess.run([sys.executable, TRAIN, *args], cwd=cwd, capture_output=True, text=True, **kwargs)


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
def test_bad_arguments_fail_at_once_naming_the_argument(args, message, tmp_path):
    result = run_train(args, tmp_path, timeout=120)
    assert result.returncode != 0
    assert message in result.stderr
    assert not os.path.exists(tmp_path / "models")


def test_help_documents_the_options(tmp_path):
    out = run_train(["--help"], tmp_path, timeout=60).stdout
    for option in ("--epochs", "--batch-size", "--samples-per-class", "--embedding-dim", "--data-root", "--set", "--tune"):
        assert option in out


def test_short_run_trains_reports_exports_and_logs(tmp_path):
    result = run_train(QUICK + ["--name", "quick", "--export-gallery", "test"], tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "raw pixels" in result.stdout and "untrained" in result.stdout and "trained" in result.stdout
    assert os.path.exists(tmp_path / "models" / "quick" / "1" / "saved_model.pb")
    search = tf.saved_model.load(str(tmp_path / "models" / "quick-search" / "1")).signatures["serving_default"]
    answer = search(images=tf.zeros((2, 16, 16, 1)))
    assert answer["ids"].shape == (2, 10) and answer["labels"].numpy().min() >= 5  # test split: digits 5-9
    run_dir = tmp_path / "runs" / "quick"
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert "val_recall_at_1" in records[-1] and "val_map_at_r" in records[-1]
    assert (run_dir / "config.yaml").exists() and (run_dir / "logs").is_dir()
    assert sorted(os.listdir(run_dir / "checkpoints")) == ["epoch001.weights.h5", "epoch002.weights.h5"]


def test_kill_9_mid_training_then_rerun_resumes_without_losing_epochs(tmp_path):
    args = ["--epochs", "4", "--set", "steps_per_epoch=12", "--set", "model.filters=8", "--name", "resume", "--quiet"]
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


def test_rerun_with_a_different_config_in_the_same_run_dir_is_refused(tmp_path):
    assert run_train(QUICK + ["--name", "same"], tmp_path, timeout=600).returncode == 0
    result = run_train(QUICK + ["--name", "same", "--set", "loss.params.beta=0.6"], tmp_path, timeout=120)
    assert result.returncode != 0 and "different config" in result.stderr


def test_default_run_beats_raw_pixels_and_the_untrained_network_on_unseen_digits(tmp_path):
    """Issue 2's bar for `python train.py`: MAP@R and NMI on digits 5-9 above raw pixels and the untrained net."""
    sys.path.insert(0, REPO)
    from tfdml.training.config import load_config
    from tfdml.training.runner import train

    config = load_config(os.path.join(REPO, "pipelines", "digits_margin.yaml"), [f"run_dir={tmp_path}/runs", f"export.dir={tmp_path}/models"])
    rows = train(config, verbose=0)["metrics"]
    for metric in ("map_at_r", "nmi"):
        assert rows["trained"][metric] > rows["raw pixels"][metric] + 0.02, (metric, rows)
        assert rows["trained"][metric] > rows["untrained"][metric] + 0.05, (metric, rows)


@pytest.mark.parametrize("sampler", ["FRDSampler", "DDMSampler", "CoresetSampler"])
def test_memory_bank_recipes_train_and_keep_the_bank_equal_to_the_current_embeddings(sampler, tmp_path):
    sys.path.insert(0, REPO)
    from tfdml.sampling import indexed_batches
    from tfdml.training.config import load_config
    from tfdml.training.runner import Setup

    config = load_config(
        os.path.join(REPO, "pipelines", "digits_margin.yaml"),
        [f"sampler.class={sampler}", "sampler.samples_per_class=2", "sampler.params={pool_size: 200}",
         "model.filters=8", f"run_dir={tmp_path}"],
    )
    setup = Setup(config)
    assert setup.bank is not None and setup.bank.num_samples == len(setup.train_data)
    setup.model.fit(setup.batches, epochs=2, steps_per_epoch=2, callbacks=setup.sampler_callbacks(), verbose=0)
    expected = setup.embedder.predict(indexed_batches(setup.train_data, 256).map(lambda images, _: images), verbose=0)
    np.testing.assert_allclose(setup.bank.embeddings, expected, atol=1e-5)


def test_a_memory_bank_recipe_runs_end_to_end_from_the_command_line(tmp_path):
    result = run_train(
        QUICK + ["--name", "frd", "--set", "sampler.class=FRDSampler", "--set", "sampler.samples_per_class=2"],
        tmp_path, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert os.path.exists(tmp_path / "models" / "frd" / "1" / "saved_model.pb")
