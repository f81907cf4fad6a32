"""Keras losses for deep metric learning: ``loss(y_true=int labels, y_pred=embeddings)``.

Tuple losses take a miner (``TripletLoss(miner=tfdml.mining.SemiHardMiner())``); losses with
trainable parameters (``MarginLoss(learn_beta=True)``, the proxy losses) train through
``tfdml.training.MetricLearningModel``.

Each class wraps a function of explicit inputs, all in one argument order: first what says which
samples belong together (the labels ``(b,)``, or the tuples a miner chose: ``MaskedTriplets``,
``PairMasks``), then the embeddings ``(b, d)``, then further per-tuple or learned inputs (per-anchor
β, proxies, class centres), then the hyperparameters::

    triplet_loss(triplets, embeddings, margin=0.2)
    margin_loss(triplets, embeddings, anchor_betas, margin=0.2, nu=0.0)
    npair_loss(labels, embeddings, nu=0.005)
    proxy_nca_loss(labels, embeddings, proxies)
    contrastive_all_pairs(labels, embeddings, margin=1.0)   # every pair of the batch, no miner

Normalisation. Every function takes the embeddings as the model outputs them, normalised or not.
Those defined on the unit sphere (cosine similarities: angular, histogram, FastAP, Smooth-AP, multi-similarity,
SNR, circle, SupCon, NT-Xent, the proxy and class-centre losses) L2-normalise the embeddings (and proxies or centres)
themselves, with gradients through the normalisation; the others (contrastive, triplet, margin,
quadruplet, lifted structure, N-pair, NCA) use them as given, so their scale is the model's
(``normalize=True`` by default). A class that mines on normalised embeddings (SNR,
multi-similarity) hands its function the embeddings it received.

The all-pairs variants (``pairs="all"``) sit with their losses: :func:`contrastive_all_pairs`,
:func:`margin_loss_all_pairs`, :func:`multi_similarity_all_pairs`.
"""

from tfdml.losses.angular import AngularLoss, angular_loss
from tfdml.losses.arcface import ArcFaceLoss, arcface_loss
from tfdml.losses.base import DMLLoss, LossParameters, ParametricDMLLoss
from tfdml.losses.circle import CircleLoss, circle_loss
from tfdml.losses.contrastive import ContrastiveLoss, contrastive_all_pairs, contrastive_loss, contrastive_pair_loss
from tfdml.losses.contrastive_softmax import NTXentLoss, SupConLoss, ntxent_loss, supcon_loss
from tfdml.losses.cosface import CosFaceLoss, cosface_loss
from tfdml.losses.cross_batch_memory import CrossBatchMemory
from tfdml.losses.decoupled_contrastive import DecoupledContrastiveLoss, decoupled_contrastive_loss
from tfdml.losses.dynamic_arcface import DynamicArcFaceLoss, dynamic_arcface_loss, dynamic_arcface_margins
from tfdml.losses.fastap import FastAPLoss, fastap_loss, fastap_loss_autodiff
from tfdml.losses.histogram import HistogramLoss, histogram_loss
from tfdml.losses.instance import InstanceLoss, instance_loss
from tfdml.losses.large_margin_softmax import (
    LargeMarginSoftmaxLoss,
    SphereFaceLoss,
    large_margin_softmax_loss,
    sphereface_loss,
)
from tfdml.losses.lifted_structure import (
    GeneralizedLiftedStructureLoss,
    LiftedStructureLoss,
    generalized_lifted_structure_loss,
    lifted_structure_loss,
)
from tfdml.losses.margin import MarginLoss, margin_loss, margin_loss_all_pairs
from tfdml.losses.multi_label import MultiSupConLoss, multi_supcon_loss
from tfdml.losses.multi_similarity import MultiSimilarityLoss, multi_similarity_all_pairs, multi_similarity_loss
from tfdml.losses.nca import NCALoss, nca_loss
from tfdml.losses.normalized_softmax import NormalizedSoftmaxLoss, normalized_softmax_loss
from tfdml.losses.npair import NPairLoss, npair_loss
from tfdml.losses.pnp import PNPLoss, pnp_loss
from tfdml.losses.proxy_anchor import ProxyAnchorLoss, proxy_anchor_loss
from tfdml.losses.proxy_nca import ProxyNCALoss, proxy_nca_loss
from tfdml.losses.quadruplet import QuadrupletLoss, quadruplet_loss
from tfdml.losses.ranked_list import RankedListLoss, ranked_list_loss
from tfdml.losses.smooth_ap import SmoothAPLoss, smooth_ap_loss
from tfdml.losses.snr import SNRLoss, snr_loss
from tfdml.losses.soft_triple import SoftTripleLoss, soft_triple_loss
from tfdml.losses.subcenter_arcface import SubCenterArcFaceLoss, subcenter_arcface_loss, subcenter_arcface_outliers
from tfdml.losses.triplet import TripletLoss, triplet_loss
from tfdml.losses.tuplet_margin import (
    IntraPairVarianceLoss,
    TupletMarginLoss,
    intra_pair_variance_all_pairs,
    intra_pair_variance_loss,
    tuplet_margin_all_pairs,
    tuplet_margin_loss,
)
from tfdml.losses.vicreg import VICRegLoss, vicreg_loss

__all__ = [
    "AngularLoss",
    "ArcFaceLoss",
    "CircleLoss",
    "CrossBatchMemory",
    "ContrastiveLoss",
    "CosFaceLoss",
    "DMLLoss",
    "DecoupledContrastiveLoss",
    "DynamicArcFaceLoss",
    "FastAPLoss",
    "GeneralizedLiftedStructureLoss",
    "HistogramLoss",
    "InstanceLoss",
    "IntraPairVarianceLoss",
    "LargeMarginSoftmaxLoss",
    "LiftedStructureLoss",
    "LossParameters",
    "MarginLoss",
    "MultiSimilarityLoss",
    "MultiSupConLoss",
    "NCALoss",
    "NPairLoss",
    "NTXentLoss",
    "NormalizedSoftmaxLoss",
    "PNPLoss",
    "ParametricDMLLoss",
    "ProxyAnchorLoss",
    "ProxyNCALoss",
    "QuadrupletLoss",
    "RankedListLoss",
    "SNRLoss",
    "SmoothAPLoss",
    "SoftTripleLoss",
    "SphereFaceLoss",
    "SubCenterArcFaceLoss",
    "SupConLoss",
    "TripletLoss",
    "TupletMarginLoss",
    "VICRegLoss",
    "angular_loss",
    "arcface_loss",
    "circle_loss",
    "contrastive_all_pairs",
    "contrastive_loss",
    "contrastive_pair_loss",
    "cosface_loss",
    "decoupled_contrastive_loss",
    "dynamic_arcface_loss",
    "dynamic_arcface_margins",
    "fastap_loss",
    "fastap_loss_autodiff",
    "generalized_lifted_structure_loss",
    "histogram_loss",
    "instance_loss",
    "intra_pair_variance_all_pairs",
    "intra_pair_variance_loss",
    "large_margin_softmax_loss",
    "lifted_structure_loss",
    "margin_loss",
    "margin_loss_all_pairs",
    "multi_similarity_all_pairs",
    "multi_similarity_loss",
    "multi_supcon_loss",
    "nca_loss",
    "normalized_softmax_loss",
    "npair_loss",
    "ntxent_loss",
    "pnp_loss",
    "proxy_anchor_loss",
    "proxy_nca_loss",
    "quadruplet_loss",
    "ranked_list_loss",
    "smooth_ap_loss",
    "snr_loss",
    "soft_triple_loss",
    "sphereface_loss",
    "subcenter_arcface_loss",
    "subcenter_arcface_outliers",
    "supcon_loss",
    "triplet_loss",
    "tuplet_margin_all_pairs",
    "tuplet_margin_loss",
    "vicreg_loss",
]
