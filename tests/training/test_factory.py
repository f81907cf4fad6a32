"""tfdml.training.factory: a recipe's names resolve to classes and builders, and each class gets exactly
the data arguments it declares; the optimizer, backbone and dataset registries behind the recipe names."""

import types

import keras
import numpy as np
import pytest

from tfdml import data, losses, mining, sampling
from tfdml.models import BACKBONES, build_embedding_model
from tfdml.training.config import ConfigError, load_config
from tfdml.training.factory import build_loss, build_optimizer, build_sampler, construct, resolve_class
from tfdml.training.optimizers import OPTIMIZERS


def recipe(*overrides):
    return load_config(None, list(overrides))


def train_split(categories=True):
    labels = np.repeat(np.arange(12), 5)
    return types.SimpleNamespace(labels=labels, categories=labels // 4 if categories else None)


def test_resolve_class_finds_registered_classes_of_the_section_kind():
    assert resolve_class("loss", "MarginLoss") is losses.MarginLoss
    assert resolve_class("miner", "SemiHardMiner") is mining.SemiHardMiner
    assert resolve_class("sampler", "CategoryHardSampler") is sampling.CategoryHardSampler


@pytest.mark.parametrize(
    "kind, name, module",
    [
        ("loss", "NoSuchLoss", "tfdml.losses"),
        ("sampler", "MarginLoss", "tfdml.sampling"),
        ("miner", "SPCSampler", "tfdml.mining"),
    ],
)
def test_resolve_class_refuses_unknown_names_and_classes_of_another_kind(kind, name, module):
    with pytest.raises(ConfigError, match=rf"^{kind}.class='{name}' is not a class of {module}\.$"):
        resolve_class(kind, name)


def test_construct_passes_only_the_derived_arguments_a_class_declares_and_params_win():
    derived = {"num_classes": 7, "num_images": 50, "embedding_dim": 16, "miner": mining.BatchHardMiner()}
    triplet = construct("loss", {"class": "TripletLoss", "params": {"margin": 0.3}}, derived=derived)
    assert (triplet.margin, type(triplet.miner)) == (0.3, mining.BatchHardMiner)  # no num_classes: TypeError otherwise
    section = {"class": "MarginLoss", "params": {"beta_class": True, "num_classes": 9}}
    margin = construct("loss", section, derived=derived)
    assert margin.num_classes == 9 and margin.num_images == 50
    always = {"seed": 5}
    assert construct("miner", {"class": "SemiHardMiner", "params": {}}, always=always).seed == 5


def test_construct_errors_name_the_section_and_class():
    with pytest.raises(ConfigError, match=r"^loss \(TripletLoss\): .*no_such_argument"):
        construct("loss", {"class": "TripletLoss", "params": {"no_such_argument": 1}})
    with pytest.raises(ConfigError, match=r"^loss \(TripletLoss\): TripletLoss: margin must be"):
        construct("loss", {"class": "TripletLoss", "params": {"margin": -1.0}})


def test_build_loss_gives_the_recipe_miner_to_the_loss():
    config = recipe(
        "loss.class=TripletLoss", "miner.class=DistanceWeightedMiner", "miner.params={cutoff: 0.6}", "seed=3"
    )
    loss = build_loss(config, num_classes=4, num_images=20)
    assert isinstance(loss.miner, mining.DistanceWeightedMiner) and (loss.miner.cutoff, loss.miner.seed) == (0.6, 3)


def test_categories_go_only_to_the_samplers_that_declare_them():
    split = train_split()
    hard = build_sampler(recipe("sampler.class=CategoryHardSampler", "sampler.batch_size=10"), split)
    np.testing.assert_array_equal(hard.categories, split.categories)
    for name in ("SPCSampler", "RandomClassSampler", "SPCRandomSampler"):
        sampler = build_sampler(recipe(f"sampler.class={name}", "sampler.batch_size=10"), split)
        assert "categories" not in sampler.data_arguments and not hasattr(sampler, "categories")
    spc = build_sampler(recipe("sampler.batch_size=12", "sampler.samples_per_class=3", "seed=8"), split)
    assert (spc.samples_per_class, spc.batch_size, spc.seed) == (3, 12, 8)


def test_a_category_sampler_on_data_without_categories_is_a_config_error():
    config = recipe("sampler.class=CategoryHardSampler", "sampler.batch_size=10")
    with pytest.raises(ConfigError, match=r"CategoryHardSampler.*data.name='digits'\) has no categories"):
        build_sampler(config, train_split(categories=False))


def test_memory_bank_samplers_get_the_bank():
    split = train_split()
    bank = sampling.MemoryBank(len(split.labels), 4)
    config = recipe("sampler.class=FRDSampler", "sampler.batch_size=10", "sampler.samples_per_class=2")
    sampler = build_sampler(config, split, bank)
    assert sampler.bank is bank


@pytest.mark.parametrize(
    "name, kind, decay",
    [
        ("adam", keras.optimizers.Adam, 1e-4),
        ("Adam", keras.optimizers.Adam, 0.0),
        ("adamw", keras.optimizers.AdamW, 1e-4),
        ("sgd", keras.optimizers.SGD, 1e-4),
    ],
)
def test_optimizers_resolve_by_name(name, kind, decay):
    config = recipe(f"optimizer.name={name}", "optimizer.learning_rate=0.01", f"optimizer.weight_decay={decay}")
    model = build_embedding_model("convnet", embedding_dim=4, filters=2, blocks=1)
    optimizer = build_optimizer(config, steps_per_epoch=1, model=model)
    assert isinstance(optimizer, kind) and optimizer.learning_rate.numpy() == pytest.approx(0.01)
    assert optimizer.weight_decay == (decay or None)
    if kind is keras.optimizers.SGD:
        assert optimizer.momentum == 0.9


def test_an_unknown_optimizer_is_one_error_listing_the_known_ones():
    config = recipe()
    config["optimizer"]["name"] = "lamb"  # past validation, which refuses it first
    with pytest.raises(ConfigError, match=r"^optimizer.name: unknown optimizer 'lamb'; expected one of adam, adamw, sgd\.$"):
        build_optimizer(config, steps_per_epoch=1, model=build_embedding_model("convnet", filters=2, blocks=1))
    assert OPTIMIZERS.names == ("adam", "adamw", "sgd")


def test_backbones_resolve_by_name_with_their_own_default_input():
    assert BACKBONES.names == ("convnet", "resnet50")
    model = build_embedding_model("convnet", embedding_dim=8, filters=4, blocks=2)
    assert model.input_shape == (None, 32, 32, 1) and model.output_shape == (None, 8)
    with pytest.raises(ValueError, match=r"^unknown backbone 'vit'; expected one of convnet, resnet50, or a keras.applications model.*, or hub:"):
        build_embedding_model("vit")
    with pytest.raises(ValueError, match="no pretrained weights"):
        build_embedding_model("convnet", weights="imagenet")


def test_datasets_resolve_by_name_and_alias():
    names = {"digits", "omniglot", "omniglot_tfds", "folder", "list", "cub200", "sop", "cars196", "multi_label_list", "omniglot_pairs", "unlabelled_folder"}
    assert names <= set(data.READERS.names)
    assert data.READERS.get("cub200") is data.READERS.get("caltech_birds2011")
    assert data.READERS.get("sop") is data.READERS.get("stanford_online_products")
    digits = data.load("digits", split="test", image_size=None)
    assert len(set(digits.labels)) == 5 and digits.categories is None
    listing = r"^unknown dataset 'imagenet'; expected one of caltech_birds2011, .*unlabelled_folder\.$"
    with pytest.raises(ValueError, match=listing):
        data.load("imagenet")
