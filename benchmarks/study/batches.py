"""What a sampler's batches hold, measured from its plan without training (FastAP's category-hard claim).

With few categories every random batch already mixes classes of one category, so "category-hard"
batches only differ from random ones where these numbers differ.
"""

import numpy as np


def batch_composition(sampler, categories, epochs=3):
    """Mean categories and classes per batch, and the share of different-class pairs in a batch whose
    classes share a category (its category-hard negatives), over the first ``epochs`` of the plan.
    ``categories`` are those of the sampler's data (``None``: the data has none, and neither has this).

    >>> batch_composition(CategoryHardSampler(labels, categories, batch_size=128), categories)
    {"categories_per_batch": 2.0, "classes_per_batch": 12.9, "same_category_negatives": 0.46}
    """
    if categories is None:
        return None
    batches = np.concatenate([sampler.plan_epoch(epoch) for epoch in range(epochs)])
    labels, categories = sampler.labels[batches], np.asarray(categories)[batches]
    other_class = labels[:, :, None] != labels[:, None, :]
    same_category = categories[:, :, None] == categories[:, None, :]
    shares = (other_class & same_category).sum(axis=(1, 2)) / np.maximum(other_class.sum(axis=(1, 2)), 1)
    return {
        "categories_per_batch": float(np.mean([len(np.unique(row)) for row in categories])),
        "classes_per_batch": float(np.mean([len(np.unique(row)) for row in labels])),
        "same_category_negatives": float(shares.mean()),
    }
