"""PML parity cases of the pair losses: Circle, SupCon, NT-Xent, contrastive, triplet and multi-similarity, on
random batches (32 samples of 6 classes, 8 and 64 dimensions; 16 samples of 12 classes, with singletons) and the
degenerate ones, in float64, under each distance PML lets the loss take.

``params`` are tfdml's arguments and ``pml`` PML's: the PML setting that reproduces tfdml's loss (Circle
averages over all anchors: PML's ``MeanReducer``; SupCon and NT-Xent: PML's default reducers). A tfdml
``distance`` is PML's distance object of :func:`pml_distance`, named in ``pml_distance``. A case
where PML departs from tfdml's documented convention holds ``pml_differs``, the reason; its ``loss`` and
``grad`` are still PML's.
"""

from benchmarks.pml_parity import batch, degenerate_batches


def batches(rng):
    """``{id: (embeddings, labels)}``: the random batches, then the degenerate ones."""
    made = {f"b32_d{dim}": batch(rng, 32, dim, 6) for dim in (8, 64)}
    made["b16_singletons"] = batch(rng, 16, 8, 12)  # anchors without positives: the averaging conventions differ
    made.update(degenerate_batches(rng, 8))
    return made


# PML's distance (class and arguments) for each tfdml ``distance``: tfdml's take the embeddings as given.
PML_DISTANCES = {
    "euclidean": ("LpDistance", {"normalize_embeddings": False}),
    "squared_euclidean": ("LpDistance", {"normalize_embeddings": False, "power": 2}),
    "cosine": ("CosineSimilarity", {}),
    "dot": ("DotProductSimilarity", {"normalize_embeddings": False}),
}


def pml_distance(distance):
    """PML's distance object for tfdml's ``distance``."""
    from pytorch_metric_learning import distances

    name, arguments = PML_DISTANCES[distance]
    return getattr(distances, name)(**arguments)


def with_distance(params, pml, distance):
    """``(params, pml)`` with tfdml's ``distance`` in both (:func:`cases_of` gives PML its distance object)."""
    return {**params, "distance": distance}, {**pml, "distance": distance}


def pml_value_and_gradient(loss_fn, embeddings, labels, miner=None):
    import torch

    x = torch.tensor(embeddings, requires_grad=True)
    labels = torch.tensor(labels)
    if miner is None:
        loss = loss_fn(x, labels)
    else:
        loss = loss_fn(x, labels, miner(x, labels))
    (grad,) = torch.autograd.grad(loss, x, allow_unused=True)
    return loss, torch.zeros_like(x) if grad is None else grad


def cases_of(rng, make_loss, variants, differs=lambda batch_id: None, make_miner=None):
    """A case per batch and variant; ``variants`` maps an id suffix to ``(tfdml params, PML params)``, or
    ``(tfdml params, PML params, miner params)`` with ``make_miner``, PML's miner class whose pairs the loss takes."""
    made = []
    for batch_id, (embeddings, labels) in batches(rng).items():
        for suffix, (params, pml, *mining) in variants.items():
            miner = make_miner(**mining[0]) if mining else None
            distance = {"distance": pml_distance(pml["distance"])} if "distance" in pml else {}
            loss, grad = pml_value_and_gradient(make_loss(**{**pml, **distance}), embeddings, labels, miner)
            case = {
                "id": f"{batch_id}{suffix}",
                "inputs": {"embeddings": embeddings, "labels": labels},
                "params": params,
                "pml": {key: value for key, value in pml.items() if key not in ("reducer", "distance")},
                "loss": loss,
                "grad": grad,
            }
            if distance:
                name, arguments = PML_DISTANCES[pml["distance"]]
                case["pml_distance"] = {"class": name, **arguments}
            if mining:
                case["miner"] = mining[0]
            if differs(batch_id):
                case["pml_differs"] = differs(batch_id)
            made.append(case)
    return made


def circle(rng):
    from pytorch_metric_learning.losses import CircleLoss
    from pytorch_metric_learning.reducers import MeanReducer

    return cases_of(
        rng,
        CircleLoss,
        {
            "": ({"margin": 0.4, "scale": 80.0}, {"m": 0.4, "gamma": 80.0, "reducer": MeanReducer()}),
            "_m025_g256": ({"margin": 0.25, "scale": 256.0}, {"m": 0.25, "gamma": 256.0, "reducer": MeanReducer()}),
        },
    )


def supcon(rng):
    from pytorch_metric_learning.losses import SupConLoss

    return cases_of(
        rng,
        SupConLoss,
        {
            "": ({"temperature": 0.1}, {"temperature": 0.1}),
            "_t007": ({"temperature": 0.07}, {"temperature": 0.07}),
            **distance_variants({"temperature": 0.5}, {"temperature": 0.5}),
        },
        differs=lambda batch_id: (
            "PML returns 0 for a batch without a negative pair; tfdml follows Eq. 2 (A(i) = P(i))"
            if batch_id == "one_class"
            else None
        ),
    )


def ntxent(rng):
    from pytorch_metric_learning.losses import NTXentLoss

    return cases_of(
        rng,
        NTXentLoss,
        {
            "": ({"temperature": 0.07}, {"temperature": 0.07}),
            "_t05": ({"temperature": 0.5}, {"temperature": 0.5}),
            **distance_variants({"temperature": 0.5}, {"temperature": 0.5}),
        },
    )


def distance_variants(params, pml, distances=("euclidean", "dot")):
    """``{"_<distance>": (params, pml)}`` for the non-default distances."""
    return {f"_{distance}": with_distance(params, pml, distance) for distance in distances}


# (margin γ, positive margin m⁺) per distance, for PML's default batches (unnormalised, so distances ~ √(2d)).
CONTRASTIVE_MARGINS = {"euclidean": (4.0, 2.0), "cosine": (0.0, 0.5), "dot": (0.0, 1.0)}


def contrastive(rng):
    """tfdml's :func:`contrastive_all_pairs` and :func:`contrastive_pair_loss` with ``average="nonzero"``
    (PML's default ``AvgNonZeroReducer``), on every pair and on ``PairMarginMiner``'s pairs."""
    from pytorch_metric_learning.losses import ContrastiveLoss
    from pytorch_metric_learning.miners import PairMarginMiner

    variants = {}
    for distance, (margin, positive_margin) in CONTRASTIVE_MARGINS.items():
        pml = {"neg_margin": margin, "pos_margin": positive_margin}
        variants[f"_{distance}"] = with_distance({"margin": margin, "positive_margin": positive_margin}, pml, distance)
    params, pml = variants["_euclidean"]
    variants["_euclidean_pair_margin_miner"] = (params, pml, {"pos_margin": 0.9, "neg_margin": 1.3})
    return cases_of(rng, ContrastiveLoss, variants, make_miner=PairMarginMiner)


def triplet(rng):
    """tfdml's :func:`triplet_loss` on every triplet of the batch, PML's ``TripletMarginLoss`` without a miner
    and with ``MeanReducer`` (the mean over all triplets)."""
    from pytorch_metric_learning.losses import TripletMarginLoss
    from pytorch_metric_learning.reducers import MeanReducer

    margins = {"euclidean": 0.2, "squared_euclidean": 0.2, "cosine": 0.1}
    variants = {
        f"_{distance}": with_distance({"margin": margin}, {"margin": margin, "reducer": MeanReducer()}, distance)
        for distance, margin in margins.items()
    }
    return cases_of(rng, TripletMarginLoss, variants)


def multi_similarity(rng):
    """tfdml's :func:`multi_similarity_all_pairs`: PML's ``MultiSimilarityLoss`` without a miner."""
    from pytorch_metric_learning.losses import MultiSimilarityLoss

    def variant(alpha, beta, threshold, distance=None):
        params = {"alpha": alpha, "beta": beta, "threshold": threshold}
        pml = {"alpha": alpha, "beta": beta, "base": threshold}
        return (params, pml) if distance is None else with_distance(params, pml, distance)

    return cases_of(
        rng,
        MultiSimilarityLoss,
        {
            "": variant(2.0, 40.0, 0.5),
            "_euclidean": variant(2.0, 5.0, 10.0, "euclidean"),
            "_dot": variant(0.5, 2.0, 1.0, "dot"),
        },
    )


CASES = {
    "CircleLoss": circle,
    "SupConLoss": supcon,
    "NTXentLoss": ntxent,
    "ContrastiveLoss": contrastive,
    "TripletLoss": triplet,
    "MultiSimilarityLoss": multi_similarity,
}
