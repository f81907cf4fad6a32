"""FastAP forward+backward: tfdml's closed-form gradient vs autodiff vs pytorch-metric-learning.

Each (method, batch size) case runs in its own subprocess so its peak memory is
its own: peak RSS (``ru_maxrss``) minus the RSS after imports and input creation.
Methods:

- ``tfdml``: ``fastap_loss`` (closed-form gradient) in ``tf.function``;
- ``tfdml-xla``: the same with ``jit_compile=True``, as in ``model.fit``'s default
  train step on CPU/GPU (Keras' ``jit_compile="auto"``);
- ``autodiff``: ``fastap_loss_autodiff`` (TensorFlow differentiates the same forward);
- ``pml``: ``pytorch_metric_learning.losses.FastAPLoss`` (peer; ``requirements-peers.txt``).

All cases use the same seeded data (d = 128, 4 samples per class, L = 10) and
print the loss value, so the table also shows that the implementations agree.
Timings are medians over repeats after one warm-up call, of wall time and of the
process's CPU time (steadier than wall time when other jobs share the cores).
Targets: tfdml ≤ 0.3× the peer for M ≥ 512, peak memory < 1 GiB at M = 4096.

    python -m benchmarks.fastap                       # the full table
    python -m benchmarks.fastap --sizes 256 512 --methods tfdml pml
    python -m benchmarks.fastap --threads 1          # fairer when other jobs load the machine
"""

import argparse
import functools
import importlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

from benchmarks.timing import loss_and_gradient

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = ("tfdml", "tfdml-xla", "autodiff", "pml")
PEER = "pml"


def make_batch(size, dim, samples_per_class, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(size // samples_per_class + 1), samples_per_class)[:size].astype(np.int32)
    return labels, rng.normal(size=(size, dim)).astype(np.float32)


def peak_rss_mib():
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def tensorflow_step(method, labels, embeddings, num_bins, threads):
    import tensorflow as tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)

    from tfdml.losses.fastap import fastap_loss, fastap_loss_autodiff

    loss_fn = fastap_loss_autodiff if method == "autodiff" else fastap_loss

    value_and_gradient = loss_and_gradient(
        functools.partial(loss_fn, num_bins=num_bins), jit_compile=method == "tfdml-xla"
    )

    labels, embeddings = tf.constant(labels), tf.constant(embeddings)

    def step():
        loss, gradient = value_and_gradient(labels, embeddings)
        gradient.numpy()
        return float(loss)

    return step


def peer_step(labels, embeddings, num_bins, threads):
    import torch
    from pytorch_metric_learning.losses import FastAPLoss

    if threads:
        torch.set_num_threads(threads)

    loss_fn = FastAPLoss(num_bins=num_bins)
    labels = torch.from_numpy(labels.astype(np.int64))
    embeddings = torch.from_numpy(embeddings).requires_grad_(True)

    def step():
        embeddings.grad = None
        loss = loss_fn(embeddings, labels)
        loss.backward()
        return float(loss)

    return step


def run_case(method, size, num_bins, dim, samples_per_class, min_seconds, max_repeats, threads):
    """One case in this process: prints a JSON line with median time and peak memory."""
    # Import the framework before taking the baseline, so its own footprint is not counted.
    importlib.import_module("torch" if method == PEER else "tensorflow")

    labels, embeddings = make_batch(size, dim, samples_per_class)
    if method == PEER:
        step = peer_step(labels, embeddings, num_bins, threads)
    else:
        step = tensorflow_step(method, labels, embeddings, num_bins, threads)
    baseline = peak_rss_mib()
    loss = step()  # warm-up: tracing/compilation
    wall, cpu = [], []
    while len(wall) < max_repeats and (len(wall) < 3 or sum(wall) < min_seconds):
        start, start_cpu = time.perf_counter(), time.process_time()
        step()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    result = {
        "loss": loss,
        "ms": 1000 * statistics.median(wall),
        "cpu_ms": 1000 * statistics.median(cpu),
        "peak_mib": peak_rss_mib() - baseline,
        "repeats": len(wall),
    }
    print(json.dumps(result))


def run_table(args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    results = {}
    for size in args.sizes:
        for method in args.methods:
            command = [
                sys.executable, "-m", "benchmarks.fastap", "--case", method, "--sizes", str(size),
                "--num-bins", str(args.num_bins), "--dim", str(args.dim),
                "--samples-per-class", str(args.samples_per_class),
                "--min-seconds", str(args.min_seconds), "--max-repeats", str(args.max_repeats),
                "--threads", str(args.threads),
            ]  # fmt: skip
            completed = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
            if completed.returncode != 0:
                print(f"{method} M={size} failed:\n{completed.stderr[-2000:]}", file=sys.stderr)
                continue
            results[method, size] = json.loads(completed.stdout.strip().splitlines()[-1])

    print(
        f"FastAP forward+backward, L={args.num_bins}, d={args.dim}, {args.samples_per_class} samples/class, "
        f"{args.threads or os.cpu_count()} threads, load average {os.getloadavg()[0]:.1f}; "
        "medians of wall and process CPU time; mem = peak RSS above the post-import baseline"
    )
    header = (
        f"{'M':>5} {'method':<10} {'ms':>9} {'× peer':>7} {'cpu ms':>9} {'× peer':>7} {'mem MiB':>8} "
        f"{'loss':>10} {'|Δloss|':>9}"
    )
    print(header)
    print("-" * len(header))
    for size in args.sizes:
        peer = results.get((PEER, size))
        for method in args.methods:
            row = results.get((method, size))
            if row is None:
                print(f"{size:>5} {method:<10} {'failed':>9}")
                continue
            ratio = f"{row['ms'] / peer['ms']:.3f}" if peer else "-"
            cpu_ratio = f"{row['cpu_ms'] / peer['cpu_ms']:.3f}" if peer else "-"
            loss_gap = f"{abs(row['loss'] - peer['loss']):.1e}" if peer else "-"
            print(
                f"{size:>5} {method:<10} {row['ms']:>9.2f} {ratio:>7} {row['cpu_ms']:>9.2f} {cpu_ratio:>7} "
                f"{row['peak_mib']:>8.0f} {row['loss']:>10.6f} {loss_gap:>9}"
            )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 2048, 4096])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--num-bins", type=int, default=10)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--samples-per-class", type=int, default=4)
    parser.add_argument("--min-seconds", type=float, default=2.0, help="keep repeating a case until this much time")
    parser.add_argument("--max-repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for TensorFlow and torch (0: all cores)")
    parser.add_argument("--case", choices=METHODS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        run_case(
            args.case, args.sizes[0], args.num_bins, args.dim, args.samples_per_class,
            args.min_seconds, args.max_repeats, args.threads,
        )  # fmt: skip
    else:
        run_table(args)


if __name__ == "__main__":
    main()
