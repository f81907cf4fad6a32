"""Global pooling of a backbone's features into one vector per image (``model.pooling`` in a recipe).

A CNN gives a feature map ``(b, h, w, c)``, a ViT a token sequence ``(b, tokens, d)``; every pooling
but ``"cls"`` takes either:

- ``"avg"`` (default) and ``"max"``: global average and max pooling over positions or tokens;
- ``"avgmax"``: their sum;
- ``"gem"``: generalized-mean pooling with a learned exponent, :class:`GeneralizedMeanPooling`;
- ``"flatten"``: no pooling, the features flattened (keeps the spatial layout, which matters for small
  aligned images such as digits);
- ``"cls"``: token sequences only, the first (class) token, as ViT and DINO embed an image.

Over tokens, ``"avg"``, ``"max"`` and ``"gem"`` pool every token, the class token (and any register
tokens) included.

Example:

>>> features = keras.Input((7, 7, 512))
>>> global_pool(features, "gem", gem_p=3.0).shape
(None, 512)
"""

import keras

POOLINGS = ("avg", "max", "avgmax", "gem", "flatten", "cls")


@keras.saving.register_keras_serializable(package="tfdml")
class GeneralizedMeanPooling(keras.layers.Layer):
    """Generalized-mean (GeM) pooling with a learnable exponent ``p``:

        f_k = ( mean_{positions} max(x_k, eps)^p )^(1/p)    for each channel k

    Radenović, Tolias & Chum 2018, "Fine-tuning CNN Image Retrieval with No Human Annotation" (TPAMI),
    Eq. 2: ``p = 1`` is average pooling, ``p → ∞`` max pooling; ``p`` is one scalar shared by all
    channels, learned with the network, initialised at 3 (the paper's default) and left
    unconstrained, as in the paper. Features are clamped at ``eps = 1e-6`` (the paper's code) so the
    power is defined: GeM expects non-negative features (a CNN's after ReLU); negative ones, such as
    a ViT's tokens, count as ``eps``.

    Pools every axis between the batch and the last: ``(b, h, w, c)`` and ``(b, tokens, d)`` both give
    ``(b, c)``. Under mixed precision the power and the mean are computed in float32 (``x^p`` of a
    float16 feature overflows at ``x ≈ 40`` for ``p = 3``) and ``p`` is a float32 variable; the output
    has the layer's compute dtype.

    Args:
        p: initial exponent (default 3), > 0.
        eps: lower clamp of the features (default 1e-6).

    Example:

    >>> gem = GeneralizedMeanPooling(p=3.0)
    >>> gem(np.ones((2, 4, 4, 8), "float32")).shape
    TensorShape([2, 8])
    """

    def __init__(self, p=3.0, eps=1e-6, **kwargs):
        # autocast=False: p stays float32 inside call under a float16/bfloat16 policy.
        super().__init__(autocast=False, **kwargs)
        if not p > 0:
            raise ValueError(f"GeneralizedMeanPooling: p must be > 0; got {p!r}.")
        if not eps > 0:
            raise ValueError(f"GeneralizedMeanPooling: eps must be > 0; got {eps!r}.")
        self.initial_p = float(p)
        self.eps = float(eps)

    def build(self, input_shape):
        if len(input_shape) < 3:
            raise ValueError(
                f"GeneralizedMeanPooling pools a feature map (b, h, w, c) or tokens (b, tokens, d); got shape "
                f"{tuple(input_shape)}."
            )
        self.p = self.add_weight(
            name="p", shape=(), initializer=keras.initializers.Constant(self.initial_p), trainable=True
        )

    def call(self, features):
        # float32, or float64 for a float64 layer.
        dtype = keras.backend.result_type(self.compute_dtype, "float32")
        x = keras.ops.maximum(keras.ops.cast(features, dtype), self.eps)
        p = keras.ops.cast(self.p, dtype)
        axes = tuple(range(1, len(features.shape) - 1))
        pooled = keras.ops.power(keras.ops.mean(keras.ops.power(x, p), axis=axes), 1.0 / p)
        return keras.ops.cast(pooled, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "p": self.initial_p, "eps": self.eps}


@keras.saving.register_keras_serializable(package="tfdml")
class ClassToken(keras.layers.Layer):
    """The first token of a sequence ``(b, tokens, d) → (b, d)``: the class token of a ViT (Dosovitskiy
    et al. 2021), which DINO and DINOv2 embed an image with."""

    def call(self, tokens):
        return tokens[:, 0]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])


def global_pool(features, pooling, gem_p=3.0):
    """``features`` (a symbolic ``(b, h, w, c)`` map or ``(b, tokens, d)`` sequence) pooled by ``pooling``,
    one of :data:`POOLINGS`; ``gem_p`` is GeM's initial exponent."""
    if pooling not in POOLINGS:
        raise ValueError(f"Unknown pooling {pooling!r}; expected one of {POOLINGS}.")
    rank = len(features.shape)
    if rank not in (3, 4):
        raise ValueError(
            f"pooling={pooling!r}: the backbone must give a feature map (b, h, w, c) or tokens (b, tokens, d); "
            f"got shape {tuple(features.shape)}."
        )
    if pooling == "cls":
        if rank != 3:
            raise ValueError(
                f"pooling='cls' takes the class token of a token sequence (b, tokens, d), as a ViT gives; this "
                f"backbone gives a feature map of shape {tuple(features.shape)}: use avg, max, avgmax or gem."
            )
        return ClassToken(name="cls_token")(features)
    if pooling == "flatten":
        return keras.layers.Flatten(name="flatten")(features)
    if pooling == "gem":
        return GeneralizedMeanPooling(p=gem_p, name="gem_pool")(features)
    average, maximum = (
        (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D)
        if rank == 4
        else (keras.layers.GlobalAveragePooling1D, keras.layers.GlobalMaxPooling1D)
    )
    if pooling == "avg":
        return average(name="avg_pool")(features)
    if pooling == "max":
        return maximum(name="max_pool")(features)
    pooled = [average(name="avg_pool")(features), maximum(name="max_pool")(features)]
    return keras.layers.Add(name="avgmax_pool")(pooled)
