"""Issue 33, recipe validation: every bad recipe value is one ConfigError naming the key and the value,
raised by ``load_config`` before anything is built or written (D13 optimizer, D15, D16, D31, D34)."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tfdml.data import TFDS_SPECS, digits
from tfdml.training import config as config_module
from tfdml.training.config import ConfigError, load_config, parse_yaml
from tfdml.experiment import load_split

import paths

REPO = str(paths.REPO)
PROBES = "/work/shared/reports/reliability-2026-12"


def write(tmp_path, text, name="recipe.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# D13 (optimizer part): a learning rate that is not a positive finite number trains nothing or ascends.
@pytest.mark.parametrize(
    "override, message",
    [
        ("optimizer.learning_rate=-1.0", "optimizer.learning_rate must be a finite number > 0; got -1.0"),
        ("optimizer.learning_rate=0", "optimizer.learning_rate must be .*; got 0"),
        ("optimizer.learning_rate=.nan", "optimizer.learning_rate must be .*; got nan"),
        ("optimizer.learning_rate=.inf", "optimizer.learning_rate must be .*; got inf"),
        ("optimizer.weight_decay=-1e-4", "optimizer.weight_decay must be null or a finite number >= 0; got -0.0001"),
        ("optimizer.weight_decay=.nan", "optimizer.weight_decay must be .*; got nan"),
        ("optimizer.weight_decay=.inf", "optimizer.weight_decay must be .*; got inf"),
    ],
)
def test_optimizer_values_outside_their_domain_are_refused(override, message):
    with pytest.raises(ConfigError, match=f"^{message}"):
        load_config(None, [override])


def test_optimizer_values_inside_their_domain_are_accepted():
    config = load_config(None, ["optimizer.learning_rate=1e-3", "optimizer.weight_decay=0", "optimizer.name=sgd"])
    assert config["optimizer"]["learning_rate"] == 1e-3
    assert load_config(None, ["optimizer.weight_decay=null"])["optimizer"]["weight_decay"] is None


# D15: --set extends=... was recorded in config.yaml and silently ignored.
def test_extends_cannot_be_overridden():
    with pytest.raises(ConfigError, match=r"^extends='pipelines/omniglot_margin.yaml' can only be set in a recipe file"):
        load_config(None, ["extends=pipelines/omniglot_margin.yaml"])


def test_extends_in_a_recipe_file_still_works(tmp_path):
    write(tmp_path, "epochs: 7\nseed: 3\n", "base.yaml")
    config = load_config(write(tmp_path, "extends: base.yaml\nepochs: 2\n"))
    assert (config["epochs"], config["seed"], config["extends"]) == (2, 3, None)


# D16: YAML keys are unique; PyYAML kept the last value silently.
def test_duplicate_keys_in_a_recipe_name_the_file_line_and_key(tmp_path):
    recipe = shutil.copy(os.path.join(PROBES, "dupkeys.yaml"), tmp_path / "dupkeys.yaml")
    with pytest.raises(ConfigError, match=rf"^{recipe}, line 4, column 1: duplicate key 'epochs' \(first on line 3\)"):
        load_config(str(recipe))


def test_duplicate_keys_are_found_in_nested_mappings_and_overrides(tmp_path):
    recipe = write(tmp_path, "loss:\n  class: MarginLoss\n  params: {beta: 1.2, beta: 0.6}\n")
    with pytest.raises(ConfigError, match=rf"{recipe}, line 3.*duplicate key 'beta'"):
        load_config(recipe)
    with pytest.raises(ConfigError, match=r"override 'loss.params=\{margin: 1, margin: 2\}'.*duplicate key 'margin'"):
        load_config(None, ["loss.params={margin: 1, margin: 2}"])


def test_a_merge_key_may_still_be_overridden_explicitly():
    # Keys a merge ('<<') brings in are defaults of the mapping, not duplicates.
    assert parse_yaml("a: &x {k: 1, j: 1}\nb:\n  <<: *x\n  k: 2\n", "text")["b"] == {"k": 2, "j": 1}


# D31: values that failed only when used (tracebacks after TensorFlow's import and the run folder).
@pytest.mark.parametrize(
    "overrides, message",
    [
        (["seed=-1"], "seed must be an integer in 0..4294967295 .*; got -1"),
        (["seed=99999999999999"], "seed must be .*; got 99999999999999"),
        (["data.image_size=0"], "data.image_size must be a positive integer; got 0"),
        (["data.image_size=-8"], "data.image_size must be a positive integer; got -8"),
        (["evaluation.recall_k=[a]"], r"evaluation.recall_k must be a list of positive integers; got \['a'\]"),
        (["evaluation.recall_k=[1, 0]"], r"evaluation.recall_k .*; got \[1, 0\]"),
        (["evaluation.recall_k=[true]"], r"evaluation.recall_k .*; got \[True\]"),
        (["evaluation.metrics=[bogus]"], r"evaluation.metrics must name metrics among .*nmi.*; got \['bogus'\]"),
        (["evaluation.every_n_epochs=0"], "evaluation.every_n_epochs must be a positive integer; got 0"),
        (["model.blocks=0"], "model.blocks must be a positive integer; got 0"),
        (["model.filters=0"], "model.filters must be a positive integer; got 0"),
        (["model.pooling=bogus"], "model.pooling must be one of avg, .*; got 'bogus'"),
        (["model.backbone=bogus"], "model.backbone: unknown backbone 'bogus'; expected one of convnet, "),
        (["data.name=bogus"], "data.name must be one of .*digits, .*omniglot, .*; got 'bogus'"),
        (["optimizer.name=lamb"], "optimizer.name must be one of adam, adamw, sgd; got 'lamb'"),
        ([f"name={'a' * 101}"], "at most 100 characters"),
        (
            ["evaluation.metrics=[nmi, fewshot_20way_1shot_within]"],
            r"evaluation.metrics=\['nmi', 'fewshot_20way_1shot_within'\]: fewshot_20way_1shot_within .*"
            "data.name='digits' has no categories",
        ),
        (["data.name=cub200", "evaluation.metrics=[fewshot_20way_1shot_within]"], "'cub200' has no categories"),
        (["data.channels=0"], "data.channels must be one of 1, 3; got 0"),
        (["data.channels=2"], "data.channels must be one of 1, 3; got 2"),
    ],
)
def test_bad_recipe_values_are_config_errors_naming_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_edge_values_are_accepted():
    config = load_config(
        None,
        [
            "seed=4294967295",
            f"name={'a' * 100}",
            "evaluation.recall_k=[]",
            "data.name=omniglot",
            "evaluation.metrics=[recall_at_k, fewshot_20way_1shot_within, fewshot_5way_5shot, pi_ratio]",
        ],
    )
    assert config["seed"] == 2**32 - 1 and config["evaluation"]["recall_k"] == []


def test_uncategorised_datasets_are_those_whose_readers_give_no_categories():
    assert digits(split="test", image_size=8).categories is None
    aliases = {"cub200": "caltech_birds2011", "caltech_birds2011": "caltech_birds2011", "cars196": "cars196"}
    assert set(config_module.UNCATEGORISED_DATASETS) == {"digits", *aliases}
    assert all(TFDS_SPECS[spec].category is None for spec in aliases.values())
    assert TFDS_SPECS["stanford_online_products"].category is not None


def test_a_recipe_that_is_a_folder_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=rf"^Recipe {tmp_path} is a folder"):
        load_config(str(tmp_path))


def test_run_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(ConfigError, match=rf"^run_dir='{tmp_path}/a_file': {tmp_path}/a_file is not a folder"):
        load_config(None, [f"run_dir={tmp_path}/a_file"])
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "taken").write_text("x")
    with pytest.raises(ConfigError, match="run_dir=.*taken.*not a folder"):
        load_config(None, [f"run_dir={tmp_path}/runs", "name=taken"])


@pytest.fixture
def unwritable_folder(tmp_path):
    """A folder this process cannot write into: mode 0500, or immutable when running as root."""
    folder = tmp_path / "locked"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o500)
        yield folder
        folder.chmod(0o700)
        return
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode:
        pytest.skip("running as root without chattr: no folder is unwritable")
    yield folder
    subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_unwritable_run_dir_is_refused_and_nothing_is_written(tmp_path, unwritable_folder):
    with pytest.raises(ConfigError, match=rf"^run_dir='{unwritable_folder}/runs': the folder {unwritable_folder} is not writable"):
        load_config(None, [f"run_dir={unwritable_folder}/runs"])
    config = load_config(None, [f"run_dir={tmp_path}/new/deep/runs"])
    assert config["run_dir"] == f"{tmp_path}/new/deep/runs"
    assert sorted(os.listdir(tmp_path)) == ["locked"]


# D34: the digits reader ignored data.channels.
def test_digits_reader_honours_channels():
    gray = digits(split="test", image_size=8).load(tf.constant(3, tf.int64)).numpy()
    rgb = digits(split="test", image_size=8, channels=3)
    image = rgb.load(tf.constant(3, tf.int64)).numpy()
    assert rgb.channels == 3 and image.shape == (8, 8, 3)
    np.testing.assert_array_equal(image, np.repeat(gray, 3, axis=-1))
    with pytest.raises(ValueError, match="channels must be 1 or 3; got 2"):
        digits(split="test", channels=2)


def test_a_digits_run_reads_data_channels():
    split = load_split(load_config(None, ["data.channels=3"]), "test")
    assert split.load(tf.constant(0, tf.int64)).shape == (32, 32, 3)


def test_train_py_reports_a_bad_value_in_one_line_before_writing_anything(tmp_path):
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "train.py"), os.path.join(REPO, "pipelines", "digits_margin.yaml"),
         "--quiet", "--set", "seed=-1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("train.py: error: seed must be an integer in 0..4294967295")
    assert os.listdir(tmp_path) == []
