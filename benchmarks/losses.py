"""Forward+backward time of tfdml's pair and tuple losses, with and without XLA, against a limit proxy
and pytorch-metric-learning, and peak memory.

Every (library, batch size) pair runs in its own subprocess on the same inputs:
L2-normalised Gaussian embeddings of dimension 128, 4 samples per class, labels
shuffled, one fixed seed. A step is loss + gradient w.r.t. the embeddings
(``tf.function`` for tfdml, eager autograd for the peer), both libraries on the same
number of CPU threads. The peer runs with ``OMP_WAIT_POLICY=PASSIVE``: on a shared
machine OpenMP's spin-waiting otherwise slows torch down 10–100×. Peer runs are
capped at ``--peer-memory-gib`` of address space so that a ``b³`` triplet mask
fails cleanly instead of exhausting the machine.

Each tfdml case is timed without XLA and with ``jit_compile=True`` ("xla"), in turn
with the limit proxy in both modes (``timing.limit_proxy``: the ``b × b`` Gram matrix
of the normalised embeddings, one ReLU, a sum, and its gradient — the least any
pair-based loss must do), for ``--repeats`` rounds after two warm-up rounds; times
are medians. ``/proxy`` is the case's time over the proxy's faster mode, measured in
the same rounds, so it holds on a shared machine where absolute times do not. A case
that XLA cannot compile prints "does not compile" in its xla column.

``*/all-pairs`` cases use every pair of the batch on the ``b × b`` matrix
(``tfdml.losses.*_all_pairs``); their peer is PML's loss without a miner (all pairs).
``contrastive+all-pairs/nonzero`` has PML's normalisation (``AvgNonZeroReducer``) and
``multi-similarity+all-pairs`` PML's definition: for these the script also checks that
both libraries give the same loss value.

The all-pairs similarity and softmax losses (``circle+all-pairs``, ``supcon``, ``ntxent``,
``lifted-structure``: the original loss of Oh Song et al., ``nca``, ``smooth-ap``) and the margin
miners (``triplet+triplet-margin``: ``TripletMarginMiner(type_of_triplets="all")``;
``multi-similarity+pair-margin``: ``PairMarginMiner()``) run against the PML setting that reproduces
tfdml's loss (``benchmarks/pml_parity``): Circle with PML's ``MeanReducer``, lifted structure with
``pos_margin=0`` and NCA with ``normalize_embeddings=False`` (tfdml's losses take the embeddings as
given; these are normalised, so the distance setting changes nothing here). Circle, SupCon, NT-Xent,
lifted structure, NCA and multi-similarity with the pair-margin miner are value-checked too. Two are
timed only: PML's Smooth-AP splits the batch into blocks of (number of classes) samples and equals
tfdml's only on sorted ``m × m`` batches, not these; PML's ``TripletMarginMiner`` returns every
qualifying triplet (up to ``b³``) where tfdml's draws one negative per positive pair. Both PML peers
build ``b³`` tensors, so they fail under the memory cap at large ``b``. ``ranked-list`` runs against PML's
``MeanReducer`` and is value-checked (PML adds ``1e-5`` per sample to each weight sum, so the values agree to
about ``b · 1e-5`` relatively); ``instance`` is timed only: PML's target is a sample, not the class, on
these class-labelled batches. ``tuplet-margin`` and
``intra-pair-variance`` (every pair, no miner) are value-checked against PML's losses without a miner;
PML's tuplet margin loss builds a (positive pairs × negative pairs) matrix, ``~b³`` here.
``pnp`` is value-checked against PML's ``PNPLoss()`` (which builds ``b³`` tensors); ``decoupled-contrastive``
(no PML peer) and ``vicreg`` (PML's takes two view tensors, not labels; here 2 pairs per class) are timed only.

The miners ``triplet+batch-easy-hard``, ``multi-similarity+hdc``, ``multi-similarity+uniform-histogram`` and
``triplet+angular`` are timed only
(the reasons are in :func:`peer_loss`).

Peak memory is the max RSS (``resource.getrusage``) of a fresh subprocess that
runs one tfdml step (without XLA) at ``b = 4096``; TensorFlow's own memory counters
do not work on CPU.

Usage:  python -m benchmarks.losses [--sizes 512 2048 4096] [--repeats 5] [--cases ...] [--skip-peer]
"""
import argparse
import json
import math
import os
import re
import resource
import subprocess
import sys

import numpy as np

from benchmarks.timing import interleaved_times, limit_proxy, loss_and_gradient

DIM = 128
SAMPLES_PER_CLASS = 4
CASES = (
    "margin+distance-weighted",
    "contrastive+distance-weighted",
    "triplet+distance-weighted",
    "multi-similarity",
    "triplet+batch-hard",
    "quadruplet+distance-weighted",
    "contrastive+all-pairs",
    "contrastive+all-pairs/nonzero",
    "margin+all-pairs",
    "multi-similarity+all-pairs",
    "circle+all-pairs",
    "supcon",
    "ntxent",
    "lifted-structure",
    "decoupled-contrastive",
    "vicreg",
    "nca",
    "ranked-list",
    "instance",
    "multi-similarity+pair-margin",
    "intra-pair-variance",
    "pnp",  # PML's PNP builds b³ tensors too
    "smooth-ap",  # the peers of these last four build b³ tensors
    "tuplet-margin",
    "triplet+triplet-margin",
    "triplet+batch-easy-hard",
    "multi-similarity+hdc",
    "multi-similarity+uniform-histogram",
    "triplet+angular",  # the peer's AngularMiner builds b³ tensors
    "triplet+semi-hard",  # last: the peer's b³ triplet mask may exhaust its memory cap
)
TARGET_CASES = ("margin+distance-weighted", "triplet+semi-hard", "multi-similarity", "contrastive+distance-weighted")
# Cases whose peer computes the same loss value (checked, not only timed).
SAME_VALUE_AS_PEER = (
    "contrastive+all-pairs/nonzero",
    "multi-similarity+all-pairs",
    "circle+all-pairs",
    "supcon",
    "ntxent",
    "lifted-structure",
    "nca",
    "ranked-list",
    "multi-similarity+pair-margin",
    "pnp",
    "tuplet-margin",
    "intra-pair-variance",
)
PROXY_TARGET = 2.5  # every case in its faster mode at b = 2048 and 4096
ALL_PAIRS_PROXY_TARGET = 3.0  # all-pairs contrastive at b = 2048, which must also be <= 1x PML


def make_batch(batch_size, seed=0):
    rng = np.random.default_rng(seed)
    embeddings = rng.normal(size=(batch_size, DIM)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    labels = rng.permutation(np.repeat(np.arange(batch_size // SAMPLES_PER_CLASS), SAMPLES_PER_CLASS)).astype(np.int64)
    return embeddings, labels


def tfdml_loss(case):
    import tfdml.losses as losses
    import tfdml.mining as mining
    from tfdml.losses import contrastive_all_pairs

    return {
        "margin+distance-weighted": lambda: losses.MarginLoss(miner=mining.DistanceWeightedMiner(seed=0)),
        "contrastive+distance-weighted": lambda: losses.ContrastiveLoss(miner=mining.DistanceWeightedMiner(seed=0)),
        "triplet+distance-weighted": lambda: losses.TripletLoss(miner=mining.DistanceWeightedMiner(seed=0)),
        "multi-similarity": lambda: losses.MultiSimilarityLoss(),
        "triplet+batch-hard": lambda: losses.TripletLoss(miner=mining.BatchHardMiner()),
        "quadruplet+distance-weighted": lambda: losses.QuadrupletLoss(miner=mining.DistanceWeightedMiner(seed=0)),
        "triplet+semi-hard": lambda: losses.TripletLoss(miner=mining.SemiHardMiner(seed=0)),
        "contrastive+all-pairs": lambda: losses.ContrastiveLoss(pairs="all"),
        "contrastive+all-pairs/nonzero": lambda: lambda y, x: contrastive_all_pairs(y, x, average="nonzero"),
        "margin+all-pairs": lambda: losses.MarginLoss(pairs="all"),
        "multi-similarity+all-pairs": lambda: losses.MultiSimilarityLoss(pairs="all"),
        "circle+all-pairs": lambda: losses.CircleLoss(margin=0.4, scale=80.0),
        "tuplet-margin": lambda: losses.TupletMarginLoss(margin=0.1, scale=64.0),
        "intra-pair-variance": lambda: losses.IntraPairVarianceLoss(pos_eps=0.01, neg_eps=0.01),
        "supcon": lambda: losses.SupConLoss(temperature=0.1),
        "ntxent": lambda: losses.NTXentLoss(temperature=0.07),
        "decoupled-contrastive": lambda: losses.DecoupledContrastiveLoss(),
        "vicreg": lambda: losses.VICRegLoss(),
        "lifted-structure": lambda: losses.LiftedStructureLoss(margin=1.0),
        "nca": lambda: losses.NCALoss(scale=1.0),
        "ranked-list": lambda: losses.RankedListLoss(),
        "instance": lambda: losses.InstanceLoss(scale=64.0),
        "smooth-ap": lambda: losses.SmoothAPLoss(temperature=0.01),
        "pnp": lambda: losses.PNPLoss(),
        "triplet+triplet-margin": lambda: losses.TripletLoss(
            margin=0.2, miner=mining.TripletMarginMiner(margin=0.2, type_of_triplets="all", seed=0)
        ),
        "multi-similarity+pair-margin": lambda: losses.MultiSimilarityLoss(
            miner=mining.PairMarginMiner(pos_margin=0.2, neg_margin=0.8)
        ),
        "triplet+batch-easy-hard": lambda: losses.TripletLoss(margin=0.2, miner=mining.BatchEasyHardMiner()),
        "multi-similarity+hdc": lambda: losses.MultiSimilarityLoss(miner=mining.HDCMiner(filter_percentage=0.5)),
        "multi-similarity+uniform-histogram": lambda: losses.MultiSimilarityLoss(
            miner=mining.UniformHistogramMiner(num_bins=100, pos_per_bin=10, neg_per_bin=10, seed=0)
        ),
        "triplet+angular": lambda: losses.TripletLoss(margin=0.2, miner=mining.AngularMiner(angle=20.0, seed=0)),
    }[case]()


def peer_loss(case):
    """The pytorch-metric-learning (loss, miner) with the same hyperparameters, or None."""
    from pytorch_metric_learning import losses, miners
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.reducers import MeanReducer

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
        # PML without a miner: all pairs, each side averaged over its non-zero terms.
        "contrastive+all-pairs": lambda: (losses.ContrastiveLoss(pos_margin=0.0, neg_margin=1.0), None),
        "contrastive+all-pairs/nonzero": lambda: (losses.ContrastiveLoss(pos_margin=0.0, neg_margin=1.0), None),
        # PML's MarginLoss without a miner uses all b³ triplets, not all pairs: another loss.
        "margin+all-pairs": lambda: None,
        "multi-similarity+all-pairs": lambda: (losses.MultiSimilarityLoss(alpha=2.0, beta=40.0, base=0.5), None),
        # The settings of benchmarks/pml_parity that reproduce tfdml's losses, all without a miner (all pairs).
        "circle+all-pairs": lambda: (losses.CircleLoss(m=0.4, gamma=80.0, reducer=MeanReducer()), None),
        # PML takes the tuplet margin in degrees: math.degrees(0.1) is tfdml's 0.1 rad.
        "tuplet-margin": lambda: (losses.TupletMarginLoss(margin=math.degrees(0.1), scale=64.0), None),
        "intra-pair-variance": lambda: (losses.IntraPairVarianceLoss(pos_eps=0.01, neg_eps=0.01), None),
        "supcon": lambda: (losses.SupConLoss(temperature=0.1), None),
        "ntxent": lambda: (losses.NTXentLoss(temperature=0.07), None),
        "decoupled-contrastive": lambda: None,  # PML has no decoupled contrastive loss
        "vicreg": lambda: None,  # PML's VICReg takes two view tensors, not labels
        "lifted-structure": lambda: (
            losses.LiftedStructureLoss(neg_margin=1.0, pos_margin=0.0, distance=LpDistance(normalize_embeddings=False)),
            None,
        ),
        "nca": lambda: (
            losses.NCALoss(softmax_scale=1.0, distance=LpDistance(power=2, normalize_embeddings=False)),
            None,
        ),
        # PML adds 1e-5 per sample to each weight sum: the values agree to ~b · 1e-5 relatively.
        "ranked-list": lambda: (
            losses.RankedListLoss(margin=0.4, Tn=10.0, imbalance=0.5, alpha=1.2, Tp=0.0, reducer=MeanReducer()),
            None,
        ),
        # Timed only: PML's target is the column numbered by the label's rank, not the class.
        "instance": lambda: (losses.InstanceLoss(gamma=64.0), None),
        # Timed only: PML's blocks of (number of classes) samples are not this batch's classes.
        "smooth-ap": lambda: (losses.SmoothAPLoss(temperature=0.01), None),
        "pnp": lambda: (losses.PNPLoss(), None),
        # Timed only: PML keeps every qualifying triplet, tfdml one negative per positive pair.
        "triplet+triplet-margin": lambda: (
            losses.TripletMarginLoss(margin=0.2),
            miners.TripletMarginMiner(margin=0.2, type_of_triplets="all"),
        ),
        "multi-similarity+pair-margin": lambda: (
            losses.MultiSimilarityLoss(alpha=2.0, beta=40.0, base=0.5),
            miners.PairMarginMiner(pos_margin=0.2, neg_margin=0.8),
        ),
        # Timed only: PML's triplet loss averages over its non-zero triplets, tfdml's over all.
        "triplet+batch-easy-hard": lambda: (losses.TripletMarginLoss(margin=0.2), miners.BatchEasyHardMiner()),
        # Timed only: of a pair and its mirror (equal distances) at the cut, PML's topk keeps either.
        "multi-similarity+hdc": lambda: (
            losses.MultiSimilarityLoss(alpha=2.0, beta=40.0, base=0.5),
            miners.HDCMiner(filter_percentage=0.5),
        ),
        # Timed only: random draws (and PML's list repeats a pair drawn twice, tfdml's mask keeps it once).
        "multi-similarity+uniform-histogram": lambda: (
            losses.MultiSimilarityLoss(alpha=2.0, beta=40.0, base=0.5),
            miners.UniformHistogramMiner(num_bins=100, pos_per_bin=10, neg_per_bin=10),
        ),
        # Timed only: PML keeps every qualifying triplet (b³), tfdml one negative per positive pair.
        "triplet+angular": lambda: (losses.TripletMarginLoss(margin=0.2), miners.AngularMiner(angle=20)),
    }[case]()


def median_ms(times):
    return 1000.0 * float(np.median(times))


def tfdml_step(case, embeddings, labels, jit_compile=False):
    import tensorflow as tf

    value_and_gradient = loss_and_gradient(tfdml_loss(case), jit_compile=jit_compile)
    embeddings, labels = tf.constant(embeddings), tf.constant(labels)

    def step():
        value, gradient = value_and_gradient(labels, embeddings)
        return float(value), tf.convert_to_tensor(gradient).numpy()

    return step


def proxy_step(embeddings, labels, jit_compile):
    import tensorflow as tf

    value_and_gradient = loss_and_gradient(limit_proxy, jit_compile=jit_compile)
    embeddings, labels = tf.constant(embeddings), tf.constant(labels)
    return lambda: value_and_gradient(labels, embeddings)[1].numpy()


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
        value = loss(embeddings, labels, None if miner is None else miner(embeddings, labels))
        value.backward()
        return value.item()

    return step


def first_line(error):
    """A one-line summary of ``error``; for XLA, the ops it could not compile."""
    text = str(error)
    ops = sorted(set(re.findall(r"No registered '(\w+)' OpKernel for XLA", text)))
    if ops:
        return f"{type(error).__name__}: no XLA kernel for {', '.join(ops)}"
    return f"{type(error).__name__}: {(text.strip().splitlines() or [''])[0][:100]}"


def compiled_or_error(make_step):
    """``(step, None)`` after one call that compiles it, or ``(None, message)`` when it does not compile."""
    try:
        step = make_step()
        step()
        return step, None
    except Exception as error:  # XLA reports an op it cannot compile with several error types
        return None, first_line(error)


def tfdml_worker(batch_size, repeats, cases):
    """Per case: proxy and case, without and with XLA, timed in turn; one JSON line per case."""
    embeddings, labels = make_batch(batch_size)
    proxies = {"proxy": proxy_step(embeddings, labels, False), "proxy_xla": proxy_step(embeddings, labels, True)}
    for case in cases:
        runs, result = dict(proxies), {}
        try:
            runs["plain"] = tfdml_step(case, embeddings, labels)
            result["value"] = runs["plain"]()[0]
        except (MemoryError, RuntimeError) as error:
            result["error"] = first_line(error)
            runs.pop("plain", None)
        xla, result["xla_error"] = compiled_or_error(lambda: tfdml_step(case, embeddings, labels, jit_compile=True))
        if xla is not None:
            runs["xla"] = xla
        times = interleaved_times(runs, repeats)
        result.update({name: median_ms(values) for name, values in times.items()})
        print(json.dumps({"case": case, **result}), flush=True)


def peer_worker(batch_size, repeats, cases):
    embeddings, labels = make_batch(batch_size)
    for case in cases:
        try:
            step = peer_step(case, embeddings, labels)
            if step is None:
                result = {}
            else:
                result = {"value": step(), "ms": median_ms(interleaved_times({"": step}, repeats)[""])}
        except (MemoryError, RuntimeError) as error:  # torch reports a failed allocation as RuntimeError
            result = {"error": first_line(error)}
        print(json.dumps({"case": case, **result}), flush=True)


def worker(library, batch_size, repeats, threads, cases):
    """Times every case for one library in this process, one JSON line per case."""
    if library == "tfdml":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
        tfdml_worker(batch_size, repeats, cases)
    else:
        import torch

        torch.set_num_threads(threads)
        peer_worker(batch_size, repeats, cases)


def memory_worker(case, batch_size):
    """Max RSS after one tfdml step at ``batch_size`` (and after a tiny warm-up step, for reference)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    tiny = tfdml_step(case, *make_batch(64))
    tiny()
    baseline_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tfdml_step(case, *make_batch(batch_size))()
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"baseline_gib": baseline_kib / 2**20, "peak_gib": peak_kib / 2**20}), flush=True)


def peer_missing(theirs):
    """Why a peer row has no time: its worker died before it ("not run"), it failed, or PML lacks the case."""
    if not theirs:
        return "not run"
    return "failed" if "error" in theirs else "n/a"


def print_row(case, batch_size, mine, theirs, skip_peer):
    plain, xla = mine.get("plain"), mine.get("xla")
    proxy = min(mine["proxy"], mine["proxy_xla"]) if "proxy" in mine else None
    best = min(t for t in (plain, xla, float("inf")) if t is not None)
    peer_ms = theirs.get("ms")

    def cell(value, fmt="11.1f", missing="-"):
        return f"{value:{fmt}}" if value is not None else f"{missing:>11s}"

    cells = [
        cell(plain, missing="failed"),
        cell(xla, missing="no compile"),
        cell(xla / plain if xla and plain else None, "11.2f"),
        cell(plain / proxy if plain and proxy else None, "11.2f"),
        cell(xla / proxy if xla and proxy else None, "11.2f"),
        cell(peer_ms, missing="skipped" if skip_peer else peer_missing(theirs)),
        cell(best / peer_ms if peer_ms and best < float("inf") else None, "11.2f"),
    ]
    limit = ALL_PAIRS_PROXY_TARGET if case.startswith("contrastive+all-pairs") else PROXY_TARGET
    target = " *" if batch_size >= 2048 and proxy and best / proxy > limit else ""
    print(f"{case:32s} {batch_size:6d} " + " ".join(cells) + target, flush=True)
    if mine.get("xla_error"):
        print(f"    xla: does not compile ({mine['xla_error']})")
    for note in (mine.get("error"), theirs.get("error")):
        if note:
            print(f"    {note}")
    if case in SAME_VALUE_AS_PEER and "value" in mine and "value" in theirs:
        print(f"    same loss as pml: tfdml {mine['value']:.6f}, pml {theirs['value']:.6f}")


def run_worker(args, memory_cap_gib=None, env=None):
    def cap():
        if memory_cap_gib is not None:
            limit = int(memory_cap_gib * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    process = subprocess.run(
        [sys.executable, "-m", "benchmarks.losses", *args],
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
    parser.add_argument("--sizes", "--batch-sizes", dest="batch_sizes", type=int, nargs="+", default=[512, 2048, 4096])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    parser.add_argument("--peer-memory-gib", type=float, default=8.0)
    parser.add_argument("--memory-batch-size", type=int, default=4096)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-peer", action="store_true", help="do not time pytorch-metric-learning")
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
        f"# dim={DIM}, {SAMPLES_PER_CLASS} samples/class, {args.threads} CPU threads, median of {args.repeats} "
        "rounds (ms); /proxy = time / limit proxy (faster mode) in the same rounds; xla/plain = XLA time / non-XLA"
    )
    header = ("case", "batch", "plain", "xla", "xla/plain", "plain/proxy", "xla/proxy", "pml", "best/pml")
    print(f"{header[0]:32s} {header[1]:>6s} " + " ".join(f"{h:>11s}" for h in header[2:]))
    common = ["--repeats", str(args.repeats), "--threads", str(args.threads), "--cases", *args.cases]
    for batch_size in args.batch_sizes:
        our_lines = run_worker(["--worker", "tfdml", str(batch_size), *common])
        ours = {r["case"]: r for r in our_lines if "case" in r}
        peer_lines = []
        if not args.skip_peer:
            peer_lines = run_worker(
                ["--worker", "pml", str(batch_size), *common],
                memory_cap_gib=args.peer_memory_gib,
                env={"OMP_WAIT_POLICY": "PASSIVE"},
            )
        peer = {r["case"]: r for r in peer_lines if "case" in r}
        proxy_ms = [min(r["proxy"], r["proxy_xla"]) for r in ours.values() if "proxy" in r]
        if proxy_ms:
            print(f"{'limit proxy (median over cases)':32s} {batch_size:6d} {float(np.median(proxy_ms)):11.1f}")
        for case in args.cases:
            print_row(case, batch_size, ours.get(case, {}), peer.get(case, {}), args.skip_peer)
        for line in our_lines:
            if "exit" in line:
                print(f"    tfdml {line['exit']}")
        for line in peer_lines:
            if "exit" in line:
                print(f"    pml {line['exit']} (memory cap {args.peer_memory_gib} GiB)")
    print(
        f"# * target at b >= 2048: best of plain/xla <= {PROXY_TARGET} x proxy "
        f"(all-pairs contrastive: <= {ALL_PAIRS_PROXY_TARGET} x proxy and <= 1 x pml); "
        "'failed' = out of memory or crashed"
    )

    if not args.skip_memory:
        for case in ("triplet+semi-hard", "margin+distance-weighted", "contrastive+all-pairs"):
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
