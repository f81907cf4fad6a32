"""The unlabelled folder reader (every image its own class) and ``instance_labels``."""

import io

import numpy as np
import PIL.Image
import pytest
import tensorflow as tf

import tfdml.data
from tfdml.data import instance_labels, unlabelled_folder


def _png(shade, size=(6, 5)):
    buffer = io.BytesIO()
    PIL.Image.fromarray(np.full((*size, 3), shade, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def photos(tmp_path):
    """``b.png``, ``a/c.png``, ``a/d.png`` (shades 20, 40, 60), a note and a corrupt ``z/broken.png``."""
    (tmp_path / "a").mkdir()
    (tmp_path / "z").mkdir()
    (tmp_path / "b.png").write_bytes(_png(20))
    (tmp_path / "a" / "c.png").write_bytes(_png(40))
    (tmp_path / "a" / "d.png").write_bytes(_png(60))
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "z" / "broken.png").write_bytes(_png(80)[:30])
    return tmp_path


def test_every_image_under_the_folder_is_its_own_class_and_a_corrupt_one_is_named(photos):
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image\(s\): .*z/broken\.png"):
        data = tfdml.data.load("unlabelled_folder", root=photos, split="train", channels=1, image_size=4)
    np.testing.assert_array_equal(data.labels, [0, 1, 2])
    assert data.skipped == (str(photos / "z" / "broken.png"),) and data.categories is None
    shades = [float(tf.reduce_mean(data.load(tf.constant(i, tf.int64)))) for i in range(3)]
    assert shades == pytest.approx([40, 60, 20], abs=1)  # sorted relative paths: a/c, a/d, b
    assert data.encoded(tf.constant(2, tf.int64)).numpy() == (photos / "b.png").read_bytes()


def test_a_folder_without_readable_images_or_a_test_split_is_refused_naming_why(tmp_path, photos):
    broken = tmp_path / "only_broken"
    broken.mkdir()
    (broken / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(ValueError, match=r"none of the 1 images could be decoded: .*only_broken/x\.png"):
        unlabelled_folder(broken)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        unlabelled_folder(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no .* files under"):
        unlabelled_folder(empty)
    with pytest.raises(ValueError, match="no classes to test retrieval on: .*evaluation.data"):
        tfdml.data.load("unlabelled_folder", root=photos, split="test")


def test_instance_labels_drop_classes_and_categories():
    data = tfdml.data.LabelledImages(
        "four", np.array([3, 3, 5, 5]), lambda index: tf.zeros((2, 2, 1)), categories=np.array([0, 0, 1, 1]),
        class_names=["x"] * 6,
    )
    dropped = instance_labels(data)
    np.testing.assert_array_equal(dropped.labels, [0, 1, 2, 3])
    assert dropped.categories is None and dropped.class_names is None and "labels dropped" in dropped.name
