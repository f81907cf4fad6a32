"""Temperature-scaled softmax contrast of positives against the batch (the InfoNCE family): supervised
contrastive loss (Khosla et al. 2020) and NT-Xent with labels (Chen et al. 2020; Oord et al. 2018).

Both are cross-entropies over the temperature-scaled cosine similarities ``s_ij / τ`` of one anchor
with the rest of the batch; they differ in the softmax's candidates: SupCon normalises over every
other sample (the other positives included) and averages the log-probabilities of the positives
per anchor; NT-Xent scores each positive pair against the anchor's negatives only.
"""

import keras
import tensorflow as tf

from tfdml.losses.base import DMLLoss
from tfdml.distances import check_distance, pairwise_comparison
from tfdml.losses.math import masked_logsumexp, masked_mean, mean_over_positive_pairs
from tfdml.losses.pairs import nan_unless_finite, pair_masks, without_diagonal
from tfdml.mining.base import check_argument


def scaled_similarity(embeddings, temperature, distance="cosine", keys=None):
    """``s_ij / τ``: the cosine similarity ``(b, b)`` of the L2-normalised ``embeddings``, over ``temperature``;
    with another ``distance`` its similarity, or its negated distance ``−D_ij / τ`` (as PML). With
    :class:`~tfdml.masks.Keys`, ``(b, m)`` against the keys."""
    matrix, sign = pairwise_comparison(embeddings, None if keys is None else keys.embeddings, distance=distance)
    return -sign * matrix / temperature


def supcon_loss(labels, embeddings, temperature=0.1, distance="cosine", keys=None):
    """Supervised contrastive loss (see :class:`SupConLoss`) of int ``labels`` ``(b,)`` and ``embeddings``
    ``(b, d)``, L2-normalised here: the mean, over the anchors with a positive, of Khosla et al.'s Eq. 2 term.
    With :class:`~tfdml.masks.Keys` (a cross-batch memory) the softmax runs over the valid keys but the query's copy."""
    embeddings = tf.convert_to_tensor(embeddings)
    logits = scaled_similarity(embeddings, temperature, distance, keys)
    positives, negatives = pair_masks(labels, keys)
    others = without_diagonal(tf.ones_like(positives)) if keys is None else tf.logical_or(positives, negatives)
    log_denominator, _ = masked_logsumexp(logits, others)
    log_probability = logits - log_denominator[:, tf.newaxis]
    num_positives = tf.reduce_sum(tf.cast(positives, logits.dtype), axis=1)
    positive_log_probability = tf.reduce_sum(tf.where(positives, log_probability, tf.zeros_like(logits)), axis=1)
    terms = -tf.math.divide_no_nan(positive_log_probability, num_positives)
    return nan_unless_finite(masked_mean(terms, num_positives > 0.0), embeddings)


def ntxent_loss(labels, embeddings, temperature=0.07, distance="cosine", keys=None):
    """NT-Xent loss with labels (see :class:`NTXentLoss`) of int ``labels`` ``(b,)`` and ``embeddings``
    ``(b, d)``, L2-normalised here: the mean over the ordered positive pairs ``(i, j)`` of

        −log(exp(s_ij/τ) / (exp(s_ij/τ) + Σ_{k ∈ N_i} exp(s_ik/τ))) = softplus(logsumexp_{k ∈ N_i} s_ik/τ − s_ij/τ),

    one log-sum-exp per anchor (nothing of size ``b³``); a pair whose anchor has no negative adds 0. With
    :class:`~tfdml.masks.Keys` (a cross-batch memory) ``j`` and ``k`` run over the valid keys but the query's copy."""
    embeddings = tf.convert_to_tensor(embeddings)
    logits = scaled_similarity(embeddings, temperature, distance, keys)
    positives, negatives = pair_masks(labels, keys)
    negative_lse, has_negative = masked_logsumexp(logits, negatives)
    pair_terms = tf.nn.softplus(negative_lse[:, tf.newaxis] - logits)
    return nan_unless_finite(mean_over_positive_pairs(pair_terms, positives, has_negative), embeddings)


@keras.saving.register_keras_serializable(package="tfdml")
class SupConLoss(DMLLoss):
    """Supervised contrastive loss: each anchor's positives scored by a softmax over the rest of the batch.

    When to use: labelled data with large batches and strong augmentation, several positives per anchor; robust to its
    hyperparameters.

    With cosine similarities ``s_ij`` of the L2-normalised embeddings, the other samples
    ``A(i) = {j ≠ i}`` and the positives ``P(i) = {p ∈ A(i): y_p = y_i}`` of anchor ``i``:

    ```
    L = (1/|I|) Σ_{i ∈ I} −(1/|P(i)|) Σ_{p ∈ P(i)} log( exp(s_ip/τ) / Σ_{a ∈ A(i)} exp(s_ia/τ) ),
    I = {i : P(i) ≠ ∅}
    ```

    Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020, Eq. 2 (``L^sup_out``, the
    variant the paper recommends). The paper sums Eq. 2's terms over a batch in which every anchor
    has a positive (its other view); here they are averaged over the anchors that have one (the term
    is undefined without), so the scale does not grow with the batch; a batch without positive pairs
    gives 0. A one-class batch still has a loss (``A(i) = P(i)``: Eq. 2 as written). ``y_pred`` may be
    normalised or not: the loss normalises. There is no ``τ/τ_base`` factor (the authors' PyTorch
    code scales by ``τ/0.07``; it is 1 at ``τ = 0.07``).

    Default ``τ = 0.1``: the paper's temperature and pytorch-metric-learning's (PML) default; the
    authors' PyTorch code defaults to 0.07.

    PML's ``SupConLoss(temperature)`` (default ``AvgNonZeroReducer``) gives the same value and
    gradient on every batch with a negative pair; on a one-class batch it returns 0.

    ``distance`` replaces ``s_ij`` by the dot product ``"dot"`` or, as PML does with a distance, by the
    negated distance ``−D_ij`` (``"euclidean"``, ``"squared_euclidean"``) of the embeddings as given;
    PML's ``DotProductSimilarity(normalize_embeddings=False)`` and ``LpDistance(normalize_embeddings=False)``
    (``power=2``) are these.

    Args:
        temperature: ``τ > 0`` (default 0.1).
        distance: ``"cosine"`` (default), ``"dot"``, ``"euclidean"`` or ``"squared_euclidean"``
            (:data:`tfdml.distances.DISTANCES`).
        name: name of the loss instance.

    Example:

    >>> loss = tfdml.losses.SupConLoss()
    >>> loss(tf.constant([0, 0, 1, 1]), tf.random.normal((4, 16)))
    """

    def __init__(self, temperature=0.1, distance="cosine", name="supcon_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.temperature = check_argument("SupConLoss", "temperature", temperature, low=0.0, low_open=True)
        self.distance = check_distance("SupConLoss", distance)

    def compute(self, labels, embeddings, keys=None):
        return supcon_loss(labels, embeddings, self.temperature, self.distance, keys)


@keras.saving.register_keras_serializable(package="tfdml")
class NTXentLoss(DMLLoss):
    """NT-Xent (normalised temperature-scaled cross-entropy) with labels: each positive pair against the
    anchor's negatives.

    When to use: contrastive training with large batches: self-supervised pairs of views (SimCLR) or labels with several
    positives per anchor.

    With cosine similarities ``s_ij`` of the L2-normalised embeddings, the ordered positive
    pairs ``P = {(i, j): i ≠ j, y_i = y_j}`` and the negatives ``N_i = {k: y_k ≠ y_i}`` of anchor ``i``:

    ```
    L = (1/|P|) Σ_{(i,j) ∈ P} −log( exp(s_ij/τ) / (exp(s_ij/τ) + Σ_{k ∈ N_i} exp(s_ik/τ)) )
    ```

    Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual Representations"
    (SimCLR), Eq. 1, averaged over all ordered positive pairs as SimCLR does; the InfoNCE loss of
    Oord et al. 2018, "Representation Learning with Contrastive Predictive Coding", Eq. 4. SimCLR's
    positive pair is two views of one image and its denominator every other sample; with class
    labels the positives are the same-class pairs and each is contrasted with the anchor's negatives
    only (the other positives are left out of the denominator), as in pytorch-metric-learning (PML).
    A pair whose anchor has no negative adds 0; a batch without positive pairs gives 0. ``y_pred``
    may be normalised or not: the loss normalises.

    Default ``τ = 0.07``: MoCo's temperature (He et al. 2020) and PML's default; SimCLR tunes ``τ``
    with the batch size.

    PML's ``NTXentLoss(temperature)`` (default ``MeanReducer``) is this loss: same value and gradient.

    ``distance`` replaces ``s_ij`` by the dot product ``"dot"`` or, as PML does with a distance, by the
    negated distance ``−D_ij`` (``"euclidean"``, ``"squared_euclidean"``) of the embeddings as given;
    PML's ``DotProductSimilarity(normalize_embeddings=False)`` and ``LpDistance(normalize_embeddings=False)``
    (``power=2``) are these.

    Args:
        temperature: ``τ > 0`` (default 0.07).
        distance: ``"cosine"`` (default), ``"dot"``, ``"euclidean"`` or ``"squared_euclidean"``
            (:data:`tfdml.distances.DISTANCES`).
        name: name of the loss instance.

    Example:

    >>> loss = tfdml.losses.NTXentLoss(temperature=0.1)
    >>> loss(tf.constant([0, 0, 1, 1]), tf.random.normal((4, 16)))
    """

    def __init__(self, temperature=0.07, distance="cosine", name="ntxent_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.temperature = check_argument("NTXentLoss", "temperature", temperature, low=0.0, low_open=True)
        self.distance = check_distance("NTXentLoss", distance)

    def compute(self, labels, embeddings, keys=None):
        return ntxent_loss(labels, embeddings, self.temperature, self.distance, keys)
