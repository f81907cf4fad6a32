"""Served = evaluated: for every reader, the original files sent through an export's ``serving_bytes``
in a separate process of plain TensorFlow (tfdml never imported there) give the embeddings (≤ 1e-4),
Recall@1 and neighbour ids that ``train.py``'s in-process evaluation and ``tfdml.index`` give.

Each test builds the ``Experiment`` of a tiny recipe (no training: parity does not depend on the
weights), exports ``<name>`` and ``<name>-search`` as ``train.py`` does, and serves the test split.
One serving process answers every test of a pytest worker: TensorFlow's import is most of a start.
"""

import io
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tfdml import evaluation
from tfdml.index import GalleryIndex
from tfdml.training.config import load_config
from tfdml.experiment import Experiment
from tfdml.run import export_embedder, export_gallery_search

# Each test trains and exports a small model for the one serving process: the file's tests run together, early.
pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).resolve().parents[1]
TOLERANCE = 1e-4
# A plain-TensorFlow interpreter (no tfdml): reads one spec path per line and answers "served" once
# that spec's answers are written ("failed", with the traceback on its stderr, otherwise).
SERVE = """
import json, sys, traceback
import numpy as np
import tensorflow as tf

def serve(spec):
    files = tf.constant([open(path, "rb").read() for path in spec["files"]])
    embed = tf.saved_model.load(spec["embedding_model"]).signatures["serving_bytes"]
    out = {"embeddings": embed(image_bytes=files)["embeddings"]}
    search = tf.saved_model.load(spec["search_model"]).signatures["serving_bytes"](image_bytes=files)
    out.update({"search_" + key: value for key, value in search.items()})
    assert "tfdml" not in sys.modules
    np.savez(spec["out"], **{key: value.numpy() for key, value in out.items()})

for line in sys.stdin:
    try:
        serve(json.load(open(line.strip())))
        print("served", flush=True)
    except Exception:
        traceback.print_exc()
        sys.stderr.flush()
        print("failed", flush=True)
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The serving process, started once per worker; its stderr is kept for a failure's message."""
    folder = tmp_path_factory.mktemp("server")
    with open(folder / "stderr.txt", "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-c", SERVE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            cwd=folder,
            env={**os.environ, "PYTHONPATH": ""},
        )
        yield process, folder / "stderr.txt"
        process.stdin.close()
        process.wait(timeout=120)


def tiny_setup(tmp_path, name, overrides):
    config = load_config(
        None,
        [
            f"name={name}",
            f"export.dir={tmp_path / 'models'}",
            "export.gallery=test",
            "export.gallery_k=3",
            "model.filters=4",
            "model.blocks=2",
            "model.embedding_dim=8",
            "sampler.batch_size=4",
            "sampler.samples_per_class=2",
            *overrides,
        ],
    )
    return Experiment(config), config


def serve_original_files(tmp_path, server, setup, config):
    """Export both models and serve the test split's original files in the serving process; return its answers."""
    embedding_model = export_embedder(setup)
    search_model = export_gallery_search(setup)
    data = setup.test_data
    folder = tmp_path / "originals"
    folder.mkdir()
    files = []
    for index in range(len(data)):
        files.append(str(folder / f"{index}.bin"))
        with open(files[-1], "wb") as handle:
            handle.write(data.encoded(tf.constant(index, tf.int64)).numpy())
    spec = {
        "files": files,
        "embedding_model": embedding_model,
        "search_model": search_model,
        "out": str(tmp_path / "served.npz"),
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    process, stderr = server
    process.stdin.write(f"{tmp_path / 'spec.json'}\n")
    process.stdin.flush()
    assert process.stdout.readline() == "served\n", stderr.read_text()[-3000:]
    return dict(np.load(tmp_path / "served.npz"))


def assert_served_equals_evaluated(tmp_path, server, setup, config):
    evaluated = setup.embedder.predict(setup.test_images(), verbose=0)  # what train.py's evaluation embeds
    served = serve_original_files(tmp_path, server, setup, config)
    assert served["embeddings"].shape == evaluated.shape
    assert np.abs(served["embeddings"] - evaluated).max() <= TOLERANCE
    labels = setup.test_data.labels
    recall = [
        evaluation.evaluate(e, labels, metrics=["recall_at_k"], k=[1])["recall_at_1"]
        for e in (served["embeddings"], evaluated)
    ]
    assert recall[0] == recall[1]
    index = GalleryIndex(evaluated.shape[1])
    index.add(evaluated, ids=np.arange(len(labels)), labels=labels)
    expected = index.search(evaluated, 3)
    np.testing.assert_array_equal(served["search_ids"], expected.ids)
    np.testing.assert_array_equal(served["search_labels"], expected.labels)
    return served


def _encode(array, image_format):
    buffer = io.BytesIO()
    PIL.Image.fromarray(array).save(buffer, format=image_format)
    return buffer.getvalue()


def _write_images(root, classes, per_class, rng, formats=("PNG", "JPEG", "GIF", "BMP")):
    """``root/c<k>/<i>.<ext>``: RGB images of different sizes and formats; returns the paths in reader order."""
    paths = []
    for label in range(classes):
        (root / f"c{label}").mkdir(parents=True)
        for i in range(per_class):
            height, width = 14 + 3 * i, 18 + 2 * label
            base = rng.uniform(0, 255, size=(3, 3, 3))
            pixels = np.asarray(tf.image.resize(base[None], [height, width])[0] + rng.normal(0, 20, (height, width, 3)))
            image_format = formats[(label + i) % len(formats)]
            path = root / f"c{label}" / f"{i}.{image_format.lower()}"
            path.write_bytes(_encode(np.clip(pixels, 0, 255).astype(np.uint8), image_format))
            paths.append(path)
    return paths


def test_digits(tmp_path, server):
    setup, config = tiny_setup(tmp_path, "digits", ["data.name=digits", "data.image_size=16"])
    assert_served_equals_evaluated(tmp_path, server, setup, config)


def test_omniglot(tmp_path, omniglot_dir, server):
    setup, config = tiny_setup(
        tmp_path,
        "omniglot",
        ["data.name=omniglot", f"data.root={omniglot_dir}", "data.image_size=28", "data.params.validate=none"],
    )
    assert_served_equals_evaluated(tmp_path, server, setup, config)


def test_image_folder_of_mixed_formats_and_sizes(tmp_path, rng, server):
    paths = _write_images(tmp_path / "images", classes=6, per_class=3, rng=rng)
    setup, config = tiny_setup(
        tmp_path, "folder", ["data.name=folder", f"data.root={tmp_path / 'images'}", "data.image_size=12"]
    )
    test_paths = paths[9:]  # classes 3-5: the test half, in the reader's order
    encoded = [setup.test_data.encoded(tf.constant(i, tf.int64)).numpy() for i in range(9)]
    assert encoded == [p.read_bytes() for p in test_paths]
    assert_served_equals_evaluated(tmp_path, server, setup, config)


@pytest.mark.parametrize(
    "backbone",
    [
        # keras.applications (its preprocess_input as a layer) and a KerasHub ViT (its image converter, CLS pooling).
        ["model.backbone=MobileNet", "model.backbone_config={alpha: 0.25}"],
        ["model.backbone=hub:ViTBackbone", "model.pooling=cls",
         "model.backbone_config={patch_size: 8, num_layers: 1, num_heads: 2, hidden_dim: 8, mlp_dim: 16, "
         "image_converter: {scale: 0.00784313725490196, offset: -1.0}}"],
    ],
    ids=["keras_applications", "keras_hub"],
)
def test_pretrained_style_backbones_with_their_preprocessing(tmp_path, rng, server, backbone):
    if backbone[0].endswith("hub:ViTBackbone"):
        pytest.importorskip("keras_hub")
    _write_images(tmp_path / "images", classes=4, per_class=2, rng=rng)
    setup, config = tiny_setup(
        tmp_path, "pretrained", ["data.name=folder", f"data.root={tmp_path / 'images'}", "data.image_size=32", *backbone]
    )
    assert setup.embedder.input_shape[1:] == (32, 32, 3)
    assert_served_equals_evaluated(tmp_path, server, setup, config)


def test_list_file_with_an_augmentation_recipe_and_a_grayscale_model(tmp_path, rng, server):
    # RGB GIF/BMP/PNG/JPEG files, a 1-channel model: every format is converted the same way in both places.
    paths = _write_images(tmp_path / "images", classes=6, per_class=3, rng=rng)
    rows = [f"{path.relative_to(tmp_path / 'images')},{k // 3}" for k, path in enumerate(paths)]
    (tmp_path / "images" / "list.csv").write_text("\n".join(rows) + "\n")
    setup, config = tiny_setup(
        tmp_path,
        "list",
        [
            "data.name=list",
            f"data.root={tmp_path / 'images' / 'list.csv'}",
            "data.params.channels=1",
            "data.channels=1",
            "data.augmentation=base",
            "data.image_size=12",
        ],
    )
    assert setup.embedder.input_shape[1:] == (12, 12, 1)
    assert_served_equals_evaluated(tmp_path, server, setup, config)


def _mock_tfds(num_labels, per_label, rng, with_super_class=False):
    """TFDS ``as_dataset_fn`` yielding distinct JPEGs of different sizes, ``per_label`` per label."""
    labels = np.repeat(np.arange(num_labels, dtype=np.int64), per_label)
    jpegs = []
    for k in range(len(labels)):
        height, width = 12 + k % 5, 16 + k % 3
        base = rng.uniform(0, 255, size=(1, 2, 2, 3))
        jpegs.append(_encode(np.asarray(tf.image.resize(base, [height, width])[0]).astype(np.uint8), "JPEG"))

    def as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
        label_key = "class_id" if with_super_class else "label"
        examples = {"image": jpegs, label_key: labels}
        if with_super_class:
            examples["super_class_id"] = labels % 12
        return tf.data.Dataset.from_tensor_slices(examples)

    return as_dataset


# cars196 is read exactly as cub200 (a "label" feature and a first test label; its split: tests/data/test_data.py).
@pytest.mark.parametrize("name, classes", [("cub200", 200), ("sop", 24)])
def test_tfds_readers_on_mock_data(tmp_path, rng, name, classes, server):
    with tfds.testing.mock_data(as_dataset_fn=_mock_tfds(classes, 2, rng, with_super_class=name == "sop")):
        setup, config = tiny_setup(tmp_path, name, [f"data.name={name}", "data.image_size=12", "data.channels=3"])
    assert setup.embedder.input_shape[1:] == (12, 12, 3)
    assert_served_equals_evaluated(tmp_path, server, setup, config)


def test_a_folder_gallery_for_a_model_trained_on_a_3_channel_folder(tmp_path, rng):
    """The retrieval export's gallery folder is decoded with the model's channels (3 here, while
    ``data.channels`` keeps its default 1: this crashed before) and given the training data's eval
    preprocessing, as ``serving_bytes`` treats queries."""
    _write_images(tmp_path / "images", classes=6, per_class=3, rng=rng)
    _write_images(tmp_path / "gallery", classes=3, per_class=2, rng=rng)
    setup, config = tiny_setup(
        tmp_path, "folder", ["data.name=folder", f"data.root={tmp_path / 'images'}", "data.image_size=12",
                             f"export.gallery={tmp_path / 'gallery'}"]
    )
    assert config["data"]["channels"] == 1 and setup.embedder.input_shape[-1] == 3
    path = export_gallery_search(setup)
    gallery_files = [p.read_bytes() for p in sorted((tmp_path / "gallery").glob("*/*"))]
    served = tf.saved_model.load(path).signatures["serving_bytes"](image_bytes=tf.constant(gallery_files))
    # Each gallery file, sent as a query, finds itself first.
    np.testing.assert_array_equal(served["ids"][:, 0], np.arange(6))
    np.testing.assert_array_equal(served["labels"][:, 0], np.arange(6) // 2)


def test_evaluate_cli_embeds_the_original_files_through_serving_bytes(tmp_path):
    """``python -m tfdml.evaluate`` on a tfdml export gives the Recall@1 of train.py's evaluation."""
    from tfdml.evaluate import main

    setup, config = tiny_setup(tmp_path, "digits", ["data.name=digits", "data.image_size=16"])
    evaluated = setup.embedder.predict(setup.test_images(), verbose=0)
    expected = evaluation.evaluate(evaluated, setup.test_data.labels, metrics=["recall_at_k"], k=[1])["recall_at_1"]
    report = main([export_embedder(setup), "--data", "digits", "--out", str(tmp_path / "eval"), "--k", "1",
                   "--verbose", "0"])
    assert report["preprocessing"].startswith("serving_bytes")
    assert report["metrics"]["recall_at_1"] == expected


def test_the_serving_benchmark_reads_the_test_drawings_in_the_readers_order(omniglot_dir):
    """benchmarks/serving_parity.py (no tfdml) must pair each drawing with the position the
    retrieval export's ids use."""
    import importlib.util

    from tfdml.data import omniglot

    spec = importlib.util.spec_from_file_location("serving_parity", REPO / "benchmarks" / "serving_parity.py")
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    files, labels = benchmark.test_drawings(omniglot_dir)
    test = omniglot(omniglot_dir, split="test", validate="none")
    assert len(files) == len(test) == 2120
    assert files == [test.encoded(tf.constant(i, tf.int64)).numpy() for i in range(len(test))]
    np.testing.assert_array_equal(labels, test.labels - test.labels.min())
