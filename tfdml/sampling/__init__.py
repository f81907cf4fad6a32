"""Batch samplers: label arrays in, ``tf.data`` batches with the class structure a DML loss needs.

Label samplers (plan whole epochs from labels):
``SPCSampler`` (SPC-n / m-per-class), ``SPCRandomSampler`` (SPC-R),
``RandomClassSampler`` (FastAP "random"), ``CategoryHardSampler`` and
``CategoryVersusUncategorisedSampler`` (FastAP "hard").
Embedded samplers (read a ``MemoryBank`` kept current by ``MemoryBankRefresh``):
``CoresetSampler``, ``DDMSampler``, ``FRDSampler``.
Multi-label (multi-hot label sets): ``SharedLabelSampler`` (labels, then images carrying them).
Self-supervised: ``ViewsSampler`` (each image's augmented views share its pseudo-class).
``batches`` turns a sampler and a ``LabelledImages`` into ``(images, labels)`` batches.
"""

from tfdml.sampling.base import BatchSampler
from tfdml.sampling.batch_matching import (
    CoresetSampler,
    DDMSampler,
    FRDSampler,
    distance_histogram_wasserstein,
    frechet_distance,
    greedy_coreset,
)
from tfdml.sampling.category_hard import CategoryHardSampler, CategoryVersusUncategorisedSampler
from tfdml.sampling.memory_bank import MemoryBank, MemoryBankRefresh
from tfdml.sampling.pipeline import batches, indexed_batches
from tfdml.sampling.random_class import RandomClassSampler
from tfdml.sampling.spc import SPCSampler
from tfdml.sampling.shared_labels import SharedLabelSampler
from tfdml.sampling.spc_random import SPCRandomSampler
from tfdml.sampling.views import ViewsSampler

__all__ = [
    "BatchSampler",
    "CategoryHardSampler",
    "CategoryVersusUncategorisedSampler",
    "CoresetSampler",
    "DDMSampler",
    "FRDSampler",
    "MemoryBank",
    "MemoryBankRefresh",
    "RandomClassSampler",
    "SPCRandomSampler",
    "SPCSampler",
    "SharedLabelSampler",
    "ViewsSampler",
    "batches",
    "distance_histogram_wasserstein",
    "frechet_distance",
    "greedy_coreset",
    "indexed_batches",
]
