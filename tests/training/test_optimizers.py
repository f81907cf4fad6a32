"""The recipe's ``optimizer`` section: schedules against their formulas, weight decay exclusions, the
backbone learning-rate multiplier and frozen epochs, clipping and validation. Exact resume with a schedule,
a multiplier and frozen epochs is tests/test_train_cli.py::test_interrupted_and_resumed_run_equals_the_uninterrupted_run."""

import copy
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdml.training.config import DEFAULTS, ConfigError, load_config
from tfdml.training.optimizers import FineTuningSGD, backbone_variables, learning_rate_schedule, recipe_optimizer


def section(**keys):
    return {**copy.deepcopy(DEFAULTS["optimizer"]), **keys}


def tiny_model():
    """A nested backbone (Dense + BatchNorm) and a Dense head, as build_embedding_model nests its backbone."""
    inputs = keras.Input((3,))
    features = keras.layers.BatchNormalization(name="bn")(keras.layers.Dense(4, name="conv")(inputs))
    backbone = keras.Model(inputs, features, name="features")
    outer = keras.Input((3,))
    return keras.Model(outer, keras.layers.Dense(2, name="head")(backbone(outer)), name="embedding_model")


def variables(model):
    return {v.path: v for v in model.trainable_variables}


def step(optimizer, model, gradient=1.0):
    """One update with every gradient equal to ``gradient``, in a graph as in training."""
    grads = [tf.fill(v.shape, gradient) for v in model.trainable_variables]
    tf.function(lambda: optimizer.apply_gradients(zip(grads, model.trainable_variables)))()


def snapshot(model):
    return {path: v.numpy().copy() for path, v in variables(model).items()}


def test_cosine_warms_up_linearly_then_follows_the_cosine_to_final_fraction():
    schedule = learning_rate_schedule(
        0.1, {"name": "cosine", "warmup_epochs": 2, "final_fraction": 0.1}, epochs=10, steps_per_epoch=10
    )
    for s in (0, 5, 20, 21, 50, 99, 100):
        if s <= 20:
            expected = 0.1 * s / 20
        else:
            expected = 0.1 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (s - 20) / 80)))
        assert float(schedule(s)) == pytest.approx(expected, rel=1e-5, abs=1e-8), s
    plain = learning_rate_schedule(0.1, {"name": "cosine", "warmup_epochs": 0, "final_fraction": 0.0}, 2, 5)
    assert float(plain(0)) == pytest.approx(0.1) and float(plain(10)) == pytest.approx(0.0, abs=1e-8)


def test_step_and_exponential_schedules_follow_their_formulas_in_epochs():
    step_schedule = learning_rate_schedule(0.1, {"name": "step", "boundaries_epochs": [2, 5], "factor": 0.1}, 10, 10)
    for s, expected in ((0, 0.1), (20, 0.1), (21, 0.01), (50, 0.01), (51, 0.001), (99, 0.001)):
        assert float(step_schedule(s)) == pytest.approx(expected), s
    smooth = learning_rate_schedule(0.1, {"name": "exponential", "decay_epochs": 2, "rate": 0.5, "staircase": False}, 10, 10)
    stairs = learning_rate_schedule(0.1, {"name": "exponential", "decay_epochs": 2, "rate": 0.5, "staircase": True}, 10, 10)
    for s in (0, 10, 20, 35):
        assert float(smooth(s)) == pytest.approx(0.1 * 0.5 ** (s / 20))
        assert float(stairs(s)) == pytest.approx(0.1 * 0.5 ** (s // 20))


def test_a_recipe_schedule_drives_the_optimizer_step_by_step():
    optimizer = recipe_optimizer(
        section(schedule={"name": "step", "boundaries_epochs": [1]}), epochs=3, steps_per_epoch=2, model=tiny_model()
    )
    rates = []
    for _ in range(4):
        rates.append(float(optimizer.learning_rate))
        optimizer.iterations.assign_add(1)
    assert rates == pytest.approx([1e-3, 1e-3, 1e-3, 1e-4])


@pytest.mark.parametrize(
    "override, message",
    [
        ("optimizer.schedule=cosine", r"optimizer.schedule must be a mapping such as \{name: cosine\}; got 'cosine'"),
        ("optimizer.schedule={name: linear}", r"optimizer.schedule.name must be one of cosine, step, exponential; got 'linear'"),
        ("optimizer.schedule={name: cosine, warmup: 2}", r"Unknown key optimizer.schedule.warmup for schedule cosine"),
        ("optimizer.schedule={name: cosine, warmup_epochs: 20}", r"optimizer.schedule.warmup_epochs=20 must be less than epochs=20"),
        ("optimizer.schedule={name: cosine, final_fraction: 2}", r"optimizer.schedule.final_fraction must be in \[0, 1\]"),
        ("optimizer.schedule={name: step}", r"optimizer.schedule.boundaries_epochs is required by schedule step"),
        ("optimizer.schedule={name: step, boundaries_epochs: [5, 2]}", r"boundaries_epochs must increase strictly"),
        ("optimizer.schedule={name: step, boundaries_epochs: [2], factor: 0}", r"optimizer.schedule.factor must be > 0"),
        ("optimizer.schedule={name: exponential, rate: 0.5}", r"optimizer.schedule.decay_epochs is required"),
        ("optimizer.schedule={name: exponential, decay_epochs: 1, rate: x}", r"optimizer.schedule.rate must be a finite number"),
        ("optimizer.schedule={name: exponential, decay_epochs: 1, rate: 0.5, staircase: 1}", r"staircase must be a boolean"),
        ("optimizer.backbone_lr_multiplier=0", r"optimizer.backbone_lr_multiplier must be > 0; got 0"),
        ("optimizer.backbone_frozen_epochs=-1", r"optimizer.backbone_frozen_epochs must be >= 0; got -1"),
        ("optimizer.clipnorm=0", r"optimizer.clipnorm must be > 0; got 0"),
        ("optimizer.global_clipnorm=-1", r"optimizer.global_clipnorm must be > 0"),
        ("optimizer.name=adamw", r"optimizer.weight_decay must be > 0 with optimizer.name=adamw; got 0.0"),
    ],
)
def test_fine_tuning_keys_outside_their_domain_are_refused_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_clipnorm_and_global_clipnorm_together_are_refused():
    with pytest.raises(ConfigError, match="optimizer.clipnorm and optimizer.global_clipnorm are both set"):
        load_config(None, ["optimizer.clipnorm=1", "optimizer.global_clipnorm=1"])


def test_a_schedule_key_can_be_set_from_the_command_line():
    config = load_config(None, ["optimizer.schedule.name=cosine", "optimizer.schedule.warmup_epochs=2"])
    assert config["optimizer"]["schedule"] == {"name": "cosine", "warmup_epochs": 2}


@pytest.mark.parametrize("name", ["adamw", "sgd"])
def test_weight_decay_spares_biases_and_normalisation_parameters(name):
    model = tiny_model()
    before = snapshot(model)
    optimizer = recipe_optimizer(section(name=name, learning_rate=0.1, weight_decay=0.5), epochs=1, steps_per_epoch=1, model=model)
    step(optimizer, model, gradient=0.0)
    after = snapshot(model)
    for path in ("conv/bias", "bn/gamma", "bn/beta", "head/bias"):
        np.testing.assert_array_equal(after[path], before[path])
    for path in ("conv/kernel", "head/kernel"):  # decay alone: w(1 - lr·wd)
        np.testing.assert_allclose(after[path], before[path] * (1 - 0.1 * 0.5), rtol=1e-6)


def test_the_backbone_moves_at_lr_times_the_multiplier_and_the_head_at_lr():
    model = tiny_model()
    assert {v.path for v in backbone_variables(model)} == {"conv/kernel", "conv/bias", "bn/gamma", "bn/beta"}
    before = snapshot(model)
    optimizer = recipe_optimizer(
        section(name="sgd", learning_rate=0.1, backbone_lr_multiplier=0.01), epochs=1, steps_per_epoch=1, model=model
    )
    step(optimizer, model, gradient=2.0)  # SGD's first momentum step is -lr·g
    after = snapshot(model)
    for path in before:
        rate = 0.1 * (0.01 if path.split("/")[0] in ("conv", "bn") else 1.0)
        np.testing.assert_allclose(after[path], before[path] - rate * 2.0, rtol=1e-6, atol=1e-7, err_msg=path)


def test_a_frozen_backbone_is_untouched_by_gradient_and_decay_then_learns():
    model = tiny_model()
    backbone = {v.path for v in backbone_variables(model)}
    optimizer = recipe_optimizer(
        section(name="adam", learning_rate=0.1, weight_decay=0.5, backbone_lr_multiplier=0.5, backbone_frozen_epochs=2),
        epochs=3, steps_per_epoch=1, model=model,
    )
    start = snapshot(model)
    for _ in range(2):
        step(optimizer, model)
    frozen = snapshot(model)
    for path in start:
        assert np.array_equal(frozen[path], start[path]) == (path in backbone), path
    step(optimizer, model)
    thawed = snapshot(model)
    # The backbone's first Adam step (moments untouched while frozen, bias correction at step 3), at lr·m = 0.05,
    # after decoupled decay at the same rate on the kernel.
    moved = 0.05 * math.sqrt(1 - 0.999**3) / (1 - 0.9**3) * 0.1 / (math.sqrt(0.001) + 1e-7)
    np.testing.assert_allclose(thawed["conv/bias"], start["conv/bias"] - moved, rtol=1e-5)
    np.testing.assert_allclose(thawed["conv/kernel"], start["conv/kernel"] * (1 - 0.05 * 0.5) - moved, rtol=1e-5)


def test_only_the_early_blocks_are_frozen_for_the_first_epochs_with_backbone_frozen_until():
    model = tiny_model()
    optimizer = recipe_optimizer(
        section(name="sgd", learning_rate=0.1, backbone_frozen_epochs=1, backbone_frozen_until="conv"),
        epochs=2, steps_per_epoch=1, model=model,
    )
    start = snapshot(model)
    step(optimizer, model)
    first = snapshot(model)
    for path in start:  # "conv" (the early block) frozen; the later BatchNorm and the head learn
        assert np.array_equal(first[path], start[path]) == path.startswith("conv/"), path
    step(optimizer, model)
    assert not np.array_equal(snapshot(model)["conv/kernel"], first["conv/kernel"])


def test_backbone_frozen_until_names_a_backbone_layer_and_needs_frozen_epochs():
    with pytest.raises(ValueError, match=r"backbone_frozen_until: the backbone has no layer 'conv9' \(close: conv\)"):
        recipe_optimizer(section(backbone_frozen_epochs=1, backbone_frozen_until="conv9"), epochs=2, steps_per_epoch=1,
                         model=tiny_model())
    with pytest.raises(ValueError, match=r"backbone_frozen_until='conv' .*backbone_frozen_epochs, which is 0"):
        recipe_optimizer(section(backbone_frozen_until="conv"), epochs=2, steps_per_epoch=1, model=tiny_model())


def test_global_clipnorm_clips_the_update():
    model = tiny_model()
    before = snapshot(model)
    optimizer = recipe_optimizer(section(name="sgd", learning_rate=1.0, global_clipnorm=1.0), epochs=1, steps_per_epoch=1, model=model)
    step(optimizer, model, gradient=3.0)
    moved = np.sqrt(sum(np.sum((snapshot(model)[p] - before[p]) ** 2) for p in before))
    assert moved == pytest.approx(1.0, rel=1e-5)


def test_the_optimizer_round_trips_through_its_config():
    optimizer = FineTuningSGD(learning_rate=0.1, backbone_lr_multiplier=0.1, backbone_frozen_steps=7, clipnorm=1.0)
    again = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert type(again) is FineTuningSGD
    assert (again.backbone_lr_multiplier, again.backbone_frozen_steps, again.clipnorm) == (0.1, 7, 1.0)
