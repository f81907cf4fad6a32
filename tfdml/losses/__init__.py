"""Keras losses for deep metric learning: ``loss(y_true=int labels, y_pred=embeddings)``.

Tuple losses take a miner (``TripletLoss(miner=tfdml.mining.SemiHardMiner())``); losses with
trainable parameters (``MarginLoss(learn_beta=True)``, the proxy losses) train through
``tfdml.training.MetricLearningModel``.
"""

from tfdml.losses.angular import AngularLoss
from tfdml.losses.arcface import ArcFaceLoss
from tfdml.losses.base import DMLLoss, LossParameters, ParametricDMLLoss
from tfdml.losses.contrastive import ContrastiveLoss
from tfdml.losses.fastap import FastAPLoss, fastap_loss, fastap_loss_autodiff
from tfdml.losses.histogram import HistogramLoss
from tfdml.losses.lifted_structure import GeneralizedLiftedStructureLoss
from tfdml.losses.margin import MarginLoss
from tfdml.losses.multi_similarity import MultiSimilarityLoss
from tfdml.losses.normalized_softmax import NormalizedSoftmaxLoss
from tfdml.losses.npair import NPairLoss
from tfdml.losses.proxy_nca import ProxyNCALoss
from tfdml.losses.quadruplet import QuadrupletLoss
from tfdml.losses.snr import SNRLoss
from tfdml.losses.soft_triple import SoftTripleLoss
from tfdml.losses.triplet import TripletLoss

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
    "fastap_loss",
    "fastap_loss_autodiff",
]
