"""One command for a lent GPU: the numbers the README waits for, as a markdown table, in under 8 minutes on one H100.

Parts (each under its own time budget; a part that would overrun is skipped with a note):

1. **Omniglot recipe** (``pipelines/omniglot_margin.yaml``): two epochs through
   :meth:`tfdml.experiment.Experiment.fit` (validation, records, checkpoints, backup, TensorBoard) under
   ``jit_compile="auto"`` (XLA on a single GPU) and under ``MirroredStrategy`` over the visible GPUs:
   epoch 1 (with tracing) and epoch 2 in seconds, and epoch 2's images/s.
2. **Loss × miner** at b = 512, 2048 and 4096, without and with XLA: ``benchmarks.losses``' own tfdml
   worker (:func:`benchmarks.losses.tfdml_worker`, the same step and limit proxy) in this process.
3. **ResNet-50 training step** at 224 px with mixed precision (``mixed_float16`` on a GPU), random
   weights, synthetic images, XLA off and on: ``benchmarks.train_step.time_backbone``.
4. **Input pipeline**: JPEG decode + the ``"base"`` augmentation at 224 px of synthetic CUB-sized JPEGs
   written to a temporary folder (``benchmarks.pipeline``'s writer and throughput), in images/s.

Usage::

    python -m benchmarks.gpu_check [--output gpu_check.md]   # on the GPU machine: prints and writes the table
    python -m benchmarks.gpu_check --tiny                    # the same code paths at tiny sizes, on a CPU

``--tiny`` is what ``tests/test_gpu_check.py`` runs, so the script cannot rot between lent GPUs.
"""

import argparse
import contextlib
import dataclasses
import io
import json
import os
import pathlib
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import tensorflow as tf

REPO = pathlib.Path(__file__).resolve().parents[1]
LOSS_CASES = ("margin+distance-weighted", "triplet+semi-hard", "multi-similarity", "contrastive+distance-weighted",
              "contrastive+all-pairs", "supcon")


@dataclasses.dataclass
class Sizes:
    """What each part runs at; :data:`FULL` on the GPU, :data:`TINY` in the suite. Budgets are seconds."""

    omniglot_steps: int | None  # steps an epoch (None: the recipe's 34)
    loss_batches: tuple
    loss_cases: tuple
    loss_repeats: int
    backbone: str
    image_size: int
    backbone_batch: int
    backbone_repeats: int
    backbone_xla: tuple
    jpegs: int
    pipeline_trials: int
    budgets: dict


FULL = Sizes(None, (512, 2048, 4096), LOSS_CASES, 5, "ResNet50", 224, 128, 10, ("off", "on"), 512, 3,
             {"omniglot": 90, "losses": 180, "backbone": 150, "pipeline": 45})
# XLA is off only for the tiny backbone: compiling even MobileNetV3Small costs the suite seconds of CPU.
TINY = Sizes(1, (16,), LOSS_CASES[:1], 1, "MobileNetV3Small", 32, 4, 1, ("off",), 8, 1,
             {"omniglot": 600, "losses": 600, "backbone": 600, "pipeline": 600})


class Budget:
    """Seconds left to each part: a part runs only while its budget lasts."""

    def __init__(self, seconds):
        self.deadline = time.perf_counter() + seconds

    def left(self):
        return self.deadline - time.perf_counter()


def omniglot_epochs(sizes, strategy=None, jit_compile="auto"):
    """``{"epoch 1 s", "epoch 2 s", "images/s"}`` of two epochs of the Omniglot recipe through ``Experiment.fit``."""
    from tfdml.experiment import Experiment
    from tfdml.training.config import load_config
    from tfdml.training.run_folder import RunFolder

    overrides = ["epochs=2", f"jit_compile={jit_compile}", "evaluation.every_n_epochs=1", "evaluation.figures=false"]
    if sizes.omniglot_steps:
        overrides.append(f"steps_per_epoch={sizes.omniglot_steps}")
    config = load_config(str(REPO / "pipelines" / "omniglot_margin.yaml"), overrides)
    experiment = Experiment(config, strategy=strategy)
    ends = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            ends.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as scratch:
        folder = RunFolder(scratch)
        with folder.hold():
            folder.prepare(config)
            start = time.perf_counter()
            experiment.fit(folder, callbacks=[Clock()], verbose=0)
    second = ends[1] - ends[0]
    return {"epoch 1 s": ends[0] - start, "epoch 2 s": second,
            "images/s": experiment.steps_per_epoch * experiment.sampler.batch_size / second}


def loss_rows(sizes, budget):
    """``benchmarks.losses``' tfdml worker per batch size: one dict per (case, batch)."""
    from benchmarks import losses

    rows = []
    for batch_size in sizes.loss_batches:
        if budget.left() <= 0:
            rows.append({"case": "(the rest)", "batch": batch_size, "note": "skipped: over the part's budget"})
            continue
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            losses.tfdml_worker(batch_size, sizes.loss_repeats, sizes.loss_cases)
        lines = printed.getvalue().splitlines()
        rows += [{"batch": batch_size, **json.loads(line)} for line in lines if line.startswith("{")]
    return rows


def backbone_rows(sizes, budget):
    """Images/s of the ResNet-50 step (mixed precision) and its input pipeline, XLA off and on."""
    from benchmarks.train_step import time_backbone

    rows = []
    for xla in sizes.backbone_xla:
        if budget.left() <= 0:
            rows.append({"xla": xla, "note": "skipped: over the part's budget"})
            continue
        step, input_only = time_backbone(sizes.backbone, xla, "mixed", sizes.image_size, sizes.backbone_batch,
                                         sizes.backbone_repeats)
        rows.append({"xla": xla, "step images/s": step, "input images/s": input_only})
    return rows


def pipeline_rate(sizes):
    """Images/s of JPEG decode + "base" augmentation at 224 px (shuffled batches of 64)."""
    from benchmarks import pipeline

    with tempfile.TemporaryDirectory() as scratch:
        root = pathlib.Path(scratch)
        context = {"jpeg_root": root, "jpeg_paths": pipeline._write_jpegs(root, sizes.jpegs)}
        rate, cpu_ms = pipeline.throughput(pipeline._folder_batches(context, "base"), sizes.pipeline_trials)
    return {"images/s": rate, "CPU ms/image": cpu_ms}


def run(sizes, strategy=None):
    """Every part at ``sizes``; ``strategy``: the ``MirroredStrategy`` of part 1 (default: a new one over
    the visible GPUs). Returns ``{part: result}``; a part that failed holds its error."""
    results = {}

    def part(name, make):
        budget = Budget(sizes.budgets[name])
        start = time.perf_counter()
        try:
            results[name] = make(budget)
        except Exception as error:  # one part failing must not cost the others' numbers
            results[name] = {"error": f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"}
        print(f"# {name}: {time.perf_counter() - start:.0f} s", flush=True)

    def omniglot(budget):
        rows = {'jit_compile="auto"': omniglot_epochs(sizes)}
        if budget.left() > 0:
            rows["MirroredStrategy"] = omniglot_epochs(sizes, strategy=strategy or tf.distribute.MirroredStrategy())
        return rows

    part("omniglot", omniglot)
    part("losses", lambda budget: loss_rows(sizes, budget))
    part("backbone", lambda budget: backbone_rows(sizes, budget))
    part("pipeline", lambda budget: pipeline_rate(sizes))
    return results


def markdown(results, sizes):
    """The tables of :func:`run`'s ``results``."""
    gpus = tf.config.list_physical_devices("GPU")
    device = f"{len(gpus)} GPU(s)" if gpus else f"CPU only ({os.cpu_count()} threads)"
    lines = [f"# GPU check: {device}, TensorFlow {tf.__version__}, Keras {keras.__version__}", ""]

    def failed(name):
        if "error" in results.get(name, {}):
            lines.extend([f"{name}: failed: {results[name]['error']}", ""])
            return True
        return False

    lines += ["## Omniglot margin recipe (2 epochs through Experiment.fit)", "",
              "| run | epoch 1 s (tracing) | epoch 2 s | epoch 2 images/s |", "|---|---|---|---|"]
    if not failed("omniglot"):
        for name, row in results["omniglot"].items():
            lines.append(f"| {name} | {row['epoch 1 s']:.2f} | {row['epoch 2 s']:.2f} | {row['images/s']:.0f} |")
    lines += ["", "## Loss × miner, forward + backward, ms (median)", "",
              "| case | b | plain | XLA | XLA / plain | limit proxy (best) |", "|---|---|---|---|---|---|"]
    if not failed("losses"):
        for row in results["losses"]:
            if "note" in row:
                lines.append(f"| {row['case']} | {row['batch']} | {row['note']} | | | |")
                continue
            plain, xla = row.get("plain"), row.get("xla")
            cells = [f"{plain:.2f}" if plain else row.get("error", "failed"),
                     f"{xla:.2f}" if xla else "does not compile",
                     f"{xla / plain:.2f}" if plain and xla else "",
                     f"{min(row['proxy'], row['proxy_xla']):.2f}" if "proxy" in row else ""]
            lines.append(f"| {row['case']} | {row['batch']} | " + " | ".join(cells) + " |")
    lines += ["", f"## {sizes.backbone} training step, {sizes.image_size} px, batch {sizes.backbone_batch}, "
              "mixed precision, random weights", "", "| XLA | step images/s | input pipeline images/s |", "|---|---|---|"]
    if not failed("backbone"):
        for row in results["backbone"]:
            if "note" in row:
                lines.append(f"| {row['xla']} | {row['note']} | |")
            else:
                lines.append(f"| {row['xla']} | {row['step images/s']:.0f} | {row['input images/s']:.0f} |")
    lines += ["", f"## Input pipeline: JPEG decode + base augmentation at 224 px ({sizes.jpegs} 500×375 JPEGs)", "",
              "| images/s | CPU ms/image |", "|---|---|"]
    if not failed("pipeline"):
        lines.append(f"| {results['pipeline']['images/s']:.0f} | {results['pipeline']['CPU ms/image']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny sizes on a CPU (what the suite runs)")
    parser.add_argument("--output", default="gpu_check.md", help="where the markdown table goes")
    args = parser.parse_args(argv)
    sizes = TINY if args.tiny else FULL
    start = time.perf_counter()
    table = markdown(run(sizes), sizes)
    table += f"\n{time.perf_counter() - start:.0f} s in all.\n"
    print(table)
    pathlib.Path(args.output).write_text(table)
    print(f"Wrote {args.output}")


if __name__ == "__main__":
    main()
