"""Every loss and miner under XLA (``jit_compile=True``) on CPU, and the NaN/label/shape policy of every loss.

Under XLA TensorFlow's stateless random ops draw other numbers than its CPU kernels for the
same seed (the distributions are the same), so XLA and graph values are compared only where
mining is deterministic; for random miners the XLA-mined tuples are checked for validity.
Every loss trains under XLA with distance-weighted mining and ρ-switching, through both
``MetricLearningModel`` and plain ``compile``, and every miner with the triplet loss through
``MetricLearningModel``; every miner's XLA-mined tuples are checked with and without ``p_switch``.
The full loss × miner × ``p_switch`` × fit-path product (about 20 minutes on 2 cores) runs with
``TFDML_XLA_FULL=1``.
"""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdml import losses, mining
from tfdml.training import MetricLearningModel
from tfdml.training.model import resolve_jit_compile

BATCH, DIM, PER_CLASS = 16, 8, 4

MINERS = {
    "random": lambda p: mining.RandomMiner(p_switch=p, seed=1),
    "semihard": lambda p: mining.SemiHardMiner(p_switch=p, seed=1),
    "semihard-anchors-fixed": lambda p: mining.SemiHardMiner(
        lower_bound=0.5, construction="anchors", p_switch=p, seed=1
    ),
    "softhard": lambda p: mining.SoftHardMiner(p_switch=p, seed=1),
    "batchhard": lambda p: mining.BatchHardMiner(p_switch=p, seed=1),
    "distance-weighted": lambda p: mining.DistanceWeightedMiner(p_switch=p, seed=1),
    "distance-weighted-anchors": lambda p: mining.DistanceWeightedMiner(
        construction="anchors", nonzero_loss_cutoff=None, p_switch=p, seed=1
    ),
    "rho-wrapper": lambda p: mining.RhoRegularizedMiner(mining.BatchHardMiner(), p_switch=max(p, 0.35), seed=1),
}
TUPLE_LOSSES = {
    "contrastive": lambda miner: losses.ContrastiveLoss(miner=miner),
    "triplet": lambda miner: losses.TripletLoss(miner=miner),
    "triplet-squared": lambda miner: losses.TripletLoss(squared=True, miner=miner),
    "margin": lambda miner: losses.MarginLoss(miner=miner),
    "quadruplet": lambda miner: losses.QuadrupletLoss(miner=miner),
    "snr": lambda miner: losses.SNRLoss(miner=miner),
    "multi-similarity": lambda miner: losses.MultiSimilarityLoss(miner=miner),
}
# Losses without a miner (or with their own default), parameter-free: deterministic.
STRUCTURE_LOSSES = {
    "multi-similarity-default": lambda: losses.MultiSimilarityLoss(),
    "npair": lambda: losses.NPairLoss(),
    "angular": lambda: losses.AngularLoss(),
    "lifted-structure": lambda: losses.GeneralizedLiftedStructureLoss(),
    "histogram": lambda: losses.HistogramLoss(),
    "fastap": lambda: losses.FastAPLoss(),
}
NUM_CLASSES = BATCH // PER_CLASS
PARAMETRIC_LOSSES = {
    "margin-learned-betas": lambda: losses.MarginLoss(
        # ν > 0: on a batch where every tuple's two terms are active their β gradients cancel.
        learn_beta=True, beta_class=True, num_classes=NUM_CLASSES, nu=0.1, miner=mining.BatchHardMiner()
    ),
    "proxy-nca": lambda: losses.ProxyNCALoss(NUM_CLASSES, DIM, seed=0),
    "soft-triple": lambda: losses.SoftTripleLoss(NUM_CLASSES, DIM, seed=0),
    "normalized-softmax": lambda: losses.NormalizedSoftmaxLoss(NUM_CLASSES, DIM, seed=0),
    "arcface": lambda: losses.ArcFaceLoss(NUM_CLASSES, DIM, seed=0),
}


def all_losses():
    """Every loss, parameter-free ones first: ``{name: factory}``, tuple losses with their default miner."""
    made = {name: (lambda make=make: make(None)) for name, make in TUPLE_LOSSES.items()}
    return {**made, **STRUCTURE_LOSSES, **PARAMETRIC_LOSSES}


def batch(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(BATCH, DIM)).astype(np.float32)
    return x, np.repeat(np.arange(NUM_CLASSES), PER_CLASS).astype(np.int32)


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def embedder():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((DIM,)), keras.layers.Dense(DIM), keras.layers.UnitNormalization()])


def value_and_gradient(loss, labels, x, jit_compile):
    @tf.function(jit_compile=jit_compile)
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = loss(labels, x)
        return value, tape.gradient(value, x)

    return [t.numpy() for t in step(tf.constant(x))]


def value_of(loss):
    return loss.value  # evaluated directly, as MetricLearningModel does (a call refuses trainable parameters)


def fit_one_step(loss, through_model, jit_compile=True):
    x, labels = batch()
    if through_model:
        model = MetricLearningModel(embedder(), loss)
        model.compile(optimizer=keras.optimizers.SGD(0.01), jit_compile=jit_compile)
    else:
        model = embedder()
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss=loss, jit_compile=jit_compile)
    before = [w.numpy().copy() for w in model.trainable_weights]
    history = model.fit(x, labels, batch_size=BATCH, epochs=1, verbose=0, shuffle=False)
    assert model.jit_compile is (jit_compile is True)
    changed = any(not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights))
    return history.history["loss"][0], changed


# Deterministic losses: XLA gives the graph's value and gradient (quadruplet draws its fourth sample).
DETERMINISTIC = {
    **{
        f"{name}-batchhard": (lambda make=make: make(mining.BatchHardMiner()))
        for name, make in TUPLE_LOSSES.items()
        if name != "quadruplet"
    },
    **STRUCTURE_LOSSES,
    **PARAMETRIC_LOSSES,
}


@pytest.mark.parametrize("name", sorted(DETERMINISTIC))
def test_xla_value_and_gradient_equal_the_graph_ones(name):
    x, labels = batch()
    x = unit(x)
    graph_value, graph_gradient = value_and_gradient(value_of(DETERMINISTIC[name]()), labels, x, jit_compile=False)
    xla_value, xla_gradient = value_and_gradient(value_of(DETERMINISTIC[name]()), labels, x, jit_compile=True)
    assert np.isfinite(xla_value) and np.all(np.isfinite(xla_gradient))
    assert np.any(xla_gradient != 0.0)
    np.testing.assert_allclose(xla_value, graph_value, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(xla_gradient, graph_gradient, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("p_switch", [0.0, 0.35])
@pytest.mark.parametrize("miner_name", sorted(MINERS))
def test_xla_mined_tuples_have_static_shapes_and_are_valid(miner_name, p_switch):
    x, labels = batch()
    miner = MINERS[miner_name](p_switch)
    mine = tf.function(miner.mine_masked, jit_compile=True)
    traced = mine.get_concrete_function(tf.TensorSpec((BATCH, DIM)), tf.TensorSpec((BATCH,), tf.int32))
    assert all(t.shape.is_fully_defined() for t in traced.structured_outputs)
    mined = mine(tf.constant(unit(x)), tf.constant(labels))
    valid = mined.valid.numpy()
    assert valid.any()
    for a, p, n in zip(*(t.numpy()[valid] for t in mined[:3])):
        if a == p:  # ρ-switched: (a, a, p) with a same-class "negative"
            assert p_switch > 0 or miner_name == "rho-wrapper"
            assert labels[n] == labels[a] and n != a
        else:
            assert labels[p] == labels[a] and labels[n] != labels[a]


def test_xla_miners_compile_with_static_shapes_where_the_graph_miners_drop_invalid_tuples():
    # Two classes with one sample each have no positive: their cells are invalid, not absent.
    x, labels = batch()
    labels[-2:] = [100, 101]
    mined = tf.function(MINERS["distance-weighted"](0.0).mine_masked, jit_compile=True)(unit(x), labels)
    assert mined.anchors.shape == (BATCH * BATCH,)
    expected_pairs = sum(int(np.sum(labels == label)) * (int(np.sum(labels == label)) - 1) for label in set(labels))
    assert int(np.sum(mined.valid.numpy())) == expected_pairs


FIT_PATHS = {"MetricLearningModel": True, "plain-compile": False}
FULL_ONLY = pytest.mark.skipif(
    not os.environ.get("TFDML_XLA_FULL"), reason="full XLA product: set TFDML_XLA_FULL=1 (about 20 min)"
)


def fit_cases():
    """Every loss (distance-weighted, ρ-switched) through both fit paths, where the loss is called
    differently; every miner (triplet loss) through ``MetricLearningModel``, ``train.py``'s path: a
    miner runs inside the loss, the same code in both paths. The rest of the product is ``FULL_ONLY``."""
    fast = {(loss_name, "distance-weighted", 0.35, path) for loss_name in TUPLE_LOSSES for path in FIT_PATHS}
    fast |= {("triplet", miner_name, 0.0, "MetricLearningModel") for miner_name in MINERS}
    product = [
        (loss_name, miner_name, p_switch, path)
        for loss_name in TUPLE_LOSSES
        for miner_name in MINERS
        for p_switch in (0.0, 0.35)
        for path in FIT_PATHS
    ]
    return [
        pytest.param(*case, id="-".join(map(str, case)), marks=() if case in fast else FULL_ONLY) for case in product
    ]


@pytest.mark.parametrize("loss_name,miner_name,p_switch,path", fit_cases())
def test_tuple_loss_and_miner_train_under_xla(loss_name, miner_name, p_switch, path):
    loss = TUPLE_LOSSES[loss_name](MINERS[miner_name](p_switch))
    value, changed = fit_one_step(loss, FIT_PATHS[path])
    assert np.isfinite(value) and changed


@pytest.mark.parametrize("path", sorted(FIT_PATHS))
@pytest.mark.parametrize("name", sorted(STRUCTURE_LOSSES))
def test_structure_losses_train_under_xla(name, path):
    value, changed = fit_one_step(STRUCTURE_LOSSES[name](), FIT_PATHS[path])
    assert np.isfinite(value) and changed


@pytest.mark.parametrize("name", sorted(PARAMETRIC_LOSSES))
def test_parametric_losses_train_their_parameters_under_xla(name):
    loss = PARAMETRIC_LOSSES[name]()
    before = [v.numpy().copy() for v in loss.trainable_variables]
    value, changed = fit_one_step(loss, through_model=True)
    assert np.isfinite(value) and changed
    assert any(not np.array_equal(b, v.numpy()) for b, v in zip(before, loss.trainable_variables))


@pytest.mark.parametrize("name", ["triplet-batchhard", "fastap", "proxy-nca"])
def test_one_xla_step_equals_one_graph_step_for_deterministic_losses(name):
    xla_value, _ = fit_one_step(DETERMINISTIC[name](), through_model=True, jit_compile=True)
    graph_value, _ = fit_one_step(DETERMINISTIC[name](), through_model=True, jit_compile=False)
    assert xla_value == pytest.approx(graph_value, rel=1e-4)


def test_jit_compile_recipe_values():
    values = ("auto", True, False, "TRUE", "false")
    assert [resolve_jit_compile(v) for v in values] == ["auto", True, False, True, False]
    for bad in ("yes", 1, None):
        with pytest.raises(ValueError, match="jit_compile"):
            resolve_jit_compile(bad)


# NaN policy and input checks (issue 14, items 10 and 14), over every loss.


@pytest.mark.parametrize("mode", ["eager", "graph", "xla"])
@pytest.mark.parametrize("name", sorted(all_losses()))
def test_non_finite_embeddings_give_a_nan_loss_and_fractional_labels_are_refused(name, mode):
    """NaN, inf and -inf embeddings give a NaN loss in every mode. A fractional label raises a
    ``ValueError`` eagerly and an ``InvalidArgumentError`` in a graph; XLA drops assertions, so the
    compiled loss is NaN instead. Labels are floats, as Keras passes ``y_true``: one function per
    mode serves every call (same shapes and dtypes, no retrace)."""
    loss = value_of(all_losses()[name]())
    call = {"eager": loss, "graph": tf.function(loss), "xla": tf.function(loss, jit_compile=True)}[mode]
    x, labels = batch()
    x, labels = unit(x), labels.astype(np.float32)
    assert np.isfinite(float(call(tf.constant(labels), tf.constant(x))))  # integral floats are labels
    for bad_value in (np.nan, np.inf, -np.inf):
        bad = x.copy()
        bad[3, 1] = bad_value
        assert np.isnan(float(call(tf.constant(labels), tf.constant(bad)))), bad_value
    fractional = labels.copy()
    fractional[2] = 2.5
    if mode == "xla":
        assert np.isnan(float(call(tf.constant(fractional), tf.constant(x))))
        return
    error, message = (ValueError, "fractional label 2.5") if mode == "eager" else (
        tf.errors.InvalidArgumentError, "fractional labels"
    )
    with pytest.raises(error, match=message):
        call(tf.constant(fractional), tf.constant(x))


def test_terminate_on_nan_stops_training_on_non_finite_embeddings():
    x, labels = batch()
    x[0, 0] = np.nan
    model = MetricLearningModel(embedder(), losses.FastAPLoss())
    model.compile(optimizer="sgd", jit_compile=True)
    history = model.fit(
        x, labels, batch_size=BATCH, epochs=3, verbose=0, callbacks=[keras.callbacks.TerminateOnNaN()]
    )
    assert len(history.history["loss"]) == 1 and np.isnan(history.history["loss"][0])


@pytest.mark.parametrize("name", sorted(all_losses()))
def test_string_labels_are_rejected_with_a_clear_error(name):
    x, labels = batch()
    with pytest.raises(TypeError, match="integer class ids"):
        value_of(all_losses()[name]())(labels.astype(str), unit(x))


@pytest.mark.parametrize("name", sorted(all_losses()))
def test_batch_size_mismatch_is_reported_statically_with_both_sizes(name):
    x, labels = batch()
    loss = value_of(all_losses()[name]())
    with pytest.raises(ValueError, match="12 labels but y_pred has 16 embeddings"):
        tf.function(loss).get_concrete_function(
            tf.TensorSpec((12,), tf.int32), tf.TensorSpec((BATCH, DIM), tf.float32)
        )
