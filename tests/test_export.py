import base64
import io
import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tfdml import export, models
from tfdml.io import write_directory_atomically
from tfdml.training import MetricLearningModel


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = models.build_embedding_model("convnet", input_shape=(16, 16, 1), embedding_dim=8, filters=4)
    base = tmp_path_factory.mktemp("models")
    path = export.export_embedding_model(model, str(base), "toy")
    return model, base, path


def test_layout_is_tf_serving_versions(exported):
    _, base, path = exported
    assert path == os.path.join(str(base), "toy", "1")
    assert sorted(os.listdir(base / "toy")) == ["1"]
    assert os.path.exists(os.path.join(path, "saved_model.pb"))


def test_reloads_in_a_fresh_process_without_tfdml_with_identical_embeddings(exported, tmp_path, rng):
    model, _, path = exported
    images = rng.uniform(0, 255, size=(3, 16, 16, 1)).astype("float32")
    np.save(tmp_path / "x.npy", images)
    script = (
        "import sys, numpy as np, tensorflow as tf\n"
        f"m = tf.saved_model.load({path!r})\n"
        f"x = np.load({str(tmp_path / 'x.npy')!r})\n"
        "out = m.signatures['serving_default'](images=tf.constant(x))['embeddings'].numpy()\n"
        "png = [tf.io.encode_png(tf.cast(tf.round(i), tf.uint8)).numpy() for i in x]\n"
        "out_bytes = m.signatures['serving_bytes'](image_bytes=tf.constant(png))['embeddings'].numpy()\n"
        "assert 'tfdml' not in sys.modules\n"
        f"np.save({str(tmp_path / 'y.npy')!r}, out); np.save({str(tmp_path / 'z.npy')!r}, out_bytes)\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": ""})
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), model.predict(images, verbose=0), atol=1e-6)
    np.testing.assert_allclose(np.load(tmp_path / "z.npy"), model.predict(np.round(images), verbose=0), atol=1e-5)


def test_saved_model_cli_lists_both_signatures(exported):
    _, _, path = exported
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    out = subprocess.run([cli, "show", "--dir", path, "--all"], check=True, capture_output=True, text=True).stdout
    assert "signature_def['serving_default']" in out and "signature_def['serving_bytes']" in out
    assert "image_bytes" in out and "embeddings" in out


def test_warmup_file_holds_one_request_per_signature(exported):
    from tensorflow_serving.apis import prediction_log_pb2

    _, _, path = exported
    records = list(tf.data.TFRecordDataset(os.path.join(path, export.WARMUP_FILE)).as_numpy_iterator())
    signatures = [prediction_log_pb2.PredictionLog.FromString(r).predict_log.request.model_spec.signature_name for r in records]
    assert signatures == ["serving_default", "serving_bytes"]


def test_versions_increment_and_existing_versions_are_never_overwritten(exported):
    model, base, _ = exported
    assert export.export_embedding_model(model, str(base), "toy").endswith(os.path.join("toy", "2"))
    with pytest.raises(FileExistsError, match="already exists"):
        export.export_embedding_model(model, str(base), "toy", version=1)


def test_failed_export_leaves_no_partial_version(tmp_path):
    def failing_write(directory):
        open(os.path.join(directory, "saved_model.pb"), "w").close()
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_directory_atomically(str(tmp_path / "m" / "1"), failing_write)
    assert os.listdir(tmp_path / "m") == []


def test_loss_parameters_are_not_exported(tmp_path):
    from tfdml.losses.base import LossParameters, ParametricDMLLoss

    class WithBeta(ParametricDMLLoss):
        def __init__(self):
            super().__init__()
            self.parameters = LossParameters(1e-3, name="beta_params")
            self.beta = self.parameters.add_weight(shape=(), initializer="ones", name="beta")

        def compute(self, labels, embeddings):
            return self.beta * tf.reduce_mean(embeddings)

    embedder = models.build_embedding_model("convnet", input_shape=(8, 8, 1), embedding_dim=4, filters=2)
    wrapped = MetricLearningModel(embedder, WithBeta())
    path = export.export_embedding_model(wrapped.embedding_model, str(tmp_path), "m")
    names = [name for name, _ in tf.train.list_variables(os.path.join(path, "variables", "variables"))]
    assert names and not any("beta" in n for n in names)


def test_bad_names_and_versions_are_rejected(exported, tmp_path):
    model = exported[0]
    with pytest.raises(ValueError, match="Model name"):
        export.export_embedding_model(model, str(tmp_path), "a/b")
    with pytest.raises(ValueError, match="version"):
        export.export_embedding_model(model, str(tmp_path), "m", version=0)


# ---------------------------------------------------------------- REST wire format, warm-up, hardening


@pytest.fixture(scope="module")
def search_exported(exported, tmp_path_factory):
    from tfdml.index import GalleryIndex

    model = exported[0]
    gallery = np.random.default_rng(3).uniform(0, 255, size=(6, 16, 16, 1)).astype("float32")
    index = GalleryIndex(8)
    index.add(model.predict(gallery, verbose=0), ids=np.arange(10, 16), labels=np.arange(6) % 3)
    path = export.export_retrieval_model(model, index, str(tmp_path_factory.mktemp("models")), "toy-search", k=3)
    return model, index, path


def rest_to_predict_request(body, model_name, signature):
    """TF Serving's REST ``instances`` JSON as the ``PredictRequest`` it becomes: one batch tensor for the
    signature's single input; ``{"b64": ...}`` values are DT_STRING bytes (base64 is also how the
    proto JSON mapping writes a TensorProto's bytes ``string_val``), rows of numbers are the input dtype."""
    from google.protobuf import json_format
    from tensorflow_serving.apis import predict_pb2

    body = json.loads(body)
    ((input_name, spec),) = signature.structured_input_signature[1].items()
    instances = body["instances"]
    if spec.dtype == tf.string:
        tensor = {"dtype": "DT_STRING", "string_val": [instance["b64"] for instance in instances]}
        shape = [len(instances)]
    else:
        values = np.asarray(instances, spec.dtype.as_numpy_dtype)
        tensor = {"dtype": "DT_FLOAT", "float_val": values.ravel().tolist()}
        shape = values.shape
    tensor["tensor_shape"] = {"dim": [{"size": int(size)} for size in shape]}
    request = {
        "model_spec": {"name": model_name, "signature_name": body["signature_name"]},
        "inputs": {input_name: tensor},
    }
    return json_format.ParseDict(request, predict_pb2.PredictRequest())


def run_request(loaded, request):
    signature = loaded.signatures[request.model_spec.signature_name]
    return signature(**{name: tf.constant(tf.make_ndarray(proto)) for name, proto in request.inputs.items()})


def _png_b64(image):
    return base64.b64encode(tf.io.encode_png(tf.constant(image, tf.uint8)).numpy()).decode()


@pytest.mark.parametrize("which", ["embedding", "retrieval"])
def test_rest_requests_in_b64_and_row_format_answer_as_in_process(exported, search_exported, which, rng):
    model, index = exported[0], search_exported[1]
    path = exported[2] if which == "embedding" else search_exported[2]
    loaded = tf.saved_model.load(path)
    images = np.round(rng.uniform(0, 255, size=(3, 16, 16, 1))).astype("float32")
    expected = model.predict(images, verbose=0)
    bodies = {
        "serving_bytes": json.dumps(
            {"signature_name": "serving_bytes", "instances": [{"b64": _png_b64(i)} for i in images]}
        ),
        "serving_default": json.dumps({"signature_name": "serving_default", "instances": images.tolist()}),
    }
    for signature_name, body in bodies.items():
        request = rest_to_predict_request(body, "toy", loaded.signatures[signature_name])
        dtype = tf.string if signature_name == "serving_bytes" else tf.float32
        assert request.inputs[next(iter(request.inputs))].dtype == dtype.as_datatype_enum
        answer = run_request(loaded, request)
        if which == "embedding":
            np.testing.assert_allclose(answer["embeddings"], expected, atol=1e-5)
        else:
            np.testing.assert_array_equal(answer["ids"], index.search(expected, 3).ids)


@pytest.mark.parametrize("which", ["embedding", "retrieval"])
def test_every_warmup_record_parses_and_runs_against_its_signature(exported, search_exported, which):
    from tensorflow_serving.apis import prediction_log_pb2

    path = exported[2] if which == "embedding" else search_exported[2]
    loaded = tf.saved_model.load(path)
    records = list(tf.data.TFRecordDataset(os.path.join(path, export.WARMUP_FILE)).as_numpy_iterator())
    assert len(records) == 2
    for record in records:
        log = prediction_log_pb2.PredictionLog.FromString(record)
        assert log.WhichOneof("log_type") == "predict_log"
        answer = run_request(loaded, log.predict_log.request)
        assert all(value.shape[0] == 1 for value in answer.values())


def test_retrieval_outputs_have_known_ranks(search_exported):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    command = [cli, "show", "--dir", search_exported[2], "--all"]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    # Only TF's own __saved_model_init_op (a NoOp) has no shape; every serving output is (-1, 3).
    sections = {part.split("'")[0]: part for part in out.split("signature_def['")[1:]}
    for name in ("serving_default", "serving_bytes"):
        assert "unknown_rank" not in sections[name] and sections[name].count("shape: (-1, 3)") == 3
    for signature in tf.saved_model.load(search_exported[2]).signatures.values():
        assert all(spec.shape.as_list() == [None, 3] for spec in signature.structured_outputs.values())


def test_exports_are_readable_by_other_users(exported, search_exported):
    for path in (exported[2], search_exported[2]):
        modes = [
            os.stat(os.path.join(root, name)).st_mode & 0o777
            for root, dirs, files in os.walk(path)
            for name in dirs + files
        ]
        dir_modes = {os.stat(root).st_mode & 0o777 for root, _, _ in os.walk(path)}
        assert dir_modes == {0o755}
        assert set(modes) <= {0o755, 0o644} and 0o644 in modes


def _encoded(image, image_format):
    import PIL.Image

    buffer = io.BytesIO()
    PIL.Image.fromarray(image).save(buffer, format=image_format)
    return buffer.getvalue()


def test_image_size_limit_is_checked_from_the_header_before_decoding(tmp_path):
    model = models.build_embedding_model("convnet", input_shape=(8, 8, 1), embedding_dim=4, filters=2)
    served = tf.saved_model.load(export.export_embedding_model(model, str(tmp_path), "m", max_image_pixels=100))
    served = served.signatures["serving_bytes"]
    small, big = np.zeros((10, 10, 3), np.uint8), np.zeros((10, 11, 3), np.uint8)
    for image_format in ("PNG", "JPEG", "GIF", "BMP"):
        assert served(image_bytes=tf.constant([_encoded(small, image_format)]))["embeddings"].shape == (1, 4)
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"larger than max_image_pixels=100.*\[10 11\]"):
            served(image_bytes=tf.constant([_encoded(big, image_format)]))
    # A PNG header claiming 20000×20000 over 10×10 pixels (so its CRC is wrong): refused by size, not by the decoder.
    forged = bytearray(_encoded(small, "PNG"))
    forged[16:24] = struct.pack(">II", 20000, 20000)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"max_image_pixels=100.*\[20000 20000\]"):
        served(image_bytes=tf.constant([bytes(forged)]))
    # Sides whose product overflows int64 are refused too.
    forged[16:24] = struct.pack(">II", 2**32 - 1, 2**32 - 1)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"max_image_pixels=100.*\[4294967295 4294967295\]"):
        served(image_bytes=tf.constant([bytes(forged)]))
    with pytest.raises(ValueError, match="max_image_pixels"):
        export.export_embedding_model(model, str(tmp_path), "m2", max_image_pixels=0)


def test_the_default_size_limit_refuses_a_large_png(exported):
    served = tf.saved_model.load(exported[2]).signatures["serving_bytes"]
    large = tf.io.encode_png(tf.zeros((4097, 4096, 1), tf.uint8))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"max_image_pixels=16777216.*\[4097 4096\]"):
        served(image_bytes=tf.stack([large]))


def test_gif_and_bmp_work_for_a_one_channel_model(exported, rng):
    model, _, path = exported
    served = tf.saved_model.load(path).signatures["serving_bytes"]
    rgb = rng.integers(0, 256, size=(16, 16, 3)).astype(np.uint8)
    gif = _encoded(rgb, "GIF")
    cases = [  # a GIF palette may quantise colours: its expected pixels are its own RGB decoding
        (gif, tf.io.decode_gif(gif)[0]),
        (_encoded(rgb, "BMP"), rgb),
        (_encoded(np.concatenate([rgb, rgb[..., :1]], -1), "BMP"), rgb),
    ]
    for encoded, colours in cases:
        gray = tf.image.rgb_to_grayscale(colours).numpy().astype("float32")[None]
        embedding = served(image_bytes=tf.constant([encoded]))["embeddings"]
        np.testing.assert_allclose(embedding, model.predict(gray, verbose=0), atol=1e-5)
    gray_bmp = _encoded(rgb[..., 0], "BMP")
    np.testing.assert_allclose(
        served(image_bytes=tf.constant([gray_bmp]))["embeddings"],
        model.predict(rgb[None, ..., :1].astype("float32"), verbose=0),
        atol=1e-5,
    )


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_images_with_nan_or_inf_are_refused(exported, search_exported, bad):
    images = np.zeros((2, 16, 16, 1), np.float32)
    images[1, 3, 4, 0] = bad
    for path in (exported[2], search_exported[2]):
        served = tf.saved_model.load(path).signatures["serving_default"]
        with pytest.raises(tf.errors.InvalidArgumentError, match="serving_default: images contain NaN or Inf"):
            served(images=tf.constant(images))


def test_failed_exports_leave_no_temporary_directories(exported, search_exported, tmp_path, monkeypatch):
    model, index = exported[0], search_exported[1]

    def broken_warmup(*args):
        raise OSError("disk full")

    monkeypatch.setattr(export, "write_warmup_requests", broken_warmup)
    with pytest.raises(OSError, match="disk full"):
        export.export_embedding_model(model, str(tmp_path), "m")
    with pytest.raises(OSError, match="disk full"):
        export.export_retrieval_model(model, index, str(tmp_path), "m-search", k=2)
    assert sorted(name for _, dirs, files in os.walk(tmp_path) for name in dirs + files) == ["m", "m-search"]


@pytest.mark.parametrize(
    "override, message",
    [
        ("export.version=0", "export.version must be a positive integer"),
        ("export.version=1.5", "export.version must be an integer"),
        ("name=a/b", "'a/b'"),
        ("export.gallery=/nonexistent/gallery", "export.gallery must be 'test' or an existing image folder"),
        ("export.gallery_k=0", "export.gallery_k must be a positive integer"),
        ("export.max_image_pixels=-1", "export.max_image_pixels must be a positive integer"),
        ("export.version=1", "already exists"),
    ],
)
def test_export_settings_are_checked_before_training(tmp_path, override, message, monkeypatch):
    from tfdml import run
    from tfdml.training.config import ConfigError, load_config

    (tmp_path / "models" / "digits_margin" / "1").mkdir(parents=True)

    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(run, "Experiment", no_training)
    # Type errors (a float version, a path as name) are caught when the recipe loads, the rest by train().
    with pytest.raises(ConfigError, match=message):
        run.train(
            load_config(
                None,
                [f"run_dir={tmp_path / 'runs'}", f"export.dir={tmp_path / 'models'}", "export.gallery=test", override],
            )
        )
    assert not (tmp_path / "runs").exists()
