import os
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
