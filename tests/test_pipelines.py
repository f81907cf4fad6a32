"""Every recipe in pipelines/ is valid: it loads, and its loss, miner and sampler construct."""

import glob
import os
import types

import numpy as np
import pytest

from tfdml.losses import CrossBatchMemory
from tfdml.losses.base import DMLLoss
from tfdml.training.config import load_config
from tfdml.training.factory import build_loss, build_sampler

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = sorted(glob.glob(os.path.join(REPO, "pipelines", "*.yaml")))


def fake_train_split(num_classes=400, per_class=8, num_categories=12):
    labels = np.repeat(np.arange(num_classes), per_class)
    return types.SimpleNamespace(labels=labels, categories=labels % num_categories, __len__=lambda: len(labels))


def test_there_is_a_recipe_per_reproduced_setting():
    names = {os.path.basename(r) for r in RECIPES}
    assert {"digits_margin.yaml", "omniglot_margin.yaml", "omniglot_fastap.yaml", "fastap_sop.yaml", "wu_margin_sop.yaml"} <= names
    assert len([n for n in names if n.startswith("roth_cub200_")]) >= 20


@pytest.mark.parametrize("recipe", RECIPES, ids=os.path.basename)
def test_recipe_loads_and_its_parts_construct(recipe):
    config = load_config(recipe)
    train = fake_train_split()
    loss = build_loss(config, num_classes=400, num_images=len(train.labels), steps_per_epoch=10)
    assert isinstance(loss, DMLLoss)
    if config["memory"]["size"]:
        assert isinstance(loss, CrossBatchMemory) and loss.memory_size == config["memory"]["size"]
        loss = loss.loss
    if config["miner"]["class"]:
        assert type(loss.miner).__name__ == config["miner"]["class"]
    sampler = build_sampler(config, train)
    assert sampler.batch_size == config["sampler"]["batch_size"]


def test_roth_recipes_share_the_protocol():
    for recipe in [r for r in RECIPES if os.path.basename(r).startswith("roth_cub200_")]:
        config = load_config(recipe)
        assert config["model"]["backbone"] == "resnet50" and config["model"]["freeze_batchnorm"]
        assert config["model"]["embedding_dim"] == 128 and config["sampler"]["samples_per_class"] == 2
        assert config["sampler"]["batch_size"] == 112 and config["optimizer"]["learning_rate"] == 1e-5
        assert config["optimizer"]["weight_decay"] == 4e-4 and config["epochs"] == 150


def test_extending_recipe_replaces_the_parents_class_arguments():
    config = load_config(os.path.join(REPO, "pipelines", "omniglot_fastap.yaml"))
    assert config["loss"] == {"class": "FastAPLoss", "params": {"num_bins": 10}}
    assert config["tune"]["space"] == {} and config["miner"]["class"] is None
