"""keras.applications backbones by Keras name: generic resolution, preprocessing inside the model, weights
from a file or the offline Keras cache (this machine downloads nothing)."""

import keras
import numpy as np
import pytest

from tfdml.models import BACKBONES, build_embedding_model
from tfdml.models.applications import application_names
from tfdml.models.preprocessing import ApplicationPreprocessing

TINY = {"minimalistic": True, "alpha": 0.75}


@pytest.fixture(scope="module")
def mobilenet():
    return BACKBONES.get("MobileNetV3Small")((32, 32, 3), backbone_config=TINY)


def test_every_keras_application_resolves_by_its_name():
    names = application_names()
    assert {"ConvNeXtTiny", "EfficientNetV2B0", "MobileNetV3Small", "ResNet50V2"} <= set(names)
    assert all(name in BACKBONES for name in names) and "resnet50" in BACKBONES


@pytest.mark.parametrize(
    "name, message",
    [
        ("EfficientNetV2b0", r"close keras.applications names: EfficientNetV2B0"),
        ("mobilenetv3small", r"close keras.applications names: MobileNetV3Small"),
        ("Bogus", r"expected one of convnet, resnet50, or a keras.applications model"),
    ],
)
def test_an_unknown_name_lists_close_names(name, message):
    with pytest.raises(ValueError, match=message):
        BACKBONES.get(name)


def test_the_backbone_includes_its_preprocessing_and_maps_pixels_to_features(mobilenet, rng):
    # MobileNetV3 has include_preprocessing: no extra layer, and the model rescales [0, 255] itself.
    assert not any(isinstance(layer, ApplicationPreprocessing) for layer in mobilenet.layers)
    base = mobilenet.layers[-1]
    assert any(isinstance(layer, keras.layers.Rescaling) for layer in base.layers)
    images = rng.uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    assert mobilenet(images).shape == (2, 1, 1, 432)


def test_a_family_without_include_preprocessing_gets_its_preprocess_input():
    backbone = BACKBONES.get("ResNet50V2")((32, 32, 3))  # "tf" mode: [0, 255] -> [-1, 1]
    preprocessing = backbone.layers[1]
    assert isinstance(preprocessing, ApplicationPreprocessing) and preprocessing.module == "resnet_v2"
    scaled = preprocessing(np.array([[[[0.0, 127.5, 255.0]]]], "float32"))
    np.testing.assert_allclose(scaled, [[[[-1.0, 0.0, 1.0]]]])
    clone = ApplicationPreprocessing.from_config(preprocessing.get_config())
    assert clone.module == "resnet_v2"


def test_weights_from_a_saved_file_reproduce_the_outputs(mobilenet, tmp_path, rng):
    path = str(tmp_path / "mobilenet.weights.h5")
    mobilenet.layers[-1].save_weights(path)
    loaded = BACKBONES.get("MobileNetV3Small")((32, 32, 3), weights=path, backbone_config=TINY)
    images = rng.uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(loaded(images), mobilenet(images))


def test_imagenet_weights_come_from_the_keras_cache_only(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    expected = tmp_path / "models" / "weights_mobilenet_v3_small_minimalistic_224_1.0_float_no_top_v2.h5"
    with pytest.raises(FileNotFoundError) as error:
        BACKBONES.get("MobileNetV3Small")((32, 32, 3), weights="imagenet", backbone_config={"minimalistic": True})
    message = str(error.value)
    assert f"{expected} does not exist" in message
    assert f"Download https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v3/{expected.name}" in message


def test_a_missing_weights_file_and_bad_constructor_arguments_name_the_key(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"MobileNetV3Small weights file not found: .*\(model.weights\)"):
        BACKBONES.get("MobileNetV3Small")((32, 32, 3), weights=str(tmp_path / "missing.h5"))
    with pytest.raises(ValueError, match=r"backbone_config for MobileNetV3Small: pooling set by tfdml; depth unknown; "
                                         r"MobileNetV3Small accepts alpha, dropout_rate, minimalistic"):
        BACKBONES.get("MobileNetV3Small")((32, 32, 3), backbone_config={"pooling": "avg", "depth": 2})


def test_an_embedding_model_on_a_keras_application(mobilenet, rng):
    model = build_embedding_model(mobilenet, embedding_dim=8)
    embeddings = model(rng.uniform(0, 255, (2, 32, 32, 3)).astype("float32"))
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)


def test_imagenet_weights_in_the_keras_cache_are_loaded(tmp_path, monkeypatch, rng):
    h5py = pytest.importorskip("h5py")
    from keras.src.legacy.saving import legacy_h5_format

    minimalistic = {"minimalistic": True}  # Keras has ImageNet weights for alpha 1.0 only, when minimalistic
    source = BACKBONES.get("MobileNetV3Small")((32, 32, 3), backbone_config=minimalistic)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError) as error:
        BACKBONES.get("MobileNetV3Small")((32, 32, 3), weights="imagenet", backbone_config=minimalistic)
    cached = str(error.value).split(": ", 1)[1].split(" does not exist")[0]
    assert cached.startswith(str(tmp_path / "models"))
    (tmp_path / "models").mkdir()
    with h5py.File(cached, "w") as file:  # Keras' own notop files are legacy HDF5 weights of the base model
        legacy_h5_format.save_weights_to_hdf5_group(file, source.layers[-1])
    loaded = BACKBONES.get("MobileNetV3Small")((32, 32, 3), weights="imagenet", backbone_config=minimalistic)
    images = rng.uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(loaded(images), source(images))
