"""Input-pipeline throughput: tfdml readers + augmentation vs plain tf.data decoding of the same files.

Each case builds a ``tf.data.Dataset`` over one group of images; the script drains
it once to warm up, then times ``--trials`` more passes and keeps the fastest (the
machine may be shared), reporting decoded (and augmented) images per second and
CPU milliseconds per image (all threads; less sensitive to other load).

Per group, two plain ``tf.data`` references (parallel map, AUTOTUNE, prefetch, no
sampling) decode the same encoded images: ``decode`` only, and ``decode+resize``
(decode, bilinear resize to the training size, batch: the least work any training
pipeline does). Each tfdml row reports its wall-clock ratio to ``decode`` and its
CPU-bound ratio (reference CPU time per image / this row's) to both references:
when the pipeline saturates the CPUs, throughput is inversely proportional to CPU
time per image, and that ratio does not move when other processes share the
machine. The target is >= 0.90 of ``decode``. Other modules add rows by appending
``Case``s to ``CASES`` (e.g. sampler-only throughput).

Usage: python -m benchmarks.pipeline [--images 400] [--trials 3] [--omniglot DIR (default: the zips shipped with tfdml)]
"""

import argparse
import dataclasses
import io
import os
import pathlib
import tempfile
import time
from typing import Callable, Optional

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import PIL.Image
import tensorflow as tf

from tfdml import data

BATCH_SIZE = 64
TARGET_RATIO = 0.90
REFERENCES = ("decode", "decode+resize")


@dataclasses.dataclass
class Case:
    """One row: ``make(context)`` returns the dataset to drain.

    ``group`` names the images it reads; ``reference`` marks the group's plain
    ``tf.data`` rows (one of ``REFERENCES``), which the other rows are compared with.
    """

    group: str
    name: str
    make: Callable[[dict], tf.data.Dataset]
    reference: Optional[str] = None


CASES = []


def case(group, name, reference=None):
    def register(make):
        CASES.append(Case(group, name, make, reference))
        return make

    return register


def _plain(sources, from_files, channels, resize_to=None):
    """A plain pipeline: decode every encoded image once (and resize and batch if ``resize_to``)."""

    def decode(source):
        encoded = tf.io.read_file(source) if from_files else source
        image = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
        return image if resize_to is None else tf.image.resize(image, [resize_to, resize_to])

    images = tf.data.Dataset.from_tensor_slices(sources).map(decode, num_parallel_calls=tf.data.AUTOTUNE)
    if resize_to is not None:
        images = images.batch(BATCH_SIZE)
    return images.prefetch(tf.data.AUTOTUNE)


@case("jpeg 500x375", "plain tf.data: decode", reference="decode")
def _jpeg_decode(context):
    return _plain(context["jpeg_paths"], from_files=True, channels=3)


@case("jpeg 500x375", "plain tf.data: decode, resize 224, batch", reference="decode+resize")
def _jpeg_decode_resize(context):
    return _plain(context["jpeg_paths"], from_files=True, channels=3, resize_to=224)


def _folder_batches(context, protocol, cache=False):
    folder = data.image_folder(context["jpeg_root"], validate="none")
    augmentation = data.Augmentation(protocol, seed=0)
    return folder.dataset(batch_size=BATCH_SIZE, shuffle=augmentation.is_random, seed=0, cache=cache,
                          augmentation=augmentation)


@case("jpeg 500x375", "image_folder + base 224, shuffled batches")
def _jpeg_base(context):
    return _folder_batches(context, "base")


@case("jpeg 500x375", "image_folder + red 224, shuffled batches")
def _jpeg_red(context):
    return _folder_batches(context, "red")


@case("jpeg 500x375", "image_folder + eval 224, batches")
def _jpeg_eval(context):
    return _folder_batches(context, "eval")


@case("jpeg 500x375", "image_folder + base 224, shuffled batches, cache=True")
def _jpeg_base_cached(context):
    return _folder_batches(context, "base", cache=True)


@case("omniglot png", "plain tf.data: decode", reference="decode")
def _omniglot_decode(context):
    return _plain(context["omniglot_png"], from_files=False, channels=1)


@case("omniglot png", "plain tf.data: decode, resize 28, batch", reference="decode+resize")
def _omniglot_decode_resize(context):
    return _plain(context["omniglot_png"], from_files=False, channels=1, resize_to=28)


def _omniglot_batches(context, cache=False):
    # 105×105 images: the augmentation's crop-and-resize is the only resize.
    every = data.omniglot(context["omniglot_root"], split="all", validate="none")
    return every.dataset(batch_size=BATCH_SIZE, shuffle=True, seed=0, cache=cache,
                         augmentation=data.Augmentation("base", size=28, seed=0))


@case("omniglot png", "omniglot + base 28, shuffled batches")
def _omniglot_base(context):
    return _omniglot_batches(context)


@case("omniglot png", "omniglot + base 28, shuffled batches, cache=True")
def _omniglot_base_cached(context):
    return _omniglot_batches(context, cache=True)


def _count_images(count, element):
    image = element[0] if isinstance(element, tuple) else element
    return count + (tf.shape(image, out_type=tf.int64)[0] if image.shape.rank == 4 else 1)


def throughput(dataset, trials):
    """``(images per second, CPU ms per image)`` of the fastest of ``trials`` passes after a warm-up pass.

    The pass runs inside tf.data (``reduce``), so Python iteration costs nothing.
    """
    dataset.reduce(np.int64(0), _count_images)
    best_wall, best_cpu, count = float("inf"), float("inf"), 0
    for _ in range(trials):
        wall, cpu = time.perf_counter(), time.process_time()
        count = int(dataset.reduce(np.int64(0), _count_images))
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return count / best_wall, 1000 * best_cpu / count


def _write_jpegs(root, count):
    """CUB-sized (500×375) smooth random JPEGs in 20 class folders."""
    rng = np.random.default_rng(0)
    paths = []
    for index in range(count):
        class_dir = root / f"class{index % 20:02d}"
        class_dir.mkdir(exist_ok=True)
        coarse = rng.integers(0, 256, size=(12, 16, 3)).astype(np.uint8)
        image = PIL.Image.fromarray(coarse).resize((500, 375), PIL.Image.BILINEAR)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        path = class_dir / f"{index:05d}.jpg"
        path.write_bytes(buffer.getvalue())
        paths.append(str(path))
    return paths


def _omniglot_png(root):
    collection = data.omniglot(root, split="all", validate="none")
    encoded = [
        tf.io.encode_png(255 - collection.load(tf.constant(i, tf.int64))).numpy() for i in range(len(collection))
    ]
    return encoded


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400, help="synthetic JPEGs to write")
    parser.add_argument("--trials", type=int, default=3, help="timed passes per case (the fastest counts)")
    parser.add_argument("--omniglot", default=str(pathlib.Path(__file__).resolve().parents[1] / "tfdml/data/omniglot_background_small"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        context = {"jpeg_root": pathlib.Path(scratch), "jpeg_paths": _write_jpegs(pathlib.Path(scratch), args.images)}
        have_omniglot = (pathlib.Path(args.omniglot) / "images_background_small1.zip").exists()
        if have_omniglot:
            context["omniglot_root"] = args.omniglot
            context["omniglot_png"] = _omniglot_png(args.omniglot)
        print(f"{os.cpu_count()} CPUs; target: tfdml rows >= {TARGET_RATIO:.2f} x plain decode")
        print(f"{'group':<13} {'case':<64} {'images/s':>9} {'CPU ms/img':>10} {'wall vs decode':>14} "
              f"{'CPU-bound vs decode':>19} {'CPU-bound vs dec+resize':>23}")
        references = {}
        for row in CASES:
            if row.group.startswith("omniglot") and not have_omniglot:
                print(f"{row.group:<13} {row.name:<64} skipped: no Omniglot zips at {args.omniglot}")
                continue
            rate, cpu_ms = throughput(row.make(context), args.trials)
            if row.reference is not None:
                references[row.group, row.reference] = rate, cpu_ms
                print(f"{row.group:<13} {row.name:<64} {rate:>9.0f} {cpu_ms:>10.2f}")
                continue
            ratios = ["", "", ""]
            if (row.group, "decode") in references:
                decode_rate, decode_cpu = references[row.group, "decode"]
                ratios[:2] = f"{rate / decode_rate:.2f}", f"{decode_cpu / cpu_ms:.2f}"
            if (row.group, "decode+resize") in references:
                ratios[2] = f"{references[row.group, 'decode+resize'][1] / cpu_ms:.2f}"
            verdict = "" if not ratios[1] else ("ok" if float(ratios[1]) >= TARGET_RATIO else "below target")
            print(f"{row.group:<13} {row.name:<64} {rate:>9.0f} {cpu_ms:>10.2f} {ratios[0]:>14} {ratios[1]:>19} "
                  f"{ratios[2]:>23}  {verdict}")


if __name__ == "__main__":
    main()
