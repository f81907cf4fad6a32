"""PML parity cases of the losses with learned class vectors: Proxy-Anchor and CosFace.

Each case builds PML's loss (whose initialiser draws the class vectors from torch's seeded
generator), stores those initial vectors in ``inputs`` in tfdml's layout ``(num_classes, d)``
(PML's CosFace keeps ``W`` as ``(d, num_classes)``: stored transposed), and records PML's
loss and its gradient with respect to the embeddings, in float64.
"""

from benchmarks.pml_parity import batch, degenerate_batches

NUM_CLASSES = 10


def _batches(rng):
    """``(id, embeddings, labels)``: random batches of 32 at d = 8 and 64, then the degenerate ones at d = 8."""
    made = []
    for dim in (8, 64):
        embeddings, labels = batch(rng, 32, dim, NUM_CLASSES)
        made.append((f"b32_d{dim}", embeddings, labels))
    made += [(kind, *pair) for kind, pair in degenerate_batches(rng, 8).items()]
    return made


def _cases(rng, make_loss, class_vectors, vectors_name, variants):
    """A case per batch and hyperparameter variant; ``variants`` maps an id suffix to tfdml's (= PML's) arguments."""
    import torch

    cases = []
    for batch_id, embeddings, labels in _batches(rng):
        for suffix, params in variants.items():
            loss_fn = make_loss(embeddings.shape[1], params)
            x = torch.tensor(embeddings, requires_grad=True)
            loss = loss_fn(x, torch.tensor(labels))
            (grad,) = torch.autograd.grad(loss, x)
            cases.append(
                {
                    "id": f"{batch_id}{suffix}",
                    "inputs": {"embeddings": embeddings, "labels": labels, vectors_name: class_vectors(loss_fn)},
                    "params": params,
                    "loss": loss,
                    "grad": grad,
                }
            )
    return cases


def proxy_anchor(rng):
    from pytorch_metric_learning.losses import ProxyAnchorLoss

    return _cases(
        rng,
        lambda dim, params: ProxyAnchorLoss(NUM_CLASSES, dim, **params),
        lambda loss_fn: loss_fn.proxies,
        "proxies",
        {"": {"margin": 0.1, "alpha": 32.0}, "_a16_m02": {"margin": 0.2, "alpha": 16.0}},
    )


def cosface(rng):
    from pytorch_metric_learning.losses import CosFaceLoss

    return _cases(
        rng,
        lambda dim, params: CosFaceLoss(NUM_CLASSES, dim, **params),
        lambda loss_fn: loss_fn.W.T,
        "centers",
        {"": {"margin": 0.35, "scale": 64.0}, "_s16_m02": {"margin": 0.2, "scale": 16.0}},
    )


CASES = {"ProxyAnchorLoss": proxy_anchor, "CosFaceLoss": cosface}
