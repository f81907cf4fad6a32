"""Conformance of every loss and miner registered under the Keras package ``"tfdml"``.

The classes come from Keras' registry (``keras.saving.get_custom_objects()``, the names recipes
and saved models use), built generically by ``tests/registry_cases.py``; nothing here lists
them. For each: ``get_config`` round trip, degenerate batches, the NaN policy, XLA
(``jit_compile=True``) against the graph, training under XLA, and a reference test
(``@pytest.mark.reference("ClassName")``) in ``tests/losses/`` or ``tests/mining/``.

Under XLA TensorFlow's stateless random ops draw other numbers than its CPU kernels for the
same seed (the distributions are the same), so XLA and graph values are compared only where
mining is deterministic; for random miners the XLA-mined tuples are checked for validity.
Every loss's value and gradient compile under XLA (on the same functions the graph and XLA NaN-policy
checks call); training under XLA runs every loss with trainable parameters, every loss taking a miner
(with distance-weighted mining and ρ-switching), one loss of each kind through plain ``compile`` and the
default and a pair miner. The full loss × miner × ``p_switch`` × fit-path product runs with
``TFDML_XLA_FULL=1``. Out-of-range class ids give a NaN loss under XLA for every loss that indexes a
table by class (XLA drops the graph's assertion).
"""

import ast
import inspect
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import paths
import registry_cases as rc
from tfdml import losses, mining
from tfdml.mining.base import MaskedTriplets
from tfdml.training import MetricLearningModel

LOSS_CLASSES = rc.loss_classes()
MINER_CLASSES = rc.miner_classes()
LOSS_CASES = rc.loss_cases()
MINER_CASES = rc.miner_cases()
BATCH, DIM = rc.BATCH, rc.DIM


def names(classes):
    return [cls.__name__ for cls in classes]


def trainable(loss):
    """A parametric loss's trainable variables (``[]`` for the others)."""
    return list(getattr(loss, "trainable_variables", []))


def step_of(loss):
    """``(labels, x) -> (loss, d loss/d x, d loss/d variables...)``, eager."""

    def step(labels, x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = loss.value(labels, x)
        return value, *tape.gradient(value, [x, *trainable(loss)])

    return step


def value_and_gradients(loss, labels, x):
    return [tf.convert_to_tensor(t).numpy() for t in step_of(loss)(tf.constant(labels), tf.constant(x))]


def compiled(loss, jit_compile):
    """:func:`step_of` as one ``tf.function``."""
    return tf.function(step_of(loss), jit_compile=jit_compile)


def takes_a_miner(name):
    """Whether the loss case mines (``pairs="all"`` variants of such losses take no miner)."""
    return getattr(LOSS_CASES[name](), "miner", None) is not None


def mined_tuples(mined):
    return [t.numpy() for t in mined]


# ---------------------------------------------------------------- the registry itself


def test_the_registry_holds_the_losses_and_miners():
    assert {"TripletLoss", "FastAPLoss", "ProxyNCALoss"} <= set(names(LOSS_CLASSES))
    assert {"BatchHardMiner", "DistanceWeightedMiner"} <= set(names(MINER_CLASSES))


def concrete(module, base, method):
    """Public classes of ``module`` that subclass ``base`` and implement ``method`` (abstract bases do not)."""
    return {
        cls
        for cls in vars(module).values()
        if inspect.isclass(cls) and issubclass(cls, base) and getattr(cls, method) is not getattr(base, method)
    }


def test_every_exported_loss_and_miner_is_registered():
    # An exported class without @register_keras_serializable(package="tfdml") would be untested here.
    assert concrete(losses, losses.DMLLoss, "compute") == set(LOSS_CLASSES)
    assert concrete(mining, mining.Miner, "mine") == set(MINER_CLASSES)


def test_cases_name_only_registered_classes():
    assert rc.check_variants() == []


def test_stochastic_losses_and_miners_are_the_declared_ones():
    # What the XLA comparisons skip must be random, and only that: two calls of one object differ.
    x, labels = rc.batch()
    for name, make in rc.loss_cases(rc.default_miner).items():
        loss = make()
        repeats = float(loss.value(labels, x)) == float(loss.value(labels, x))
        assert repeats != rc.is_stochastic(name), name
    for cls in MINER_CLASSES:
        miner = rc.build(cls)
        first, second = (mined_tuples(miner.mine_masked(x, labels)) for _ in range(2))
        repeats = all(np.array_equal(a, b) for a, b in zip(first, second))
        assert repeats == (cls.__name__ in rc.DETERMINISTIC_MINERS), cls.__name__


def test_a_class_the_cases_cannot_build_is_named():
    class NeedsAVocabulary(losses.DMLLoss):
        def __init__(self, vocabulary):
            super().__init__()

    with pytest.raises(TypeError, match="NeedsAVocabulary: add its argument 'vocabulary'"):
        rc.build(NeedsAVocabulary)


# ---------------------------------------------------------------- (a) get_config round trip


def perturbed(default):
    """A non-default value for a simple numeric default, or ``None``."""
    if isinstance(default, bool) or not isinstance(default, (int, float)):
        return None
    if isinstance(default, int):
        return default + 1
    return default * 1.25 if default else 0.1


def non_default_arguments(cls):
    """Every simple numeric constructor argument (not ``seed``) moved off its default, where its domain allows."""
    arguments = {}
    for parameter in inspect.signature(cls).parameters.values():
        value = perturbed(parameter.default)
        if value is None or parameter.name == "seed":
            continue
        try:
            rc.build(cls, **{parameter.name: value})
        except ValueError:
            continue
        arguments[parameter.name] = value
    return arguments


@pytest.mark.parametrize("cls", LOSS_CLASSES + MINER_CLASSES, ids=names(LOSS_CLASSES + MINER_CLASSES))
def test_config_round_trip_gives_an_equal_object(cls):
    arguments = non_default_arguments(cls)
    assert arguments, f"{cls.__name__} has no simple numeric argument to move off its default"
    made = rc.build(cls, **arguments)
    config = made.get_config()
    default_config = rc.build(cls).get_config()
    assert all(config[name] != default_config[name] for name in arguments), arguments
    rebuilt = cls.from_config(config)
    assert type(rebuilt) is cls and rebuilt.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(made))
    assert type(restored) is cls and restored.get_config() == config
    x, labels = rc.batch()  # each object's first call: seeded random draws are equal too
    if issubclass(cls, losses.DMLLoss):
        values = [float(other.value(labels, x)) for other in (made, rebuilt, restored)]
        assert values[0] == values[1] == values[2], values
    else:
        expected, *others = (mined_tuples(other.mine_masked(x, labels)) for other in (made, rebuilt, restored))
        for other in others:
            for a, b in zip(other, expected):
                np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- (b) degenerate batches


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def degenerate_batch(kind):
    """``(labels, embeddings)``; labels stay below ``NUM_CLASSES`` (the proxy losses' classes)."""
    rng = np.random.default_rng(1)
    x, labels = rc.batch()
    return {
        "one-class": (np.zeros(8, np.int32), x[:8]),
        "singletons": (np.arange(4, dtype=np.int32), x[:4]),  # no positive pair
        "identical": (np.repeat(np.arange(4), 2).astype(np.int32), unit(np.ones((8, DIM), np.float32))),
        "two-samples": (np.array([0, 1], np.int32), unit(rng.normal(size=(2, DIM)).astype(np.float32))),
        "labels-b1": (labels[:, None], x),
    }[kind]


DEGENERATE = ["one-class", "singletons", "identical", "two-samples", "labels-b1"]


@pytest.mark.parametrize("kind", DEGENERATE)
@pytest.mark.parametrize("name", sorted(LOSS_CASES))
def test_degenerate_batches_give_a_finite_loss_and_finite_gradients(name, kind):
    labels, x = degenerate_batch(kind)
    value, *gradients = value_and_gradients(LOSS_CASES[name](), labels, x)
    assert value.dtype == np.float32 and np.isfinite(value), value
    assert all(np.all(np.isfinite(g)) for g in gradients)
    if kind == "labels-b1":  # the same loss as labels of shape (b,)
        assert value == value_and_gradients(LOSS_CASES[name](), labels[:, 0], x)[0]


def assert_valid_tuples(mined, labels, p_switch):
    """Valid tuples are (a, p, n) with a positive and a negative, or ρ-switched (a, a, p') with p_switch > 0."""
    labels = np.reshape(labels, -1)
    anchors, positives, negatives, valid = (t.numpy() for t in mined)
    for a, p, n in zip(anchors[valid], positives[valid], negatives[valid]):
        if a == p:
            assert p_switch > 0 and labels[n] == labels[a] and n != a, (a, p, n)
        else:
            assert labels[p] == labels[a] and labels[n] != labels[a], (a, p, n)
    return int(valid.sum())


def assert_valid_output(miner, mined, labels):
    """Tuples as :func:`assert_valid_tuples`; pair masks (``PairMasks``) within the batch's positive and
    negative pairs. Returns how many tuples or pairs were mined."""
    if isinstance(mined, MaskedTriplets):
        return assert_valid_tuples(mined, labels, getattr(miner, "p_switch", 0.0))
    labels = np.reshape(labels, -1)
    same = labels[:, None] == labels[None, :]
    positives, negatives = (t.numpy() for t in mined)
    assert not np.any(positives & ~(same & ~np.eye(len(labels), dtype=bool)))
    assert not np.any(negatives & same)
    return int(positives.sum() + negatives.sum())


@pytest.mark.parametrize("kind", DEGENERATE)
@pytest.mark.parametrize("name", sorted(MINER_CASES))
def test_degenerate_batches_give_valid_mining(name, kind):
    labels, x = degenerate_batch(kind)
    miner = MINER_CASES[name]()
    mined = miner.mine_masked(x, labels)
    count = assert_valid_output(miner, mined, labels)
    if kind in ("one-class", "singletons", "two-samples") and isinstance(mined, MaskedTriplets):
        assert count == 0  # no tuple has both a positive and a negative
    if kind == "identical" and name.split("-")[0] in rc.EMPTY_WHEN_COLLAPSED:
        assert count == 0
    elif kind in ("identical", "labels-b1"):
        assert count > 0
    if kind == "labels-b1":  # the same tuples as labels of shape (b,), in a graph too
        graph = tf.function(MINER_CASES[name]().mine_masked)(tf.constant(x), tf.constant(labels))
        for a, b in zip(mined_tuples(graph), mined_tuples(MINER_CASES[name]().mine_masked(x, labels[:, 0]))):
            np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- (c) the NaN policy and input checks


def assert_the_nan_policy(call, mode, name):
    """NaN, ±inf and embeddings whose squared distances overflow float32 give a NaN loss in every
    mode (``DMLLoss``'s NaN policy). A fractional label raises a ``ValueError`` eagerly and an
    ``InvalidArgumentError`` in a graph; XLA drops assertions, so the compiled loss is NaN instead.
    Labels are floats, as Keras passes ``y_true``: one compiled function serves every call (same
    shapes and dtypes, no retrace). ``call(labels, x)`` returns the loss. A loss of fourth order in the
    embeddings (:data:`registry_cases.QUARTIC_LOSSES`) exceeds float32 at ``‖x‖ = 1e15`` and is checked finite
    at ``1e7``."""
    x, labels = rc.batch()
    labels = labels.astype(np.float32)
    assert np.isfinite(float(call(labels, x)))  # integral floats are labels
    large = 1e7 if name.split("-")[0] in rc.QUARTIC_LOSSES else 1e15  # squared norms 1e30 still fit
    assert np.isfinite(float(call(labels, x * large)))
    one_row = x.copy()
    one_row[5] *= 1e20
    for bad in (np.nan, np.inf, -np.inf):
        non_finite = x.copy()
        non_finite[3, 1] = bad
        assert np.isnan(float(call(labels, non_finite))), bad
    assert np.isnan(float(call(labels, x * 1e30)))
    assert np.isnan(float(call(labels, one_row)))
    fractional = labels.copy()
    fractional[2] = 2.5
    if mode == "xla":
        assert np.isnan(float(call(fractional, x)))
        return
    error, message = (ValueError, "fractional label 2.5") if mode == "eager" else (
        tf.errors.InvalidArgumentError, "fractional labels"
    )
    with pytest.raises(error, match=message):
        call(fractional, x)


@pytest.mark.parametrize("name", sorted(LOSS_CASES))
def test_non_finite_or_overflowing_embeddings_give_a_nan_loss_and_fractional_labels_are_refused(name):
    """Eagerly; graph and XLA: :func:`test_xla_value_and_gradient_equal_the_graph_ones`, on the same
    compiled functions."""
    loss = LOSS_CASES[name]()
    assert_the_nan_policy(lambda labels, x: loss.value(tf.constant(labels), tf.constant(x)), "eager", name)


def embedder():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((DIM,)), keras.layers.Dense(DIM), keras.layers.UnitNormalization()])


def test_terminate_on_nan_stops_training_on_non_finite_embeddings():
    x, labels = rc.batch()
    x[0, 0] = np.nan
    model = MetricLearningModel(embedder(), losses.FastAPLoss())
    model.compile(optimizer="sgd", jit_compile=True)
    history = model.fit(
        x, labels, batch_size=BATCH, epochs=3, verbose=0, callbacks=[keras.callbacks.TerminateOnNaN()]
    )
    assert len(history.history["loss"]) == 1 and np.isnan(history.history["loss"][0])


@pytest.mark.parametrize("name", sorted(LOSS_CASES))
def test_string_labels_are_rejected_with_a_clear_error(name):
    x, labels = rc.batch()
    with pytest.raises(TypeError, match="integer class ids"):
        LOSS_CASES[name]().value(labels.astype(str), x)


@pytest.mark.parametrize("name", sorted(LOSS_CASES))
def test_batch_size_mismatch_is_reported_statically_with_both_sizes(name):
    loss = LOSS_CASES[name]().value
    with pytest.raises(ValueError, match="12 labels but y_pred has 16 embeddings"):
        tf.function(loss).get_concrete_function(
            tf.TensorSpec((12,), tf.int32), tf.TensorSpec((BATCH, DIM), tf.float32)
        )


# ---------------------------------------------------------------- (d) XLA equals the graph


def deterministic_loss_cases():
    """Every loss with the batch-hard miner where it takes one, and with its own default miner where
    that is deterministic; random losses apart (``{id: (factory, stochastic)}``)."""
    made = {}
    for name, make in rc.loss_cases(rc.default_miner).items():
        mines = takes_a_miner(name)
        made[f"{name}-BatchHardMiner" if mines else name] = (make, rc.is_stochastic(name))
        if mines and type(LOSS_CASES[name]().miner).__name__ in rc.DETERMINISTIC_MINERS:
            made[name] = (LOSS_CASES[name], rc.is_stochastic(name))
    return made


XLA_CASES = deterministic_loss_cases()


@pytest.mark.parametrize("name", sorted(XLA_CASES))
def test_xla_value_and_gradient_equal_the_graph_ones(name):
    """Also the NaN policy in a graph and under XLA (:func:`assert_the_nan_policy`) on the same two
    compiled functions: each loss is traced once per mode."""
    make, stochastic = XLA_CASES[name]
    x, labels = rc.batch()
    labels = labels.astype(np.float32)
    xla, graph = compiled(make(), jit_compile=True), compiled(make(), jit_compile=False)
    xla_value, xla_gradient, *xla_variables = (tf.convert_to_tensor(t).numpy() for t in xla(tf.constant(labels), tf.constant(x)))
    assert np.isfinite(xla_value) and np.all(np.isfinite(xla_gradient))
    assert np.any(xla_gradient != 0.0)
    if not stochastic:  # XLA draws other random numbers: only the value's validity is comparable
        graph_value, graph_gradient, *graph_variables = (
            tf.convert_to_tensor(t).numpy() for t in graph(tf.constant(labels), tf.constant(x))
        )
        np.testing.assert_allclose(xla_value, graph_value, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(xla_gradient, graph_gradient, rtol=1e-3, atol=1e-5)
        for xla_variable, graph_variable in zip(xla_variables, graph_variables):
            np.testing.assert_allclose(xla_variable, graph_variable, rtol=1e-3, atol=1e-5)
    for mode, function in (("xla", xla), ("graph", graph)):
        assert_the_nan_policy(lambda labels, x: function(tf.constant(labels), tf.constant(x))[0], mode, name)
    if rc.class_indexed(make()):  # a class id outside the table: XLA drops the graph's assertion, the loss is NaN
        for bad in (rc.NUM_CLASSES, -1):
            out_of_range = labels.copy()
            out_of_range[-2:] = bad
            assert np.isnan(float(xla(tf.constant(out_of_range), tf.constant(x))[0])), bad


def switching_cases():
    """``(miner case, p_switch)``: every miner as built, those that take ``p_switch`` with 0.35 (the graph then
    holds both the switched and the plain tuples)."""
    made = []
    for name, make in sorted(MINER_CASES.items()):
        if "p_switch" in inspect.signature(type(make())).parameters:
            made.append(pytest.param(name, 0.35, id=f"{name}-0.35"))
        else:
            made.append(pytest.param(name, None, id=name))
    return made


def miner_with(name, p_switch):
    miner = MINER_CASES[name]()
    if p_switch is None:
        return miner
    return type(miner).from_config({**miner.get_config(), "p_switch": p_switch})


@pytest.mark.parametrize("name, p_switch", switching_cases())
def test_xla_mined_tuples_have_static_shapes_and_are_valid(name, p_switch):
    x, labels = rc.batch()
    miner = miner_with(name, p_switch)
    mine = tf.function(miner.mine_masked, jit_compile=True)
    traced = mine.get_concrete_function(tf.TensorSpec((BATCH, DIM)), tf.TensorSpec((BATCH,), tf.int32))
    assert all(t.shape.is_fully_defined() for t in traced.structured_outputs)
    assert assert_valid_output(miner, mine(tf.constant(x), tf.constant(labels)), labels) > 0


# ---------------------------------------------------------------- training under XLA


def fit_one_step(loss, through_model, jit_compile=True):
    x, labels = rc.batch()
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


FIT_PATHS = {"MetricLearningModel": True, "plain-compile": False}
FULL_ONLY = pytest.mark.skipif(
    not os.environ.get("TFDML_XLA_FULL"), reason="full XLA product: set TFDML_XLA_FULL=1 (about 20 min)"
)




def trains_parameters(name):
    return bool(trainable(LOSS_CASES[name]()))


def partner_loss(miner):
    """A loss that reads ``miner``'s output: the triplet loss for tuples, the multi-similarity loss otherwise."""
    mined = miner.mine_masked(*rc.batch())
    return (losses.TripletLoss if isinstance(mined, MaskedTriplets) else losses.MultiSimilarityLoss)(miner=miner)


def switchable(miner_name):
    return "p_switch" in inspect.signature(type(MINER_CASES[miner_name]())).parameters


# ``compile(loss=...)`` calls the same ``DMLLoss.value`` as ``MetricLearningModel``: only Keras' trainer
# differs, so the plain path trains one loss of each kind by default (all pairs, mined tuples, a custom gradient).
PLAIN_COMPILE = {"ContrastiveLoss-all-pairs", "TripletLoss", "FastAPLoss"}
# A miner has no gradient: every miner compiles under XLA on its own (the static-shape test above); training
# runs the default one and a pair miner, the rest of the miners with TFDML_XLA_FULL.
TRAINED_MINERS = {"DistanceWeightedMiner", "MultiSimilarityMiner"}


def fit_cases():
    """By default, under XLA through ``MetricLearningModel`` (``train.py``'s path): every loss with trainable
    parameters (they must train too), every loss taking a miner with distance-weighted mining and
    ρ-switching, the :data:`PLAIN_COMPILE` losses (through plain ``compile`` too) and the
    :data:`TRAINED_MINERS` with a loss that reads them. Every loss's own value and gradient compile under
    XLA in :func:`test_xla_value_and_gradient_equal_the_graph_ones`; the rest of the loss × miner ×
    ``p_switch`` × path product, every other parameter-free loss included, is ``FULL_ONLY``."""
    tuple_losses = [name for name in sorted(LOSS_CASES) if takes_a_miner(name) and not trains_parameters(name)]
    fast = {(name, None, None, "MetricLearningModel") for name in LOSS_CASES if trains_parameters(name)}
    fast |= {(name, "DistanceWeightedMiner", 0.35, "MetricLearningModel") for name in tuple_losses}
    fast |= {("partner", miner, None, "MetricLearningModel") for miner in TRAINED_MINERS}
    for path in FIT_PATHS:
        fast |= {(name, None, None, path) for name in PLAIN_COMPILE - set(tuple_losses)}
        fast |= {(name, "DistanceWeightedMiner", 0.35, path) for name in PLAIN_COMPILE & set(tuple_losses)}
    product = {
        (name, None, None, path) for name in LOSS_CASES if name not in tuple_losses and not trains_parameters(name)
        for path in FIT_PATHS
    } | {
        (name, miner, p_switch, path)
        for name in tuple_losses
        for miner in MINER_CASES
        if switchable(miner)
        for p_switch in (0.0, 0.35)
        for path in FIT_PATHS
    } | {("partner", miner, None, "MetricLearningModel") for miner in MINER_CASES} | fast
    return [
        pytest.param(*case, id="-".join(map(str, case)), marks=() if case in fast else FULL_ONLY)
        for case in sorted(product, key=str)
    ]


def test_the_plain_compile_losses_and_trained_miners_exist():
    assert PLAIN_COMPILE <= set(LOSS_CASES) and TRAINED_MINERS <= set(MINER_CASES)


@pytest.mark.parametrize("loss_name, miner_name, p_switch, path", fit_cases())
def test_every_loss_and_miner_trains_under_xla(loss_name, miner_name, p_switch, path):
    if miner_name is None:
        loss = LOSS_CASES[loss_name]()
    elif loss_name == "partner":
        loss = partner_loss(miner_with(miner_name, p_switch))
    else:
        config = LOSS_CASES[loss_name]().get_config()
        loss = getattr(losses, loss_name.split("-")[0]).from_config({**config, "miner": miner_with(miner_name, p_switch)})
    before = [v.numpy().copy() for v in trainable(loss)]
    value, changed = fit_one_step(loss, FIT_PATHS[path])
    assert np.isfinite(value) and changed
    assert not before or any(not np.array_equal(b, v.numpy()) for b, v in zip(before, trainable(loss)))


@pytest.mark.parametrize("name", ["TripletLoss-BatchHardMiner", "FastAPLoss", "ProxyNCALoss"])
def test_one_xla_step_equals_one_graph_step_for_deterministic_losses(name):
    make, _ = XLA_CASES[name]
    xla_value, _ = fit_one_step(make(), through_model=True, jit_compile=True)
    graph_value, _ = fit_one_step(make(), through_model=True, jit_compile=False)
    assert xla_value == pytest.approx(graph_value, rel=1e-4)


# ---------------------------------------------------------------- (e) a reference test for every class

REFERENCE_FOLDERS = ("losses", "mining")


def marked_references(folders=REFERENCE_FOLDERS):
    """``{class name: ["file::test", ...]}`` from ``@pytest.mark.reference("Name", ...)`` on the test
    functions of ``tests/<folder>/test_*.py``, read with ``ast`` (no import, no collection)."""
    found = {}
    for folder in folders:
        for path in sorted((paths.REPO / "tests" / folder).glob("test_*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, ast.FunctionDef) or not node.name.startswith("test_"):
                    continue
                for decorator in node.decorator_list:
                    if (
                        isinstance(decorator, ast.Call)
                        and ast.unparse(decorator.func) == "pytest.mark.reference"
                    ):
                        for argument in decorator.args:
                            found.setdefault(ast.literal_eval(argument), []).append(f"{path.name}::{node.name}")
    return found


def missing_references(classes, marked):
    return sorted(cls.__name__ for cls in classes if cls.__name__ not in marked)


def test_every_registered_loss_and_miner_has_a_reference_test():
    """A reference test compares the class with a slow NumPy reference written from its paper; it is
    marked ``@pytest.mark.reference("ClassName")`` (several names where it checks several classes)."""
    marked = marked_references()
    assert missing_references(LOSS_CLASSES + MINER_CLASSES, marked) == []
    assert sorted(set(marked) - set(names(LOSS_CLASSES + MINER_CLASSES))) == []  # no stale names


def test_the_reference_check_reports_a_newly_registered_class_and_reads_markers(tmp_path, monkeypatch):
    registry = keras.saving.get_custom_objects()

    @keras.saving.register_keras_serializable(package="tfdml")
    class UnreferencedLoss(losses.DMLLoss):
        def compute(self, labels, embeddings):
            return tf.reduce_mean(embeddings)

    try:
        assert UnreferencedLoss in rc.loss_classes()
        assert missing_references(rc.loss_classes(), marked_references()) == ["UnreferencedLoss"]
    finally:
        del registry["tfdml>UnreferencedLoss"]
    assert UnreferencedLoss not in rc.loss_classes()
    (tmp_path / "tests" / "fake").mkdir(parents=True)
    (tmp_path / "tests" / "fake" / "test_fake.py").write_text(
        "import pytest\n\n@pytest.mark.reference('A', 'B')\ndef test_a():\n    pass\n\n"
        "@pytest.mark.slow\ndef test_b():\n    pass\n\n@pytest.mark.reference('C')\ndef helper():\n    pass\n"
    )
    monkeypatch.setattr(paths, "REPO", tmp_path)
    assert marked_references(("fake",)) == {"A": ["test_fake.py::test_a"], "B": ["test_fake.py::test_a"]}
