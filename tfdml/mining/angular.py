"""Angular mining: triplets whose angle at the negative exceeds a bound (Wang et al. 2017, "Deep Metric Learning
with Angular Loss"; pytorch-metric-learning's ``AngularMiner``)."""

import math

import keras
import tensorflow as tf

from tfdml.distances import euclidean
from tfdml.masks import negative_mask, positive_mask
from tfdml.mining.base import TupleMiner, check_argument, stateless_uniform
from tfdml.mining.tuples import all_positive_pairs, fill_slots, grid_triplets, row_blocks, slot_values

@keras.saving.register_keras_serializable(package="tfdml")
class AngularMiner(TupleMiner):
    """For each anchor–positive pair ``(a, p)``, a negative drawn uniformly among those whose angle at the
    negative exceeds ``angle``:

    ```
    ∠n = arctan( D(a, p) / (2 D(n, c)) ) > angle,   c = (x_a + x_p) / 2,
    ```

    the angle ``n'`` at the negative of Wang et al., "Deep Metric Learning with Angular Loss", ICCV 2017
    (``tan n' = ‖x_a − x_p‖ / (2 ‖x_n − x_c‖)``): the triplets an angular loss with bound ``angle``
    penalises. ``D`` is the Euclidean distance of the embeddings as given, as in pytorch-metric-learning's
    ``AngularMiner`` (its ``F.pairwise_distance`` does not normalise, whatever its ``LpDistance`` says);
    tfdml's models L2-normalise their output, the paper's setting. The angle is scale-invariant. A negative
    at the centre (``D_nc = 0``) has the angle 90° and qualifies, also where the triplet collapses to a
    point (``D_ap = 0`` too, where ``arctan(0/0)`` is undefined: the hardest triplet there is); PML reads
    ``F.pairwise_distance``'s ``1e-6`` offsets there, an angle of 26.6°.

    When to use: with AngularLoss, to hand it only the triplets its angle bound penalises.

    PML returns every triplet satisfying the condition, up to ``b³``. Here the tuples sit on a fixed
    ``b × b`` grid of ordered positive pairs (static shapes: it compiles under XLA), each valid where the
    pair has a qualifying negative and holding one drawn uniformly, as in
    :class:`~tfdml.mining.TripletMarginMiner`: the mined ``(a, p)`` are exactly the pairs of PML's
    triplets and every mined triplet is one of PML's. The condition is read on one ``b × b`` pass per
    positive slot of an anchor (``k − 1`` passes for ``k`` samples per class), from
    ``D_nc² = ‖x_n‖² − x_nᵀx_a − x_nᵀx_p + ‖x_a + x_p‖²/4``: nothing ``b × b × b``.

    Args:
        angle: the bound in degrees, ``[0, 90)`` (default 20, PML's).
        p_switch: ρ-regularisation probability (default 0).
        seed: seed of the miner's random generator.

    Example:

    >>> miner = AngularMiner(angle=20, seed=0)
    >>> loss = tfdml.losses.TripletLoss(miner=miner)
    >>> triplets = miner(tf.random.normal((32, 16)), tf.range(32) // 4)
    """

    def __init__(self, angle=20.0, p_switch=0.0, seed=None):
        super().__init__(p_switch=p_switch, seed=seed)
        self.angle = check_argument(type(self).__name__, "angle", angle, low=0.0, high=90.0, high_open=True)

    def mine(self, embeddings, labels):
        embeddings = tf.stop_gradient(embeddings)
        distances = euclidean(embeddings)
        gram = tf.matmul(embeddings, embeddings, transpose_b=True)
        squared_norms = tf.linalg.diag_part(gram)
        twice_tan = 2.0 * math.tan(math.radians(self.angle))
        negatives = negative_mask(labels)
        tuples = all_positive_pairs(positive_mask(labels))

        def negative_for_slot(slot, seed):
            positives = slot_values(tuples, tuples.positives, slot)
            anchor_positive = tf.gather(gram, positives[:, tf.newaxis], batch_dims=1)
            # ‖x_c‖² for c = (x_a + x_p) / 2, then D_nc² = ‖x_n‖² − x_nᵀ(x_a + x_p) + ‖x_c‖².
            centre = (squared_norms[:, tf.newaxis] + tf.gather(squared_norms, positives)[:, tf.newaxis]
                      + 2.0 * anchor_positive) / 4.0
            to_centre = tf.sqrt(tf.maximum(squared_norms - gram - tf.gather(gram, positives) + centre, 0.0))
            # arctan(D_ap / (2 D_nc)) > angle, division-free; a negative at the centre (D_nc = 0) qualifies.
            apart = tf.gather(distances, positives[:, tf.newaxis], batch_dims=1)
            qualifying = negatives & ((apart > twice_tan * to_centre) | (to_centre == 0.0))
            members = row_blocks(tf.cast(qualifying, tf.int32))
            size = tf.cast(members.totals, tf.float32)
            rank = tf.minimum(tf.floor(stateless_uniform(tf.shape(size), seed) * size), tf.maximum(size - 1.0, 0.0))
            drawn = members.draw(tf.cast(rank, tf.int32)[:, tf.newaxis])[:, 0]
            # −1 marks a pair without a qualifying negative; grid cells are masked with it below.
            return tf.where(size > 0.0, drawn, -1)

        columns = fill_slots(tuples, self.generator.next_seed(), negative_for_slot)
        triplets = grid_triplets(tuples, tf.maximum(columns, 0), tf.ones_like(labels, tf.bool))
        return triplets._replace(valid=triplets.valid & (tf.reshape(columns, [-1]) >= 0))
