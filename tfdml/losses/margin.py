"""Margin-based loss with a learnable boundary β (Wu et al. 2017, "Sampling Matters", §4)."""

import keras
import tensorflow as tf

from tfdml.losses.base import LossParameters, ParametricDMLLoss
from tfdml.distances import euclidean
from tfdml.losses.math import nan_unless
from tfdml.losses.pairs import (
    batch_distances,
    check_pairs,
    count_active,
    nan_unless_finite,
    pair_masks,
    symmetric_batch_distances,
    without_diagonal,
)
from tfdml.losses.tuples import anchor_distances, mine_triplets, resolve_miner, tuple_comparison
from tfdml.checks import ids_in_range
from tfdml.masks import same_label_mask
from tfdml.mining.base import check_argument
from tfdml.mining.distance_weighted import DistanceWeightedMiner


def margin_loss(triplets, embeddings, anchor_betas, margin=0.2, nu=0.0, keys=None):
    """Margin loss (see :class:`MarginLoss`) of the ``(anchor, positive)`` and ``(anchor, negative)``
    pairs of the mined ``triplets`` (:class:`~tfdml.mining.base.MaskedTriplets`), with each tuple's
    boundary ``β(i)`` of its anchor in ``anchor_betas`` (shape ``(T,)``, trainable or not). With
    :class:`~tfdml.masks.Keys` (a cross-batch memory) anchors index the batch and positives and negatives
    the keys (``(b, m)`` distances)."""
    anchor_positive, anchor_negative = anchor_distances(tuple_comparison(embeddings, keys).matrix, triplets)
    # Invalid tuples: β 0 and both terms 0, so they add nothing to the sums or to the active count.
    beta = tf.where(triplets.valid, anchor_betas, 0.0)
    positive_terms = tf.where(triplets.valid, tf.nn.relu(margin + anchor_positive - beta), 0.0)
    negative_terms = tf.where(triplets.valid, tf.nn.relu(margin - anchor_negative + beta), 0.0)
    num_active = tf.math.count_nonzero(positive_terms > 0.0, dtype=beta.dtype) + tf.math.count_nonzero(
        negative_terms > 0.0, dtype=beta.dtype
    )
    total = tf.reduce_sum(positive_terms) + tf.reduce_sum(negative_terms) + nu * 2.0 * tf.reduce_sum(beta)
    return tf.math.divide_no_nan(total, num_active)


def margin_loss_all_pairs(labels, embeddings, beta=1.2, margin=0.2, nu=0.0, keys=None):
    """Margin loss (Wu et al. 2017, §4) on every ordered pair ``(i, j)``, ``i ≠ j``, anchored at ``i``:

        ℓ_ij = (α + y_ij (D_ij − β_i))_+,   y_ij = +1 if y_i = y_j else −1,
        L = [Σ_{i≠j} ℓ_ij + ν β_i] / #{(i, j) : ℓ_ij > 0}    (0 when no term is active),

    the normalisation of Wu et al.'s code and of :class:`MarginLoss`. ``beta`` is a scalar
    or the per-anchor ``β_i`` of shape ``(b,)`` (e.g. ``β⁽⁰⁾ + β_class(y_i)``); gradients
    flow into it, so learnable β train as with mined pairs. Defaults ``α = 0.2``,
    ``β = 1.2``, ``ν = 0``. With :class:`~tfdml.masks.Keys` (a cross-batch memory) the pairs are every
    query ``i`` with every valid key ``j`` but its own copy, on the ``(b, m)`` rectangle (``ν β_i`` once per pair).

    Example:

    >>> margin_loss_all_pairs(tf.constant([0, 0, 1]), tf.eye(3), beta=tf.constant([1.2, 1.2, 1.0]))
    """
    embeddings = tf.convert_to_tensor(embeddings)
    beta = tf.cast(beta, embeddings.dtype)
    if keys is not None:
        distances = euclidean(embeddings, keys.embeddings)
        beta = tf.broadcast_to(beta, tf.shape(distances)[:1])
        positives, negatives = pair_masks(labels, keys)
        offset = distances - beta[:, tf.newaxis]
        terms = tf.where(positives, tf.nn.relu(margin + offset), tf.where(negatives, tf.nn.relu(margin - offset), 0.0))
        pairs_per_anchor = tf.reduce_sum(tf.cast(positives | negatives, distances.dtype), axis=1)
        total = tf.reduce_sum(terms) + nu * tf.reduce_sum(pairs_per_anchor * beta)
        return nan_unless_finite(tf.math.divide_no_nan(total, count_active(terms)), embeddings)
    # One β makes the loss symmetric in D; per-anchor β keep the transpose in the gradient, which costs
    # less than symmetrising the terms without XLA (the default on CPU).
    distances = (symmetric_batch_distances if beta.shape.rank == 0 else batch_distances)(embeddings)
    beta = tf.broadcast_to(beta, tf.shape(distances)[:1])
    offset = distances - beta[:, tf.newaxis]
    terms = without_diagonal(tf.nn.relu(margin + tf.where(same_label_mask(labels), offset, -offset)))
    pairs_per_anchor = tf.cast(tf.shape(distances)[0] - 1, distances.dtype)
    total = tf.reduce_sum(terms) + nu * pairs_per_anchor * tf.reduce_sum(beta)
    loss = tf.math.divide_no_nan(total, count_active(terms))
    return nan_unless_finite(loss, embeddings)


@keras.saving.register_keras_serializable(package="tfdml")
class MarginLoss(ParametricDMLLoss):
    """Separates positive and negative pair distances around a boundary ``β`` with margin ``α``:

        ℓ(i, j) = (α + y_ij (D_ij − β(i)))_+,   y_ij = +1 for positive pairs, −1 for negative pairs,
        β(i) = β⁽⁰⁾ + β_class(c(i)) + β_img(i),
        L = [Σ_{(i,j)} ℓ(i, j) + ν β(i)] / #{(i, j) : ℓ(i, j) > 0}

    with Euclidean ``D``. Pairs come from the miner's tuples: ``(anchor, positive)``
    positive and ``(anchor, negative)`` negative (by role, so ρ-regularised tuples
    work); ``i`` is the anchor. Following Wu et al.'s reference code the sum is
    normalised by the number of active (non-zero) terms; with none active the loss
    is 0, not NaN. ``ν`` regularises β towards small values (the ν-trick of ν-SVM).

    When to use: a strong, cheap default with distance-weighted sampling (Wu et al. 2017), β learnable per class; the
    shipped recipes' default.

    ``β⁽⁰⁾`` is a constant unless ``learn_beta``; ``β_class``/``β_img`` start at 0.
    Learnable β live in ``self.parameters`` (a :class:`LossParameters` with
    ``beta_learning_rate``, never weight-decayed) and are trained by
    ``tfdml.training.MetricLearningModel``, which keeps them out of the exported
    embedding model; ``model.compile(loss=...)`` alone refuses such a loss.

    With ``beta_image=True``, ``y_true`` has shape ``(b, 2)``: column 0 the class
    label, column 1 the image's index in the training set (``< num_images``).

    Defaults follow Wu et al. and Roth et al. (2020, supplementary A.1):
    ``α = 0.2``, ``β⁽⁰⁾ = 1.2`` (Roth et al. also use 0.6), β learning rate 5e-4,
    ``ν = 0``, distance-weighted pairs in Wu et al.'s construction.

    Args:
        margin: ``α >= 0`` (default 0.2).
        beta: initial (or fixed) ``β⁽⁰⁾ >= 0``, a distance (default 1.2).
        learn_beta: train ``β⁽⁰⁾`` (default ``False``).
        beta_class: add a learnable per-class ``β_class`` (requires ``num_classes``;
            labels must lie in ``[0, num_classes)``: an error, or a NaN loss under XLA,
            which drops assertions; image indices likewise).
        num_classes: number of training classes, for ``beta_class``.
        beta_image: add a learnable per-image ``β_img`` (requires ``num_images``).
        num_images: number of training images, for ``beta_image``.
        nu: ``ν`` (default 0.0).
        beta_learning_rate: learning rate of the β variables (default 5e-4, Roth et al.).
        miner: a :class:`~tfdml.mining.base.Miner` (default ``DistanceWeightedMiner()``).
        pairs: ``"mined"`` (default: the miner's tuples) or ``"all"``: every ordered pair
            ``(i, j)``, ``i ≠ j``, anchored at ``i``, no miner, on the ``b × b`` distance matrix
            (:func:`margin_loss_all_pairs`); learnable β work the same.

    In a :class:`~tfdml.losses.CrossBatchMemory` (``compute(..., keys=)``) the anchors are the batch and
    their partners the batch and the memory (mined by a miner that takes keys, e.g. the default
    ``DistanceWeightedMiner``); ``β(i)`` is the anchor's, so ``β_class`` is indexed by the batch's labels.
    ``beta_image`` is refused there (the memory keeps no image indices).

    Example:

    >>> loss = MarginLoss(beta_class=True, num_classes=100)
    >>> model = tfdml.training.MetricLearningModel(embedder, loss)
    >>> model.compile(optimizer=keras.optimizers.Adam(1e-5))
    >>> model.fit(batches)     # trains the embedder and β_class
    """

    data_arguments = ("miner", "num_classes", "num_images")

    def __init__(
        self,
        margin=0.2,
        beta=1.2,
        learn_beta=False,
        beta_class=False,
        num_classes=None,
        beta_image=False,
        num_images=None,
        nu=0.0,
        beta_learning_rate=5e-4,
        miner=None,
        pairs="mined",
        name="margin_loss",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.margin = check_argument("MarginLoss", "margin", margin, low=0.0)
        self.beta = check_argument("MarginLoss", "beta", beta, low=0.0)
        self.learn_beta = check_argument("MarginLoss", "learn_beta", learn_beta, bool)
        self.beta_class = check_argument("MarginLoss", "beta_class", beta_class, bool)
        self.num_classes = check_argument("MarginLoss", "num_classes", num_classes, int, low=1, optional=True)
        self.beta_image = check_argument("MarginLoss", "beta_image", beta_image, bool)
        self.num_images = check_argument("MarginLoss", "num_images", num_images, int, low=1, optional=True)
        if self.beta_class and self.num_classes is None:
            raise ValueError("MarginLoss(beta_class=True) needs num_classes (an integer >= 1).")
        if self.beta_image and self.num_images is None:
            raise ValueError("MarginLoss(beta_image=True) needs num_images (an integer >= 1).")
        self.nu = check_argument("MarginLoss", "nu", nu, low=0.0)
        self.beta_learning_rate = check_argument(
            "MarginLoss", "beta_learning_rate", beta_learning_rate, low=0.0, low_open=True
        )
        self.pairs = check_pairs(pairs, miner)
        self.miner = None if self.pairs == "all" else resolve_miner(miner, DistanceWeightedMiner)
        self.parameters = LossParameters(self.beta_learning_rate, name=f"{name}_parameters")
        self.global_beta = (
            self.parameters.add_weight(
                name="beta", shape=(), initializer=keras.initializers.Constant(self.beta), dtype="float32"
            )
            if self.learn_beta
            else self.beta
        )
        self.class_beta = (
            self.parameters.add_weight(
                name="beta_class", shape=(self.num_classes,), initializer="zeros", dtype="float32"
            )
            if self.beta_class
            else None
        )
        self.image_beta = (
            self.parameters.add_weight(
                name="beta_image", shape=(self.num_images,), initializer="zeros", dtype="float32"
            )
            if self.beta_image
            else None
        )

    def call(self, y_true, y_pred):
        if not self.beta_image:
            return super().call(y_true, y_pred)
        y_true = tf.convert_to_tensor(y_true)
        if y_true.shape.rank != 2 or y_true.shape[1] != 2:
            raise ValueError(
                "MarginLoss(beta_image=True) needs y_true of shape (batch, 2) = (class label, image index); "
                f"got {y_true.shape}."
            )
        return self.checked_compute(y_true[:, 0], y_pred, image_ids=y_true[:, 1])

    def anchor_betas(self, labels, anchors, image_ids=None, dtype=tf.float32):
        """``β(i) = β⁽⁰⁾ + β_class(c(i)) + β_img(i)`` per anchor index; ``image_ids``: each sample's image.

        Labels and image ids must be in range (:meth:`checked_ids`): XLA clamps out-of-range gathers.
        """
        beta = tf.fill(tf.shape(anchors), tf.cast(self.global_beta, dtype))
        if self.class_beta is not None:
            beta = beta + tf.cast(tf.gather(self.class_beta, tf.gather(labels, anchors)), dtype)
        if self.image_beta is not None:
            beta = beta + tf.cast(tf.gather(self.image_beta, tf.gather(image_ids, anchors)), dtype)
        return beta

    def checked_ids(self, labels, image_ids):
        """``(labels, image_ids, in_range)``: the ids that index ``β_class``/``β_img`` behind in-graph
        assertions that they are in range, and the scalar bool condition (the loss is NaN without it)."""
        in_range = tf.constant(True)
        if self.class_beta is not None:
            who = "MarginLoss(beta_class=True): labels"
            labels, classes_ok = ids_in_range(labels, self.num_classes, who, "num_classes")
            in_range = tf.logical_and(in_range, classes_ok)
        if self.image_beta is not None:
            who = "MarginLoss(beta_image=True): image indices (y_true[:, 1])"
            image_ids, images_ok = ids_in_range(image_ids, self.num_images, who, "num_images", what="index")
            in_range = tf.logical_and(in_range, images_ok)
        return labels, image_ids, in_range

    def compute(self, labels, embeddings, image_ids=None, keys=None):
        if self.image_beta is not None and image_ids is None:
            raise ValueError("MarginLoss(beta_image=True) must be called with y_true of shape (batch, 2).")
        labels, image_ids, in_range = self.checked_ids(labels, image_ids)
        if self.pairs == "all":
            if self.class_beta is None and self.image_beta is None:
                beta = tf.cast(self.global_beta, embeddings.dtype)  # one β: the cheaper symmetric gradient
            else:
                beta = self.anchor_betas(labels, tf.range(tf.shape(labels)[0]), image_ids, embeddings.dtype)
            return nan_unless(in_range, margin_loss_all_pairs(labels, embeddings, beta, self.margin, self.nu, keys))
        triplets = mine_triplets(self.miner, embeddings, labels, keys)
        # Anchors are rows of the batch (queries) with or without keys: their labels index β_class.
        beta = self.anchor_betas(labels, triplets.anchors, image_ids, embeddings.dtype)
        return nan_unless(in_range, margin_loss(triplets, embeddings, beta, self.margin, self.nu, keys))
