"""One training step of two recipes, split into input pipeline, backbone forward/backward and mining + loss.

Recipes (batch 64, CPU):

- ``omniglot``: ``pipelines/omniglot_margin.yaml`` as it is: Conv-4 at 28 px, margin loss
  with distance-weighted negatives, SPC-4 batches of 64. Real Omniglot when
  ``--omniglot`` holds the zips, otherwise synthetic 28 px images.
- ``resnet50``: ``pipelines/roth_cub200_margin_b12.yaml`` (ResNet-50 at 224 px, BatchNorm
  frozen, margin loss with learnable per-class β, distance-weighted negatives, "base"
  augmentation) with ``weights=None`` and ``sampler.batch_size=64``, on synthetic
  256 px images held in memory (no CUB200 here).

Parts, each timed on its own (median of ``--repeats`` after warm-up):

- sampler: planning index batches (``sampler.index_dataset``), per batch;
- input pipeline: the recipe's ``tf.data`` batches (sampler, load, preprocess), per batch;
- backbone: embedding model forward + backward (given the loss's gradient) + optimizer update;
- mining + loss: the recipe's loss and miner, forward + backward w.r.t. the embeddings
  (and the loss's β), ``tf.function`` as in training;
- train step: ``MetricLearningModel.train_on_batch`` (backbone + mining + loss + updates),
  a check that the parts add up.

The DML share is (sampler + mining + loss) / (input pipeline + backbone + mining + loss),
i.e. with the input pipeline serial to the step (``tf.data`` overlaps it in training, so
the real share is at most this). Target: <= 10 % for both recipes.

Usage: python -m benchmarks.train_step [--recipes omniglot resnet50] [--repeats 3] [--omniglot DIR (default: the zips shipped with tfdml)]
"""

import argparse
import os
import pathlib
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf

from benchmarks.timing import loss_and_gradient, run_times
from tfdml import data as tfdml_data
from tfdml import sampling
from tfdml.training import MetricLearningModel
from tfdml.training.config import load_config
from tfdml.training.factory import build_embedder, build_loss, build_optimizer, build_sampler
from tfdml.experiment import load_split

REPO = pathlib.Path(__file__).resolve().parents[1]
BATCH_SIZE = 64
TARGET_SHARE = 0.10


def synthetic_images(num_classes, per_class, size, channels, seed=0):
    """In-memory ``LabelledImages`` of uniform-noise uint8 images, ``per_class`` per class."""
    rng = np.random.default_rng(seed)
    images = tf.constant(rng.integers(0, 256, size=(num_classes * per_class, size, size, channels), dtype=np.uint8))
    labels = np.repeat(np.arange(num_classes, dtype=np.int64), per_class)
    return tfdml_data.LabelledImages(name="synthetic", labels=labels, load=lambda index: tf.gather(images, index))


def recipe(name, omniglot_dir):
    """``(config, train data, description)`` of recipe ``name``."""
    if name == "omniglot":
        config = load_config(str(REPO / "pipelines" / "omniglot_margin.yaml"))
        config["data"]["root"] = str(omniglot_dir)
        if (pathlib.Path(omniglot_dir) / "images_background_small1.zip").exists():
            return config, load_split(config, config["data"]["train_split"]), "Omniglot train split"
        return config, synthetic_images(200, 20, 28, 1), "synthetic 28 px (Omniglot zips absent)"
    config = load_config(
        str(REPO / "pipelines" / "roth_cub200_margin_b12.yaml"),
        ["model.weights=null", f"sampler.batch_size={BATCH_SIZE}"],
    )
    return config, synthetic_images(64, 4, 256, 3), "synthetic 256 px in memory (no CUB200)"


def per_batch_seconds(dataset, num_batches):
    """Seconds per batch to draw ``num_batches`` from a fresh iterator of ``dataset`` after one warm-up batch."""
    iterator = iter(dataset)
    next(iterator)
    start = time.perf_counter()
    for _ in range(num_batches):
        next(iterator)
    return (time.perf_counter() - start) / num_batches


def time_recipe(name, omniglot_dir, repeats):
    config, train, description = recipe(name, omniglot_dir)
    sampler = build_sampler(config, train)
    data_config = config["data"]
    preprocess = None
    if data_config["augmentation"]:
        preprocess = tfdml_data.augmentation(data_config["augmentation"], size=data_config["image_size"], seed=0)
    batches = sampling.batches(train, sampler, preprocess=preprocess)
    images, labels = next(iter(batches))
    embedder = build_embedder(config, tuple(images.shape[1:]))
    loss = build_loss(config, num_classes=int(train.labels.max()) + 1, num_images=len(train))
    model = MetricLearningModel(embedder, loss)
    model.compile(optimizer=build_optimizer(config))
    loss_variables = list(getattr(loss, "trainable_variables", []))

    optimizer = build_optimizer(config)
    optimizer.build(embedder.trainable_variables)

    @tf.function
    def backbone_step(images, upstream):
        with tf.GradientTape() as tape:
            embeddings = embedder(images, training=True)
        gradients = tape.gradient(embeddings, embedder.trainable_variables, output_gradients=upstream)
        optimizer.apply_gradients(zip(gradients, embedder.trainable_variables))
        return embeddings

    embeddings = embedder(images, training=False)
    value_and_gradient = loss_and_gradient(loss, variables=loss_variables)
    gradient = value_and_gradient(labels, embeddings)[1]
    upstream = tf.convert_to_tensor(gradient[0] if loss_variables else gradient)

    def median(run):
        return float(np.median(run_times(run, repeats, warmup=1)))

    num_batches = max(2, min(sampler.batches_per_epoch, 3 * repeats))
    times = {
        "sampler": per_batch_seconds(sampler.index_dataset(), max(num_batches, sampler.batches_per_epoch)),
        "input pipeline": per_batch_seconds(batches, num_batches),
        "backbone fwd+bwd": median(lambda: backbone_step(images, upstream).numpy()),
        "mining + loss": median(lambda: tf.nest.map_structure(np.asarray, value_and_gradient(labels, embeddings))),
        "train step (train_on_batch)": median(lambda: model.train_on_batch(images, labels)),
    }
    return config, description, images.shape, times


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", nargs="+", default=["omniglot", "resnet50"], choices=["omniglot", "resnet50"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--omniglot", default=str(REPO / "tfdml" / "data" / "omniglot_background_small"))
    args = parser.parse_args()
    print(f"# {os.cpu_count()} CPU threads, median of {args.repeats} steps; ms per batch of {BATCH_SIZE}")
    for name in args.recipes:
        config, description, shape, times = time_recipe(name, args.omniglot, args.repeats)
        print(
            f"\n{name}: {config['model']['backbone']} {tuple(shape[1:])}, {config['loss']['class']} + "
            f"{config['miner']['class']}, {config['sampler']['class']} b={config['sampler']['batch_size']}; "
            f"data: {description}"
        )
        for part, seconds in times.items():
            print(f"  {part:30s} {1000 * seconds:10.1f} ms")
        dml = times["sampler"] + times["mining + loss"]
        step = times["input pipeline"] + times["backbone fwd+bwd"] + times["mining + loss"]
        share = dml / step
        print(
            f"  DML share (sampler + mining + loss) / (input + backbone + mining + loss): {100 * share:.2f} %"
            f" (target <= {100 * TARGET_SHARE:.0f} %: {'met' if share <= TARGET_SHARE else 'NOT met'})"
        )
        print(
            f"  vs input pipeline + train_on_batch: "
            f"{100 * dml / (times['input pipeline'] + times['train step (train_on_batch)']):.2f} %"
        )


if __name__ == "__main__":
    main()
