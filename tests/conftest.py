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
OMNIGLOT_DIR = REPO.parent / "shared" / "data" / "omniglot"


@pytest.fixture
def omniglot_dir():
    """Path to the real Omniglot zips in ../shared; skips when they are absent."""
    if not (OMNIGLOT_DIR / "images_background_small1.zip").exists():
        pytest.skip(f"Omniglot zips not found at {OMNIGLOT_DIR} (../shared/data/omniglot is absent on this machine)")
    return OMNIGLOT_DIR


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
