"""Training: ``MetricLearningModel`` (what ``model.fit`` trains), recipes, and the runner behind ``train.py``."""

from tfdml.training.model import MetricLearningModel, gather_global_batch

__all__ = ["MetricLearningModel", "gather_global_batch"]
