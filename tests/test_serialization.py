"""tfdml.serialization: configs read from constructor signatures, for every sampler (losses and miners:
tests/test_registry.py), nested objects included, and a loud error for an argument a class does not store."""

import inspect
import json

import keras
import numpy as np
import pytest

from tfdml import losses, mining, sampling
from tfdml.serialization import constructor_arguments, constructor_config


def registered_samplers():
    """The sampler classes registered under the Keras package ``"tfdml"``."""
    objects = keras.saving.get_custom_objects()
    return {
        cls
        for key, cls in objects.items()
        if key.startswith("tfdml>") and inspect.isclass(cls) and issubclass(cls, sampling.BatchSampler)
    }


def samplers():
    """Every registered sampler, each optional argument set to a value other than its default."""
    labels = np.repeat(np.arange(12), 5)
    categories = labels // 4
    bank = sampling.MemoryBank(labels.size, 4, seed=2)
    matching = dict(bank=bank, batch_size=12, samples_per_class=3, pool_size=30, batches_per_epoch=2, seed=1)
    return [
        sampling.SPCSampler(
            labels, batch_size=12, samples_per_class=3, small_classes="exclude", batches_per_epoch=4, seed=1
        ),
        sampling.SPCRandomSampler(labels, batch_size=12, seed=1),
        sampling.RandomClassSampler(labels, batch_size=12, seed=1),
        sampling.CategoryHardSampler(labels, categories, batch_size=12, batches_per_pair=2, seed=1),
        sampling.CategoryVersusUncategorisedSampler(
            labels, np.where(categories == 0, -1, categories), batch_size=12, seed=1
        ),
        sampling.CoresetSampler(labels, **matching),
        sampling.DDMSampler(labels, num_candidate_batches=3, num_bins=7, **matching),
        sampling.FRDSampler(labels, num_candidate_batches=3, **matching),
        sampling.ViewsSampler(labels, batch_size=12, views=3, batches_per_epoch=4, seed=1),
        sampling.SharedLabelSampler(np.eye(12, dtype=int)[labels] | np.eye(12, dtype=int)[(labels + 1) % 12],
                                    batch_size=12, samples_per_label=3, seed=1),
    ]


def defaults(cls):
    """``{argument: default}`` of ``cls``'s constructor, through the constructors its ``**kwargs`` reach."""
    found = {}
    for owner in cls.__mro__[:-1]:
        if "__init__" in vars(owner):
            for parameter in inspect.signature(owner.__init__).parameters.values():
                if parameter.default is not parameter.empty:
                    found.setdefault(parameter.name, parameter.default)
    return found


@pytest.mark.parametrize("sampler", samplers(), ids=lambda sampler: type(sampler).__name__)
def test_every_sampler_round_trips_through_json_with_non_default_arguments(sampler):
    config = sampler.get_config()
    assert set(config) == set(constructor_arguments(type(sampler)))
    # Non-default values: an argument left out of the config would come back as its default and differ.
    assert all(config[name] != default for name, default in defaults(type(sampler)).items()), config
    saved = json.loads(json.dumps(keras.saving.serialize_keras_object(sampler)))
    restored = keras.saving.deserialize_keras_object(saved)
    assert type(restored) is type(sampler) and restored.get_config() == config
    if "bank" not in config:  # a bank is rebuilt fresh (its embeddings are not serialised)
        np.testing.assert_array_equal(restored.plan_epoch(0), sampler.plan_epoch(0))


def test_the_round_trip_covers_every_registered_sampler():
    assert {type(sampler) for sampler in samplers()} == registered_samplers()


def test_only_the_category_samplers_take_categories():
    takes = {cls.__name__ for cls in registered_samplers() if "categories" in constructor_arguments(cls)}
    declares = {cls.__name__ for cls in registered_samplers() if "categories" in cls.data_arguments}
    assert takes == declares == {"CategoryHardSampler", "CategoryVersusUncategorisedSampler"}


def test_configs_saved_when_every_sampler_took_categories_still_load():
    sampler = sampling.SPCSampler(np.repeat(np.arange(6), 4), batch_size=8, samples_per_class=4, seed=2)
    old = {**sampler.get_config(), "categories": [0] * 24}
    assert sampling.SPCSampler.from_config(old).get_config() == sampler.get_config()


def test_constructor_arguments_follow_kwargs_to_the_base_constructors():
    assert constructor_arguments(sampling.DDMSampler) == [
        "labels", "bank", "batch_size", "num_bins", "num_candidate_batches", "samples_per_class", "pool_size",
        "batches_per_epoch", "seed",
    ]


def test_nested_miners_serialise_inside_losses_and_miners():
    miner = mining.RhoRegularizedMiner(mining.SemiHardMiner(margin=0.4, seed=1), seed=2)
    loss = losses.TripletLoss(margin=0.3, miner=miner)
    config = loss.get_config()
    assert config["miner"]["class_name"] == "RhoRegularizedMiner"
    assert config["miner"]["config"]["miner"]["config"]["margin"] == 0.4
    restored = keras.saving.deserialize_keras_object(json.loads(json.dumps(keras.saving.serialize_keras_object(loss))))
    assert type(restored.miner.miner) is mining.SemiHardMiner and restored.get_config() == config


class Renamed(mining.Miner):
    """Stores ``width`` as ``self.size``: its config would reload every instance with the default width."""

    def __init__(self, width=3, seed=None):
        super().__init__(seed=seed)
        self.size = width


def test_an_argument_not_stored_under_its_own_name_fails_loudly():
    message = r"^Renamed.get_config: constructor argument 'width' is not stored as self.width"
    with pytest.raises(TypeError, match=message):
        Renamed(width=5).get_config()


def test_config_values_are_plain_json():
    class Holder:
        def __init__(self, array, pair, nested):
            self.array, self.pair, self.nested = array, pair, nested

    config = constructor_config(Holder(np.arange(3), (np.float32(0.5), 2), {"scale": (1, 2)}))
    assert config == {"array": [0, 1, 2], "pair": [0.5, 2], "nested": {"scale": [1, 2]}}
    assert type(config["pair"][0]) is float
