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


@keras.saving.register_keras_serializable(package="tfdml")
class ApplicationPreprocessing(keras.layers.Layer):
    """The input preprocessing of a ``keras.applications`` family, inside the model.

    Input: float RGB images in ``[0, 255]``; output: ``keras.applications.<module>.preprocess_input`` of them
    (``"tf"``: to ``[-1, 1]``; ``"torch"``: ImageNet mean/std; ``"caffe"``: BGR minus the ImageNet mean).

    Example:

    >>> ApplicationPreprocessing("resnet_v2")(np.full((1, 2, 2, 3), 255.0, "float32")).numpy().max()
    1.0
    """

    def __init__(self, module, **kwargs):
        super().__init__(**kwargs)
        if not hasattr(getattr(keras.applications, module, None), "preprocess_input"):
            raise ValueError(f"keras.applications.{module} has no preprocess_input.")
        self.module = module

    def call(self, images):
        preprocess = getattr(keras.applications, self.module).preprocess_input
        return preprocess(keras.ops.cast(images, self.compute_dtype))

    def get_config(self):
        return {**super().get_config(), "module": self.module}
