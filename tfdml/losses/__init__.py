"""Keras losses for deep metric learning: ``loss(y_true=int labels, y_pred=embeddings)``.

Tuple losses take a miner (``TripletLoss(miner=tfdml.mining.SemiHardMiner())``); losses with
trainable parameters (``MarginLoss(learn_beta=True)``, the proxy losses) train through
``tfdml.training.MetricLearningModel``. Each class wraps a function of explicit inputs
(``triplet_loss(embeddings, triplets, margin=0.2)``, ``npair_loss(labels, embeddings)``, ...).
"""

from tfdml.losses.angular import AngularLoss, angular_loss
from tfdml.losses.arcface import ArcFaceLoss, arcface_loss
from tfdml.losses.base import DMLLoss, LossParameters, ParametricDMLLoss
from tfdml.losses.contrastive import ContrastiveLoss, contrastive_loss
from tfdml.losses.fastap import FastAPLoss, fastap_loss, fastap_loss_autodiff
from tfdml.losses.histogram import HistogramLoss, histogram_loss
from tfdml.losses.lifted_structure import GeneralizedLiftedStructureLoss, generalized_lifted_structure_loss
from tfdml.losses.margin import MarginLoss, margin_loss
from tfdml.losses.multi_similarity import MultiSimilarityLoss, multi_similarity_loss
from tfdml.losses.normalized_softmax import NormalizedSoftmaxLoss, normalized_softmax_loss
from tfdml.losses.npair import NPairLoss, npair_loss
from tfdml.losses.proxy_nca import ProxyNCALoss, proxy_nca_loss
from tfdml.losses.quadruplet import QuadrupletLoss, quadruplet_loss
from tfdml.losses.snr import SNRLoss, snr_loss
from tfdml.losses.soft_triple import SoftTripleLoss, soft_triple_loss
from tfdml.losses.triplet import TripletLoss, triplet_loss

__all__ = [
    "AngularLoss",
    "ArcFaceLoss",
    "ContrastiveLoss",
    "DMLLoss",
    "FastAPLoss",
    "GeneralizedLiftedStructureLoss",
    "HistogramLoss",
    "LossParameters",
    "MarginLoss",
    "MultiSimilarityLoss",
    "NPairLoss",
    "NormalizedSoftmaxLoss",
    "ParametricDMLLoss",
    "ProxyNCALoss",
    "QuadrupletLoss",
    "SNRLoss",
    "SoftTripleLoss",
    "TripletLoss",
    "angular_loss",
    "arcface_loss",
    "contrastive_loss",
    "fastap_loss",
    "fastap_loss_autodiff",
    "generalized_lifted_structure_loss",
    "histogram_loss",
    "margin_loss",
    "multi_similarity_loss",
    "normalized_softmax_loss",
    "npair_loss",
    "proxy_nca_loss",
    "quadruplet_loss",
    "snr_loss",
    "soft_triple_loss",
    "triplet_loss",
]
