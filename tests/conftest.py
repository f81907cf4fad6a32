import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Each xdist worker (and the train.py processes its tests start) gets its share of the cores for the work
# inside an op: TensorFlow's default of one thread per core in every worker oversubscribes the machine w times
# over. Inter-op threads stay as they are: collective ops of a 2-replica strategy wait on each other.
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _workers > 1:
    _threads = str(max(1, (os.cpu_count() or 1) // _workers))
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", _threads)

import numpy as np
import pytest
import tensorflow as tf

# Two logical CPU devices so tf.distribute tests can build a 2-replica MirroredStrategy;
# this must happen before TensorFlow initialises its devices.
_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(_cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)

REPO = pathlib.Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config, items):
    """Put the `slow` tests (end-to-end runs) at the front of every xdist worker's first share.

    pytest-xdist's worksteal scheduler hands each of w workers a contiguous share of the collection
    (the first ``n // w`` items, then ``(n - n // w) // (w - 1)`` of the rest, ...) and an idle worker steals
    the tail of the longest queue. Dealing the slow tests' files round-robin to the heads of the shares starts
    them first on every worker, so the run does not end with one worker alone on a long test; a file's slow
    tests stay together, so its module fixtures are built once.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    files = {}
    for item in items:
        if item.get_closest_marker("slow"):
            files.setdefault(item.nodeid.split("::")[0], []).append(item)
    if workers < 2 or not files:
        return
    fast = [item for item in items if not item.get_closest_marker("slow")]
    groups = list(files.values())
    ordered, left = [], len(items)
    for worker in range(workers):
        share = left // (workers - worker)
        heads = [item for group in groups[worker::workers] for item in group]
        taken = max(0, share - len(heads))
        ordered += heads + fast[:taken]
        fast = fast[taken:]
        left -= share
    items[:] = ordered + fast


@pytest.fixture
def omniglot_dir():
    """The folder of the real Omniglot zips that ship with tfdml (package data): never absent."""
    from tfdml.data.omniglot import PACKAGED_ROOT

    return PACKAGED_ROOT


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _seed():
    tf.random.set_seed(0)
    np.random.seed(0)


@pytest.fixture(scope="session")
def mirrored_strategy():
    """One 2-replica MirroredStrategy for the whole session: several strategies over the same devices
    in one process make their collective ops' instance keys collide."""
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
