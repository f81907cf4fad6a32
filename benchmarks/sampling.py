"""Sampler throughput and the cost of sampling in a full input pipeline.

Part 1, sampler only: sample indices per second from each sampler's ``index_dataset``
(drained for a fixed number of batches after one warm-up batch), on the real Omniglot
labels (4,840 images, 242 classes, 8 alphabets) and on synthetic labels shaped like
Stanford Online Products (59,551 images, 11,318 classes of 2–12, 12 categories).
The peer is pytorch-metric-learning's ``MPerClassSampler`` (the m-per-class sampler,
iterated in Python), next to ``SPCSampler`` with the same m and batch size; the
"from_generator" row is the same SPC plan fed to tf.data one Python call per batch.

Part 2, full pipeline: ``tfdml.sampling.batches`` (sampler + PNG decode + "base"
augmentation) against plain tf.data decoding + the same augmentation of the same
images in shuffled order without sampling (``range → shuffle → repeat → parallel
map(load) → augment → batch → prefetch``); target ratio ≥ 0.90 images/s, as the median over paired rounds of ``sampled / plain``.

Memory-bank rows are measured over ``batches // 20`` batches (each is a greedy
coreset or m candidate statistics over b* = 1024 embeddings of dimension 128).

Usage: python -m benchmarks.sampling [--omniglot DIR (default: the zips shipped with tfdml)] [--batches 200] [--repeats 2] [--rounds 9]
"""

import argparse
import os
import pathlib
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf

import tfdml.data
from tfdml import sampling

TARGET_RATIO = 0.90


def sop_like_labels(seed=0):
    """Class sizes 2–12 (mean ≈ 5.3) over 11,318 classes, each class in one of 12 categories."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2, 10, 11318) + (rng.random(11318) < 0.3) * rng.integers(0, 4, 11318)
    labels = np.repeat(np.arange(sizes.size), sizes)
    return labels, rng.integers(0, 12, sizes.size)[labels]


def drain(dataset, batches):
    """Seconds to pull ``batches`` elements after one warm-up element."""
    iterator = iter(dataset)
    next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return time.perf_counter() - start


def best_rate(measure, items, repeats):
    return max(items / measure() for _ in range(repeats))


def pml_m_per_class_rate(labels, m, batch_size, items, repeats):
    from pytorch_metric_learning.samplers import MPerClassSampler

    sampler = MPerClassSampler(labels, m=m, batch_size=batch_size, length_before_new_iter=items)

    def measure():
        start = time.perf_counter()
        count = sum(1 for _ in iter(sampler))
        assert count == len(sampler)
        return time.perf_counter() - start

    return max(len(sampler) / measure() for _ in range(repeats))


def sampler_rows(name, labels, categories, batches, repeats):
    m, batch_size = 4, 64
    bank = sampling.MemoryBank(labels.size, 128, seed=0)
    samplers = {
        "SPC-4 (SPCSampler)": sampling.SPCSampler(labels, batch_size=batch_size, samples_per_class=m),
        "SPC-R (SPCRandomSampler)": sampling.SPCRandomSampler(labels, batch_size=batch_size),
        "FastAP random (RandomClassSampler)": sampling.RandomClassSampler(labels, batch_size=batch_size),
        "FastAP hard (CategoryHardSampler)": sampling.CategoryHardSampler(labels, categories, batch_size=batch_size),
        "VehicleID hard (CategoryVersusUncategorised)": sampling.CategoryVersusUncategorisedSampler(
            labels, np.where(categories < categories.max() // 2, -1, categories), batch_size=batch_size
        ),
    }
    memory_samplers = {
        "greedy coreset, b*=1024 (CoresetSampler)": sampling.CoresetSampler,
        "DDM, b*=1024, m=10 (DDMSampler)": sampling.DDMSampler,
        "FRD, b*=1024, m=10, d=128 (FRDSampler)": sampling.FRDSampler,
    }
    rows = []
    for label, sampler in samplers.items():
        rate = best_rate(lambda: drain(sampler.index_dataset(), 10 * batches), 10 * batches * batch_size, repeats)
        rows.append((name, label, rate, None))
    spc = samplers["SPC-4 (SPCSampler)"]
    plan = spc.plan_epoch(0)
    per_batch = tf.data.Dataset.from_generator(
        lambda: iter(np.resize(plan, (10 * batches + 1, batch_size))),
        output_signature=tf.TensorSpec((batch_size,), tf.int64),
    )
    rate = best_rate(lambda: drain(per_batch, 10 * batches), 10 * batches * batch_size, repeats)
    rows.append((name, "  SPC-4 plan via from_generator", rate, None))
    peer = pml_m_per_class_rate(labels, m, batch_size, 10 * batches * batch_size, repeats)
    rows.append((name, "  peer: PML MPerClassSampler m=4", peer, None))
    rows[0] = (*rows[0][:3], rows[0][2] / peer)
    few = max(3, batches // 20)
    for label, cls in memory_samplers.items():
        sampler = cls(labels, bank=bank, batch_size=batch_size, pool_size=1024)
        rate = best_rate(lambda: drain(sampler.index_dataset(), few), few * batch_size, repeats)
        rows.append((name, label, rate, None))
    return rows


def pipeline_rows(data, batches, rounds):
    batch_size = 64
    augment = tfdml.data.Augmentation("base", size=64, seed=0)
    sampler = sampling.SPCSampler(data.labels, batch_size=batch_size, samples_per_class=4, seed=0)
    sampled = sampling.batches(data, sampler, preprocess=augment)
    labels = tf.constant(data.labels)
    shuffled = tf.data.Dataset.range(len(data)).shuffle(len(data), seed=0).repeat()
    decoded = shuffled.map(lambda i: (data.load(i), tf.gather(labels, i)), num_parallel_calls=tf.data.AUTOTUNE)
    plain = augment.apply(decoded).batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    # Short paired runs in alternating order: each round's ratio sees the same load from
    # other processes on both pipelines, and the median over rounds drops outlier rounds.
    plain_rates, sampled_rates = [], []
    for round_ in range(rounds):
        pair = [("plain", plain), ("sampled", sampled)][:: 1 if round_ % 2 else -1]
        measured = {name: batches * batch_size / drain(dataset, batches) for name, dataset in pair}
        plain_rates.append(measured["plain"])
        sampled_rates.append(measured["sampled"])
    ratio = float(np.median(np.divide(sampled_rates, plain_rates)))
    return [
        ("omniglot 105² PNG", "plain tf.data decode+augment (no sampling)", float(np.median(plain_rates)), None),
        ("omniglot 105² PNG", "batches(SPCSampler) decode+augment", float(np.median(sampled_rates)), ratio),
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default_root = pathlib.Path(__file__).resolve().parents[1] / "tfdml" / "data" / "omniglot_background_small"
    parser.add_argument("--omniglot", default=str(default_root))
    parser.add_argument("--batches", type=int, default=200, help="batches drained per measurement")
    parser.add_argument("--repeats", type=int, default=2, help="sampler measurements per row (best is kept)")
    parser.add_argument("--rounds", type=int, default=9, help="paired pipeline measurements (median is kept)")
    args = parser.parse_args()

    omniglot = tfdml.data.load("omniglot", root=args.omniglot, split="all", validate="none")
    rows = sampler_rows("omniglot", omniglot.labels, omniglot.categories, args.batches, args.repeats)
    rows += sampler_rows("SOP-like", *sop_like_labels(), args.batches, args.repeats)
    print(f"{'data':<10} {'sampler (batch 64)':<48} {'indices/s':>12} {'ratio':>8}")
    for data_name, label, rate, ratio in rows:
        print(f"{data_name:<10} {label:<48} {rate:>12,.0f} {'' if ratio is None else f'{ratio:.1f}x':>8}")
    print("ratio: SPCSampler / PML MPerClassSampler (higher is faster)\n")

    pipeline = pipeline_rows(omniglot, args.batches // 2, args.rounds)
    print(f"{'data':<18} {'pipeline (batch 64, base augmentation to 64²)':<44} {'images/s':>10} {'ratio':>8}")
    for data_name, label, rate, ratio in pipeline:
        print(f"{data_name:<18} {label:<44} {rate:>10,.0f} {'' if ratio is None else f'{ratio:.2f}':>8}")
    ratio = pipeline[1][3]
    verdict = "meets" if ratio >= TARGET_RATIO else "misses"
    print(f"median paired sampled / plain = {ratio:.2f} ({verdict} the ≥ {TARGET_RATIO:.2f} target)")


if __name__ == "__main__":
    main()
