"""Issue 33 (round three of the reliability probes), losses and miners: D8 (class ids Keras' float32
cast cannot hold), D9 (out-of-range labels under XLA), D13 (constructor arguments outside their
domain) and D14 (huge finite embeddings whose squared distances overflow float32)."""

import inspect
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import registry_cases as rc
from tfdml import losses, mining
from tfdml.losses import contrastive_all_pairs
from tfdml.training import MetricLearningModel
from tfdml.training.model import gather_global_batch

BATCH, DIM = 8, rc.DIM  # the class losses of the registry cases are built for rc.DIM
SMALL = np.array([0, 0, 1, 1, 2, 2, 3, 3])


def batch(seed=0):
    x = np.random.default_rng(seed).normal(size=(BATCH, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)




# Every registered loss (batch-hard mining where it takes a miner) whose value depends on the label
# partition only: deterministic, without class parameters.
PARTITION_LOSSES = {
    name: make
    for name, make in rc.loss_cases(rc.default_miner).items()
    if not rc.is_stochastic(name) and not rc.class_indexed(make())
}

# ---------------------------------------------------------------- D8: every integer class id is exact


@pytest.mark.parametrize("offset", [2**24, 2**31, 2**32, 2**53], ids=["2**24", "2**31", "2**32", "2**53"])
@pytest.mark.parametrize("name", sorted(PARTITION_LOSSES))
def test_large_integer_class_ids_are_kept_apart_in_a_direct_call(name, offset):
    # Classes 2 and 3 renamed offset and offset + 1: the same partition, so the same loss. Before, float32
    # (above 2**24) or int32 (above 2**31; 2**32 wrapped onto class 0) merged them.
    x = tf.constant(batch())
    large = np.where(SMALL >= 2, SMALL - 2 + offset, SMALL).astype(np.int64)
    expected = float(PARTITION_LOSSES[name]()(tf.constant(SMALL), x))
    assert float(PARTITION_LOSSES[name]()(tf.constant(large), x)) == pytest.approx(expected, rel=1e-6, abs=1e-7)


@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
@pytest.mark.parametrize("through_model", [False, True], ids=["compile-loss", "MetricLearningModel"])
def test_large_integer_class_ids_are_kept_apart_through_fit(through_model, jit_compile):
    x = batch()
    large = np.where(SMALL >= 2, SMALL - 2 + 2**24, SMALL).astype(np.int64)
    merged = np.where(SMALL >= 2, 2, SMALL).astype(np.int64)
    keras.utils.set_random_seed(0)
    embedder = keras.Sequential([keras.Input((DIM,)), keras.layers.Dense(4, kernel_initializer="ones")])
    loss = losses.ContrastiveLoss(pairs="all")
    if through_model:
        model = MetricLearningModel(embedder, loss)
        model.compile(optimizer=keras.optimizers.SGD(0.0), jit_compile=jit_compile)
    else:
        model = embedder
        model.compile(optimizer=keras.optimizers.SGD(0.0), loss=loss, jit_compile=jit_compile)
    # A learning rate of 0: each fit reports the loss of the same weights.
    values = {
        name: model.fit(x, labels, batch_size=BATCH, epochs=1, shuffle=False, verbose=0).history["loss"][0]
        for name, labels in (("small", SMALL), ("large", large), ("merged", merged))
    }
    assert values["large"] == pytest.approx(values["small"], rel=1e-6)
    assert values["merged"] != pytest.approx(values["small"], rel=1e-3)  # the comparison can tell them apart


def test_float_labels_beyond_the_exact_range_of_their_dtype_are_refused_in_every_mode():
    x = tf.constant(batch())
    loss = losses.ContrastiveLoss(pairs="all")
    too_large = np.where(SMALL >= 2, SMALL - 2 + 2**24, SMALL).astype(np.float32)
    with pytest.raises(ValueError, match=r"16777216.*integer"):
        loss(tf.constant(too_large), x)
    with pytest.raises(tf.errors.InvalidArgumentError, match="2\\*\\*24"):
        tf.function(loss)(tf.constant(too_large), x)
    assert np.isnan(float(tf.function(loss, jit_compile=True)(tf.constant(too_large), x)))
    # float32 holds every integer below 2**24 and float64 every integer below 2**53.
    expected = float(loss(tf.constant(SMALL), x))
    below = np.where(SMALL >= 2, SMALL - 4 + 2**24, SMALL).astype(np.float32)
    assert float(loss(tf.constant(below), x)) == pytest.approx(expected, rel=1e-6)
    exact64 = np.where(SMALL >= 2, SMALL - 2 + 2**52, SMALL).astype(np.float64)
    assert float(loss(tf.constant(exact64), x)) == pytest.approx(expected, rel=1e-6)


def test_float64_numpy_labels_that_keras_casts_to_float32_are_refused_not_merged():
    # Keras' data adapter casts float64 NumPy labels to float32, where 2**24 + 1 becomes 2**24.
    x = batch()
    model = keras.Sequential([keras.Input((DIM,)), keras.layers.Dense(4)])
    model.compile(optimizer="sgd", loss=losses.ContrastiveLoss(pairs="all"))
    labels = np.where(SMALL >= 2, SMALL - 2 + 2**24, SMALL).astype(np.float64)
    with pytest.raises(tf.errors.InvalidArgumentError, match="2\\*\\*24"):
        model.evaluate(x, labels, batch_size=BATCH, verbose=0)


def test_labels_gathered_across_replicas_stay_exact(mirrored_strategy):
    # Integer ids beyond float64's 2**53 and fractional float labels (which the loss must still see).
    per_replica = {
        "int": [np.array([2**53, 2**53 + 1], np.int64), np.array([-3, 2**62 + 1], np.int64)],
        "float": [np.array([0.0, 2.5], np.float32), np.array([1.0, 3.0], np.float32)],
    }
    for kind, parts in per_replica.items():
        labels = mirrored_strategy.experimental_distribute_values_from_function(
            lambda context, parts=parts: tf.constant(parts[context.replica_id_in_sync_group])
        )
        embeddings = mirrored_strategy.experimental_distribute_values_from_function(lambda context: tf.ones((2, 3)))
        gathered, _ = tf.function(lambda *args: mirrored_strategy.run(gather_global_batch, args=args))(labels, embeddings)
        result = mirrored_strategy.experimental_local_results(gathered)[0]
        assert result.dtype == (tf.int64 if kind == "int" else tf.float32), kind
        np.testing.assert_array_equal(result.numpy().reshape(-1), np.concatenate(parts))


# ---------------------------------------------------------------- D9: out-of-range labels under XLA

# Every registered loss that indexes a table by class id is checked under XLA in test_registry (on the function
# its XLA test compiles); the margin loss's class βs on all pairs are not a registry case.
def test_out_of_range_labels_give_a_nan_loss_under_xla_with_class_betas_on_all_pairs():
    loss = losses.MarginLoss(beta_class=True, num_classes=4, pairs="all")
    step = tf.function(loss.value, jit_compile=True)
    x = tf.constant(batch())
    assert np.isfinite(float(step(tf.constant(SMALL), x)))
    for bad in (4, -1):
        labels = SMALL.copy()
        labels[-2:] = bad
        assert np.isnan(float(step(tf.constant(labels), x))), bad


def test_out_of_range_image_index_gives_a_nan_loss_under_xla():
    loss = losses.MarginLoss(beta_image=True, num_images=BATCH)
    step = tf.function(loss.value, jit_compile=True)
    x = tf.constant(batch())
    y = np.stack([SMALL, np.arange(BATCH)], axis=1)
    assert np.isfinite(float(step(tf.constant(y), x)))
    y[3, 1] = BATCH
    assert np.isnan(float(step(tf.constant(y), x)))


# ---------------------------------------------------------------- D13: constructor arguments

def constructible():
    """Every registered loss and miner class with the arguments it cannot do without."""
    return {
        cls: {name: rc.SUPPLIED[name]() for name in rc.required_arguments(cls)}
        for cls in rc.loss_classes() + rc.miner_classes()
    }


def numeric_arguments():
    """``(class, argument)`` for every numeric constructor argument (a number default, or one defaulting to None)."""
    optional_numbers = ("num_classes", "num_images", "embedding_dim", "seed", "num_tuples", "lower_bound")
    cases = []
    for cls, required in constructible().items():
        for parameter in inspect.signature(cls).parameters.values():
            default = parameter.default
            numeric = isinstance(default, (int, float)) and not isinstance(default, bool)
            if numeric or parameter.name in optional_numbers:
                cases.append(pytest.param(cls, required, parameter.name, id=f"{cls.__name__}-{parameter.name}"))
    return cases


@pytest.mark.parametrize("cls, required, argument", numeric_arguments())
def test_every_numeric_argument_of_every_loss_and_miner_refuses_nan_and_strings(cls, required, argument):
    for bad in (float("nan"), "0.5"):
        with pytest.raises(ValueError, match=rf"{cls.__name__}: {argument} must be .*; got {bad!r}"):
            cls(**{**required, argument: bad})


@pytest.mark.parametrize(
    "make, argument",
    [
        (lambda: losses.MarginLoss(margin=-1.0), "margin"),
        (lambda: losses.MarginLoss(beta=float("inf")), "beta"),
        (lambda: losses.MarginLoss(beta=-0.5), "beta"),
        (lambda: losses.MarginLoss(nu=-0.1), "nu"),
        (lambda: losses.MarginLoss(beta_class=True, num_classes=2.5), "num_classes"),
        (lambda: losses.MarginLoss(learn_beta="false"), "learn_beta"),
        (lambda: losses.TripletLoss(margin=-5.0), "margin"),
        (lambda: losses.TripletLoss(squared="no"), "squared"),
        (lambda: losses.ContrastiveLoss(margin=0.0), "margin"),
        (lambda: losses.ContrastiveLoss(positive_margin=-0.1), "positive_margin"),
        (lambda: losses.QuadrupletLoss(margin_2=-1.0), "margin_2"),
        (lambda: losses.SNRLoss(margin=-0.2), "margin"),
        (lambda: losses.GeneralizedLiftedStructureLoss(margin=-1.0), "margin"),
        (lambda: losses.MultiSimilarityLoss(threshold=float("inf")), "threshold"),
        (lambda: losses.FastAPLoss(num_bins=float("inf")), "num_bins"),
        (lambda: losses.ProxyNCALoss(4, DIM, scale=float("inf")), "scale"),
        (lambda: losses.SoftTripleLoss(4, DIM, tau=float("inf")), "tau"),
        (lambda: mining.RandomMiner(num_tuples=2.5), "num_tuples"),
        (lambda: mining.SemiHardMiner(lower_bound=-0.5), "lower_bound"),
        (lambda: mining.SemiHardMiner(squared=1), "squared"),
        (lambda: mining.DistanceWeightedMiner(nonzero_loss_cutoff=float("inf")), "nonzero_loss_cutoff"),
        (lambda: mining.DistanceWeightedMiner(seed=1.5), "seed"),
    ],
)
def test_arguments_outside_their_domain_are_named(make, argument):
    with pytest.raises(ValueError, match=rf": {argument} must be"):
        make()


def test_arguments_inside_their_domain_are_kept():  # round trips: tests/test_registry.py
    assert mining.MultiSimilarityMiner(epsilon=float("inf")).epsilon == math.inf  # documented: keep every pair
    assert losses.FastAPLoss(num_bins=10.0).num_bins == 10
    assert losses.TripletLoss(margin=0).margin == 0.0
    assert mining.SemiHardMiner(margin=None, lower_bound=0.0).get_config()["margin"] is None


# ---------------------------------------------------------------- D14: huge finite embeddings
# Every loss, eager, in a graph and under XLA: tests/test_registry.py (the NaN policy).


def test_all_pairs_functions_give_nan_for_huge_embeddings():
    assert np.isnan(float(contrastive_all_pairs(tf.constant(SMALL), tf.constant(batch() * 1e30))))
