import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdml import models
from tfdml.losses.base import DMLLoss, LossParameters, ParametricDMLLoss
from tfdml.training import MetricLearningModel
from tfdml.training.model import resolve_jit_compile


class CentreLoss(ParametricDMLLoss):
    """Test double: mean squared distance of each embedding to a learnable centre of its class."""

    def __init__(self, num_classes=3, dim=4, learning_rate=0.05, **kwargs):
        super().__init__(**kwargs)
        self.parameters = LossParameters(learning_rate, name="centres")
        self.centres = self.parameters.add_weight(shape=(num_classes, dim), initializer="zeros", name="centres")

    def compute(self, labels, embeddings):
        return tf.reduce_mean(tf.reduce_sum(tf.square(embeddings - tf.gather(self.centres, labels)), axis=1))


class SpreadLoss(DMLLoss):
    """Test double without parameters: pulls same-class embeddings together."""

    def compute(self, labels, embeddings):
        same = tf.cast(tf.equal(labels[:, None], labels[None, :]), tf.float32)
        d2 = tf.reduce_sum(tf.square(embeddings[:, None] - embeddings[None, :]), -1)
        return tf.reduce_sum(same * d2) / tf.reduce_sum(same)


def toy_data(rng, n=48):
    labels = rng.integers(0, 3, size=n)
    images = (rng.uniform(0, 60, size=(n, 8, 8, 1)) + labels[:, None, None, None] * 60).astype("float32")
    return images, labels


def embedder(dim=4):
    return models.build_embedding_model("convnet", input_shape=(8, 8, 1), embedding_dim=dim, filters=4, normalize=False)


def test_loss_parameters_train_with_their_own_optimizer_and_stay_out_of_the_embedding_model(rng):
    images, labels = toy_data(rng)
    loss = CentreLoss()
    model = MetricLearningModel(embedder(), loss)
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    before = loss.centres.numpy().copy()
    history = model.fit(images, labels, batch_size=16, epochs=4, verbose=0)
    assert not np.allclose(before, loss.centres.numpy())
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert model.loss_optimizer.learning_rate.numpy() == pytest.approx(0.05)
    names = {v.path for v in model.embedding_model.variables}
    assert not any("centres" in n for n in names)


def test_parametric_loss_without_the_wrapper_raises_a_clear_error():
    with pytest.raises(ValueError, match="MetricLearningModel"):
        CentreLoss()(np.zeros(2), np.zeros((2, 4), "float32"))


def test_predict_returns_embeddings_and_evaluate_reports_loss(rng):
    images, labels = toy_data(rng, 16)
    model = MetricLearningModel(embedder(), SpreadLoss())
    model.compile(optimizer="adam")
    assert model.predict(images, verbose=0).shape == (16, 4)
    assert np.isfinite(model.evaluate(images, labels, batch_size=16, verbose=0))


def test_compile_rejects_a_loss_argument(rng):
    with pytest.raises(ValueError, match="constructor"):
        MetricLearningModel(embedder(), SpreadLoss()).compile(optimizer="adam", loss="mse")


@pytest.mark.parametrize("through_model", [False, True], ids=["compile", "MetricLearningModel"])
def test_sample_weights_are_refused_because_dml_losses_are_batch_global(through_model, rng):
    images, labels = toy_data(rng, 16)
    if through_model:
        model = MetricLearningModel(embedder(), SpreadLoss())
        model.compile(optimizer="sgd")
    else:
        model = embedder()
        model.compile(optimizer="sgd", loss=SpreadLoss())
    with pytest.raises(ValueError, match="sample_weight is not supported"):
        model.fit(images, labels, sample_weight=np.ones(16), batch_size=16, epochs=1, verbose=0)


def test_a_loss_has_no_reduction_argument():
    with pytest.raises(TypeError, match="reduction"):
        SpreadLoss(reduction="sum")
    assert "reduction" not in SpreadLoss().get_config()


def test_value_evaluates_a_parametric_loss_that_a_call_refuses():
    loss = CentreLoss()
    labels, embeddings = np.array([0, 1]), np.ones((2, 4), "float32")
    with pytest.raises(ValueError, match="MetricLearningModel"):
        loss(labels, embeddings)
    assert float(loss.value(labels, embeddings)) == pytest.approx(4.0)


def batchnorm_free_embedder():
    # Per-replica BatchNorm statistics would differ from the global batch's; the loss path is what is tested.
    inputs = keras.Input((8, 8, 1))
    features = keras.layers.Conv2D(4, 3, activation="tanh")(keras.layers.Rescaling(1 / 255)(inputs))
    return models.build_embedding_model(keras.Model(inputs, features), embedding_dim=4)


def test_mirrored_two_replicas_equal_one_device_on_the_global_batch(rng, mirrored_strategy):
    images, labels = toy_data(rng, 16)
    keras.utils.set_random_seed(1)
    single = MetricLearningModel(batchnorm_free_embedder(), SpreadLoss())
    single.compile(optimizer=keras.optimizers.SGD(0.1))
    initial = single.embedding_model.get_weights()
    single.fit(images, labels, batch_size=16, epochs=1, shuffle=False, verbose=0)

    strategy = mirrored_strategy
    with strategy.scope():
        mirrored = MetricLearningModel(batchnorm_free_embedder(), SpreadLoss())
        mirrored.embedding_model.set_weights(initial)
        mirrored.compile(optimizer=keras.optimizers.SGD(0.1))
    mirrored.fit(images, labels, batch_size=16, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(single.embedding_model.get_weights(), mirrored.embedding_model.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_jit_compile_recipe_values():
    values = ("auto", True, False, "TRUE", "false")
    assert [resolve_jit_compile(v) for v in values] == ["auto", True, False, True, False]
    for bad in ("yes", 1, None):
        with pytest.raises(ValueError, match="jit_compile"):
            resolve_jit_compile(bad)
