"""Keras losses for deep metric learning: ``loss(y_true=int labels, y_pred=embeddings)``."""

from tfdml.losses.base import DMLLoss, LossParameters, ParametricDMLLoss
