import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import tensorflow as tf

# Two logical CPU devices so tf.distribute tests can build a 2-replica MirroredStrategy;
# this must happen before TensorFlow initialises its devices.
_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(_cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)

REPO = pathlib.Path(__file__).resolve().parents[1]


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
