import numpy as np
import pytest
import keras
import tensorflow as tf

from tfdml import models
from tfdml.models.heads import embedding_head
from tfdml.models.pooling import ClassToken, GeneralizedMeanPooling, global_pool
from tfdml.training.config import ConfigError, load_config
from tfdml.run import export_embedder
from tests.test_serving_parity import tiny_setup


def gem_reference(x, p, eps=1e-6):
    """Radenović et al. 2018, Eq. 2, over every axis between the batch and the channels; and d/dp of it."""
    x = np.maximum(x, eps)
    axes = tuple(range(1, x.ndim - 1))
    m = np.mean(x**p, axis=axes)
    f = m ** (1 / p)
    # ln f = ln(m) / p  →  df/dp = f · (mean(x^p ln x) / (p m) − ln(m) / p²)
    dm = np.mean(x**p * np.log(x), axis=axes)
    return f, f * (dm / (p * m) - np.log(m) / p**2)


def test_gem_matches_the_reference_in_value_and_gradient_wrt_p(rng):
    x = rng.uniform(-0.5, 3.0, size=(3, 4, 5, 6))  # negatives: clamped to eps
    gem = GeneralizedMeanPooling(p=2.5, dtype="float64")
    gem.build(x.shape)
    weights = rng.normal(size=(3, 6))
    with tf.GradientTape() as tape:
        out = gem(x)
        objective = tf.reduce_sum(out * weights)
    expected, d_dp = gem_reference(x, 2.5)
    assert out.dtype == tf.float64
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12)
    np.testing.assert_allclose(tape.gradient(objective, gem.p).numpy(), np.sum(d_dp * weights), rtol=1e-10)


def test_gem_pools_token_sequences_too(rng):
    tokens = rng.uniform(0, 2, size=(2, 7, 5))
    np.testing.assert_allclose(GeneralizedMeanPooling(dtype="float64")(tokens).numpy(), gem_reference(tokens, 3.0)[0])


def test_gem_with_p_1_is_average_pooling_and_large_p_approaches_max(rng):
    x = rng.uniform(0.1, 1.0, size=(2, 4, 4, 3)).astype("float32")
    np.testing.assert_allclose(GeneralizedMeanPooling(p=1.0)(x), x.mean(axis=(1, 2)), rtol=1e-5)
    # (1/16)^(1/200) ≥ 0.986: within 1.5% of the max, far from the mean.
    np.testing.assert_allclose(GeneralizedMeanPooling(p=200.0)(x), x.max(axis=(1, 2)), rtol=0.015)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_gem_computes_in_float32_under_mixed_precision(policy, rng):
    x = rng.uniform(0, 60, size=(2, 3, 3, 4))  # 60^3 overflows float16
    gem = GeneralizedMeanPooling(dtype=policy)
    out = gem(x)
    assert gem.p.dtype == "float32" and out.dtype == policy.removeprefix("mixed_")
    np.testing.assert_allclose(np.asarray(out, "float32"), gem_reference(x, 3.0)[0], rtol=1e-2)


def test_gem_p_learns(rng):
    model = models.build_embedding_model(
        "convnet", input_shape=(8, 8, 1), embedding_dim=4, filters=4, blocks=1, pooling="gem", gem_p=2.0
    )
    p = model.get_layer("gem_pool").p
    assert any(v is p for v in model.trainable_variables) and float(p.numpy()) == 2.0
    x = rng.uniform(0, 255, size=(4, 8, 8, 1)).astype("float32")
    with tf.GradientTape() as tape:
        loss = keras.ops.sum(model(x, training=True)[:, 0])
    keras.optimizers.SGD(0.1).apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
    assert float(p.numpy()) != 2.0


def test_gem_config_round_trip():
    gem = GeneralizedMeanPooling(p=4.5, eps=1e-4, name="g")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(gem))
    assert type(restored) is GeneralizedMeanPooling and restored.get_config() == gem.get_config()
    assert (restored.initial_p, restored.eps, restored.name) == (4.5, 1e-4, "g")
    restored.build((None, 2, 2, 3))
    assert float(restored.p.numpy()) == 4.5


@pytest.mark.parametrize("kwargs", [{"p": 0.0}, {"p": -1.0}, {"eps": 0.0}])
def test_gem_refuses_bad_arguments(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        GeneralizedMeanPooling(**kwargs)


def token_backbone():
    """A tiny 'ViT': (4, 4, 3) images → 16 tokens of width 6."""
    images = keras.Input((4, 4, 3))
    tokens = keras.layers.Dense(6)(keras.layers.Reshape((16, 3))(images))
    return keras.Model(images, tokens, name="tokens")


@pytest.fixture(scope="module")
def tokens():
    return np.random.default_rng(0).normal(size=(2, 5, 6)).astype("float32")


def test_cls_takes_the_first_token_and_avg_max_pool_over_tokens(tokens):
    features = keras.Input((5, 6))
    for pooling, expected in [("cls", tokens[:, 0]), ("avg", tokens.mean(1)), ("max", tokens.max(1)),
                              ("avgmax", tokens.mean(1) + tokens.max(1))]:
        pooled = keras.Model(features, global_pool(features, pooling))(tokens)
        np.testing.assert_allclose(pooled, expected, rtol=1e-6, err_msg=pooling)
    assert ClassToken().compute_output_shape((None, 5, 6)) == (None, 6)


def test_cls_of_a_feature_map_is_refused():
    with pytest.raises(ValueError, match="pooling='cls'.*token sequence"):
        models.build_embedding_model("convnet", input_shape=(8, 8, 1), embedding_dim=4, filters=4, pooling="cls")


def test_vit_like_backbone_embeds_its_class_token(rng):
    model = models.build_embedding_model(token_backbone(), embedding_dim=3, pooling="cls")
    x = rng.uniform(0, 255, size=(2, 4, 4, 3)).astype("float32")
    cls = model.get_layer("tokens")(x)[:, 0]
    linear = model.get_layer("embedding")(cls).numpy()
    np.testing.assert_allclose(model(x), linear / np.linalg.norm(linear, axis=1, keepdims=True), rtol=1e-5)


@pytest.mark.parametrize("head", models.HEADS)
@pytest.mark.parametrize("normalize", [True, False])
def test_each_head_gives_embedding_dim_unit_norm_when_asked(head, normalize, rng):
    pooled = keras.Input((10,))
    model = keras.Model(pooled, embedding_head(pooled, head, embedding_dim=4))
    out = model(rng.normal(size=(5, 10)).astype("float32"), training=True).numpy()
    assert out.shape == (5, 4)
    full = models.build_embedding_model(
        token_backbone(), embedding_dim=4, head=head, normalize=normalize, pooling="avg"
    )
    norms = np.linalg.norm(full(rng.uniform(0, 255, size=(3, 4, 4, 3)).astype("float32")), axis=1)
    assert np.allclose(norms, 1.0, rtol=1e-5) == normalize


def test_mlp_head_is_dense_bn_relu_dense_with_its_hidden_width():
    pooled = keras.Input((10,))
    model = keras.Model(pooled, embedding_head(pooled, "mlp", embedding_dim=4, head_hidden=7))
    kinds = [type(layer).__name__ for layer in model.layers[1:]]
    assert kinds == ["Dense", "BatchNormalization", "ReLU", "Dense"]
    assert model.get_layer("head_hidden").kernel.shape == (10, 7)
    default = keras.Model(pooled, embedding_head(pooled, "mlp", embedding_dim=4))
    assert default.get_layer("head_hidden").kernel.shape == (10, 10)


def test_bnneck_in_inference_matches_the_reference(rng):
    model = models.build_embedding_model(token_backbone(), embedding_dim=4, head="bnneck", pooling="avg")
    dense, bn = model.get_layer("embedding"), model.get_layer("bnneck")
    assert dense.bias is None and bn.beta is None  # Luo et al. 2019: no bias before BN, BN without shift
    bn.gamma.assign(rng.uniform(0.5, 2, 4))
    bn.moving_mean.assign(rng.normal(size=4))
    bn.moving_variance.assign(rng.uniform(0.5, 2, 4))
    x = rng.uniform(0, 255, size=(3, 4, 4, 3)).astype("float32")
    pooled = model.get_layer("tokens")(x).numpy().mean(axis=1)
    f_t = pooled @ dense.kernel.numpy()
    f_i = bn.gamma.numpy() * (f_t - bn.moving_mean.numpy()) / np.sqrt(bn.moving_variance.numpy() + bn.epsilon)
    expected = f_i / np.linalg.norm(f_i, axis=1, keepdims=True)
    np.testing.assert_allclose(model(x, training=False), expected, rtol=1e-4, atol=1e-6)


def test_bad_head_arguments_are_named():
    pooled = keras.Input((10,))
    with pytest.raises(ValueError, match="head"):
        embedding_head(pooled, "transformer")
    with pytest.raises(ValueError, match="head_hidden"):
        embedding_head(pooled, "linear", head_hidden=8)
    with pytest.raises(ValueError, match="head_hidden"):
        embedding_head(pooled, "mlp", head_hidden=0)


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.head=transformer", "model.head must be one of linear, mlp, bnneck"),
        ("model.pooling=median", "model.pooling must be one of"),
        ("model.gem_p=0", "model.gem_p"),
        ("model.head_hidden=0", "model.head_hidden must be a positive integer"),
        ("model.head_hidden=32", "model.head_hidden=32 is the width of the mlp head"),
    ],
)
def test_recipe_keys_are_validated(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_gem_bnneck_recipe_builds_and_serves_the_embeddings_it_evaluates(tmp_path):
    # The recipe through Experiment, exported as train.py does; the SavedModel is loaded in this process
    # (tests/test_serving_parity.py checks a separate process of plain TensorFlow for the default head).
    setup, _ = tiny_setup(
        tmp_path,
        "gem-bnneck",
        ["data.name=digits", "data.image_size=16", "model.pooling=gem", "model.gem_p=4", "model.head=bnneck"],
    )
    embedder = setup.embedder
    assert float(embedder.get_layer("gem_pool").p.numpy()) == 4.0 and embedder.get_layer("bnneck").beta is None
    bn = embedder.get_layer("bnneck")  # statistics as after training, so the neck is not the identity
    bn.moving_mean.assign(np.linspace(-0.1, 0.1, 8))
    bn.moving_variance.assign(np.linspace(0.5, 2.0, 8))
    evaluated = embedder.predict(setup.test_images(), verbose=0)[:16]  # what train.py's evaluation embeds
    files = tf.stack([setup.test_data.encoded(tf.constant(i, tf.int64)) for i in range(16)])
    served = tf.saved_model.load(export_embedder(setup)).signatures["serving_bytes"](image_bytes=files)["embeddings"]
    assert np.abs(served.numpy() - evaluated).max() <= 1e-4
