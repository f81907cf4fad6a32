"""ProxyNCA, SoftTriple, Normalized softmax and ArcFace against NumPy references written from the papers."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import registry_cases as rc
from tfdml.losses import ArcFaceLoss, NormalizedSoftmaxLoss, ProxyNCALoss, SoftTripleLoss
from tfdml.losses.arcface import arcface_loss
from tfdml.losses.normalized_softmax import normalized_softmax_loss
from tfdml.losses.proxy_nca import proxy_nca_loss
from tfdml.losses.soft_triple import soft_triple_loss
from tfdml.training import MetricLearningModel

# ---------------------------------------------------------------- slow NumPy references, one loop per sum


def _unit(v):
    return v / np.linalg.norm(v)


def reference_proxy_nca(labels, x, proxies, metric="euclidean", scale=1.0):
    """Roth et al. eq. 13: −log(exp(−d(φ_i, ψ_y)) / Σ_{c≠y} exp(−d(φ_i, ψ_c)))."""
    total = 0.0
    for i, y in enumerate(labels):
        xi = scale * _unit(x[i])
        dist = []
        for c in range(len(proxies)):
            squared = float(np.sum((xi - scale * _unit(proxies[c])) ** 2))
            dist.append(squared if metric == "squared_euclidean" else math.sqrt(squared))
        denominator = sum(math.exp(-dist[c]) for c in range(len(proxies)) if c != y)
        total += -math.log(math.exp(-dist[y]) / denominator)
    return total / len(labels)


def reference_soft_triple(labels, x, centers, scale=8.0, gamma=0.1, margin=0.01, tau=0.2):
    """Qian et al.: relaxed class similarity S_i,c, margin δ on the target, τ·centre spread."""
    num_classes, k = centers.shape[:2]
    total = 0.0
    for i, y in enumerate(labels):
        xi = _unit(x[i])
        similarity = []
        for c in range(num_classes):
            sims = [float(xi @ _unit(centers[c, t])) for t in range(k)]
            weights = [math.exp(s / gamma) for s in sims]
            similarity.append(sum(w * s for w, s in zip(weights, sims)) / sum(weights))
        target = math.exp(scale * (similarity[y] - margin))
        others = sum(math.exp(scale * similarity[c]) for c in range(num_classes) if c != y)
        total += -math.log(target / (target + others))
    spread = 0.0
    for c in range(num_classes):
        for t in range(k):
            for s in range(t + 1, k):
                spread += math.sqrt(max(2.0 - 2.0 * float(_unit(centers[c, t]) @ _unit(centers[c, s])), 0.0))
    regulariser = spread / (num_classes * k * (k - 1)) if k > 1 else 0.0
    return total / len(labels) + tau * regulariser


def reference_normalized_softmax(labels, x, proxies, temperature=0.05):
    """Zhai & Wu: softmax cross-entropy of cos(φ_i, ψ_c)/T over all classes."""
    total = 0.0
    for i, y in enumerate(labels):
        logits = [float(_unit(x[i]) @ _unit(proxies[c])) / temperature for c in range(len(proxies))]
        total += -math.log(math.exp(logits[y]) / sum(math.exp(z) for z in logits))
    return total / len(labels)


def reference_arcface(labels, x, centers, margin=0.5, scale=16.0):
    """Deng et al.: s·cos(θ_y + m) for the target (s·(cos θ − m sin m) past θ = π − m), s·cos θ otherwise."""
    total = 0.0
    for i, y in enumerate(labels):
        cosines = [float(np.clip(_unit(x[i]) @ _unit(centers[c]), -1.0, 1.0)) for c in range(len(centers))]
        theta = math.acos(cosines[y])
        target = math.cos(theta + margin) if theta + margin <= math.pi else cosines[y] - margin * math.sin(margin)
        logits = [scale * (target if c == y else cosines[c]) for c in range(len(centers))]
        total += -math.log(math.exp(logits[y]) / sum(math.exp(z) for z in logits))
    return total / len(labels)


# ---------------------------------------------------------------- one row per loss

LOSSES = {
    "proxy_nca": (ProxyNCALoss, proxy_nca_loss, reference_proxy_nca, {}),
    "proxy_nca_squared": (
        ProxyNCALoss,
        proxy_nca_loss,
        reference_proxy_nca,
        {"metric": "squared_euclidean", "scale": 3.0},
    ),
    "soft_triple": (SoftTripleLoss, soft_triple_loss, reference_soft_triple, {}),
    "soft_triple_k3": (
        SoftTripleLoss,
        soft_triple_loss,
        reference_soft_triple,
        {"centers_per_class": 3, "scale": 5.0, "gamma": 0.2, "margin": 0.1, "tau": 0.5},
    ),
    "soft_triple_k1": (SoftTripleLoss, soft_triple_loss, reference_soft_triple, {"centers_per_class": 1}),
    "normalized_softmax": (NormalizedSoftmaxLoss, normalized_softmax_loss, reference_normalized_softmax, {}),
    "normalized_softmax_t01": (
        NormalizedSoftmaxLoss,
        normalized_softmax_loss,
        reference_normalized_softmax,
        {"temperature": 0.1},
    ),
    "arcface": (ArcFaceLoss, arcface_loss, reference_arcface, {}),
    "arcface_m03_s30": (ArcFaceLoss, arcface_loss, reference_arcface, {"margin": 0.3, "scale": 30.0}),
}
# Every registered loss with a vector per class: those that require num_classes.
CLASSES = {cls.__name__: cls for cls in rc.loss_classes() if "num_classes" in rc.required_arguments(cls)}


def _function_kwargs(loss):
    """The hyperparameters of ``loss`` as keyword arguments of its functional form."""
    config = loss.get_config()
    keys = {
        ProxyNCALoss: ("metric", "scale"),
        SoftTripleLoss: ("scale", "gamma", "margin", "tau"),
        NormalizedSoftmaxLoss: ("temperature",),
        ArcFaceLoss: ("margin", "scale"),
    }[type(loss)]
    return {key: config[key] for key in keys}


def _class_vector_shape(loss_class, num_classes, dim, kwargs):
    if loss_class is SoftTripleLoss:
        return (num_classes, kwargs.get("centers_per_class", 2), dim)
    return (num_classes, dim)


@pytest.fixture(params=sorted(LOSSES))
def case(request):
    return request.param


def _random_batch(rng, loss_class, kwargs, batch=7, dim=5, num_classes=4):
    labels = rng.integers(0, num_classes, size=batch).astype(np.int32)
    embeddings = rng.normal(size=(batch, dim))
    class_vectors = rng.normal(size=_class_vector_shape(loss_class, num_classes, dim, kwargs))
    return labels, embeddings, class_vectors


# ---------------------------------------------------------------- values


def test_function_matches_reference_on_random_batches(case, rng):
    loss_class, function, reference, kwargs = LOSSES[case]
    loss = loss_class(num_classes=4, embedding_dim=5, **kwargs)
    fn_kwargs = _function_kwargs(loss)
    for _ in range(3):
        labels, x, w = _random_batch(rng, loss_class, kwargs)
        value = function(tf.constant(labels), tf.constant(x), tf.constant(w), **fn_kwargs)
        np.testing.assert_allclose(value.numpy(), reference(labels, x, w, **fn_kwargs), rtol=1e-10, atol=1e-10)


@pytest.mark.reference("ProxyNCALoss", "SoftTripleLoss", "NormalizedSoftmaxLoss", "ArcFaceLoss")
def test_loss_object_uses_its_variables_in_float32(case, rng):
    loss_class, _, reference, kwargs = LOSSES[case]
    loss = loss_class(num_classes=4, embedding_dim=5, seed=3, **kwargs)
    labels, x, _ = _random_batch(rng, loss_class, kwargs)
    class_vectors = loss.proxies if hasattr(loss, "proxies") else loss.centers
    assert class_vectors.dtype == "float32" and loss.trainable_variables == [class_vectors]
    value = loss.compute(tf.constant(labels), tf.constant(x, tf.float32))
    expected = reference(labels, x.astype(np.float32), class_vectors.numpy(), **_function_kwargs(loss))
    assert value.dtype == tf.float32
    np.testing.assert_allclose(value.numpy(), expected, rtol=2e-5, atol=2e-5)


def test_proxy_nca_hand_built():
    # Embedding on its own proxy, orthogonal to the two others: d_pos = 0, d_neg = √2.
    proxies = np.eye(3)
    value = proxy_nca_loss(tf.constant([0]), tf.constant([[2.0, 0.0, 0.0]], tf.float64), tf.constant(proxies))
    np.testing.assert_allclose(value.numpy(), math.log(2.0) - math.sqrt(2.0), rtol=1e-10)


def test_normalized_softmax_hand_built():
    # Embedding on its own proxy, orthogonal to the others: logits (1/T, 0, 0).
    embedding, proxies = tf.constant([[1.0, 0.0, 0.0]], tf.float64), tf.constant(np.eye(3))
    for temperature in (0.05, 0.5):
        value = normalized_softmax_loss(tf.constant([0]), embedding, proxies, temperature=temperature)
        np.testing.assert_allclose(value.numpy(), math.log1p(2.0 * math.exp(-1.0 / temperature)), rtol=1e-7)


def test_arcface_hand_built():
    centers = tf.constant(np.eye(3))
    # θ = 0: target logit 16·cos(0.5) against two logits of 0.
    at_center = arcface_loss(tf.constant([0]), tf.constant([[1.0, 0.0, 0.0]], tf.float64), centers)
    np.testing.assert_allclose(at_center.numpy(), math.log1p(2.0 * math.exp(-16.0 * math.cos(0.5))), rtol=1e-7)
    # θ = π: past π − m, the target continues as cos θ − m·sin m = −1 − 0.5·sin 0.5.
    opposite = arcface_loss(tf.constant([0]), tf.constant([[-1.0, 0.0, 0.0]], tf.float64), centers)
    target = 16.0 * (-1.0 - 0.5 * math.sin(0.5))
    np.testing.assert_allclose(opposite.numpy(), -target + math.log(math.exp(target) + 2.0), rtol=1e-10)


def test_arcface_loss_increases_with_the_angle_to_the_own_centre():
    # Class 1's centre is opposite class 0's: the loss must grow over all of [0, π], across θ = π − m too.
    angles = np.linspace(0.0, math.pi, 181)
    embeddings = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    centers = np.array([[1.0, 0.0], [-1.0, 0.0]])
    losses = [arcface_loss(tf.constant([0]), tf.constant(e[None]), tf.constant(centers)).numpy() for e in embeddings]
    assert np.all(np.diff(losses) > 0)


def test_soft_triple_hand_built():
    # Class 0's centres e0, e1; class 1's e2, e3. The embedding e0 has similarities (1, 0) to class 0.
    centers = np.eye(4).reshape(2, 2, 4)
    value = soft_triple_loss(tf.constant([0]), tf.constant([[1.0, 0.0, 0.0, 0.0]], tf.float64), tf.constant(centers))
    s_own = math.exp(10.0) / (math.exp(10.0) + 1.0)
    target = 8.0 * (s_own - 0.01)
    classification = -target + math.log(math.exp(target) + math.exp(0.0))
    spread = 2 * math.sqrt(2.0) / (2 * 2 * 1)
    np.testing.assert_allclose(value.numpy(), classification + 0.2 * spread, rtol=1e-10)


# ---------------------------------------------------------------- gradients in float64


def test_gradients_match_finite_differences(case, rng):
    loss_class, function, _, kwargs = LOSSES[case]
    fn_kwargs = _function_kwargs(loss_class(num_classes=4, embedding_dim=5, **kwargs))
    labels, x, w = _random_batch(rng, loss_class, kwargs, batch=6)
    theoretical, numerical = tf.test.compute_gradient(
        lambda e, c: function(tf.constant(labels), e, c, **fn_kwargs), [tf.constant(x), tf.constant(w)], delta=1e-6
    )
    for analytic, finite_difference in zip(theoretical, numerical):
        np.testing.assert_allclose(analytic, finite_difference, rtol=1e-5, atol=1e-7)
        assert np.abs(analytic).max() > 1e-6


# ---------------------------------------------------------------- edge cases


def _value_and_gradients(loss, labels, embeddings):
    embeddings = tf.convert_to_tensor(embeddings)
    with tf.GradientTape() as tape:
        tape.watch(embeddings)
        value = loss.value(labels, embeddings)
    return (value, *tape.gradient(value, [embeddings, *loss.trainable_variables]))


def _assert_all_finite(*tensors):
    for tensor in tensors:
        assert tensor is not None and np.all(np.isfinite(tf.convert_to_tensor(tensor).numpy()))


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_one_class_in_the_batch(name, rng):
    loss = CLASSES[name](num_classes=3, embedding_dim=4, seed=0)
    _assert_all_finite(*_value_and_gradients(loss, tf.zeros(5, tf.int32), rng.normal(size=(5, 4)).astype(np.float32)))


@pytest.mark.parametrize("name", sorted(set(CLASSES) - {"ProxyNCALoss"}))  # ProxyNCA needs two classes
def test_single_class_problem_is_defined(name):
    loss = CLASSES[name](num_classes=1, embedding_dim=4, seed=0)
    _assert_all_finite(*_value_and_gradients(loss, tf.zeros(3, tf.int32), tf.ones((3, 4))))


def test_proxy_nca_needs_two_classes():
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2"):
        ProxyNCALoss(num_classes=1, embedding_dim=4)


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_identical_embeddings_on_a_class_vector(name):
    # Every embedding equals the first class vector and all class vectors of a class coincide:
    # zero distances and zero angles, where square roots and arccos have unbounded derivatives.
    loss = CLASSES[name](num_classes=3, embedding_dim=4, seed=0)
    class_vectors = loss.trainable_variables[0]
    class_vectors.assign(tf.ones_like(class_vectors))
    embeddings = tf.ones((6, 4))
    _assert_all_finite(*_value_and_gradients(loss, tf.constant([0, 0, 1, 1, 2, 2]), embeddings))
    _assert_all_finite(*_value_and_gradients(loss, tf.constant([0, 0, 1, 1, 2, 2]), tf.zeros((6, 4))))


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_float16_embeddings_under_mixed_precision(name, rng):
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        loss = CLASSES[name](num_classes=4, embedding_dim=8, seed=0)
        assert loss.trainable_variables[0].dtype == "float32"
        embeddings = tf.constant(rng.normal(size=(6, 8)), tf.float16)
        value, *gradients = _value_and_gradients(loss, tf.constant([0, 1, 2, 3, 0, 1]), embeddings)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert value.dtype == tf.float32
    assert gradients[0].dtype == tf.float16
    _assert_all_finite(value, *gradients)


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_out_of_range_label_is_named_eagerly(name):
    loss = CLASSES[name](num_classes=4, embedding_dim=3, seed=0)
    with pytest.raises(ValueError, match=r"label 4 is out of range for num_classes=4"):
        loss.value(tf.constant([0, 4, 1]), tf.ones((3, 3)))
    with pytest.raises(ValueError, match=r"label -1 is out of range for num_classes=4"):
        loss.value(tf.constant([0, -1, 1]), tf.ones((3, 3)))


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_out_of_range_label_is_named_in_graph(name):
    loss = CLASSES[name](num_classes=4, embedding_dim=3, seed=0)
    step = tf.function(lambda labels, embeddings: loss.value(labels, embeddings))
    labels = tf.Variable([0, 1, 7])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"(?s)num_classes=4\).*out-of-range label.*\] \[7\]"):
        step(labels, tf.ones((3, 3)))
    labels.assign([0, -2, 3])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"(?s)num_classes=4\).*out-of-range label.*\] \[-2\]"):
        step(labels, tf.ones((3, 3)))
    labels.assign([0, 1, 3])
    assert np.isfinite(step(labels, tf.ones((3, 3))).numpy())


def test_wrong_embedding_dimension_is_named():
    loss = ArcFaceLoss(num_classes=4, embedding_dim=3)
    with pytest.raises(ValueError, match="dimension 5 .* embedding_dim=3"):
        loss.value(tf.constant([0, 1]), tf.ones((2, 5)))


@pytest.mark.parametrize(
    "make",
    [
        lambda: ProxyNCALoss(4, 3, metric="cosine"),
        lambda: ProxyNCALoss(4, 3, scale=0.0),
        lambda: SoftTripleLoss(4, 3, centers_per_class=0),
        lambda: SoftTripleLoss(4, 3, gamma=0.0),
        lambda: NormalizedSoftmaxLoss(4, 3, temperature=-1.0),
        lambda: ArcFaceLoss(4, 3, margin=2.0),
        lambda: ArcFaceLoss(4, 0),
        lambda: ArcFaceLoss(4, 3, learning_rate=0.0),
    ],
)
def test_bad_hyperparameters_are_rejected(make):
    with pytest.raises(ValueError):
        make()


# ---------------------------------------------------------------- Keras integration


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_unattached_loss_refuses_to_train(name):
    with pytest.raises(ValueError, match="MetricLearningModel"):
        CLASSES[name](num_classes=2, embedding_dim=3)(tf.constant([0, 1]), tf.ones((2, 3)))


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_serialization_round_trip_and_seeded_initialisation(name):
    loss = CLASSES[name](num_classes=5, embedding_dim=3, learning_rate=1e-3, seed=7)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(restored) is type(loss) and restored.get_config() == loss.get_config()
    assert restored.parameters.learning_rate == 1e-3
    # Same seed, same initial class vectors; get_config holds hyperparameters, not variable values.
    np.testing.assert_array_equal(restored.trainable_variables[0].numpy(), loss.trainable_variables[0].numpy())
    assert "proxies" not in loss.get_config() and "centers" not in loss.get_config()


def test_roth_defaults():
    assert ProxyNCALoss(3, 4).get_config()["learning_rate"] == 1e-5
    assert ProxyNCALoss(3, 4).get_config()["metric"] == "euclidean"
    soft_triple = SoftTripleLoss(3, 4).get_config()
    assert (soft_triple["tau"], soft_triple["scale"], soft_triple["margin"], soft_triple["gamma"]) == (0.2, 8.0, 0.01, 0.1)
    assert soft_triple["centers_per_class"] == 2 and soft_triple["learning_rate"] == 1e-5
    assert NormalizedSoftmaxLoss(3, 4).get_config()["temperature"] == 0.05
    assert NormalizedSoftmaxLoss(3, 4).get_config()["learning_rate"] == 1e-5
    arcface = ArcFaceLoss(3, 4).get_config()
    assert (arcface["margin"], arcface["scale"], arcface["learning_rate"]) == (0.5, 16.0, 5e-4)


def _blobs(num_classes=4, per_class=16, seed=1):
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=2.0, size=(num_classes, 6))
    labels = np.repeat(np.arange(num_classes), per_class).astype(np.int32)
    inputs = (means[labels] + rng.normal(scale=0.5, size=(len(labels), 6))).astype(np.float32)
    return tf.data.Dataset.from_tensor_slices((inputs, labels)).shuffle(64, seed=0).batch(32)


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_model_fit_trains_class_vectors_and_keeps_them_out_of_the_embedder(name):
    keras.utils.set_random_seed(0)
    embedder = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4)])
    loss = CLASSES[name](num_classes=4, embedding_dim=4, learning_rate=0.05, seed=0)
    class_vectors = loss.trainable_variables[0]
    before = class_vectors.numpy().copy()
    model = MetricLearningModel(embedder, loss)
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    history = model.fit(_blobs(), epochs=6, shuffle=False, verbose=0).history["loss"]

    assert np.abs(class_vectors.numpy() - before).max() > 0.05
    assert history[-1] < 0.6 * history[0]
    assert float(model.loss_optimizer.learning_rate) == pytest.approx(0.05)
    assert any(v is class_vectors for v in model.weights)
    assert not any(v is class_vectors for v in embedder.weights)
    assert len(embedder.weights) == 2


def test_model_fit_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(0)
        embedder = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4)])
        loss = SoftTripleLoss(num_classes=4, embedding_dim=4, learning_rate=0.05, seed=0)
        before = loss.centers.numpy().copy()
        model = MetricLearningModel(embedder, loss)
        model.compile(optimizer=keras.optimizers.Adam(0.01))
        history = model.fit(_blobs(), epochs=4, shuffle=False, verbose=0).history["loss"]
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert loss.centers.dtype == "float32"
    assert np.all(np.isfinite(history)) and history[-1] < history[0]
    assert np.abs(loss.centers.numpy() - before).max() > 0.05


def test_model_fit_names_an_out_of_range_label():
    embedder = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4)])
    model = MetricLearningModel(embedder, ArcFaceLoss(num_classes=3, embedding_dim=4, seed=0))
    model.compile(optimizer="adam")
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"(?s)num_classes=3\).*out-of-range label.*\] \[3\]"):
        model.fit(_blobs(), epochs=1, shuffle=False, verbose=0)


def test_two_replica_step_matches_one_device(mirrored_strategy):
    # The loss sees the all-gathered global batch, so one step on 2 replicas must move the
    # proxies (and the embedder) exactly as one step on one device does.
    inputs, labels = next(iter(_blobs().unbatch().batch(32)))
    dataset = tf.data.Dataset.from_tensors((inputs, labels))

    def one_step(strategy):
        with strategy.scope():
            keras.utils.set_random_seed(0)
            embedder = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4)])
            loss = ProxyNCALoss(num_classes=4, embedding_dim=4, learning_rate=0.05, seed=0)
            model = MetricLearningModel(embedder, loss)
            model.compile(optimizer=keras.optimizers.Adam(0.01))
        model.fit(dataset, epochs=1, shuffle=False, verbose=0)
        return loss.proxies.numpy(), embedder.get_weights()[0]

    single = one_step(tf.distribute.OneDeviceStrategy("/cpu:0"))
    mirrored = one_step(mirrored_strategy)
    initial_proxies = ProxyNCALoss(num_classes=4, embedding_dim=4, seed=0).proxies.numpy()
    assert np.abs(single[0] - initial_proxies).max() > 0.01
    for one_device, two_replicas in zip(single, mirrored):
        np.testing.assert_allclose(two_replicas, one_device, atol=1e-6)
