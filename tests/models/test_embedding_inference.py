"""inference_function / embed: the model in inference mode, traced once for every batch size."""

import keras
import numpy as np
import tensorflow as tf

from tfdml.models import build_embedding_model, embed, inference_function


def test_inference_is_predict_traced_once_for_every_batch_size_and_dtype():
    traces = []
    inputs = keras.Input((8, 8, 1))
    counted = keras.layers.Lambda(lambda x: (traces.append(1), x)[1])(inputs)  # Python runs only when tracing
    body = build_embedding_model("convnet", input_shape=(8, 8, 1), embedding_dim=4, filters=4, blocks=2)
    model = keras.Model(inputs, body(counted))
    images = np.random.default_rng(0).uniform(0, 255, (10, 8, 8, 1)).astype(np.float32)
    expected = model.predict(images, batch_size=4, verbose=0)
    expected_uint8 = model.predict(images.astype(np.uint8), batch_size=4, verbose=0)
    infer = inference_function(model)
    traced_before = len(traces)
    batches = tf.data.Dataset.from_tensor_slices(images).batch(4)  # 4, 4 and a last batch of 2
    np.testing.assert_allclose(embed(infer, batches), expected, rtol=1e-5, atol=1e-6)
    uint8_batches = batches.map(lambda x: tf.cast(x, tf.uint8))  # cast to the input dtype
    np.testing.assert_allclose(embed(infer, uint8_batches), expected_uint8, rtol=1e-5, atol=1e-6)
    assert len(traces) - traced_before == 1


def test_inference_uses_inference_mode():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dropout(0.99), keras.layers.Dense(2)])
    x = np.ones((5, 3), np.float32)
    np.testing.assert_allclose(inference_function(model)(x), model(x, training=False), rtol=1e-6)


def test_a_model_without_a_declared_input_is_traced_with_reduce_retracing():
    class Doubler(keras.Model):
        def call(self, images, training=False):
            return 2.0 * images

    infer = inference_function(Doubler())
    np.testing.assert_allclose(embed(infer, [np.ones((3, 2), np.float32), np.ones((1, 2), np.float32)]), 2.0 * np.ones((4, 2)))
