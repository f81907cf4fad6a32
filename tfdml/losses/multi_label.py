"""Supervised contrast of samples that carry several labels: the multi-label supervised contrastive loss
(MulSupCon; Zhang & Wu, "Multi-Label Supervised Contrastive Learning", AAAI 2024).

Each (sample, label) pair is an anchor of its own, whose positives are the other samples carrying that
label; the softmax over the rest of the batch is SupCon's (Khosla et al. 2020, Eq. 2).
"""

import keras
import tensorflow as tf

from tfdml.distances import check_distance
from tfdml.losses.base import DMLLoss
from tfdml.losses.contrastive_softmax import scaled_similarity
from tfdml.losses.math import masked_logsumexp, masked_mean
from tfdml.losses.pairs import nan_unless_finite, without_diagonal
from tfdml.mining.base import check_argument


def multi_supcon_loss(label_sets, embeddings, temperature=0.1, distance="cosine"):
    """Multi-label supervised contrastive loss (see :class:`MultiSupConLoss`) of multi-hot ``label_sets``
    ``(b, C)`` and ``embeddings`` ``(b, d)``, L2-normalised here: the mean, over the anchors ``(i, k)`` (sample
    ``i`` carries label ``k``) with a positive, of SupCon's Eq. 2 term with the positives of label ``k``.

    The sums over positives are one ``(b, b) @ (b, C)`` product (nothing of size ``b² C``)."""
    embeddings = tf.convert_to_tensor(embeddings)
    logits = scaled_similarity(embeddings, temperature, distance)
    others = without_diagonal(tf.ones_like(logits, dtype=tf.bool))
    log_denominator, _ = masked_logsumexp(logits, others)
    log_probability = tf.where(others, logits - log_denominator[:, tf.newaxis], tf.zeros_like(logits))
    sets = tf.cast(label_sets, logits.dtype)
    # [i, k]: Σ_{p ≠ i, k ∈ y_p} log P(p | i), and |P_k(i)|, the other samples carrying label k.
    positive_log_probability = tf.matmul(log_probability, sets)
    num_positives = tf.reduce_sum(sets, axis=0, keepdims=True) - sets
    anchors = (sets > 0.0) & (num_positives > 0.0)
    terms = -tf.math.divide_no_nan(positive_log_probability, num_positives)
    return nan_unless_finite(masked_mean(terms, anchors), embeddings)


@keras.saving.register_keras_serializable(package="tfdml")
class MultiSupConLoss(DMLLoss):
    """Multi-label supervised contrastive loss (MulSupCon): each of an anchor's labels contrasted separately.

    When to use: images with several labels each (multi-hot ``y_true``), e.g. retail or medical data, trained
    contrastively with several samples per label in a batch.

    With cosine similarities ``s_ij`` of the L2-normalised embeddings, label sets ``y_i ⊆ {1..C}``, the other
    samples ``A(i) = {j ≠ i}`` and, for each label ``k ∈ y_i``, the positives ``P_k(i) = {p ∈ A(i): k ∈ y_p}``:

    ```
    L = (1/|I|) Σ_{(i,k) ∈ I} −(1/|P_k(i)|) Σ_{p ∈ P_k(i)} log( exp(s_ip/τ) / Σ_{a ∈ A(i)} exp(s_ia/τ) ),
    I = {(i, k): k ∈ y_i, P_k(i) ≠ ∅}
    ```

    Zhang & Wu, "Multi-Label Supervised Contrastive Learning", AAAI 2024 (MulSupCon, Sec. 3): an anchor
    with ``|y_i|`` labels is ``|y_i|`` anchors, one per label, each with SupCon's objective (Khosla et al.
    2020, Eq. 2) over the samples that carry that label, averaged over all anchors (the authors' default,
    without their optional ``1/|y_i|`` weight per sample). A sample carrying labels ``k`` and ``l`` is thus a
    positive of both of another sample's anchors when it shares both: overlap weighs in by counting, not by a
    threshold. Anchors without a positive (a label no other sample of the batch carries) and samples
    without labels (a row of zeros: never a positive, always in the denominators) add no term; a batch
    without a shared label gives 0. With one label per sample it is :class:`SupConLoss` exactly.
    ``y_pred`` may be normalised or not: the loss normalises.

    ``y_true`` is multi-hot ``(b, C)`` (``C >= 2``; 0s and 1s, any numeric dtype); class ids ``(b,)`` or
    ``(b, 1)`` are one label per sample (:class:`~tfdml.losses.base.DMLLoss`, ``multi_label``).

    Default ``τ = 0.1``: SupCon's (Khosla et al.) and pytorch-metric-learning's (PML).

    PML 2.9 does not ship a multi-label loss; the ``MultiSupConLoss`` of its multi-label pull request
    defines the positives differently: a pair is positive when the Jaccard similarity of the label sets
    ``|y_i ∩ y_j| / |y_i ∪ y_j|`` exceeds ``threshold`` (default 0.3; one anchor per sample), each positive
    weighted by that similarity, and the loss is 0 for a batch without a negative pair. tfdml implements the
    paper's per-label anchors, which need no threshold.

    ``distance`` replaces ``s_ij`` by the dot product ``"dot"`` or the negated distance ``−D_ij``
    (``"euclidean"``, ``"squared_euclidean"``) of the embeddings as given, as :class:`SupConLoss` does.

    Args:
        temperature: ``τ > 0`` (default 0.1).
        distance: ``"cosine"`` (default), ``"dot"``, ``"euclidean"`` or ``"squared_euclidean"``
            (:data:`tfdml.distances.DISTANCES`).
        name: name of the loss instance.

    Example:

    >>> loss = tfdml.losses.MultiSupConLoss()
    >>> label_sets = tf.constant([[1, 1, 0], [1, 0, 0], [0, 1, 1], [0, 0, 1]])  # sample 0 carries labels 0 and 1
    >>> loss(label_sets, tf.random.normal((4, 16)))
    """

    multi_label = True

    def __init__(self, temperature=0.1, distance="cosine", name="multi_supcon_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.temperature = check_argument("MultiSupConLoss", "temperature", temperature, low=0.0, low_open=True)
        self.distance = check_distance("MultiSupConLoss", distance)

    def compute(self, labels, embeddings):
        return multi_supcon_loss(labels, embeddings, self.temperature, self.distance)
