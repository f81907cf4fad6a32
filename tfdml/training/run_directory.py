"""A run's folder: its file names, its lock, whether it holds progress, the recipe it was run with, its best epoch.

``<run_dir>/<name>/`` holds ``config.yaml`` (the resolved recipe), ``metrics.jsonl`` (one JSON
object per finished epoch), TensorBoard logs under ``logs/``, per-epoch weights under
``checkpoints/``, the Keras backup under ``backup/``, ``.lock`` (see :func:`hold`), once training
has finished ``final.weights.h5`` and the ``done.json`` marker, then ``exports.json`` (the pinned
export versions the run wrote), or ``diverged.json`` if training diverged.
"""

import contextlib
import fcntl
import json
import os
import shutil
import socket
import time

import numpy as np

from tfdml.io import FILE_MODE, write_file_atomically
from tfdml.training.config import ConfigError, dump_config, read_config

FINAL_WEIGHTS = "final.weights.h5"
CHECKPOINTS = os.path.join("checkpoints", "epoch{epoch:03d}.weights.h5")
DONE_FILE = "done.json"
DIVERGED_FILE = "diverged.json"
EXPORTS_FILE = "exports.json"
LOCK_FILE = ".lock"
# Sections that do not change what is trained: a finished run may be exported again with other settings.
EXPORT_SECTIONS = ("export",)


def best_epoch(metrics_file, key):
    """The epoch with the highest ``key`` among the records of ``metrics_file`` (the first on ties;
    records where it is null, i.e. not finite, are skipped)."""
    records = []
    if os.path.exists(metrics_file):
        with open(metrics_file) as f:
            records = [json.loads(line) for line in f if line.strip()]
    scored = [r for r in records if r.get(key) is not None and np.isfinite(r[key])]
    if not scored:
        raise ConfigError(
            f"evaluation.select_by={key!r}: no epoch in {metrics_file} logged it; name a key the validation "
            "evaluation logs (e.g. val_recall_at_1)."
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


def run_folder(config, chief=True, task_id=0):
    """``<run_dir>/<name>``; workers other than the chief keep their own backups and logs beside the chief's."""
    run_dir = os.path.join(config["run_dir"], config["name"])
    return run_dir if chief else os.path.join(run_dir, f"worker-{task_id}")


@contextlib.contextmanager
def hold(run_dir):
    """Hold ``run_dir`` for this process while the block runs: an exclusive ``fcntl.flock`` on its ``.lock``.

    A second run of the same name is refused with a :class:`ConfigError` naming the folder and the
    holder. The operating system releases the lock when its process ends, even by ``kill -9``,
    so a dead run never blocks its name.
    """
    os.makedirs(run_dir, exist_ok=True)
    lock = os.open(os.path.join(run_dir, LOCK_FILE), os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(lock, 200).decode(errors="replace").strip() or "another process"
            raise ConfigError(
                f"{run_dir} is in use by another run ({holder}); wait for it to end or choose another name "
                "(--set name=...)."
            ) from None
        # Written in place, not through tfdml.io: a rename would give the path a new, unlocked file.
        os.ftruncate(lock, 0)
        since = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        os.write(lock, f"pid {os.getpid()} on {socket.gethostname()}, since {since}".encode())
        yield
    finally:
        os.close(lock)


def prepare_run_dir(config, chief=True, task_id=0):
    """The run's folder, checked against and then holding ``config``.

    A folder with progress (see :func:`has_progress`) under a config that differs in more
    than its ``export`` section is refused; one without progress (the run failed before its
    first epoch ended) or whose training diverged is taken over by the new config, which
    starts afresh.
    """
    run_dir = run_folder(config, chief, task_id)
    saved = os.path.join(run_dir, "config.yaml")
    backup = os.path.join(run_dir, "backup")
    diverged = os.path.join(run_dir, DIVERGED_FILE)
    if os.path.exists(saved) and has_progress(run_dir):
        if training_part(read_config(saved)) != training_part(config):
            if not os.path.exists(diverged):
                raise ConfigError(
                    f"{run_dir} holds a run of a different config ({saved}); resume it with the same recipe and "
                    "overrides (only export.* may differ), or choose another name (--set name=...) or delete the "
                    "directory."
                )
            if os.path.isdir(backup):  # the diverged run's epochs are of no use to another config
                shutil.rmtree(backup)
    os.makedirs(run_dir, exist_ok=True)
    dump_config(config, saved)
    if os.path.exists(diverged):
        # The same config is tried again from its last finite epoch; it writes the marker again if it diverges.
        os.remove(diverged)
    if not os.path.isdir(backup) and not os.path.exists(os.path.join(run_dir, DONE_FILE)):
        # Nothing to resume: this is a fresh start, so earlier epochs' records do not belong to it.
        for stale in ("metrics.jsonl", EXPORTS_FILE):
            if os.path.exists(os.path.join(run_dir, stale)):
                os.remove(os.path.join(run_dir, stale))
    return run_dir


def earlier_exports(config):
    """Export folders (absolute paths) that the finished run of ``config`` wrote with the same export
    settings: rerunning it completes an interrupted export instead of refusing a pinned ``export.version``."""
    run_dir = run_folder(config)
    saved, exports = os.path.join(run_dir, "config.yaml"), os.path.join(run_dir, EXPORTS_FILE)
    if not (os.path.exists(os.path.join(run_dir, DONE_FILE)) and os.path.exists(saved) and os.path.exists(exports)):
        return set()
    if training_part(read_config(saved)) != training_part(config):
        return set()
    with open(exports) as f:
        written = json.load(f)
    return {target for target, settings in written.items() if settings == config["export"]}


def record_export(run_dir, target, export_config):
    """Note in ``exports.json`` that the run exports ``target`` with ``export_config``; written before the
    export, so a kill during it leaves either no target (exported again) or the whole one (kept)."""
    path = os.path.join(run_dir, EXPORTS_FILE)
    written = {}
    if os.path.exists(path):
        with open(path) as f:
            written = json.load(f)
    written[os.path.abspath(target)] = export_config
    write_file_atomically(path, json.dumps(written, indent=1))
