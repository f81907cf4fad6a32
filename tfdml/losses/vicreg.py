"""VICReg (Bardes et al., 2022): variance-invariance-covariance regularisation of two views' embeddings."""

import keras
import tensorflow as tf

from tfdml.losses.base import DMLLoss
from tfdml.losses.pairs import nan_unless_finite
from tfdml.mining.base import check_argument


def view_pairs(labels):
    """``(order, valid)``: the stable sort of ``labels`` ``(b,)`` and the mask ``(b,)`` of the pairs in it.

    In the sorted batch the samples of each label keep their batch order and are paired 1st with
    2nd, 3rd with 4th, …: slot ``k`` pairs sorted positions ``k`` and ``k + 1`` and is valid where
    ``k`` holds an even occurrence of its label and ``k + 1`` the same label. At most ``b/2`` slots
    are valid (static shape ``b``, no Python loop)."""
    order = tf.argsort(labels, stable=True)
    sorted_labels = tf.gather(labels, order)
    positions = tf.range(tf.shape(labels)[0])
    starts = tf.concat([[True], sorted_labels[1:] != sorted_labels[:-1]], axis=0)
    segment = tf.cumsum(tf.cast(starts, tf.int32)) - 1
    first_of_label = tf.gather(tf.math.unsorted_segment_min(positions, segment, tf.shape(labels)[0]), segment)
    even = (positions - first_of_label) % 2 == 0
    same = tf.concat([sorted_labels[1:] == sorted_labels[:-1], [False]], axis=0)
    return order, tf.logical_and(even, same)


def _variance_and_covariance_terms(view, weights, num_pairs, eps):
    """``v(Z)`` (``γ = 1``) and ``c(Z)`` of one view ``(b, d)`` over its valid rows (``weights`` 1, the others 0)."""
    dim = tf.cast(tf.shape(view)[1], view.dtype)
    mean = tf.reduce_sum(view * weights[:, tf.newaxis], axis=0) / tf.maximum(num_pairs, 1.0)
    centered = (view - mean) * weights[:, tf.newaxis]
    # Unbiased (n − 1) as the authors' code; one pair has no spread: 0 (divide_no_nan) rather than 0/0.
    covariance = tf.math.divide_no_nan(tf.matmul(centered, centered, transpose_a=True), num_pairs - 1.0)
    variance = tf.linalg.diag_part(covariance)
    variance_term = tf.reduce_mean(tf.nn.relu(1.0 - tf.sqrt(variance + eps)))
    off_diagonal = tf.linalg.set_diag(covariance, tf.zeros_like(variance))
    covariance_term = tf.reduce_sum(tf.square(off_diagonal)) / dim
    return variance_term, covariance_term


def vicreg_loss(labels, embeddings, invariance_lambda=25.0, variance_mu=25.0, covariance_v=1.0, eps=1e-4):
    """VICReg loss (see :class:`VICRegLoss`) of int ``labels`` ``(b,)`` and ``embeddings`` ``(b, d)``, used as
    given: the views are the label pairs of :func:`view_pairs`; 0 when the batch holds no pair."""
    embeddings = tf.convert_to_tensor(embeddings)
    order, valid = view_pairs(labels)
    weights = tf.cast(valid, embeddings.dtype)
    num_pairs = tf.reduce_sum(weights)
    # The sorted batch as a scatter, not a gather: its gradient is a dense tensor (a gather's is IndexedSlices).
    z = tf.math.unsorted_segment_sum(embeddings, tf.math.invert_permutation(order), tf.shape(embeddings)[0])
    z_prime = tf.roll(z, shift=-1, axis=0)
    dim = tf.cast(tf.shape(embeddings)[1], embeddings.dtype)
    squared_differences = tf.reduce_sum(tf.square(z - z_prime), axis=1) * weights
    invariance = tf.math.divide_no_nan(tf.reduce_sum(squared_differences), num_pairs * dim)
    variance, covariance = _variance_and_covariance_terms(z, weights, num_pairs, eps)
    variance_prime, covariance_prime = _variance_and_covariance_terms(z_prime, weights, num_pairs, eps)
    loss = (
        invariance_lambda * invariance
        + variance_mu * (variance + variance_prime) / 2.0
        + covariance_v * (covariance + covariance_prime)
    )
    return nan_unless_finite(tf.where(num_pairs > 0.0, loss, tf.zeros_like(loss)), embeddings)


@keras.saving.register_keras_serializable(package="tfdml")
class VICRegLoss(DMLLoss):
    """VICReg: invariance between two views, variance kept above a floor and decorrelated dimensions.

    When to use: self-supervised pairs of views, no negatives needed.

    For two views ``Z, Z′ ∈ ℝ^{n × d}`` (row ``i`` of each: one image's two augmentations), with
    ``Var`` and ``Cov`` the unbiased (``n − 1``) statistics over the ``n`` rows:

    ```
    s(Z, Z′) = (1/(n d)) Σ_i ‖z_i − z′_i‖²                          (mean squared error)
    v(Z)     = (1/d) Σ_j max(0, γ − sqrt(Var(z^j) + ε))
    c(Z)     = (1/d) Σ_{j ≠ k} Cov(Z)_jk²
    L        = λ s(Z, Z′) + (μ/2) [v(Z) + v(Z′)] + ν [c(Z) + c(Z′)]
    ```

    Bardes, Ponce, LeCun, "VICReg: Variance-Invariance-Covariance Regularization for Self-Supervised
    Learning", ICLR 2022 (Eqs. 1–6 and Algorithm 1). Two conventions are the authors' code's
    (``main_vicreg.py``) and pytorch-metric-learning's (PML), not the paper's equations: ``s`` is the
    mean over the ``n d`` entries (Eq. 5 sums over the ``d`` dimensions), and the two variance terms are
    averaged (Eq. 6 has ``μ [v(Z) + v(Z′)]``): the paper's loss with ``μ`` is this loss with ``2μ``.
    Defaults ``λ = μ = 25``, ``ν = 1``, ``γ = 1``, ``ε = 1e-4``: the paper's (Section 4.1) and PML's.
    The embeddings are used as given (VICReg is not defined on the sphere); the covariance term is of
    fourth order in them, so beyond ``‖x‖ ≈ 1e9`` the loss overflows float32 to ``+inf``.

    The views come from the labels: ``y_true`` gives both views of an image one id (a pseudo-class), so
    a self-supervised batch holds each id exactly twice (two samples per class, in any order). The
    samples of each id, in batch order, are paired 1st with 2nd, 3rd with 4th, …; the first of each
    pair goes to ``Z``, the second to ``Z′``. Where the pairs lie in the batch does not matter, nor
    does exchanging ``Z`` and ``Z′`` as wholes, but the variance and covariance terms are statistics of
    each view, so a pipeline should put its two augmentations in one order (first view first).
    Every batch is well defined, in eager mode, in a graph and under XLA alike (static shapes, one stable
    sort of the labels): a supervised batch of ``m`` samples per class gives ``⌊m/2⌋`` pairs per class;
    the last sample of a class seen an odd number of times has no partner and is left out; with a single
    pair the variances and covariances are 0 (no spread to estimate); a batch without a pair gives 0.

    PML's ``VICRegLoss(invariance_lambda, variance_mu, covariance_v, eps)`` takes the views as
    ``(embeddings, ref_emb)``; with the same arguments it is this loss on ``(Z, Z′)`` (same value and
    gradient). On one pair PML's unbiased variance is ``0/0`` (NaN); here it is 0.

    Args:
        invariance_lambda: ``λ ≥ 0`` (default 25).
        variance_mu: ``μ ≥ 0`` (default 25).
        covariance_v: ``ν ≥ 0`` (default 1).
        eps: ``ε > 0`` inside the standard deviation's square root (default 1e-4).
        name: name of the loss instance.

    Example (two augmented views of images 0–2, in any order):

    >>> loss = tfdml.losses.VICRegLoss()
    >>> loss(tf.constant([0, 1, 2, 2, 0, 1]), tf.random.normal((6, 32)))
    """

    def __init__(
        self, invariance_lambda=25.0, variance_mu=25.0, covariance_v=1.0, eps=1e-4, name="vicreg_loss", **kwargs
    ):
        super().__init__(name=name, **kwargs)
        self.invariance_lambda = check_argument("VICRegLoss", "invariance_lambda", invariance_lambda, low=0.0)
        self.variance_mu = check_argument("VICRegLoss", "variance_mu", variance_mu, low=0.0)
        self.covariance_v = check_argument("VICRegLoss", "covariance_v", covariance_v, low=0.0)
        self.eps = check_argument("VICRegLoss", "eps", eps, low=0.0, low_open=True)

    def compute(self, labels, embeddings):
        return vicreg_loss(labels, embeddings, self.invariance_lambda, self.variance_mu, self.covariance_v, self.eps)
