"""Training the study's runs and recording them: one ``.jsonl`` line per finished run.

A run is ``(key, overrides, seed)`` (:func:`benchmarks.study.experiments.planned_runs`); its
record holds the key and seed, the overrides, the test metrics, ρ and rank of the embedded
training and test splits, the learned β, the batch composition of label samplers and, when
the protocol holds out validation classes, the per-epoch validation curve and the selected
epoch. Records are appended as runs finish, so an interrupted study resumes where it stopped
(a run interrupted mid-training starts again).
"""

import json
import multiprocessing
import os
import signal
import sys
import time

import numpy as np

from benchmarks.study.batches import batch_composition
from benchmarks.study.experiments import METRICS, REPO, planned_runs, resolved_config

# Loaded data per worker process, by the data section of the config (the configurations share a few).
_SPLITS = {}


def init_worker(threads):
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def _learned_beta(loss_object):
    """Min / mean / max of the learned per-class boundary β⁽⁰⁾ + β_class, when the loss learns one."""
    if getattr(loss_object, "class_beta", None) is None:
        return None
    beta = float(np.asarray(loss_object.global_beta)) + np.asarray(loss_object.class_beta)
    return {"min": float(beta.min()), "mean": float(beta.mean()), "max": float(beta.max())}


def loaded_splits(config):
    """``(train, test)`` of ``config``'s data, read once per process."""
    from tfdml.experiment import load_split

    data_key = json.dumps(config["data"], sort_keys=True)
    if data_key not in _SPLITS:
        _SPLITS[data_key] = tuple(load_split(config, config["data"][f"{split}_split"]) for split in ("train", "test"))
    return _SPLITS[data_key]


def run_one(overrides, seed, data_root):
    """Train one configuration with one seed and return its record (without key and seed).

    The run trains as ``train.py`` trains (:meth:`tfdml.experiment.Experiment.fit`), in a temporary run
    folder: with validation classes (``data.validation``) the validation scores are logged every
    ``evaluation.every_n_epochs`` and the weights of the best ``evaluation.select_by`` epoch (the first on
    ties) are the ones measured on the test split.
    """
    import tempfile

    import keras

    from tfdml.evaluation import singular_values, spectral_decay
    from tfdml.experiment import Experiment
    from tfdml.training.run_folder import RunFolder

    started = time.perf_counter()
    config = resolved_config(overrides, seed, data_root)
    keras.backend.clear_session()
    experiment = Experiment(config, splits=loaded_splits(config))
    with tempfile.TemporaryDirectory(prefix="study-run-") as path:
        folder = RunFolder(path).prepare(config)
        fitted = experiment.fit(folder, verbose=0)
    test_embeddings = experiment.embed_test()
    train_embeddings = experiment.embed_train()
    metrics = experiment.evaluate(test_embeddings)
    spectra = {split: singular_values(x) for split, x in (("train", train_embeddings), ("test", test_embeddings))}
    record = {
        **{metric: float(metrics[metric]) for metric in METRICS},
        # Dead ReLU channels make the embedding rank-deficient (full ρ = inf): ρ within the spanned subspace, and its rank.
        "rho_train": spectral_decay(train_embeddings, nonzero_only=True),
        "rho_test": spectral_decay(test_embeddings, nonzero_only=True),
        "rank_train": int(np.count_nonzero(spectra["train"])),
        "rank_test": int(np.count_nonzero(spectra["test"])),
        "singular_values": {split: values.tolist() for split, values in spectra.items()},
        "final_loss": fitted.records[-1]["loss"],
        "learned_beta": _learned_beta(experiment.model.dml_loss),
        "seconds": time.perf_counter() - started,
    }
    if experiment.bank is None:  # label samplers plan their batches up front; batch-matching ones need the bank
        record["batch_composition"] = batch_composition(experiment.sampler, experiment.train_data.categories)
    if fitted.selected_epoch is not None:
        record["best_epoch"] = fitted.selected_epoch
        record["curve"] = fitted.records
    return record


def _images_trained(overrides, data_root):
    """Images one run of ``overrides`` trains on (epochs × steps × batch), or None when its epoch is
    the sampler's own (``steps_per_epoch: null``), which only the loaded data tells."""
    config = resolved_config(overrides, 0, data_root)
    if config["steps_per_epoch"] is None:
        return None
    return config["epochs"] * config["steps_per_epoch"] * config["sampler"]["batch_size"]


def estimated_minutes(pending, recorded, data_root, workers):
    """Wall time of the ``pending`` overrides' jobs, as text, from the ``seconds`` of the ``recorded`` ones.

    Scaled by images trained when every job states its budget, so a 4×-longer FastAP run is
    estimated 4× longer; otherwise the recorded mean per job. Unknown before anything is recorded.
    """
    if not pending:
        return "0 min"
    if not recorded:
        return "an unknown time (nothing recorded yet to time it by)"
    images = [_images_trained(overrides, data_root) for overrides in pending]
    done = [_images_trained(record["overrides"], data_root) for record in recorded]
    seconds = [record["seconds"] for record in recorded]
    if None in images or None in done:
        total = len(pending) * float(np.mean(seconds))
    else:
        total = sum(images) * sum(seconds) / sum(done)
    return f"{total / workers / 60:.0f} min"


def read_records(path):
    """The JSON lines of ``path`` (none when it does not exist yet)."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def append_record(record, path):
    """Append one JSON line and flush it to disk: a record is either whole or absent after a crash."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def run_jobs(jobs, work, workers, unit, path, record):
    """Run ``work(job)`` (see :func:`guarded`) for every ``(key, overrides, ...)`` job in ``workers``
    spawned processes and append ``record(job, result)`` to ``path`` as each finishes; return the
    number that failed."""
    import keras

    if not jobs:
        return 0
    progress = keras.utils.Progbar(len(jobs), unit_name=unit)
    threads = max(1, (os.cpu_count() or 1) // workers)
    failures = 0
    # Leaving the Pool's block terminates its workers, also on Ctrl-C or SIGTERM: none outlive the study.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("omniglot_study: terminated; rerun to resume."))
    with multiprocessing.get_context("spawn").Pool(workers, initializer=init_worker, initargs=(threads,)) as pool:
        for count, (job, result) in enumerate(pool.imap_unordered(work, jobs), 1):
            if isinstance(result, str):
                failures += 1
                print(f"\nFAILED {unit}: {' '.join(job[1])}\n  {result}")
            else:
                append_record(record(job, result), path)
            progress.update(count)
    return failures


def guarded(function, job, *arguments):
    """``(job, function(*arguments))``, or ``(job, error text)``: one failure must not stop the study."""
    try:
        return job, function(*arguments)
    except Exception as error:  # noqa: BLE001
        return job, f"{type(error).__name__}: {error}"


def _train_guarded(job):
    key, overrides, seed, data_root = job
    return guarded(run_one, job, overrides, seed, data_root)


def run_study(experiments, seeds, data_root, workers, protocol, tuned=None):
    """Train every planned run of ``protocol`` not yet in its results file; return the number that failed."""
    return train_runs(planned_runs(experiments, seeds, data_root, protocol, tuned), data_root, workers, protocol)


def train_runs(runs, data_root, workers, protocol):
    """Train the ``(key, overrides, seed)`` runs not yet in ``protocol``'s results file; return the number that failed."""
    recorded = read_records(protocol.results)
    done = {(record["key"], record["seed"]) for record in recorded}
    pending = [(*run, data_root) for run in runs if (run[0], run[2]) not in done]
    minutes = estimated_minutes([run[1] for run in pending], recorded, data_root, workers)
    print(
        f"{protocol.name}: {len(pending)} runs to train ({len(done)} already recorded in "
        f"{os.path.relpath(protocol.results, REPO)}); estimated {minutes} with {workers} worker(s)."
    )
    return run_jobs(pending, _train_guarded, workers, "run", protocol.results,
                    lambda job, result: {"key": job[0], "seed": job[2], "overrides": list(job[1]), **result})
