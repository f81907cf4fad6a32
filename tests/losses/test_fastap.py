import keras
import numpy as np
import pytest
import tensorflow as tf

from finite_differences import central_differences

from tfdml.losses.fastap import FastAPLoss, fastap_loss, fastap_loss_autodiff


def reference_fastap(labels, embeddings, num_bins):
    """Slow FastAP loss straight from Cakir et al. 2019 (supp. Eq. 6, 7, 21), one query at a time."""
    labels = np.asarray(labels).reshape(-1)
    x = np.asarray(embeddings, dtype=np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    width = 4.0 / num_bins
    centres = width * np.arange(num_bins + 1)
    average_precisions = []
    for i in range(len(x)):
        h_pos = np.zeros(num_bins + 1)
        h_neg = np.zeros(num_bins + 1)
        for j in range(len(x)):
            if j == i:
                continue
            z = np.sum((x[i] - x[j]) ** 2)
            for l, c in enumerate(centres):
                soft_count = max(0.0, 1.0 - abs(z - c) / width)
                if labels[j] == labels[i]:
                    h_pos[l] += soft_count
                else:
                    h_neg[l] += soft_count
        num_positives = np.sum(labels == labels[i]) - 1
        if num_positives == 0:
            continue
        big_h_pos, big_h = np.cumsum(h_pos), np.cumsum(h_pos + h_neg)
        terms = [big_h_pos[l] * h_pos[l] / big_h[l] if big_h[l] > 0 else 0.0 for l in range(num_bins + 1)]
        average_precisions.append(sum(terms) / num_positives)
    return 1.0 - np.mean(average_precisions) if average_precisions else 0.0


def reference_gradient(labels, embeddings, num_bins, step=1e-6):
    """Central finite differences of :func:`reference_fastap`."""
    return central_differences(lambda x: reference_fastap(labels, x, num_bins), embeddings, step)


def value_and_gradient(loss_fn, labels, embeddings, **kwargs):
    embeddings = tf.convert_to_tensor(embeddings)
    with tf.GradientTape() as tape:
        tape.watch(embeddings)
        loss = loss_fn(labels, embeddings, **kwargs)
    return loss.numpy(), tape.gradient(loss, embeddings).numpy()


def random_batch(rng, size, dim, num_classes, dtype=np.float64):
    labels = rng.integers(0, num_classes, size)
    return labels, rng.normal(size=(size, dim)).astype(dtype)


@pytest.mark.parametrize("size,dim,num_classes,num_bins", [(6, 3, 2, 10), (12, 5, 3, 10), (16, 4, 5, 4), (9, 8, 4, 1)])
def test_loss_matches_numpy_reference(rng, size, dim, num_classes, num_bins):
    labels, x = random_batch(rng, size, dim, num_classes)
    expected = reference_fastap(labels, x, num_bins)
    np.testing.assert_allclose(fastap_loss(labels, x, num_bins=num_bins).numpy(), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fastap_loss_autodiff(labels, x, num_bins=num_bins).numpy(), expected, rtol=1e-12)


def test_hand_computed_value_at_bin_centres():
    # L = 4 (Δ = 1). Query 0: positive at D=2, negative at D=4 → AP 1. Query 1: positive and
    # negative both at D=2 → AP 1/2. Query 2 has no positive and is excluded: loss 1 − 3/4.
    x = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    assert fastap_loss([0, 0, 1], x, num_bins=4).numpy() == pytest.approx(0.25, abs=1e-12)
    assert reference_fastap([0, 0, 1], x, 4) == pytest.approx(0.25, abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_custom_gradient_equals_autodiff(seed):
    rng = np.random.default_rng(seed)
    labels, x = random_batch(rng, 24, 6, 4)
    # Unnormalised inputs with varied norms: the gradient also flows through the normalisation.
    x *= rng.uniform(0.5, 3.0, size=(24, 1))
    loss, custom = value_and_gradient(fastap_loss, labels, x, num_bins=10)
    auto_loss, auto = value_and_gradient(fastap_loss_autodiff, labels, x, num_bins=10)
    assert loss == auto_loss
    assert np.abs(custom).max() > 1e-4
    np.testing.assert_allclose(custom, auto, rtol=1e-6, atol=1e-12 * np.abs(auto).max())


@pytest.mark.parametrize("num_bins", [3, 10])
def test_custom_gradient_matches_finite_differences_of_reference(rng, num_bins):
    labels, x = random_batch(rng, 8, 3, 3)
    _, custom = value_and_gradient(fastap_loss, labels, x, num_bins=num_bins)
    expected = reference_gradient(labels, x, num_bins)
    assert np.abs(expected).max() > 1e-4
    np.testing.assert_allclose(custom, expected, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("loss_fn", [fastap_loss, fastap_loss_autodiff])
def test_gradient_matches_tf_numeric_gradient(rng, loss_fn):
    # The autodiff reference goes through the histogram's own gradient: check it independently too.
    labels, x = random_batch(rng, 10, 4, 3)
    theoretical, numerical = tf.test.compute_gradient(
        lambda e: loss_fn(labels, e, num_bins=10), [tf.constant(x)], delta=1e-6
    )
    np.testing.assert_allclose(theoretical[0], numerical[0], rtol=1e-5, atol=1e-8)


def test_gradient_scales_with_upstream_gradient(rng):
    # The official port ignores grad_output: loss weights had no effect there.
    labels, x = random_batch(rng, 10, 4, 3)
    x = tf.constant(x)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        loss = fastap_loss(labels, x)
        scaled = -2.5 * loss
    np.testing.assert_allclose(tape.gradient(scaled, x).numpy(), -2.5 * tape.gradient(loss, x).numpy(), rtol=1e-12)


def test_gradient_is_that_of_the_mean_loss_not_a_multiple(rng):
    # The official port returns M/2 times the gradient of the reported mean: check the scale directly.
    labels, x = random_batch(rng, 12, 4, 3)
    direction = rng.normal(size=x.shape)
    _, gradient = value_and_gradient(fastap_loss, labels, x)
    step = 1e-6
    plus = reference_fastap(labels, x + step * direction, 10)
    minus = reference_fastap(labels, x - step * direction, 10)
    directional = (plus - minus) / (2 * step)
    assert np.sum(gradient * direction) == pytest.approx(directional, rel=1e-5)


def test_no_positive_pair_gives_zero_loss_and_zero_gradient(rng):
    x = rng.normal(size=(5, 4))
    for loss_fn in (fastap_loss, fastap_loss_autodiff):
        loss, gradient = value_and_gradient(loss_fn, np.arange(5), x)
        assert loss == 0.0
        np.testing.assert_array_equal(gradient, np.zeros_like(x))


def test_single_sample_and_query_without_positive_is_excluded(rng):
    loss, gradient = value_and_gradient(fastap_loss, [3], rng.normal(size=(1, 4)))
    assert loss == 0.0 and np.all(gradient == 0.0)
    labels = np.array([0, 0, 1, 1, 2])  # sample 4 has no positive
    x = rng.normal(size=(5, 3))
    np.testing.assert_allclose(fastap_loss(labels, x).numpy(), reference_fastap(labels, x, 10), rtol=1e-12)


def test_one_class_only_is_perfect_ranking(rng):
    x = rng.normal(size=(6, 4))
    loss, gradient = value_and_gradient(fastap_loss, np.zeros(6, int), x)
    assert loss == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(gradient, 0.0, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_identical_embeddings_are_finite(dtype):
    labels = np.array([0, 0, 0, 1, 1, 2])
    x = np.tile(np.array([[0.3, -1.2, 0.5]], dtype), (6, 1))
    loss, gradient = value_and_gradient(fastap_loss, labels, x)
    # Everything at distance 0: AP_i = N⁺_i / (M − 1) for the 5 queries with positives.
    expected = 1.0 - np.mean([2 / 5, 2 / 5, 2 / 5, 1 / 5, 1 / 5])
    assert loss == pytest.approx(expected, rel=1e-6)
    assert np.all(np.isfinite(gradient))


def test_labels_of_shape_b1_and_float_labels(rng):
    labels, x = random_batch(rng, 10, 4, 3)
    expected = fastap_loss(labels, x).numpy()
    assert fastap_loss(labels[:, None], x).numpy() == expected
    keras_loss = FastAPLoss()(labels[:, None].astype(np.float32), x.astype(np.float32))
    assert keras_loss.numpy() == pytest.approx(expected, rel=1e-5)


@pytest.mark.reference("FastAPLoss")
def test_keras_loss_matches_reference_and_is_float32(rng):
    labels, x = random_batch(rng, 12, 5, 3, dtype=np.float32)
    loss = FastAPLoss(num_bins=5)(labels, x)
    assert loss.dtype == tf.float32
    assert loss.numpy() == pytest.approx(reference_fastap(labels, x, 5), rel=1e-5)


def test_unknown_batch_size_in_tf_function(rng):
    loss_fn = tf.function(
        fastap_loss,
        input_signature=[tf.TensorSpec([None], tf.int32), tf.TensorSpec([None, 4], tf.float32)],
    )
    for size in (5, 9):
        labels, x = random_batch(rng, size, 4, 2, dtype=np.float32)
        assert loss_fn(labels.astype(np.int32), x).numpy() == pytest.approx(reference_fastap(labels, x, 10), rel=1e-5)


def test_mixed_float16_training_step_is_finite(rng):
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        layer = keras.layers.Dense(8)
        labels, x = random_batch(rng, 16, 6, 4, dtype=np.float32)
        loss_fn = FastAPLoss()
        with tf.GradientTape() as tape:
            embeddings = layer(x)
            loss = loss_fn(labels, embeddings)
        assert embeddings.dtype == tf.float16 and loss.dtype == tf.float32
        gradients = tape.gradient(loss, layer.trainable_variables)
        assert np.isfinite(loss.numpy())
        assert all(np.all(np.isfinite(g.numpy())) for g in gradients)
        assert np.abs(gradients[0].numpy()).max() > 0
    finally:
        keras.mixed_precision.set_global_policy(previous)


def test_float16_embeddings_are_cast_to_float32(rng):
    labels, x = random_batch(rng, 10, 4, 3)
    x16 = tf.constant(x, tf.float16)
    with tf.GradientTape() as tape:
        tape.watch(x16)
        loss = FastAPLoss()(labels, x16)
    gradient = tape.gradient(loss, x16)
    assert loss.dtype == tf.float32 and gradient.dtype == tf.float16
    assert loss.numpy() == pytest.approx(reference_fastap(labels, x16.numpy(), 10), rel=1e-3)
    assert np.all(np.isfinite(gradient.numpy()))


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16])
def test_functional_half_precision_uses_float32_math(rng, dtype):
    labels, x = random_batch(rng, 10, 4, 3)
    half = tf.constant(x, dtype)
    loss, gradient = value_and_gradient(fastap_loss, labels, half)
    assert loss.dtype == np.float32 and gradient.dtype == dtype.as_numpy_dtype
    expected = reference_fastap(labels, tf.cast(half, tf.float64).numpy(), 10)
    assert loss == pytest.approx(expected, rel=1e-5)
    assert np.all(np.isfinite(tf.cast(gradient, tf.float32).numpy()))


def test_mirrored_strategy_per_replica_losses(rng, mirrored_strategy):
    strategy = mirrored_strategy
    labels, x = random_batch(rng, 16, 4, 3, dtype=np.float32)
    dataset = tf.data.Dataset.from_tensor_slices((labels.astype(np.int32), x)).batch(16)
    with strategy.scope():
        loss_fn = FastAPLoss()

    @tf.function
    def step(labels, x):
        def replica_fn(labels, x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = loss_fn(labels, x)
            return loss, tape.gradient(loss, x)

        return strategy.run(replica_fn, args=(labels, x))

    shard_labels, shard_x = next(iter(strategy.experimental_distribute_dataset(dataset)))
    losses, gradients = step(shard_labels, shard_x)
    for replica in range(2):
        local_labels = strategy.experimental_local_results(shard_labels)[replica].numpy()
        local_x = strategy.experimental_local_results(shard_x)[replica].numpy()
        expected_loss, expected_gradient = value_and_gradient(fastap_loss, local_labels, local_x)
        assert strategy.experimental_local_results(losses)[replica].numpy() == pytest.approx(expected_loss, rel=1e-6)
        np.testing.assert_allclose(
            strategy.experimental_local_results(gradients)[replica].numpy(), expected_gradient, rtol=1e-5, atol=1e-7
        )


@pytest.mark.parametrize("distributed", [False, True])
def test_keras_fit(rng, distributed, mirrored_strategy):
    # Single device: the train step, custom gradient included, is compiled with XLA.
    labels, x = random_batch(rng, 32, 6, 4, dtype=np.float32)
    strategy = mirrored_strategy if distributed else tf.distribute.get_strategy()
    with strategy.scope():
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4), keras.layers.UnitNormalization()])
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss=FastAPLoss(), jit_compile=not distributed)
    assert model.jit_compile == (not distributed)
    initial = model.layers[0].kernel.numpy().copy()
    history = model.fit(x, labels, batch_size=16, epochs=2, verbose=0, shuffle=False)
    assert all(np.isfinite(history.history["loss"]))
    assert not np.allclose(model.layers[0].kernel.numpy(), initial)


@pytest.mark.parametrize("num_bins", [0, -3, 2.5, True, "10"])
def test_invalid_num_bins_is_rejected(num_bins):
    with pytest.raises(ValueError, match="num_bins"):
        FastAPLoss(num_bins=num_bins)
    with pytest.raises(ValueError, match="num_bins"):
        fastap_loss([0, 0], np.ones((2, 3)), num_bins=num_bins)


def test_bad_embedding_rank_is_rejected():
    with pytest.raises(ValueError, match="embeddings"):
        fastap_loss([0, 0], np.ones((2, 3, 1)))
    with pytest.raises(ValueError, match="y_pred"):
        FastAPLoss()([0, 0], np.ones((2,), np.float32))


def test_exported_from_losses_package():
    import tfdml.losses

    assert tfdml.losses.FastAPLoss is FastAPLoss
