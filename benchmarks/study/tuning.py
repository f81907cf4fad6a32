"""The tuning stage of a tuned protocol: the same small keras-tuner search for every configuration.

Each configuration's search (:func:`tfdml.tune.tune`, what ``train.py --tune`` runs) covers the
learning rate, its loss's own hyperparameters and, for the ρ-regularised rows, ``p_switch``; every
search has the protocol's ``max_trials`` trials of ``epochs`` epochs and is scored on the
validation classes (the protocol must hold some out). The best trial's values are appended to the
protocol's ``tuned`` file, keyed by the untuned configuration's key, and the final runs use them.
A search interrupted mid-way resumes from its finished trials (``runs/omniglot_study/tune/``).
"""

import os
import time

from benchmarks.study.experiments import REPO, configurations, resolved_config
from benchmarks.study.store import estimated_minutes, guarded, read_records, run_jobs

TUNE_RUNS = os.path.join(REPO, "runs", "omniglot_study", "tune")


def search_space(config, tuning):
    """``{config path: hyperparameter spec}`` searched for ``config``."""
    space = {**tuning["space"], **tuning["loss_space"].get(config["loss"]["class"], {})}
    if config["miner"]["params"].get("p_switch"):
        space["miner.params.p_switch"] = tuning["p_switch"]
    return space


def tune_configuration(key, overrides, data_root, tuning, run_dir=TUNE_RUNS):
    """Run (or resume) one configuration's search; return its tuned values and their validation score."""
    from tfdml.training.config import validate
    from tfdml.tune import make_tuner, trial_seconds, tune

    started = time.perf_counter()
    config = resolved_config(overrides, tuning["seed"], data_root)
    if config["data"]["validation"] is None:
        raise ValueError("tuning needs validation classes (data.validation): the test classes are never tuned on.")
    config.update(name=key, run_dir=run_dir)
    config["tune"] = {
        "algorithm": tuning["algorithm"], "max_trials": tuning["max_trials"], "objective": config["evaluation"]["select_by"],
        "epochs": tuning["epochs"], "space": search_space(config, tuning),
    }
    config = validate(config)
    best, _ = tune(config, verbose=0)
    tuner = make_tuner(config, os.path.join(run_dir, f"{key}-tune"), 0)
    best_trial = tuner.oracle.get_best_trials(1)[0]
    # A resumed search's own wall time misses the trials before the interruption; their recorded times do not.
    timed = trial_seconds(tuner)
    seconds = sum(timed.values()) if len(timed) == len(tuner.oracle.trials) else time.perf_counter() - started
    values = {}
    for path in config["tune"]["space"]:
        node = best
        for part in path.split("."):
            node = node[part]
        values[path] = node
    return {"values": values, "score": best_trial.score, "trials": tuning["max_trials"],
            "epochs": tuning["epochs"], "seconds": seconds}


def read_tuned(protocol):
    """``{untuned key: tuned values}`` recorded for ``protocol`` (empty for an untuned one)."""
    return {record["key"]: record["values"] for record in read_records(protocol.tuned)} if protocol.tuned else {}


def _tune_guarded(job):
    key, overrides, data_root, tuning = job
    return guarded(tune_configuration, job, key, overrides, data_root, tuning)


def tune_study(experiments, data_root, workers, protocol):
    """Tune every configuration of ``experiments`` not yet tuned under ``protocol``; return the number that failed."""
    tuned = read_tuned(protocol)
    untuned = configurations(experiments, protocol, data_root)
    pending = [(key, overrides, data_root, protocol.tuning) for key, (_, _, overrides) in untuned.items()
               if key not in tuned]
    # Every search has the same trials and epochs: a search's cost scales like one run of its configuration.
    minutes = estimated_minutes([job[1] for job in pending], read_records(protocol.tuned), data_root, workers)
    print(f"{protocol.name}: {len(pending)} configurations to tune ({len(tuned)} already tuned in "
          f"{os.path.relpath(protocol.tuned, REPO)}); estimated {minutes} with {workers} worker(s).")
    return run_jobs(pending, _tune_guarded, workers, "search", protocol.tuned,
                    lambda job, result: {"key": job[0], "overrides": list(job[1]), **result})
