"""Proxy/classification losses: tfdml against pytorch-metric-learning (PML), same batch, same run.

For each loss and number of classes it times one forward + backward pass
(gradients w.r.t. the embeddings and the class vectors) and prints the best
of ``--repeats`` runs and the ratio tfdml / PML (below 1: tfdml is faster).
Where both libraries define the same function it also copies tfdml's class
vectors into the PML loss and prints the largest relative difference of the
loss values (SoftTriple with τ = 0: PML has no centre regulariser). PML's
ProxyNCA keeps the target proxy in the softmax denominator and uses squared
distances, so its values are not compared. ProxyAnchor, CosFace, SubCenterArcFace,
LargeMarginSoftmax and SphereFace run at the PML settings of ``benchmarks/pml_parity`` (PML's margins in
degrees for SubCenterArcFace, its ``W`` the transposed class vectors for CosFace, LargeMarginSoftmax and
SphereFace and the transposed, flattened sub-centres ``(d, C·K)`` for SubCenterArcFace) and are compared.
DynamicArcFace (per-class margins, no PML peer) is timed beside PML's ArcFace; its values are not compared.

Run: ``python -m benchmarks.proxy_losses [--batch 128] [--dim 128] [--classes 100 1000] [--threads 1]
[--losses ProxyAnchor CosFace ...]``
(needs ``requirements-peers.txt``).
"""

import argparse
import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import tensorflow as tf
import torch
from pytorch_metric_learning import losses as pml_losses

from benchmarks.timing import loss_and_gradient, run_times
from tfdml.losses import (
    ArcFaceLoss,
    CosFaceLoss,
    DynamicArcFaceLoss,
    LargeMarginSoftmaxLoss,
    NormalizedSoftmaxLoss,
    ProxyAnchorLoss,
    ProxyNCALoss,
    SoftTripleLoss,
    SphereFaceLoss,
    SubCenterArcFaceLoss,
)

LOSSES = (
    "ProxyNCA",
    "SoftTriple",
    "NormalizedSoftmax",
    "ArcFace",
    "ProxyAnchor",
    "CosFace",
    "SubCenterArcFace",
    "LargeMarginSoftmax",
    "SphereFace",
    "DynamicArcFace",
)


def pml_step(loss, labels, embeddings):
    embeddings = embeddings.detach().requires_grad_(True)
    loss.zero_grad()
    value = loss(embeddings, labels)
    value.backward()
    return value


def best_seconds(run, repeats):
    """Fastest of ``repeats`` runs after two warm-up runs (as ``timeit``: the least disturbed by other load)."""
    return min(run_times(run, repeats))


def build_pair(name, num_classes, dim):
    """``(tfdml loss, PML loss, whether their values are comparable)`` with the same class vectors."""
    if name == "ProxyNCA":
        ours = ProxyNCALoss(num_classes, dim, seed=0)
        return ours, pml_losses.ProxyNCALoss(num_classes, dim), False
    if name == "SoftTriple":
        ours = SoftTripleLoss(num_classes, dim, tau=0.0, seed=0)
        peer = pml_losses.SoftTripleLoss(num_classes, dim, centers_per_class=2, la=8.0, gamma=0.1, margin=0.01)
        # PML's fc is (d, C·K) with the K centres of a class adjacent.
        peer.fc.data = torch.from_numpy(ours.centers.numpy().reshape(-1, dim).T.copy())
        return ours, peer, True
    if name == "NormalizedSoftmax":
        ours = NormalizedSoftmaxLoss(num_classes, dim, seed=0)
        peer = pml_losses.NormalizedSoftmaxLoss(num_classes, dim, temperature=0.05)
        peer.W.data = torch.from_numpy(ours.proxies.numpy().T.copy())
        return ours, peer, True
    if name == "ArcFace":
        ours = ArcFaceLoss(num_classes, dim, seed=0)
        peer = pml_losses.ArcFaceLoss(num_classes, dim, margin=math.degrees(0.5), scale=16.0)
        peer.W.data = torch.from_numpy(ours.centers.numpy().T.copy())
        return ours, peer, True
    if name == "ProxyAnchor":
        ours = ProxyAnchorLoss(num_classes, dim, margin=0.1, alpha=32.0, seed=0)
        peer = pml_losses.ProxyAnchorLoss(num_classes, dim, margin=0.1, alpha=32.0)
        peer.proxies.data = torch.from_numpy(ours.proxies.numpy().copy())
        return ours, peer, True
    if name == "CosFace":
        ours = CosFaceLoss(num_classes, dim, margin=0.35, scale=64.0, seed=0)
        peer = pml_losses.CosFaceLoss(num_classes, dim, margin=0.35, scale=64.0)
        peer.W.data = torch.from_numpy(ours.centers.numpy().T.copy())
        return ours, peer, True
    if name in ("LargeMarginSoftmax", "SphereFace"):
        ours = {"LargeMarginSoftmax": LargeMarginSoftmaxLoss, "SphereFace": SphereFaceLoss}[name](
            num_classes, dim, margin=4, scale=1.0, seed=0
        )
        peer = getattr(pml_losses, f"{name}Loss")(num_classes, dim, margin=4, scale=1.0)
        peer.W.data = torch.from_numpy(ours.centers.numpy().T.copy())
        return ours, peer, True
    if name == "DynamicArcFace":
        # No PML peer: timed beside PML's ArcFace (one margin); long-tailed counts, so values differ.
        ours = DynamicArcFaceLoss(num_classes, dim, class_counts=[1 + c for c in range(num_classes)], seed=0)
        peer = pml_losses.ArcFaceLoss(num_classes, dim, margin=math.degrees(0.5), scale=30.0)
        peer.W.data = torch.from_numpy(ours.centers.numpy().T.copy())
        return ours, peer, False
    # SubCenterArcFace: PML's W is (d, C·K), column c·K + k for sub-centre k of class c.
    ours = SubCenterArcFaceLoss(num_classes, dim, margin=0.5, scale=64.0, sub_centers=3, seed=0)
    peer = pml_losses.SubCenterArcFaceLoss(
        num_classes=num_classes, embedding_size=dim, margin=math.degrees(0.5), scale=64.0, sub_centers=3
    )
    peer.W.data = torch.from_numpy(ours.centers.numpy().reshape(-1, dim).T.copy())
    return ours, peer, True


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--classes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for each library (same for both)")
    parser.add_argument("--losses", nargs="+", default=list(LOSSES), choices=LOSSES, help="losses to time (default: all)")
    args = parser.parse_args()
    # Equal thread counts; on a shared machine, spinning thread pools make multi-threaded timings meaningless.
    torch.set_num_threads(args.threads)
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)

    rng = np.random.default_rng(0)
    cases = []
    for name in args.losses:
        for num_classes in args.classes:
            ours, peer, comparable = build_pair(name, num_classes, args.dim)
            labels = rng.integers(0, num_classes, size=args.batch)
            embeddings = rng.normal(size=(args.batch, args.dim)).astype(np.float32)
            embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
            cases.append((name, num_classes, ours, peer, comparable, labels, embeddings))

    # PML first: TensorFlow's idle worker threads keep spinning after a TF call and would slow torch down
    # on a small machine.
    peer_results = []
    for _, _, _, peer, _, labels, embeddings in cases:
        torch_labels, torch_embeddings = torch.from_numpy(labels), torch.from_numpy(embeddings)
        peer_ms = 1e3 * best_seconds(lambda: pml_step(peer, torch_labels, torch_embeddings), args.repeats)
        peer_results.append((peer_ms, pml_step(peer, torch_labels, torch_embeddings).item()))

    print(f"batch {args.batch}, dim {args.dim}, {args.threads} CPU thread(s), forward + backward, best of {args.repeats}")
    header = (
        f"{'loss':<18}{'classes':>8}{'tfdml ms':>10}{'tfdml XLA ms':>14}{'PML ms':>9}"
        f"{'ratio':>7}{'XLA ratio':>11}{'value rel diff':>16}"
    )
    print(header)
    print("-" * len(header))
    for (name, num_classes, ours, _, comparable, labels, embeddings), (peer_ms, peer_value) in zip(cases, peer_results):
        tf_labels, tf_embeddings = tf.constant(labels, tf.int32), tf.constant(embeddings)
        graph_step, xla_step = (
            loss_and_gradient(ours.value, jit_compile=xla, variables=ours.trainable_variables) for xla in (False, True)
        )
        graph_ms = 1e3 * best_seconds(lambda: graph_step(tf_labels, tf_embeddings)[0].numpy(), args.repeats)
        xla_ms = 1e3 * best_seconds(lambda: xla_step(tf_labels, tf_embeddings)[0].numpy(), args.repeats)
        difference = "n/a"
        if comparable:
            ours_value = float(graph_step(tf_labels, tf_embeddings)[0])
            difference = f"{abs(ours_value - peer_value) / abs(peer_value):.1e}"
        print(
            f"{name:<18}{num_classes:>8}{graph_ms:>10.2f}{xla_ms:>14.2f}{peer_ms:>9.2f}"
            f"{graph_ms / peer_ms:>7.2f}{xla_ms / peer_ms:>11.2f}{difference:>16}"
        )

if __name__ == "__main__":
    main()
