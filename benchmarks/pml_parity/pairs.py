"""PML parity cases of the all-pairs similarity losses: Circle, SupCon and NT-Xent, on random batches (32 samples of
6 classes, 8 and 64 dimensions; 16 samples of 12 classes, with singletons) and the degenerate ones, in float64.

``params`` are tfdml's arguments and ``pml`` PML's: the PML setting that reproduces tfdml's loss (Circle
averages over all anchors: PML's ``MeanReducer``; SupCon and NT-Xent: PML's default reducers). A case
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


def pml_value_and_gradient(loss_fn, embeddings, labels):
    import torch

    x = torch.tensor(embeddings, requires_grad=True)
    loss = loss_fn(x, torch.tensor(labels))
    (grad,) = torch.autograd.grad(loss, x, allow_unused=True)
    return loss, torch.zeros_like(x) if grad is None else grad


def cases_of(rng, make_loss, variants, differs=lambda batch_id: None):
    """A case per batch and variant; ``variants`` maps an id suffix to ``(tfdml params, PML params)``."""
    made = []
    for batch_id, (embeddings, labels) in batches(rng).items():
        for suffix, (params, pml) in variants.items():
            loss, grad = pml_value_and_gradient(make_loss(**pml), embeddings, labels)
            case = {
                "id": f"{batch_id}{suffix}",
                "inputs": {"embeddings": embeddings, "labels": labels},
                "params": params,
                "pml": {key: value for key, value in pml.items() if key != "reducer"},
                "loss": loss,
                "grad": grad,
            }
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
        },
    )


CASES = {"CircleLoss": circle, "SupConLoss": supcon, "NTXentLoss": ntxent}
