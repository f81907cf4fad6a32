"""PNP (Li et al., 2022): penalise only the negatives ranked before each positive, with a smoothed rank."""

import keras
import tensorflow as tf

from tfdml.losses.base import DMLLoss
from tfdml.losses.pairs import nan_unless_finite, pair_masks
from tfdml.mining.base import check_argument

VARIANTS = ("O", "Ds", "Dq", "Iu", "Ib")


def _penalty(variant, ranks, b, alpha):
    """``(f(R), f′(R))`` of the positives' smoothed counts ``R`` of negatives ranked before them; a query's
    term is ``mean_{i ∈ P_q} f(R_qi)`` (plus 1 for PNP-D_q)."""
    if variant == "Ds":
        return tf.math.log1p(ranks), 1.0 / (1.0 + ranks)
    if variant == "Dq":
        return -((1.0 + ranks) ** -alpha), alpha * (1.0 + ranks) ** (-alpha - 1.0)
    if variant == "Iu":
        return (1.0 + ranks) * tf.math.log1p(ranks), tf.math.log1p(ranks) + 1.0
    if variant == "Ib":
        return (b * ranks - tf.math.log1p(b * ranks)) / b**2, ranks / (1.0 + b * ranks)
    return ranks, tf.ones_like(ranks)


def _row_term_and_gradient(similarity_row, positive_row, negative_row, variant, b, alpha, anneal):
    """One query's term ``mean_{i ∈ P} f(R_i)`` and its gradient ``∂/∂s_q`` in ``(b, b)`` memory.

    ``G_ij = σ((s_j − s_i)/τ)`` for the negatives ``j`` (0 elsewhere) and ``R_i = Σ_j G_ij``;
    ``∂R_i/∂s_j = −∂R_i/∂s_i = G_ij (1 − G_ij)/τ``.
    """
    logits = (similarity_row[tf.newaxis, :] - similarity_row[:, tf.newaxis]) / anneal
    before = tf.sigmoid(logits) * negative_row[tf.newaxis, :]
    ranks = tf.reduce_sum(before, axis=1)
    penalties, derivatives = _penalty(variant, ranks, b, alpha)
    num_positives = tf.reduce_sum(positive_row)
    term = tf.math.divide_no_nan(tf.reduce_sum(positive_row * penalties), num_positives)
    scale = tf.math.divide_no_nan(positive_row * derivatives, num_positives)
    # σ(x)σ(−x) rather than G(1 − G): exact where G rounds to 1.
    weights = scale[:, tf.newaxis] * before * tf.sigmoid(-logits) / anneal
    return term, tf.reduce_sum(weights, axis=0) - tf.reduce_sum(weights, axis=1)


def pnp_loss(labels, embeddings, b=2.0, alpha=1.0, anneal=0.01, variant="O"):
    """PNP loss (see :class:`PNPLoss`) of int ``labels`` ``(b,)`` and ``embeddings`` ``(b, d)``, L2-normalised
    here: the mean over the queries with a positive of ``mean_{i ∈ P_q} f(R_qi)`` (plus 1 for PNP-D_q). One query at a
    time in a ``tf.map_fn`` that forms its term with its hand-written gradient (as :func:`smooth_ap_loss`):
    ``O(b²)`` memory, ``O(b³)`` time."""
    if variant not in VARIANTS:
        raise ValueError(f"pnp_loss: variant must be one of {VARIANTS}; got {variant!r}.")
    offset = 1.0 if variant == "Dq" else 0.0
    embeddings = tf.convert_to_tensor(embeddings)
    normalized = tf.math.l2_normalize(embeddings, axis=1)
    similarity = tf.matmul(normalized, normalized, transpose_b=True)
    positive_pairs, negative_pairs = pair_masks(labels)
    queries = tf.reduce_any(positive_pairs, axis=1)
    # The query is its own positive (ranked first, s_qq = 1), as in the authors' code and PML.
    with_query = tf.logical_or(positive_pairs, tf.eye(tf.shape(similarity)[0]) > 0.0)
    positives = tf.cast(tf.logical_and(with_query, queries[:, tf.newaxis]), similarity.dtype)
    negatives = tf.cast(negative_pairs, similarity.dtype)
    weights = tf.cast(queries, similarity.dtype)
    num_queries = tf.reduce_sum(weights)

    @tf.custom_gradient
    def loss_of_similarity(similarity):
        terms, gradients = tf.map_fn(
            lambda rows: _row_term_and_gradient(rows[0], rows[1], rows[2], variant, b, alpha, anneal),
            (similarity, positives, negatives),
            fn_output_signature=(similarity.dtype, similarity.dtype),
        )

        def gradient(upstream):
            return tf.math.divide_no_nan(upstream, num_queries) * weights[:, tf.newaxis] * gradients

        return tf.math.divide_no_nan(tf.reduce_sum(weights * (offset + terms)), num_queries), gradient

    return nan_unless_finite(loss_of_similarity(similarity), embeddings)


@keras.saving.register_keras_serializable(package="tfdml")
class PNPLoss(DMLLoss):
    """PNP: each positive penalised by a smoothed count of the negatives ranked before it.

    When to use: optimising ranking (AP, recall) where positives need not be pulled together, e.g. classes with several
    modes; an alternative to Smooth-AP.

    With cosine similarities ``s_qi`` of the L2-normalised embeddings, every query ``q`` with a positive,
    ``Q`` those queries, ``P_q`` its class (``q`` included), ``N_q`` the other classes and
    ``G(x) = σ(x/τ)``, the smoothed number of negatives before positive ``i`` is

    ```
    R_qi = Σ_{j ∈ N_q} G(s_qj − s_qi)
    L = (1/|Q|) Σ_{q ∈ Q} (1/|P_q|) Σ_{i ∈ P_q} f(R_qi)              (PNP-O, PNP-D_s, PNP-I_u, PNP-I_b)
    L = (1/|Q|) Σ_{q ∈ Q} [1 − (1/|P_q|) Σ_{i ∈ P_q} (1 + R_qi)^(−α)]  (PNP-D_q)

    f(R) = R (O),  log(1 + R) (D_s),  (1 + R) log(1 + R) (I_u),  (b R − log(1 + b R))/b² (I_b)
    ```

    Li, Wang, Li, Xu, Zhang, "Rethinking the Optimization of Average Precision: Only Penalizing Negative
    Instances before Positive Ones is Enough", AAAI 2022 (PNP-O and the variants of its Section 3 whose
    derivative decreases, D_s and D_q, or increases, I_u and I_b, with ``R``; equation numbers not
    verified). ``D`` variants weigh positives with few negatives before them more, ``I`` variants the
    hard ones. The query is in its own positive set (ranked
    first, as the authors' code and PML do); queries without another positive are left out; a batch
    without positive pairs gives 0. Time ``O(b³)``, memory ``O(b²)``: one query's ``b × b`` matrix at a
    time (:func:`pnp_loss`).

    Defaults ``variant="O"``, ``b = 2``, ``α = 1``, ``τ = 0.01`` (``anneal``): pytorch-metric-learning's
    (PML) ``PNPLoss`` defaults (the authors' code's ``b``, ``α`` and temperature).

    PML's ``PNPLoss(b, alpha, anneal, variant)`` is this loss: same value and gradient (PML clamps
    ``x/τ`` to ``[−50, 50]`` inside the sigmoid, a difference below ``e⁻⁵⁰``).

    Args:
        b: ``b > 0`` of PNP-I_b (default 2).
        alpha: ``α > 0`` of PNP-D_q (default 1).
        anneal: the sigmoid's temperature ``τ > 0`` (default 0.01).
        variant: ``"O"``, ``"Ds"``, ``"Dq"``, ``"Iu"`` or ``"Ib"`` (default ``"O"``).
        name: name of the loss instance.

    Example:

    >>> loss = tfdml.losses.PNPLoss(variant="Dq")
    >>> loss(tf.constant([0, 0, 1, 1]), tf.random.normal((4, 16)))
    """

    def __init__(self, b=2.0, alpha=1.0, anneal=0.01, variant="O", name="pnp_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.b = check_argument("PNPLoss", "b", b, low=0.0, low_open=True)
        self.alpha = check_argument("PNPLoss", "alpha", alpha, low=0.0, low_open=True)
        self.anneal = check_argument("PNPLoss", "anneal", anneal, low=0.0, low_open=True)
        if variant not in VARIANTS:
            raise ValueError(f"PNPLoss: variant must be one of {VARIANTS}; got {variant!r}.")
        self.variant = variant

    def compute(self, labels, embeddings):
        return pnp_loss(labels, embeddings, self.b, self.alpha, self.anneal, self.variant)
