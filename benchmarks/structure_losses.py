"""Batch/structure losses: tfdml against pytorch-metric-learning (PML), same batch, same run.

For each loss it times one forward + backward pass (gradient w.r.t. the embeddings) on an
SPC-2 batch (Roth et al.'s default sampler) and prints the median of ``--repeats`` runs
and the ratio tfdml / PML (below 1: tfdml is faster). Where both libraries compute the
same function it prints the relative difference of the loss values. Embeddings are
unit-norm, since PML's distances normalise their inputs and tfdml's unnormalised losses
(N-pair, angular, lifted) take them as given:

- MultiSimilarity with the multi-similarity miner (PML: ``MultiSimilarityMiner(0.1)`` +
  ``MultiSimilarityLoss(2, 40, 0.5)``),
- Histogram with ``R`` nodes (PML: ``HistogramLoss(n_bins=R - 1)``),
- generalized lifted structure with ``ν = 0`` (PML: ``GeneralizedLiftedStructureLoss(1, 0)``).

The others are timed against PML's closest loss, whose definition differs: PML's N-pair
takes one pair per class, its angular loss has no N-pair term, and its SNR triplet loss
(``TripletMarginLoss`` with ``SNRDistance`` and PML's distance-weighted miner) averages
over active triplets only.

Run: ``python -m benchmarks.structure_losses [--batch 112 256] [--dim 128] [--threads 1]``
(needs ``requirements-peers.txt``).
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import tensorflow as tf
import torch
from pytorch_metric_learning import distances as pml_distances
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners

from benchmarks.timing import loss_and_gradient, run_times
from tfdml.losses import (
    AngularLoss,
    GeneralizedLiftedStructureLoss,
    HistogramLoss,
    MultiSimilarityLoss,
    NPairLoss,
    SNRLoss,
)
from tfdml.mining import DistanceWeightedMiner


def rows():
    """``(name, tfdml loss, PML loss, PML miner or None, whether the values are comparable)``."""
    return [
        ("NPair", NPairLoss(), pml_losses.NPairsLoss(), None, False),
        ("Angular", AngularLoss(), pml_losses.AngularLoss(alpha=45), None, False),
        (
            "GenLifted (ν=0)",
            GeneralizedLiftedStructureLoss(nu=0.0),
            pml_losses.GeneralizedLiftedStructureLoss(neg_margin=1.0, pos_margin=0.0),
            None,
            True,
        ),
        (
            "MultiSimilarity + miner",
            MultiSimilarityLoss(),
            pml_losses.MultiSimilarityLoss(alpha=2, beta=40, base=0.5),
            pml_miners.MultiSimilarityMiner(epsilon=0.1),
            True,
        ),
        ("Histogram R=65", HistogramLoss(65), pml_losses.HistogramLoss(n_bins=64), None, True),
        (
            "SNR (D)",
            SNRLoss(miner=DistanceWeightedMiner(seed=0)),
            pml_losses.TripletMarginLoss(margin=0.2, distance=pml_distances.SNRDistance()),
            pml_miners.DistanceWeightedMiner(cutoff=0.5, nonzero_loss_cutoff=1.4),
            False,
        ),
    ]


def pml_step(loss, miner, labels, embeddings):
    embeddings = embeddings.detach().requires_grad_(True)
    value = loss(embeddings, labels, miner(embeddings, labels)) if miner is not None else loss(embeddings, labels)
    value.backward()
    return value.detach()


def median_seconds(run, repeats):
    return float(np.median(run_times(run, repeats)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[112, 256])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads for both libraries")
    args = parser.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    torch.set_num_threads(args.threads)

    print(f"{'loss':<26}{'batch':>6}{'tfdml ms':>10}{'PML ms':>9}{'ratio':>8}{'rel. diff':>11}")
    rng = np.random.default_rng(0)
    for batch in args.batch:
        labels = np.repeat(np.arange(batch // 2), 2)
        unit = rng.normal(size=(batch, args.dim))
        unit = (unit / np.linalg.norm(unit, axis=1, keepdims=True)).astype(np.float32)
        tf_labels, tf_embeddings = tf.constant(labels), tf.constant(unit)
        torch_labels, torch_embeddings = torch.as_tensor(labels), torch.as_tensor(unit)
        for name, loss, pml_loss, pml_miner, comparable in rows():
            step = loss_and_gradient(loss)
            tf_ms = 1e3 * median_seconds(lambda: step(tf_labels, tf_embeddings)[0].numpy(), args.repeats)
            pml_ms = 1e3 * median_seconds(lambda: pml_step(pml_loss, pml_miner, torch_labels, torch_embeddings), args.repeats)
            difference = "-"
            if comparable:
                ours = float(step(tf_labels, tf_embeddings)[0])
                theirs = float(pml_step(pml_loss, pml_miner, torch_labels, torch_embeddings))
                difference = f"{abs(ours - theirs) / max(abs(theirs), 1e-12):.1e}"
            print(f"{name:<26}{batch:>6}{tf_ms:>10.2f}{pml_ms:>9.2f}{tf_ms / pml_ms:>8.2f}{difference:>11}")


if __name__ == "__main__":
    main()
