import numpy as np
import pytest
import keras
import tensorflow as tf

from tfdml import models


def test_convnet_embeddings_are_unit_norm_with_configurable_dim(rng):
    model = models.build_embedding_model("convnet", input_shape=(28, 28, 1), embedding_dim=24, filters=8)
    out = model(rng.uniform(0, 255, size=(3, 28, 28, 1)).astype("float32")).numpy()
    assert out.shape == (3, 24)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)


def test_unnormalised_option_keeps_raw_embeddings(rng):
    model = models.build_embedding_model("convnet", input_shape=(16, 16, 1), embedding_dim=8, filters=4, normalize=False)
    out = model(rng.uniform(0, 255, size=(4, 16, 16, 1)).astype("float32")).numpy()
    assert not np.allclose(np.linalg.norm(out, axis=1), 1.0)


def test_convnet_accepts_tiny_digits_input():
    model = models.build_embedding_model("convnet", input_shape=(8, 8, 1), embedding_dim=4, filters=4)
    assert model(np.zeros((1, 8, 8, 1), "float32")).shape == (1, 4)


def test_resnet50_frozen_batchnorm_keeps_statistics_and_parameters(rng):
    model = models.build_embedding_model("resnet50", input_shape=(32, 32, 3), embedding_dim=16, freeze_batchnorm=True)
    batchnorms = [l for l in model._flatten_layers() if isinstance(l, keras.layers.BatchNormalization)]
    assert len(batchnorms) == 53 and all(not l.trainable for l in batchnorms)
    before = [w.numpy().copy() for l in batchnorms for w in l.weights]
    head = model.trainable_weights[-1].numpy().copy()
    x = rng.uniform(0, 255, size=(4, 32, 32, 3)).astype("float32")
    with tf.GradientTape() as tape:  # one training step, as fit takes it
        loss = keras.ops.mean(model(x, training=True)[:, 0])
    keras.optimizers.SGD(0.1).apply(tape.gradient(loss, model.trainable_weights), model.trainable_weights)
    after = [w.numpy() for l in batchnorms for w in l.weights]
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    assert not np.array_equal(head, model.trainable_weights[-1].numpy())  # the step did train


def test_resnet50_trainable_batchnorm_updates_statistics(rng):
    model = models.build_embedding_model("resnet50", input_shape=(32, 32, 3), embedding_dim=16, freeze_batchnorm=False)
    bn = next(l for l in model._flatten_layers() if isinstance(l, keras.layers.BatchNormalization))
    before = bn.moving_mean.numpy().copy()
    model(rng.uniform(0, 255, size=(4, 32, 32, 3)).astype("float32"), training=True)  # what a fit step runs
    assert not np.array_equal(before, bn.moving_mean.numpy())


def test_imagenet_weights_missing_offline_explains_how_to_provide_them(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="weights='/path/to/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5'"):
        models.build_embedding_model("resnet50", weights="imagenet")


def test_resnet50_loads_a_local_weights_file(tmp_path):
    source = models.resnet50((32, 32, 3))
    base = source.layers[-1]
    path = str(tmp_path / "resnet50_notop.weights.h5")
    base.save_weights(path)
    loaded = models.build_embedding_model("resnet50", input_shape=(32, 32, 3), weights=path)
    resnet = loaded.get_layer("resnet50").layers[-1]
    np.testing.assert_array_equal(resnet.weights[0].numpy(), base.weights[0].numpy())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"embedding_dim": 0}, "embedding_dim"),
        ({"embedding_dim": -3}, "embedding_dim"),
        ({"pooling": "median"}, "pooling"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        models.build_embedding_model("convnet", input_shape=(16, 16, 1), **kwargs)


def test_unknown_backbone_is_named():
    with pytest.raises(ValueError, match="vgg"):
        models.build_embedding_model("vgg", input_shape=(16, 16, 1))
