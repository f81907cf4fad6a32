"""A run's folder: its file names, whether it holds progress, the recipe it was run with, its best epoch.

``<run_dir>/<name>/`` holds ``config.yaml`` (the resolved recipe), ``metrics.jsonl`` (one JSON
object per finished epoch), TensorBoard logs under ``logs/``, per-epoch weights under
``checkpoints/``, the Keras backup under ``backup/`` and, once training has finished,
``final.weights.h5`` and the ``done.json`` marker.
"""

import json
import os

import numpy as np

from tfdml.training.config import ConfigError, dump_config, read_config

FINAL_WEIGHTS = "final.weights.h5"
CHECKPOINTS = os.path.join("checkpoints", "epoch{epoch:03d}.weights.h5")
DONE_FILE = "done.json"
# Sections that do not change what is trained: a finished run may be exported again with other settings.
EXPORT_SECTIONS = ("export",)


def best_epoch(metrics_file, key):
    """The epoch with the highest ``key`` among the records of ``metrics_file`` (the first on ties)."""
    records = []
    if os.path.exists(metrics_file):
        with open(metrics_file) as f:
            records = [json.loads(line) for line in f if line.strip()]
    scored = [r for r in records if key in r and np.isfinite(r[key])]
    if not scored:
        raise ConfigError(
            f"evaluation.select_by={key!r}: no epoch in {metrics_file} logged it; name a key the validation "
            "evaluation logs (e.g. val_recall_at_1) and evaluate at least once (evaluation.every_n_epochs)."
        )
    return max(scored, key=lambda r: (r[key], -r["epoch"]))["epoch"]


def training_part(config):
    """``config`` without the sections that only concern exporting."""
    return {key: value for key, value in config.items() if key not in EXPORT_SECTIONS}


def has_progress(run_dir):
    """Whether ``run_dir`` holds a finished epoch or a finished training (something a rerun resumes)."""
    metrics = os.path.join(run_dir, "metrics.jsonl")
    return (
        os.path.exists(os.path.join(run_dir, DONE_FILE))
        or os.path.isdir(os.path.join(run_dir, "backup"))
        or (os.path.exists(metrics) and os.path.getsize(metrics) > 0)
    )


def prepare_run_dir(config, chief=True, task_id=0):
    """The run's folder, checked against and then holding ``config``.

    A folder with progress (see :func:`has_progress`) under a config that differs in more
    than its ``export`` section is refused; one without progress (the run failed before its
    first epoch ended) is taken over by the new config.
    """
    run_dir = os.path.join(config["run_dir"], config["name"])
    if not chief:
        # Workers other than the chief keep their own backups and logs beside the chief's.
        run_dir = os.path.join(run_dir, f"worker-{task_id}")
    saved = os.path.join(run_dir, "config.yaml")
    if os.path.exists(saved) and has_progress(run_dir):
        if training_part(read_config(saved)) != training_part(config):
            raise ConfigError(
                f"{run_dir} holds a run of a different config ({saved}); resume it with the same recipe and "
                "overrides (only export.* may differ), or choose another name (--set name=...) or delete the "
                "directory."
            )
    os.makedirs(run_dir, exist_ok=True)
    dump_config(config, saved)
    if not os.path.isdir(os.path.join(run_dir, "backup")) and not os.path.exists(os.path.join(run_dir, DONE_FILE)):
        # Nothing to resume: this is a fresh start, so earlier epochs' records do not belong to it.
        metrics_file = os.path.join(run_dir, "metrics.jsonl")
        if os.path.exists(metrics_file):
            os.remove(metrics_file)
    return run_dir
