"""A run's folder as one object: its files, its lock, its progress, the recipe it ran, its best epoch.

``RunFolder(path)`` names every file a run writes, so no caller spells them:

- ``config.yaml``: the resolved recipe; ``metrics.jsonl``: one JSON object per finished epoch;
- ``logs/``: TensorBoard; ``checkpoints/epoch001.weights.h5``, …: per-epoch weights (model selection);
- ``backup/``: the resumable Keras backup (:class:`~tfdml.training.callbacks.AtomicBackupAndRestore`);
- ``final.weights.h5`` and ``done.json`` once training has finished (``done.json`` names the selected
  epoch when a validation key chose it), or ``diverged.json`` if training diverged;
- ``exports.json``: the pinned export versions the run wrote; ``.lock``: see :meth:`RunFolder.hold`.

Every way of training a recipe (``train.py``, a tuning trial, a study run) trains in one of these,
so all of them resume, stop on divergence and select their epoch the same way.
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
from tfdml.training.distribute import is_chief

# Sections that do not change what is trained: a finished run may be exported again with other settings.
EXPORT_SECTIONS = ("export",)


def training_part(config):
    """``config`` without the sections that only concern exporting."""
    return {key: value for key, value in config.items() if key not in EXPORT_SECTIONS}


def read_records(path):
    """The JSON-lines records of ``path``; none when it does not exist."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def best_epoch(records, key, source="the run's records"):
    """The epoch with the highest ``key`` among ``records`` (the first on ties; records where it is null,
    i.e. not finite, are skipped). ``source`` names where they come from in the error."""
    scored = [r for r in records if r.get(key) is not None and np.isfinite(r[key])]
    if not scored:
        raise ConfigError(
            f"evaluation.select_by={key!r}: no epoch in {source} logged it; name a key the validation "
            "evaluation logs (e.g. val_recall_at_1)."
        )
    return max(scored, key=lambda r: (r[key], -r["epoch"]))["epoch"]


class RunFolder:
    """The folder of one training run (see the module docstring for its files).

    >>> folder = RunFolder.of(config)            # <run_dir>/<name>
    >>> with folder.hold():
    ...     folder.prepare(config)
    ...     Experiment(config).fit(folder)
    >>> folder.done()["best_epoch"], folder.records()[-1]["loss"]
    """

    CHECKPOINT_PATTERN = os.path.join("checkpoints", "epoch{epoch:03d}.weights.h5")

    def __init__(self, path):
        self.path = os.fspath(path)

    def __repr__(self):
        return f"RunFolder({self.path!r})"

    @classmethod
    def of(cls, config, strategy=None):
        """``<run_dir>/<name>``; a multi-worker strategy's workers other than the chief keep their own
        backups and logs in ``worker-<task id>/`` beside the chief's."""
        path = os.path.join(config["run_dir"], config["name"])
        if strategy is None or is_chief(strategy):
            return cls(path)
        task_id = getattr(getattr(strategy, "cluster_resolver", None), "task_id", 0)
        return cls(os.path.join(path, f"worker-{task_id}"))

    def file(self, name):
        return os.path.join(self.path, name)

    @property
    def config_file(self):
        return self.file("config.yaml")

    @property
    def metrics_file(self):
        return self.file("metrics.jsonl")

    @property
    def logs_dir(self):
        return self.file("logs")

    @property
    def backup_dir(self):
        return self.file("backup")

    def checkpoint(self, epoch):
        """The weights saved at the end of (1-based) ``epoch``."""
        return self.file(self.CHECKPOINT_PATTERN.format(epoch=epoch))

    @property
    def final_weights(self):
        return self.file("final.weights.h5")

    @property
    def done_file(self):
        return self.file("done.json")

    @property
    def diverged_file(self):
        return self.file("diverged.json")

    @property
    def exports_file(self):
        return self.file("exports.json")

    @property
    def lock_file(self):
        return self.file(".lock")

    def records(self):
        """The per-epoch records (``metrics.jsonl``), first epoch first."""
        return read_records(self.metrics_file)

    def is_done(self):
        """Whether training finished (final weights and ``done.json`` written)."""
        return os.path.exists(self.done_file)

    def done(self):
        """The ``done.json`` marker: ``finished`` (a time) and, when an epoch was selected, ``best_epoch``
        and ``select_by``."""
        with open(self.done_file) as f:
            return json.load(f)

    def finished_epochs(self):
        """Epochs the backup holds (0 without one): where a rerun resumes."""
        path = os.path.join(self.backup_dir, "training_metadata.json")
        if not os.path.exists(path):
            return 0
        with open(path) as f:
            return int(json.load(f)["epoch"])

    def best_epoch(self, key):
        """The epoch with the highest ``key`` in :meth:`records` (the first on ties)."""
        return best_epoch(self.records(), key, self.metrics_file)

    def has_progress(self):
        """Whether the folder holds a finished epoch or a finished training (something a rerun resumes)."""
        return (
            self.is_done()
            or os.path.isdir(self.backup_dir)
            or (os.path.exists(self.metrics_file) and os.path.getsize(self.metrics_file) > 0)
        )

    @contextlib.contextmanager
    def hold(self):
        """Hold the folder for this process while the block runs: an exclusive ``fcntl.flock`` on its ``.lock``.

        A second run of the same folder is refused with a :class:`ConfigError` naming the folder and the
        holder. The operating system releases the lock when its process ends, even by ``kill -9``,
        so a dead run never blocks its name.
        """
        os.makedirs(self.path, exist_ok=True)
        lock = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(lock, 200).decode(errors="replace").strip() or "another process"
                raise ConfigError(
                    f"{self.path} is in use by another run ({holder}); wait for it to end or choose another name "
                    "(--set name=...)."
                ) from None
            # Written in place, not through tfdml.io: a rename would give the path a new, unlocked file.
            os.ftruncate(lock, 0)
            since = time.strftime("%Y-%m-%d %H:%M:%S %Z")
            os.write(lock, f"pid {os.getpid()} on {socket.gethostname()}, since {since}".encode())
            yield self
        finally:
            os.close(lock)

    def prepare(self, config):
        """Check the folder against ``config``, then make it hold ``config``; returns the folder.

        A folder with progress (see :meth:`has_progress`) under a config that differs in more
        than its ``export`` section is refused; one without progress (the run failed before its
        first epoch ended) or whose training diverged is taken over by the new config, which
        starts afresh.
        """
        diverged = os.path.exists(self.diverged_file)
        if os.path.exists(self.config_file) and self.has_progress():
            if training_part(read_config(self.config_file)) != training_part(config):
                if not diverged:
                    raise ConfigError(
                        f"{self.path} holds a run of a different config ({self.config_file}); resume it with the same "
                        "recipe and overrides (only export.* may differ), or choose another name (--set name=...) or "
                        "delete the directory."
                    )
                if os.path.isdir(self.backup_dir):  # the diverged run's epochs are of no use to another config
                    shutil.rmtree(self.backup_dir)
        os.makedirs(self.path, exist_ok=True)
        dump_config(config, self.config_file)
        if diverged:
            # The same config is tried again from its last finite epoch; it writes the marker again if it diverges.
            os.remove(self.diverged_file)
        if not os.path.isdir(self.backup_dir) and not self.is_done():
            # Nothing to resume: this is a fresh start, so earlier epochs' records do not belong to it.
            for stale in (self.metrics_file, self.exports_file):
                if os.path.exists(stale):
                    os.remove(stale)
        return self

    def earlier_exports(self, config):
        """Export folders (absolute paths) that this folder's finished run of ``config`` wrote with the same
        export settings: rerunning it completes an interrupted export instead of refusing a pinned
        ``export.version``."""
        if not (self.is_done() and os.path.exists(self.config_file) and os.path.exists(self.exports_file)):
            return set()
        if training_part(read_config(self.config_file)) != training_part(config):
            return set()
        with open(self.exports_file) as f:
            written = json.load(f)
        return {target for target, settings in written.items() if settings == config["export"]}

    def record_export(self, target, export_config):
        """Note in ``exports.json`` that the run exports ``target`` with ``export_config``; written before the
        export, so a kill during it leaves either no target (exported again) or the whole one (kept)."""
        written = {}
        if os.path.exists(self.exports_file):
            with open(self.exports_file) as f:
                written = json.load(f)
        written[os.path.abspath(target)] = export_config
        write_file_atomically(self.exports_file, json.dumps(written, indent=1))
