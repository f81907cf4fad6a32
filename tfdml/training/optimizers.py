"""The optimizers a recipe names (``optimizer.name``), by name in :data:`OPTIMIZERS`.

A builder maps the recipe's ``optimizer`` section to a Keras optimizer,
``builder(learning_rate, weight_decay) -> keras.optimizers.Optimizer``, where ``weight_decay=None``
means none (decoupled weight decay, as Keras applies it). Names are matched case-insensitively
(``Adam`` is ``adam``), as Keras matches its own optimizer names.

Example:

>>> OPTIMIZERS.get("sgd")(learning_rate=0.1, weight_decay=None).momentum
0.9
"""

import keras

from tfdml.registry import Registry

OPTIMIZERS = Registry("optimizer")


@OPTIMIZERS.register("adam")
def adam(learning_rate, weight_decay):
    """Adam with Keras' default moment decays and epsilon."""
    return keras.optimizers.Adam(learning_rate=learning_rate, weight_decay=weight_decay)


@OPTIMIZERS.register("sgd")
def sgd(learning_rate, weight_decay):
    """SGD with momentum 0.9."""
    return keras.optimizers.SGD(learning_rate=learning_rate, momentum=0.9, weight_decay=weight_decay)
