"""Input preprocessing layers that live inside the model (so serving takes raw pixels)."""

import keras


@keras.saving.register_keras_serializable(package="tfdml")
class CaffePreprocessing(keras.layers.Layer):
    """ImageNet "caffe" preprocessing of ResNet50: RGB→BGR and per-channel mean subtraction.

    Input: float RGB images in ``[0, 255]``. Delegates to
    ``keras.applications.resnet50.preprocess_input``.
    """

    def call(self, images):
        return keras.applications.resnet50.preprocess_input(keras.ops.cast(images, self.compute_dtype))
