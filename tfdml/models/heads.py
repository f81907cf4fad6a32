"""Embedding heads: pooled features → embedding (``model.head`` in a recipe), before L2 normalisation.

- ``"linear"`` (default): one ``Dense(embedding_dim)`` layer, the head of Wu et al. 2017 and Roth et al.
  2020.
- ``"mlp"``: ``Dense(hidden) → BatchNorm → ReLU → Dense(embedding_dim)``, the projection head of SimCLR
  (Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual Representations");
  ``head_hidden`` defaults to the width of the pooled features, as there.
- ``"bnneck"``: ``Dense(embedding_dim, no bias) → BatchNorm (no shift)``, the BNNeck of Luo et al. 2019,
  "Bag of Tricks and A Strong Baseline for Deep Person Re-identification" (§3.4, Fig. 5). The paper
  puts a BatchNorm between the feature ``f_t`` and the bias-free linear ID classifier, and retrieves
  with the BatchNorm's output ``f_i`` (cosine distance). Here the classifier is the loss's own (the
  proxies or class weights of ``NormSoftmaxLoss``, ``ProxyAnchorLoss``, ``ArcFaceLoss``, … act on
  the embedding like the paper's bias-free FC layer), ``f_t`` is the recipe's ``embedding_dim``
  linear reduction of the pooled feature (the paper has none: its ``f_t`` is the pooled 2048-d
  feature; reducing before the neck is fast-reid's ``embedding_dim`` option), and what is embedded —
  what the loss trains and serving returns — is ``f_i``, L2-normalised when ``normalize`` is on.
  The BatchNorm's shift β is left out (fixed at 0 in the paper's code, "no shift"), and so is the
  linear layer's bias, which the BatchNorm would subtract. Unlike the paper, no loss sees ``f_t``:
  a tfdml model has one output, so a pair or triplet loss trains ``f_i`` as well.

Example:

>>> pooled = keras.Input((512,))
>>> embedding_head(pooled, "bnneck", embedding_dim=128).shape
(None, 128)
"""

import keras

HEADS = ("linear", "mlp", "bnneck")


def embedding_head(pooled, head="linear", *, embedding_dim=128, head_hidden=None):
    """``pooled`` features ``(b, c)`` (symbolic) through the ``head`` in :data:`HEADS` → ``(b, embedding_dim)``.

    ``head_hidden`` is the ``"mlp"`` head's hidden width (``None``: ``c``); other heads refuse it.
    """
    if head not in HEADS:
        raise ValueError(f"Unknown head {head!r}; expected one of {HEADS}.")
    if head_hidden is not None and head != "mlp":
        raise ValueError(
            f"head_hidden={head_hidden!r} is the width of the 'mlp' head's hidden layer; head={head!r} has none."
        )
    if head_hidden is not None and (int(head_hidden) != head_hidden or head_hidden <= 0):
        raise ValueError(f"head_hidden must be a positive integer or None; got {head_hidden!r}.")
    dim = int(embedding_dim)
    if head == "linear":
        return keras.layers.Dense(dim, name="embedding")(pooled)
    if head == "mlp":
        width = int(pooled.shape[-1] if head_hidden is None else head_hidden)
        x = keras.layers.Dense(width, use_bias=False, name="head_hidden")(pooled)  # BatchNorm subtracts a bias
        x = keras.layers.BatchNormalization(name="head_bn")(x)
        x = keras.layers.ReLU(name="head_relu")(x)
        return keras.layers.Dense(dim, name="embedding")(x)
    features = keras.layers.Dense(dim, use_bias=False, name="embedding")(pooled)
    return keras.layers.BatchNormalization(center=False, name="bnneck")(features)
