"""Self-supervised recipes: an unlabelled folder trained with ViewsSampler, evaluated on a labelled
``evaluation.data`` (served = evaluated) or on nothing (the training images' eval preprocessing is
exported), and the recipe errors that would otherwise only show after training."""

import io

import numpy as np
import PIL.Image
import pytest
import tensorflow as tf

from tfdml import evaluation, run
from tfdml.experiment import Experiment
from tfdml.training.config import ConfigError, load_config

SELF_SUPERVISED = [
    "data.name=unlabelled_folder", "data.augmentation=base", "data.image_size=8", "data.channels=3",
    "loss.class=NTXentLoss", "loss.params={}", "sampler.class=ViewsSampler", "sampler.batch_size=8",
    "sampler.samples_per_class=null", "model.filters=4", "model.blocks=2", "model.embedding_dim=8", "epochs=1",
    "steps_per_epoch=2", "evaluation.figures=false", "evaluation.metrics=[recall_at_k, map_at_r]",
    "evaluation.recall_k=[1]",
]


def _write_pngs(folder, count, rng):
    folder.mkdir(parents=True)
    for i in range(count):
        buffer = io.BytesIO()
        PIL.Image.fromarray(rng.integers(0, 256, (10 + i % 3, 12, 3), dtype=np.uint8)).save(buffer, format="PNG")
        (folder / f"{i:02d}.png").write_bytes(buffer.getvalue())


def _config(tmp_path, *overrides):
    return load_config(
        None,
        [*SELF_SUPERVISED, f"data.root={tmp_path / 'photos'}", f"run_dir={tmp_path / 'runs'}",
         f"export.dir={tmp_path / 'models'}", *overrides],
    )


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """``photos/``: 12 unlabelled images; ``labelled/c<k>/``: 3 classes × 2 images to evaluate on."""
    root = tmp_path_factory.mktemp("self_supervised")
    rng = np.random.default_rng(0)
    _write_pngs(root / "photos", 12, rng)
    for label in range(3):
        _write_pngs(root / "labelled" / f"c{label}", 2, rng)
    return root


@pytest.mark.slow
def test_an_unlabelled_folder_trains_evaluates_on_labelled_data_and_serves_what_was_evaluated(folders, capsys):
    config = _config(
        folders, "name=ssl_eval", "evaluation.data.name=folder", f"evaluation.data.root={folders / 'labelled'}",
        "evaluation.data.split=all",
    )
    result = run.train(config, verbose=0)
    printed = capsys.readouterr().out
    assert "12 images, 12 classes" in printed and "Labelled evaluation data (image_folder(" in printed
    files = sorted((folders / "labelled").glob("c*/*.png"))
    served = tf.saved_model.load(result["export_path"]).signatures["serving_bytes"](
        image_bytes=tf.constant([path.read_bytes() for path in files])
    )["embeddings"].numpy()
    scores = evaluation.evaluate(served, np.repeat(np.arange(3), 2), metrics=["recall_at_k", "map_at_r"], k=[1])
    trained = result["metrics"]["trained"]
    assert scores["recall_at_1"] == trained["recall_at_1"]
    assert scores["map_at_r"] == pytest.approx(trained["map_at_r"], abs=1e-6)


def test_without_labelled_data_nothing_is_evaluated_and_the_training_images_preprocessing_is_served(folders):
    experiment = Experiment(_config(folders, "name=ssl_plain"))
    assert experiment.test_data is None and experiment.evaluation_data is None
    assert "no labelled data to test on (evaluation.data)" in run.opening_line(experiment)
    decoded = experiment.train_data.decode(experiment.train_data.encoded(tf.constant(0, tf.int64)))
    assert experiment.eval_preprocess(decoded).shape == (8, 8, 3)  # the "eval" protocol: what is exported


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["data.augmentation=null"], "ViewsSampler repeats each image .* got data.augmentation=None"),
        (["evaluation.data.name=unlabelled_folder"], "evaluation.data.name must be one of"),
        (["data.validation=2"], "data.validation=2: data.name='unlabelled_folder' is unlabelled"),
        (["export.gallery=test"], "export.gallery='test': .* is unlabelled and has no test split"),
        (["data.labels=no"], "data.labels must be a boolean"),
    ],
)
def test_recipe_errors_name_the_key(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        _config(tmp_path, *overrides)
