"""``tf.distribute`` for a recipe run: the strategy, which worker is the chief, per-replica input."""

import json
import os

import tensorflow as tf

from tfdml.training.config import ConfigError


def make_strategy(name):
    """The recipe's ``distribute.strategy``; create it before any other TF work (collectives need that).

    ``multi_worker`` needs ``TF_CONFIG`` to describe a cluster of two or more workers: with one
    worker (or no ``TF_CONFIG``) Keras logs the loss with a shape that its TensorBoard callback
    rejects after the first step, so that is refused up front; one machine takes ``mirrored``.
    """
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        check_cluster(os.environ.get("TF_CONFIG"))
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def check_cluster(tf_config):
    """Raise a :class:`ConfigError` unless ``tf_config`` (``TF_CONFIG``'s value) names two or more workers."""
    try:
        cluster = json.loads(tf_config or "{}").get("cluster", {})
        workers = len(cluster.get("chief", [])) + len(cluster.get("worker", []))
    except (ValueError, AttributeError, TypeError):
        workers = 0
    if workers < 2:
        found = "is not set" if not tf_config else f"is {tf_config[:200]!r}"
        raise ConfigError(
            "distribute.strategy='multi_worker' needs the TF_CONFIG environment variable to describe a cluster of "
            f"two or more workers and this process's task; TF_CONFIG {found}. On one machine use 'mirrored' "
            "(all its GPUs) or 'none'."
        )


def is_chief(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (resolver.task_type == "worker" and resolver.task_id == 0)


def distribute_batches(strategy, batches, global_batch_size):
    """Give each replica its consecutive slice of every global batch (replica order = all-gather order).

    Samplers build whole global batches (the class structure is a property of the global
    batch), so every input pipeline builds the same global batches from the same seed and
    keeps its own part; ``all_gather`` in the loss reassembles the batch in order.
    """
    if strategy.num_replicas_in_sync == 1:
        return batches

    def pipeline(context):
        per_pipeline = global_batch_size // context.num_input_pipelines
        start = context.input_pipeline_id * per_pipeline
        sliced = batches.map(lambda images, labels: (images[start : start + per_pipeline], labels[start : start + per_pipeline]))
        return sliced.unbatch().batch(context.get_per_replica_batch_size(global_batch_size), drop_remainder=True)

    if global_batch_size % strategy.num_replicas_in_sync:
        raise ConfigError(
            f"sampler.batch_size={global_batch_size} must be divisible by the {strategy.num_replicas_in_sync} replicas."
        )
    return strategy.distribute_datasets_from_function(pipeline)
