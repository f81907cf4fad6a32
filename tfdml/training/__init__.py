"""Training: the ``MetricLearningModel`` wrapper that ``model.fit`` trains."""

from tfdml.training.model import MetricLearningModel, gather_global_batch
