"""KerasHub backbones (``hub:<class>`` with a config, ``hub:<preset folder>``): the image converter inside the
model, token sequences pooled, weights from the preset or a file, and clear errors offline."""

import os

import numpy as np
import pytest

from tfdml.models import BACKBONES, build_embedding_model

keras_hub = pytest.importorskip("keras_hub")

TINY_VIT = {"patch_size": 8, "num_layers": 1, "num_heads": 2, "hidden_dim": 8, "mlp_dim": 16,
            "image_converter": {"scale": 1 / 127.5, "offset": -1.0}}


@pytest.fixture(scope="module")
def vit():
    return BACKBONES.get("hub:ViTBackbone")((32, 32, 3), backbone_config=TINY_VIT)


@pytest.fixture
def images(rng):
    return rng.uniform(0, 255, (2, 32, 32, 3)).astype("float32")


def test_a_class_and_config_give_a_token_sequence_after_the_image_converter(vit, images):
    converter, backbone = vit.layers[1], vit.layers[2]
    assert isinstance(converter, keras_hub.layers.ViTImageConverter) and converter.image_size is None
    np.testing.assert_allclose(converter(np.full((1, 2, 2, 3), 255.0, "float32")), 1.0, rtol=1e-6)
    assert isinstance(backbone, keras_hub.models.ViTBackbone)
    assert vit(images).shape == (2, 17, 8)  # 16 patches and the class token


@pytest.mark.parametrize("pooling", ["avg", "cls"])
def test_an_embedding_model_pools_the_tokens(vit, images, pooling):
    model = build_embedding_model(vit, embedding_dim=4, pooling=pooling)
    np.testing.assert_allclose(np.linalg.norm(model(images), axis=1), 1.0, rtol=1e-5)


def test_a_preset_folder_brings_its_weights_and_preprocessing(vit, images, tmp_path):
    vit.layers[2].save_to_preset(str(tmp_path))
    vit.layers[1].save_to_preset(str(tmp_path))
    loaded = BACKBONES.get(f"hub:{tmp_path}")(weights="preset")
    assert loaded.input_shape == (None, 32, 32, 3)
    np.testing.assert_allclose(loaded(images), vit(images), atol=1e-6)
    random = BACKBONES.get(f"hub:{tmp_path}")((32, 32, 3))
    assert not np.allclose(random(images), vit(images))


def test_weights_from_a_saved_file_reproduce_the_outputs(vit, images, tmp_path):
    path = str(tmp_path / "vit.weights.h5")
    vit.layers[2].save_weights(path)
    loaded = BACKBONES.get("hub:ViTBackbone")((32, 32, 3), weights=path, backbone_config=TINY_VIT)
    np.testing.assert_allclose(loaded(images), vit(images), atol=1e-6)


def test_a_preset_outside_the_local_cache_is_one_error_naming_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path))  # a built-in preset: never downloaded here
    with pytest.raises(FileNotFoundError) as error:
        BACKBONES.get("hub:vit_base_patch16_224_imagenet")(weights="preset")
    message = str(error.value)
    assert message.startswith("model.backbone=hub:vit_base_patch16_224_imagenet: KerasHub preset")
    assert f"{tmp_path}/models/keras/vit/keras/vit_base_patch16_224_imagenet/" in message
    assert "kaggle.com/models/keras/vit/keras/vit_base_patch16_224_imagenet" in message and "save_to_preset" in message


def test_a_preset_in_the_local_kagglehub_cache_is_loaded_without_a_download(vit, images, tmp_path, monkeypatch):
    from kagglehub.cache import Cache, get_cached_path
    from kagglehub.handle import parse_model_handle

    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path))
    handle = parse_model_handle(keras_hub.models.Backbone.presets["vit_base_patch16_224_imagenet"]["kaggle_handle"]
                                .removeprefix("kaggle://"))
    folder = get_cached_path(handle)  # stands in for the real preset: the tiny ViT saved as it
    vit.layers[2].save_to_preset(folder)
    vit.layers[1].save_to_preset(folder)
    for name in os.listdir(folder):
        Cache().mark_as_complete(handle, name)
    loaded = BACKBONES.get("hub:vit_base_patch16_224_imagenet")(weights="preset")
    np.testing.assert_allclose(loaded(images), vit(images), atol=1e-6)


def test_errors_name_the_preset_the_key_and_the_file(tmp_path):
    with pytest.raises(ValueError, match=r"(?s)hub:no_such_preset_here: not a KerasHub image backbone preset"):
        BACKBONES.get("hub:no_such_preset_here")((32, 32, 3))
    with pytest.raises(FileNotFoundError, match=r"ViTBackbone weights file not found: .*\(model.weights\)"):
        BACKBONES.get("hub:ViTBackbone")((32, 32, 3), weights=str(tmp_path / "missing.h5"), backbone_config=TINY_VIT)
    with pytest.raises(ValueError, match=r"model.weights='preset' needs a preset"):
        BACKBONES.get("hub:ViTBackbone")((32, 32, 3), weights="preset", backbone_config=TINY_VIT)
    with pytest.raises(ValueError, match=r"model.backbone_config for hub:ViTBackbone: .*patch_size"):
        BACKBONES.get("hub:ViTBackbone")((32, 32, 3), backbone_config={"num_layers": 1})


def test_a_clip_preset_embeds_with_its_image_tower(images, tmp_path):
    """CLIP (and SigLIP) pair an image and a text tower: tfdml builds on the image tower, after the preset's
    CLIP image converter (its mean and std)."""
    tower = keras_hub.models.CLIPVisionEncoder(
        patch_size=16, hidden_dim=8, num_layers=1, num_heads=2, intermediate_dim=16, image_shape=(32, 32, 3)
    )
    text = keras_hub.models.CLIPTextEncoder(
        vocabulary_size=10, embedding_dim=8, hidden_dim=8, num_layers=1, num_heads=2, intermediate_dim=16, max_sequence_length=4
    )
    clip = keras_hub.models.CLIPBackbone(vision_encoder=tower, text_encoder=text, projection_dim=4)
    clip.save_to_preset(str(tmp_path))
    keras_hub.layers.CLIPImageConverter(image_size=(32, 32), scale=1 / 255.0).save_to_preset(str(tmp_path))
    loaded = BACKBONES.get(f"hub:{tmp_path}")(weights="preset")
    assert isinstance(loaded.layers[2], keras_hub.models.CLIPVisionEncoder)
    expected = tower({"images": loaded.layers[1](images)})
    np.testing.assert_allclose(loaded(images), expected, atol=1e-5)
