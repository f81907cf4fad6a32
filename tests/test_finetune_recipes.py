"""The fine-tuning recipes run: one training step of each GPU recipe on TFDS mock data, the CPU recipe briefly.

``pipelines/proxy_anchor_cars196_resnet50v2.yaml`` and ``proxy_anchor_cub200_dinov2.yaml`` need ImageNet /
KerasHub preset weights, the TFDS data and a GPU, none of which this machine has. Each trains one step here
on ``tfds.testing.mock_data`` (JPEGs made up by the test) with the recipe otherwise as shipped except:
``data.image_size=32``, ``sampler.batch_size=8``, ``model.weights=null`` (random initialisation: no weights
file offline) and a cheaper backbone of the same kind: ResNet50V2 (17 s of CPU for one step even at 32 px)
becomes keras.applications' MobileNetV3Small (minimalistic), and the ``hub:dinov2_small`` preset the same
KerasHub class (``DINOV2Backbone``) in a tiny config; ResNet50V2 and DINOv2 are built in tests/models/. That the recipes as shipped ask for the weights, and fail with the
clear missing-weights error where they are absent, is tested separately (before anything is built).
"""

import numpy as np
import pytest
import tensorflow as tf

from tests.paths import REPO
from tfdml.experiment import Experiment
from tfdml.models import BACKBONES
from tfdml.training.config import load_config
from tfdml.training.factory import build_embedder

tfds = pytest.importorskip("tensorflow_datasets")

CNN = str(REPO / "pipelines" / "proxy_anchor_cars196_resnet50v2.yaml")
VIT = str(REPO / "pipelines" / "proxy_anchor_cub200_dinov2.yaml")
CPU = str(REPO / "pipelines" / "omniglot_finetune.yaml")
TINY = ["data.image_size=32", "sampler.batch_size=8", "model.weights=null"]
TINY_CNN = ["model.backbone=MobileNetV3Small", "model.backbone_config={minimalistic: true}"]
TINY_DINOV2 = [
    "model.backbone=hub:DINOV2Backbone",
    "model.backbone_config={patch_size: 8, num_layers: 1, hidden_dim: 8, num_heads: 2, intermediate_dim: 16,"
    " position_embedding_shape: [32, 32, 3]}",
]


def mock_tfds(num_labels, per_label=2):
    """TFDS ``as_dataset_fn``: ``per_label`` distinct 40 × 48 JPEGs per label (every split gets them all)."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(num_labels, dtype=np.int64), per_label)
    jpegs = [
        tf.io.encode_jpeg(tf.image.resize(rng.uniform(0, 255, (2, 2, 3)), [40, 48]).numpy().astype(np.uint8)).numpy()
        for _ in labels
    ]

    def as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
        return tf.data.Dataset.from_tensor_slices({"image": jpegs, "label": labels})

    return as_dataset


def one_step(recipe, classes, overrides):
    """The recipe (with ``overrides``) built on mock TFDS data; ``(experiment, backbone and head weights
    before, loss of one training step, weights after)``."""
    config = load_config(recipe, overrides)
    with tfds.testing.mock_data(as_dataset_fn=mock_tfds(classes)):
        experiment = Experiment(config)
    images, labels = next(iter(experiment.training_batches()))
    backbone = experiment.embedder.layers[1]
    before = [v.numpy() for v in backbone.trainable_variables], experiment.embedder.trainable_variables[-1].numpy()
    loss = experiment.model.train_on_batch(images, labels, return_dict=True)["loss"]
    after = [v.numpy() for v in backbone.trainable_variables], experiment.embedder.trainable_variables[-1].numpy()
    return experiment, before, float(loss), after


def assert_warm_up_step(before, loss, after):
    """One step of the warm-up epoch: the loss is finite, the head learned, the backbone is untouched."""
    assert np.isfinite(loss)
    assert not np.allclose(before[1], after[1])
    assert before[0] and all(np.array_equal(b, a) for b, a in zip(before[0], after[0]))


def test_the_keras_applications_recipe_trains_a_frozen_backbone_step_on_mock_cars196():
    experiment, before, loss, after = one_step(CNN, 196, TINY + TINY_CNN)
    assert experiment.embedder.layers[1].name == "mobilenetv3small" and experiment.embedder.output_shape == (None, 512)
    assert_warm_up_step(before, loss, after)


def test_the_kerashub_vit_recipe_trains_a_frozen_backbone_step_on_mock_cub200():
    pytest.importorskip("keras_hub")
    experiment, before, loss, after = one_step(VIT, 200, TINY + TINY_DINOV2)
    assert experiment.embedder.layers[1].name == "hub_dinov2backbone"
    assert any(layer.name == "cls_token" for layer in experiment.embedder.layers)
    assert_warm_up_step(before, loss, after)


def test_the_gpu_recipes_as_shipped_ask_for_weights_and_name_the_missing_file(tmp_path, monkeypatch):
    """No weights offline: the shipped recipes fail with the one error naming where to put them."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path))
    cnn = load_config(CNN)
    assert (cnn["model"]["weights"], cnn["data"]["image_size"]) == ("imagenet", 224)
    # MobileNetV3Small has the same offline check as ResNet50V2 and is far cheaper to build.
    with pytest.raises(FileNotFoundError, match=r"ImageNet weights .* not available offline: .*models"):
        build_embedder(load_config(CNN, ["model.backbone=MobileNetV3Small", "data.image_size=32"]), (32, 32, 3))
    vit = load_config(VIT)
    assert (vit["model"]["backbone"], vit["model"]["weights"]) == ("hub:dinov2_small", "preset")
    pytest.importorskip("keras_hub")
    with pytest.raises(FileNotFoundError, match=r"dinov2_small.*not in the local KaggleHub cache"):
        BACKBONES.get(vit["model"]["backbone"])((224, 224, 3), weights=vit["model"]["weights"])


@pytest.mark.slow
def test_the_cpu_finetuning_recipe_trains_briefly():
    """omniglot_finetune.yaml as shipped, for two steps: GeM, a BN-neck and the warm-up schedule; the warm-up
    starts the learning rate at 0 and raises it, so the second step moves the backbone and the first does not."""
    config = load_config(CPU)
    assert config["optimizer"]["schedule"]["name"] == "cosine" and config["optimizer"]["name"] == "adamw"
    experiment = Experiment(config)
    assert {"gem_pool", "bnneck"} <= {layer.name for layer in experiment.embedder.layers}
    batches = iter(experiment.training_batches())
    backbone = experiment.embedder.layers[1]
    weights = [[v.numpy() for v in backbone.trainable_variables]]
    losses = []
    for _ in range(2):
        losses.append(float(experiment.model.train_on_batch(*next(batches), return_dict=True)["loss"]))
        weights.append([v.numpy() for v in backbone.trainable_variables])
    assert np.all(np.isfinite(losses)) and int(experiment.model.optimizer.iterations) == 2
    assert all(np.array_equal(b, a) for b, a in zip(weights[0], weights[1]))
    assert not all(np.array_equal(b, a) for b, a in zip(weights[1], weights[2]))
