"""Forward+backward time of tfdml's tuple losses next to pytorch-metric-learning, and peak memory.

Every (library, batch size) pair runs in its own subprocess on the same inputs:
L2-normalised Gaussian embeddings of dimension 128, 4 samples per class, labels
shuffled, one fixed seed. A step is loss + gradient w.r.t. the embeddings
(``tf.function`` for tfdml, eager autograd for the peer), the median over
``--repeats`` steps after two warm-up steps, both libraries on the same number
of CPU threads. The peer runs with ``OMP_WAIT_POLICY=PASSIVE``: on a shared
machine OpenMP's spin-waiting otherwise slows torch down 10–100×. Peer runs are
capped at ``--peer-memory-gib`` of address space so that a ``b³`` triplet mask
fails cleanly instead of exhausting the machine.

Peak memory is the max RSS (``resource.getrusage``) of a fresh subprocess that
runs one tfdml step of triplet + semi-hard at ``b = 4096``; TensorFlow's own
memory counters do not work on CPU.

Usage:  python benchmarks/losses.py [--batch-sizes 128 512 2048] [--repeats 5]
"""

import argparse
import json
import os
import resource
import subprocess
import sys

import numpy as np
from timing import loss_and_gradient, run_times

DIM = 128
SAMPLES_PER_CLASS = 4
CASES = (
    "margin+distance-weighted",
    "contrastive+distance-weighted",
    "triplet+distance-weighted",
    "multi-similarity",
    "triplet+batch-hard",
    "quadruplet+distance-weighted",
    "triplet+semi-hard",  # last: the peer's b³ triplet mask may exhaust its memory cap
)
TARGET_CASES = ("margin+distance-weighted", "triplet+semi-hard", "multi-similarity", "contrastive+distance-weighted")


def make_batch(batch_size, seed=0):
    rng = np.random.default_rng(seed)
    embeddings = rng.normal(size=(batch_size, DIM)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    labels = rng.permutation(np.repeat(np.arange(batch_size // SAMPLES_PER_CLASS), SAMPLES_PER_CLASS)).astype(np.int64)
    return embeddings, labels


def tfdml_loss(case):
    import tfdml.losses as losses
    import tfdml.mining as mining

    return {
        "margin+distance-weighted": lambda: losses.MarginLoss(miner=mining.DistanceWeightedMiner(seed=0)),
        "contrastive+distance-weighted": lambda: losses.ContrastiveLoss(miner=mining.DistanceWeightedMiner(seed=0)),
        "triplet+distance-weighted": lambda: losses.TripletLoss(miner=mining.DistanceWeightedMiner(seed=0)),
        "multi-similarity": lambda: losses.MultiSimilarityLoss(),
        "triplet+batch-hard": lambda: losses.TripletLoss(miner=mining.BatchHardMiner()),
        "quadruplet+distance-weighted": lambda: losses.QuadrupletLoss(miner=mining.DistanceWeightedMiner(seed=0)),
        "triplet+semi-hard": lambda: losses.TripletLoss(miner=mining.SemiHardMiner(seed=0)),
    }[case]()


def peer_loss(case):
    """The pytorch-metric-learning (loss, miner) with the same hyperparameters, or None."""
    from pytorch_metric_learning import losses, miners

    return {
        "margin+distance-weighted": lambda: (
            losses.MarginLoss(margin=0.2, beta=1.2, nu=0.0),
            miners.DistanceWeightedMiner(cutoff=0.5, nonzero_loss_cutoff=1.4),
        ),
        "contrastive+distance-weighted": lambda: (
            losses.ContrastiveLoss(pos_margin=0.0, neg_margin=1.0),
            miners.DistanceWeightedMiner(cutoff=0.5, nonzero_loss_cutoff=1.4),
        ),
        "triplet+distance-weighted": lambda: (
            losses.TripletMarginLoss(margin=0.2),
            miners.DistanceWeightedMiner(cutoff=0.5, nonzero_loss_cutoff=1.4),
        ),
        "multi-similarity": lambda: (
            losses.MultiSimilarityLoss(alpha=2.0, beta=40.0, base=0.5),
            miners.MultiSimilarityMiner(epsilon=0.1),
        ),
        "triplet+batch-hard": lambda: (losses.TripletMarginLoss(margin=0.2), miners.BatchHardMiner()),
        "quadruplet+distance-weighted": lambda: None,
        "triplet+semi-hard": lambda: (
            losses.TripletMarginLoss(margin=0.2),
            miners.TripletMarginMiner(margin=0.2, type_of_triplets="semihard"),
        ),
    }[case]()


def median_ms(step, repeats):
    return 1000.0 * float(np.median(run_times(step, repeats)))


def tfdml_step(case, embeddings, labels):
    import tensorflow as tf

    value_and_gradient = loss_and_gradient(tfdml_loss(case))
    embeddings, labels = tf.constant(embeddings), tf.constant(labels)

    def step():
        value, gradient = value_and_gradient(labels, embeddings)
        return float(value), tf.convert_to_tensor(gradient).numpy()

    return step


def peer_step(case, embeddings, labels):
    import torch

    loss_and_miner = peer_loss(case)
    if loss_and_miner is None:
        return None
    loss, miner = loss_and_miner
    embeddings = torch.tensor(embeddings, requires_grad=True)
    labels = torch.tensor(labels)

    def step():
        embeddings.grad = None
        value = loss(embeddings, labels, miner(embeddings, labels))
        value.backward()
        return value.item()

    return step


def worker(library, batch_size, repeats, threads, cases):
    """Times every case for one library in this process, one JSON line per case."""
    if library == "tfdml":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
        make_step = tfdml_step
    else:
        import torch

        torch.set_num_threads(threads)
        make_step = peer_step
    embeddings, labels = make_batch(batch_size)
    for case in cases:
        try:
            step = make_step(case, embeddings, labels)
            result = {"ms": None if step is None else median_ms(step, repeats)}
        except (MemoryError, RuntimeError) as error:  # torch reports a failed allocation as RuntimeError
            result = {"error": f"{type(error).__name__}: {str(error).splitlines()[0][:80]}"}
        print(json.dumps({"case": case, **result}), flush=True)


def memory_worker(case, batch_size):
    """Max RSS after one tfdml step at ``batch_size`` (and after a tiny warm-up step, for reference)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    tiny = tfdml_step(case, *make_batch(64))
    tiny()
    baseline_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tfdml_step(case, *make_batch(batch_size))()
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"baseline_gib": baseline_kib / 2**20, "peak_gib": peak_kib / 2**20}), flush=True)


def run_worker(args, memory_cap_gib=None, env=None):
    def cap():
        if memory_cap_gib is not None:
            limit = int(memory_cap_gib * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    process = subprocess.run(
        [sys.executable, os.path.abspath(__file__), *args],
        capture_output=True,
        text=True,
        preexec_fn=cap,
        env={**os.environ, **(env or {})},
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    lines = [json.loads(line) for line in process.stdout.splitlines() if line.startswith("{")]
    if process.returncode != 0:
        lines.append({"exit": f"worker exited with {process.returncode}: {process.stderr.strip().splitlines()[-1:]}"})
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 512, 2048])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    parser.add_argument("--peer-memory-gib", type=float, default=8.0)
    parser.add_argument("--memory-batch-size", type=int, default=4096)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--worker", nargs=2, metavar=("LIBRARY", "BATCH"), help=argparse.SUPPRESS)
    parser.add_argument("--memory-worker", nargs=2, metavar=("CASE", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        worker(args.worker[0], int(args.worker[1]), args.repeats, args.threads, args.cases)
        return
    if args.memory_worker:
        memory_worker(args.memory_worker[0], int(args.memory_worker[1]))
        return

    print(
        f"# dim={DIM}, {SAMPLES_PER_CLASS} samples/class, {args.threads} CPU threads, median of {args.repeats} steps (ms)"
    )
    print(f"{'case':32s} {'batch':>6s} {'tfdml':>10s} {'pml':>10s} {'ratio':>7s}")
    common = ["--repeats", str(args.repeats), "--threads", str(args.threads), "--cases", *args.cases]
    for batch_size in args.batch_sizes:
        ours = {r["case"]: r for r in run_worker(["--worker", "tfdml", str(batch_size), *common]) if "case" in r}
        peer_lines = run_worker(
            ["--worker", "pml", str(batch_size), *common],
            memory_cap_gib=args.peer_memory_gib,
            env={"OMP_WAIT_POLICY": "PASSIVE"},
        )
        peer = {r["case"]: r for r in peer_lines if "case" in r}
        for case in args.cases:
            mine, theirs = ours.get(case, {}), peer.get(case, {})
            ms = mine.get("ms")
            peer_ms = theirs.get("ms")
            peer_text = (
                f"{peer_ms:10.1f}" if peer_ms is not None else ("       n/a" if "ms" in theirs else "    failed")
            )
            ratio = f"{ms / peer_ms:7.2f}" if ms is not None and peer_ms else "      -"
            target = " *" if case in TARGET_CASES and batch_size >= 512 else ""
            print(
                f"{case:32s} {batch_size:6d} {(f'{ms:10.1f}' if ms is not None else '    failed')} {peer_text} {ratio}{target}",
                flush=True,
            )
            for note in (mine.get("error"), theirs.get("error")):
                if note:
                    print(f"    {note}")
        for line in peer_lines:
            if "exit" in line:
                print(f"    pml {line['exit']} (memory cap {args.peer_memory_gib} GiB)")
    print("# * target: tfdml ≤ 0.5 × pml at b ≥ 512; 'failed' = out of memory or crashed under the cap")

    if not args.skip_memory:
        for case in ("triplet+semi-hard", "margin+distance-weighted"):
            result = run_worker(["--memory-worker", case, str(args.memory_batch_size)])
            if result and "peak_gib" in result[0]:
                print(
                    f"peak RSS {case} b={args.memory_batch_size}: {result[0]['peak_gib']:.2f} GiB "
                    f"(after a b=64 warm-up step: {result[0]['baseline_gib']:.2f} GiB; target < 4 GiB)"
                )
            else:
                print(f"peak RSS {case} b={args.memory_batch_size}: {result}")


if __name__ == "__main__":
    main()
