"""Signal-to-noise-ratio triplet loss (Yuan et al., 2019)."""

import keras
import tensorflow as tf

from tfdml.losses.base import DMLLoss
from tfdml.losses.math import masked_mean
from tfdml.losses.tuples import anchor_distances, mine_triplets, resolve_miner
from tfdml.mining.base import check_argument
from tfdml.mining.distance_weighted import DistanceWeightedMiner


def snr_distances(embeddings):
    """``(b, b)``: ``d_S(i, j) = var(φ_j − φ_i) / var(φ_i)``, variances over the embedding dimensions.

    The noise-to-signal variance ratio, from one matmul:
    ``var(φ_j − φ_i) = (‖φ_i‖² + ‖φ_j‖² − 2φ_iᵀφ_j)/D − (μ_j − μ_i)²`` with ``μ`` the mean
    component. 0 (with a zero gradient) for a constant anchor vector.
    """
    dim = tf.cast(tf.shape(embeddings)[1], embeddings.dtype)
    squared_norms = tf.reduce_sum(tf.square(embeddings), axis=1)
    means = tf.reduce_mean(embeddings, axis=1)
    gram = tf.matmul(embeddings, embeddings, transpose_b=True)
    second_moment = (squared_norms[:, tf.newaxis] + squared_norms[tf.newaxis, :] - 2.0 * gram) / dim
    noise = tf.maximum(second_moment - tf.square(means[tf.newaxis, :] - means[:, tf.newaxis]), 0.0)
    noise = tf.linalg.set_diag(noise, tf.zeros_like(means))
    signal = tf.math.reduce_variance(embeddings, axis=1)
    return tf.math.divide_no_nan(noise, signal[:, tf.newaxis])


def snr_loss(triplets, embeddings, margin=0.2, regularization=0.005):
    """SNR triplet loss (see :class:`SNRLoss`) of ``embeddings`` ``(b, d)``, L2-normalised here, on the
    mined ``triplets`` (:class:`~tfdml.mining.base.MaskedTriplets`)."""
    normalized = tf.math.l2_normalize(embeddings, axis=1)
    anchor_positive, anchor_negative = anchor_distances(snr_distances(normalized), triplets)
    ranking = masked_mean(tf.nn.relu(anchor_positive - anchor_negative + margin), triplets.valid)
    zero_mean = tf.reduce_mean(tf.abs(tf.reduce_sum(normalized, axis=1)))
    return ranking + regularization * zero_mean


@keras.saving.register_keras_serializable(package="tfdml")
class SNRLoss(DMLLoss):
    """Triplet loss on the signal-to-noise-ratio distance, with a zero-mean regulariser.

    When to use: a drop-in for TripletLoss whose signal-to-noise distance is more robust to the embeddings' scale and
    noise.

    For mined triplets ``T`` on L2-normalised embeddings ``φ`` of dimension ``D``:

    ```
    d_S(i, j) = var(φ_j − φ_i) / var(φ_i)        (variance over the D components)
    L = (1/|T|) Σ_{(a,p,n) ∈ T} [d_S(a, p) − d_S(a, n) + γ]_+ + (λ/b) Σ_{i ∈ B} |Σ_m φ_{i,m}|
    ```

    Yuan et al., "Signal-to-Noise Ratio: A Robust Distance Metric for Deep Metric
    Learning", CVPR 2019; Roth et al. 2020, supplementary A.1, Eq. 15 (its extracted text
    drops the squares and means of the variances; Yuan's variance ratio is used). The
    triplet sum is averaged over ``T`` as in Roth et al.'s Eq. 2 (Eq. 15 writes a plain
    sum; their code divides by the number of active triplets, and by zero when there is
    none). Their code also silently sets ``λ = 0`` with the distance-weighted miner; here
    ``λ`` always applies. No triplet gives the regulariser alone.

    R-SNR (Roth et al. 2020, §5.1): give the miner ``p_switch > 0``; a switched triplet
    ``(a, a, p)`` has ``d_S(a, a) = 0`` and pushes the same-class ``p`` away from ``a``.
    ``y_pred`` may be normalised or not: the loss normalises (and mines on the normalised
    embeddings).

    Args:
        margin: margin ``γ >= 0`` (Roth et al.: 0.2).
        regularization: weight ``λ`` of the zero-mean regulariser (Roth et al.: 0.005).
        miner: a triplet miner (default ``DistanceWeightedMiner()``, Roth et al.'s "SNR (D)").
        name: name of the loss instance.

    Example:

    >>> loss = tfdml.losses.SNRLoss()                                            # SNR (D)
    >>> r_snr = tfdml.losses.SNRLoss(miner=tfdml.mining.DistanceWeightedMiner(p_switch=0.35))
    >>> loss(tf.constant([0, 0, 1, 1]), tf.random.normal((4, 16)))
    """

    data_arguments = ("miner",)

    def __init__(self, margin=0.2, regularization=0.005, miner=None, name="snr_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.margin = check_argument("SNRLoss", "margin", margin, low=0.0)
        self.regularization = check_argument("SNRLoss", "regularization", regularization, low=0.0)
        self.miner = resolve_miner(miner, DistanceWeightedMiner)

    def compute(self, labels, embeddings):
        triplets = mine_triplets(self.miner, tf.math.l2_normalize(embeddings, axis=1), labels)
        return snr_loss(triplets, embeddings, self.margin, self.regularization)
