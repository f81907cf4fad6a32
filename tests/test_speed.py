"""The speed levers of the run that can be tested cheaply, and the end-to-end benchmark's table arithmetic
(its runs are far beyond the suite's budget; docs/speed.md)."""

import types

import numpy as np
import pytest

from benchmarks import end_to_end
from tfdml.experiment import loaded_once, validation_metrics
from tfdml.run import cached_evaluation


def run_result(wall, steps, first, validation, bare=None):
    phases = dict.fromkeys(end_to_end.PHASES, 1.0)
    phases.update(steps=steps, validation=validation, writes=2.0)
    return {"wall": wall, "cpu": wall, "phases": phases, "first_epoch_steps": first, "steps_per_epoch": 10,
            "epochs": 3, "batch_size": 64, "bare_step_ms": bare, "recall_at_1": 0.7, "map_at_r": 0.3,
            "selected_epoch": 2}


def test_end_to_end_table_derives_steps_shares_and_the_goal_ratios():
    ours = end_to_end.derived(run_result(wall=30.0, steps=12.0, first=4.0, validation=0.7, bare=380.0))
    assert ours["step_ms"] == pytest.approx(400.0)  # (12 - 4) s over 20 steps after the first epoch
    assert ours["images_per_s"] == pytest.approx(30 * 64 / 12.0)
    assert ours["validation_share"] == pytest.approx(0.7 / 14.7)
    assert ours["outside_training"] == pytest.approx(30.0 - 14.7)
    assert ours["other"] == pytest.approx(30.0 - 19.7)  # less the eight phases
    theirs = end_to_end.derived(run_result(wall=60.0, steps=40.0, first=14.0, validation=3.0))
    table = end_to_end.markdown_table({"tfdml": [ours], "pytorch+pml": [theirs]})
    assert "| tfdml wall / PyTorch wall | 0.50 (goal ≤ 0.60) |" in table
    assert "| tfdml step in run / bare step | 1.05 (goal ≤ 1.05) |" in table
    assert "| step in run (ms) | 400.0 | 1300.0 |" in table


def test_baselines_are_scored_once_per_embedding_and_settings(tmp_path):
    calls = []
    test_data = types.SimpleNamespace(labels=np.array([0, 0, 1, 1]), categories=None)
    config = {"run_dir": str(tmp_path), "evaluation": {"metrics": ["recall_at_k"], "recall_k": [1]}}
    experiment = types.SimpleNamespace(
        config=config, test_data=test_data,
        evaluate=lambda embeddings: calls.append(1) or {"recall_at_1": float(embeddings.sum()), "nmi": float("nan")},
    )
    pixels = np.arange(8, dtype=np.float32).reshape(4, 2)
    first = cached_evaluation(experiment, pixels)
    again = cached_evaluation(experiment, pixels.copy())
    assert len(calls) == 1 and again["recall_at_1"] == first["recall_at_1"] == 28.0 and np.isnan(again["nmi"])
    cached_evaluation(experiment, pixels + 1)  # other embeddings
    config["evaluation"]["recall_k"] = [1, 2]  # other settings
    cached_evaluation(experiment, pixels)
    test_data.labels = np.array([0, 1, 0, 1])  # other labels
    cached_evaluation(experiment, pixels)
    assert len(calls) == 4


def test_validation_leaves_clustering_out_unless_it_selects():
    metrics = ["recall_at_k", "map_at_r", "nmi", "f1"]
    assert validation_metrics(metrics, "val_recall_at_1") == ["recall_at_k", "map_at_r"]
    assert validation_metrics(metrics, "val_nmi") == ["recall_at_k", "map_at_r", "nmi"]


def test_training_images_loaded_once_are_the_same_pixels():
    import tensorflow as tf

    from tfdml.data import LabelledImages

    stored = tf.reshape(tf.range(5 * 3 * 3, dtype=tf.float32), (5, 3, 3, 1))
    data = LabelledImages(name="tiny", labels=np.arange(5), load=lambda index: tf.gather(stored, index) * 2.0)
    held = loaded_once(data)
    index = tf.constant(3, tf.int64)
    assert held.load is not data.load and np.array_equal(held.load(index), data.load(index))
    assert loaded_once(data, limit=100).load is data.load  # 5 images of 36 bytes: over the limit
