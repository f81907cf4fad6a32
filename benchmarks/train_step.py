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

Backbones (``--backbones``): images per second of the whole training step of the ``resnet50`` recipe
(synthetic 256 px images → "base" augmentation → backbone → margin loss with distance-weighted
negatives → update) with its backbone replaced, random weights, for every ``--xla`` × ``--precision``
combination: XLA off/on (Keras ``jit_compile``) and float32/mixed (``mixed_float16`` on a GPU,
``mixed_bfloat16`` on a CPU). A backbone is a ``keras.applications`` name, a ``hub:`` KerasHub backbone, or
``vit_s16`` (KerasHub ``ViTBackbone`` in the ViT-S/16 configuration, class-token pooling). "step" is
``train_on_batch`` on batches drawn from the recipe's ``tf.data`` pipeline (input pipeline included),
"input" the pipeline alone. On the first lent GPU::

    python -m benchmarks.train_step --backbones EfficientNetV2B0 ConvNeXtTiny MobileNetV3Small ResNet50V2 vit_s16

CPU smoke run: ``--backbones MobileNetV3Small --image-size 32 --batch-size 16 --repeats 1``.
"""

import argparse
import itertools
import os
import pathlib
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf

from benchmarks.timing import loss_and_gradient, run_times
from tfdml import data as tfdml_data
from tfdml import sampling
from tfdml.training import MetricLearningModel
from tfdml.training.model import resolve_jit_compile
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
    model.compile(optimizer=build_optimizer(config, steps_per_epoch=sampler.batches_per_epoch, model=embedder))
    loss_variables = list(getattr(loss, "trainable_variables", []))

    optimizer = build_optimizer(config, steps_per_epoch=sampler.batches_per_epoch, model=embedder)
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


# Short names for backbones given by class and config: (model.backbone, model.backbone_config, model.pooling).
# ViT-S/16: Touvron et al. 2021 (DeiT-S), the ViT of DINO and of open-metric-learning's zoo.
NAMED_BACKBONES = {
    "vit_s16": ("hub:ViTBackbone", {"patch_size": 16, "num_layers": 12, "num_heads": 6, "hidden_dim": 384,
                                    "mlp_dim": 1536}, "cls"),
}
PRECISIONS = {"float32": "float32", "mixed": None}  # mixed: float16 on a GPU, bfloat16 on a CPU


def mixed_policy():
    return "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"


def backbone_config(backbone, image_size, batch_size):
    """The ``resnet50`` recipe with ``backbone`` (a name of :data:`NAMED_BACKBONES` or any ``model.backbone``),
    random weights, ``image_size`` px crops of ``image_size × 8/7`` px images and batches of ``batch_size``."""
    name, options, pooling = NAMED_BACKBONES.get(backbone, (backbone, {}, "avg"))
    overrides = [
        f"model.backbone={name}", f"model.pooling={pooling}", "model.weights=null",
        f"data.image_size={image_size}", f"sampler.batch_size={batch_size}",
    ]
    config = load_config(str(REPO / "pipelines" / "roth_cub200_margin_b12.yaml"), overrides)
    config["model"]["backbone_config"] = options
    stored = round(image_size * 256 / 224)
    return config, synthetic_images(batch_size, 4, stored, 3)


def time_backbone(backbone, xla, precision, image_size, batch_size, repeats):
    """``(images/s of the training step, images/s of the input pipeline alone)``."""
    keras.mixed_precision.set_global_policy(PRECISIONS[precision] or mixed_policy())
    try:
        config, train = backbone_config(backbone, image_size, batch_size)
        sampler = build_sampler(config, train)
        size = config["data"]["image_size"]
        batches = sampling.batches(train, sampler, preprocess=tfdml_data.augmentation("base", size=size, seed=0))
        embedder = build_embedder(config, (size, size, 3))
        loss = build_loss(config, num_classes=int(train.labels.max()) + 1, num_images=len(train))
        model = MetricLearningModel(embedder, loss)
        model.compile(optimizer=build_optimizer(config, steps_per_epoch=sampler.batches_per_epoch, model=embedder),
                      jit_compile=resolve_jit_compile("true" if xla == "on" else "false"))
        iterator = iter(batches.repeat())
        step = median_seconds(lambda: model.train_on_batch(*next(iterator)), repeats)
        input_only = per_batch_seconds(batches.repeat(), max(2, repeats))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return batch_size / step, batch_size / input_only


def median_seconds(run, repeats):
    return float(np.median(run_times(run, repeats, warmup=2)))


def backbone_table(args):
    device = "GPU" if tf.config.list_physical_devices("GPU") else f"CPU ({os.cpu_count()} threads)"
    print(f"# {device}; {args.image_size} px, batch {args.batch_size}, median of {args.repeats} steps after 2 warm-up; "
          f"margin + distance-weighted, random weights, synthetic images; mixed = {mixed_policy()}")
    print(f"| {'backbone':18s} | XLA | precision | step images/s | input pipeline images/s |")
    print("|---|---|---|---|---|")
    for backbone, xla, precision in itertools.product(args.backbones, args.xla, args.precision):
        step, input_only = time_backbone(backbone, xla, precision, args.image_size, args.batch_size, args.repeats)
        print(f"| {backbone:18s} | {xla:3s} | {precision:9s} | {step:13.1f} | {input_only:23.1f} |", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", nargs="+", default=["omniglot", "resnet50"], choices=["omniglot", "resnet50"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--omniglot", default=str(REPO / "tfdml" / "data" / "omniglot_background_small"))
    parser.add_argument("--backbones", nargs="+", help="time these backbones instead of --recipes (see above)")
    parser.add_argument("--xla", nargs="+", default=["off", "on"], choices=["off", "on"])
    parser.add_argument("--precision", nargs="+", default=["float32", "mixed"], choices=list(PRECISIONS))
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    args = parser.parse_args()
    if args.backbones:
        return backbone_table(args)
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
