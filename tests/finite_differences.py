"""Central finite differences of the slow NumPy references, for the float64 gradient checks."""

import numpy as np


def central_differences(function, x, step=1e-6):
    """``d function / d x`` by central differences, ``function`` a scalar function of the float64 array ``x``."""
    x = np.asarray(x, dtype=np.float64)
    gradient = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        shift = np.zeros_like(x)
        shift[index] = step
        gradient[index] = (function(x + shift) - function(x - shift)) / (2.0 * step)
    return gradient


def tape_gradient(function, x):
    """``d function(x) / d x`` through TensorFlow's tape, ``function`` a scalar TF function of the float64
    embeddings ``x`` (the side the central differences of the reference are compared with)."""
    import tensorflow as tf

    variable = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(variable)
        value = function(variable)
    return tape.gradient(value, variable).numpy()
