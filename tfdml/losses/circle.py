"""Circle loss (Sun et al. 2020): self-paced weighting of every positive and negative pair's cosine similarity."""

import keras
import tensorflow as tf

from tfdml.losses.base import DMLLoss
from tfdml.distances import SIMILARITIES, check_distance, pairwise_comparison
from tfdml.losses.math import masked_logsumexp
from tfdml.losses.pairs import nan_unless_finite, pair_masks
from tfdml.mining.base import check_argument


def circle_terms(similarity, positives, negatives, margin=0.4, scale=80.0):
    """Per-anchor circle loss (Sun et al. 2020, Eq. 6 with Eq. 8's optima and margins) on the pairs in the
    boolean ``(b, b)`` masks of the ``(b, b)`` cosine ``similarity``:

        softplus( logsumexp_{j ∈ N_i} γ α_n (s_ij − m) + logsumexp_{j ∈ P_i} −γ α_p (s_ij − (1 − m)) ),

    ``α_p = [1 + m − s]_+`` and ``α_n = [s + m]_+`` held constant in back-propagation; 0 for an anchor
    without a positive or without a negative (Eq. 6's empty sum). Log-sum-exps, so ``γ = 256`` cannot overflow.
    """
    fixed = tf.stop_gradient(similarity)
    positive_logits = -scale * tf.nn.relu(1.0 + margin - fixed) * (similarity - (1.0 - margin))
    negative_logits = scale * tf.nn.relu(fixed + margin) * (similarity - margin)
    positive_lse, has_positive = masked_logsumexp(positive_logits, positives)
    negative_lse, has_negative = masked_logsumexp(negative_logits, negatives)
    terms = tf.nn.softplus(positive_lse + negative_lse)
    return tf.where(tf.logical_and(has_positive, has_negative), terms, tf.zeros_like(terms))


def circle_loss(labels, embeddings, margin=0.4, scale=80.0, distance="cosine", keys=None):
    """Circle loss (see :class:`CircleLoss`) of int ``labels`` ``(b,)`` and ``embeddings`` ``(b, d)``: the mean
    over the ``b`` anchors of :func:`circle_terms` with every positive and every negative pair of the batch,
    on their similarity ``distance`` (``"cosine"``, of the embeddings L2-normalised here, or ``"dot"``).
    With :class:`~tfdml.masks.Keys` (a cross-batch memory) the partners are the valid keys but the query's copy."""
    embeddings = tf.convert_to_tensor(embeddings)
    distance = check_distance("circle_loss", distance, SIMILARITIES)
    similarity, _ = pairwise_comparison(embeddings, None if keys is None else keys.embeddings, distance=distance)
    positives, negatives = pair_masks(labels, keys)
    loss = tf.reduce_mean(circle_terms(similarity, positives, negatives, margin, scale))
    return nan_unless_finite(loss, embeddings)


@keras.saving.register_keras_serializable(package="tfdml")
class CircleLoss(DMLLoss):
    """Circle loss: each pair similarity weighted by its distance from its optimum, a circular decision boundary.

    When to use: a pair loss that weights each pair by how far it is from its optimum; strong on re-identification and
    fine-grained retrieval with P×K batches.

    With cosine similarities ``s_ij`` of the L2-normalised embeddings and the positive/negative
    partners ``P_i``/``N_i`` of anchor ``i`` (every other sample of its class / of another class):

    ```
    L = (1/b) Σ_i log(1 + Σ_{j ∈ N_i} exp(γ α_n^j (s_ij − Δ_n)) · Σ_{k ∈ P_i} exp(−γ α_p^k (s_ik − Δ_p)))
    α_p^k = [O_p − s_ik]_+,  α_n^j = [s_ij − O_n]_+,  O_p = 1 + m,  O_n = −m,  Δ_p = 1 − m,  Δ_n = m
    ```

    Sun et al., "Circle Loss: A Unified Perspective of Pair Similarity Optimization", CVPR 2020,
    Eq. 6 (the loss), Eq. 5 (the weights α) and Eq. 8 (``O`` and ``Δ`` from the one relaxation
    margin ``m``). The weights ``α`` are held constant in back-propagation (as in PML). Each
    anchor's loss is Eq. 6 for one sample; the batch loss is its mean over all ``b`` anchors, an
    anchor without a positive or without a negative adding 0 (Eq. 6's empty sum). ``y_pred`` may be
    normalised or not: the loss normalises.

    Defaults ``m = 0.4``, ``γ = 80``: the paper's setting for fine-grained image retrieval (CUB,
    Cars, SOP), and pytorch-metric-learning's (PML) defaults; the paper uses ``m = 0.25`` with
    ``γ = 256`` for face recognition and ``γ = 128`` for person re-identification.

    PML's ``CircleLoss(m, gamma)`` computes the same per-anchor terms but averages them with its
    ``AvgNonZeroReducer``, over the anchors having both a positive and a negative;
    ``CircleLoss(m=margin, gamma=scale, reducer=MeanReducer())`` reproduces this loss (the two agree
    whenever every anchor has a positive and a negative, as with class-balanced batches).

    Circle loss is defined on similarities (the optima ``O_p = 1 + m`` and ``O_n = −m`` assume
    ``s <= 1``): ``distance`` is ``"cosine"`` (default) or ``"dot"``, the dot product of the
    embeddings as given, for embeddings the model keeps near the unit sphere; a distance is refused.
    PML accepts only ``CosineSimilarity`` here.

    Args:
        margin: the relaxation margin ``m`` (default 0.4).
        scale: the scale factor ``γ > 0`` (default 80).
        distance: ``"cosine"`` (default) or ``"dot"`` (:data:`tfdml.distances.SIMILARITIES`).
        name: name of the loss instance.

    Example:

    >>> loss = tfdml.losses.CircleLoss()
    >>> loss(tf.constant([0, 0, 1, 1]), tf.random.normal((4, 16)))
    """

    def __init__(self, margin=0.4, scale=80.0, distance="cosine", name="circle_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.margin = check_argument("CircleLoss", "margin", margin)
        self.scale = check_argument("CircleLoss", "scale", scale, low=0.0, low_open=True)
        self.distance = check_distance("CircleLoss", distance, SIMILARITIES)

    def compute(self, labels, embeddings, keys=None):
        return circle_loss(labels, embeddings, self.margin, self.scale, self.distance, keys)
