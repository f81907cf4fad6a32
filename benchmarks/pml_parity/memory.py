"""PML parity cases of the cross-batch memory: PML's ``CrossBatchMemory`` around a pair loss over a few steps.

Each case is a sequence of ``STEPS`` batches of ``BATCH`` samples whose memory (``MEMORY`` earlier samples, fewer
than the sequence holds, so it wraps mid-batch) drops the oldest; PML's ``memory_size`` counts the current batch
too, so it is ``MEMORY + BATCH`` there. ``loss`` and ``grad`` hold PML's value and gradient at each step.
``params`` are tfdml's loss arguments, ``pml`` PML's; ``miner``, when present, holds the arguments of the miner
``miner_class`` (``MultiSimilarityMiner`` when absent; PML mines among the keys, the query's own copy included, then
drops the self pairs; tfdml drops them first: the two agree whenever every query has another positive, as in these
batches). ``triplet_batch_hard`` is a triplet loss whose anchors are the batch and whose hardest positive and
negative are keys (``BatchHardMiner``, on unnormalised embeddings in both).

The values agree; the gradients differ by convention (``pml_differs``): PML's keys are its detached memory, the
current batch included, so its gradient flows through the queries only, while tfdml's in-batch keys keep theirs
(with an empty memory tfdml's loss and gradient are the wrapped loss's). ``contrastive_nonzero`` is compared through
tfdml's function with detached keys, which gives PML's gradient too.
"""

PML_DIFFERS = (
    "gradient: PML's keys (its memory, the current batch included) are detached, so its gradient is the queries' "
    "side only; tfdml's in-batch keys keep their gradient"
)

import numpy as np

from benchmarks.pml_parity import batch

STEPS, BATCH, DIM, CLASSES, MEMORY = 4, 8, 8, 3, 12


def sequence(rng):
    """``STEPS`` float64 batches ``(BATCH, DIM)`` with int64 labels, every class twice or more in each."""
    batches = []
    for _ in range(STEPS):
        embeddings, _ = batch(rng, BATCH, DIM, CLASSES)
        labels = rng.permutation(np.arange(BATCH) % CLASSES).astype(np.int64)
        batches.append((embeddings, labels))
    return batches


def run_pml(loss, batches, miner=None):
    """PML's ``CrossBatchMemory`` around ``loss``: its value and gradient at each step."""
    import torch
    from pytorch_metric_learning.losses import CrossBatchMemory

    memory = CrossBatchMemory(loss, embedding_size=DIM, memory_size=MEMORY + BATCH, miner=miner)
    values, grads = [], []
    for embeddings, labels in batches:
        x = torch.tensor(embeddings, requires_grad=True)
        value = memory(x, torch.tensor(labels))
        (grad,) = torch.autograd.grad(value, x)
        values.append(value)
        grads.append(grad)
    return values, grads


def cross_batch_memory(rng):
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.losses import (
        CircleLoss, ContrastiveLoss, MultiSimilarityLoss, NTXentLoss, TripletMarginLoss,
    )
    from pytorch_metric_learning.miners import BatchHardMiner, MultiSimilarityMiner
    from pytorch_metric_learning.reducers import MeanReducer

    variants = {
        "multi_similarity": ("MultiSimilarityLoss", {"pairs": "all", "miner": None},
                             lambda: MultiSimilarityLoss(alpha=2.0, beta=40.0, base=0.5), None),
        "multi_similarity_miner": ("MultiSimilarityLoss", {}, lambda: MultiSimilarityLoss(alpha=2.0, beta=40.0, base=0.5),
                                   ("MultiSimilarityMiner", {"epsilon": 0.1})),
        "circle": ("CircleLoss", {}, lambda: CircleLoss(m=0.4, gamma=80.0, reducer=MeanReducer()), None),
        "ntxent": ("NTXentLoss", {"temperature": 0.5}, lambda: NTXentLoss(temperature=0.5), None),
        # tfdml's ContrastiveLoss averages over all pairs; PML's AvgNonZeroReducer is contrastive_all_pairs'
        # average="nonzero", compared through the function with the keys a memory gives.
        "contrastive_nonzero": ("contrastive_all_pairs", {"margin": 4.0, "positive_margin": 2.0, "average": "nonzero"},
                                lambda: ContrastiveLoss(pos_margin=2.0, neg_margin=4.0,
                                                        distance=LpDistance(normalize_embeddings=False)), None),
        "triplet_batch_hard": ("TripletLoss", {"margin": 0.2},
                               lambda: TripletMarginLoss(margin=0.2, distance=LpDistance(normalize_embeddings=False),
                                                         reducer=MeanReducer()), ("BatchHardMiner", {})),
    }
    pml_miners = {
        "MultiSimilarityMiner": lambda epsilon: MultiSimilarityMiner(epsilon=epsilon),
        "BatchHardMiner": lambda: BatchHardMiner(distance=LpDistance(normalize_embeddings=False)),
    }
    made = []
    batches = sequence(rng)
    for case_id, (loss_name, params, make_loss, miner_spec) in variants.items():
        miner = None if miner_spec is None else pml_miners[miner_spec[0]](**miner_spec[1])
        values, grads = run_pml(make_loss(), batches, miner)
        case = {
            "id": case_id,
            "loss_class": loss_name,
            "memory_size": MEMORY,
            "inputs": {"embeddings": [b[0] for b in batches], "labels": [b[1] for b in batches]},
            "params": params,
            "loss": values,
            "grad": grads,
        }
        if miner_spec is not None:
            case["miner_class"], case["miner"] = miner_spec
        if loss_name != "contrastive_all_pairs":
            case["pml_differs"] = PML_DIFFERS
        made.append(case)
    return made


CASES = {"CrossBatchMemory": cross_batch_memory}
