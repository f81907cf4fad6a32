"""Omniglot from TFDS (mocked): the same classes, categories, splits and pixels as the zip reader."""

import io
import zipfile

import numpy as np
import PIL.Image
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tfdml import data

# Two zips as the real ones: small1 = A, Greek; small2 = Greek, B, Cyrillic (B has three characters).
_LAYOUT = {"small1": ["A", "Greek"], "small2": ["Greek", "B", "Cyrillic"]}
_CHARACTERS = {"A": 2, "Greek": 2, "B": 3, "Cyrillic": 1}
_ALPHABET_NAMES = sorted(set(_CHARACTERS) | {f"Z{i:02d}" for i in range(50 - len(_CHARACTERS))})


def _png(array):
    buffer = io.BytesIO()
    PIL.Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _drawings():
    """{(alphabet, character, drawing): 105×105 0/255 pixels}."""
    rng = np.random.default_rng(0)
    return {
        (alphabet, f"character{c + 1:02d}", drawing): rng.choice([0, 255], size=(105, 105)).astype(np.uint8)
        for alphabet, count in _CHARACTERS.items() for c in range(count) for drawing in range(3)
    }


def _write_zips(root, drawings):
    for split, alphabets in _LAYOUT.items():
        with zipfile.ZipFile(root / f"images_background_{split}.zip", "w") as archive:
            for (alphabet, character, drawing), pixels in drawings.items():
                if alphabet in alphabets:
                    archive.writestr(f"images_background_{split}/{alphabet}/{character}/{drawing:02d}.png", _png(pixels))


@pytest.fixture
def mocked_tfds(monkeypatch):
    """TFDS's omniglot as its builder stores it (3-channel PNGs, 50 alphabet names), examples shuffled."""
    drawings = _drawings()
    requested = []
    original_info = tfds.image_classification.Omniglot._info

    def info(self):
        described = original_info(self)
        described.features["alphabet"].names = _ALPHABET_NAMES
        return described

    def as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
        requested.append(str(split))
        rows = [(key, pixels) for key, pixels in drawings.items() if key[0] in _LAYOUT[str(split)]]
        rows = [rows[i] for i in np.random.default_rng(len(requested)).permutation(len(rows))]
        return tf.data.Dataset.from_tensor_slices({
            "image": [_png(np.repeat(pixels[:, :, None], 3, axis=2)) for _, pixels in rows],
            "alphabet": [_ALPHABET_NAMES.index(alphabet) for (alphabet, _, _), _ in rows],
            "alphabet_char_id": [int(character[-2:]) - 1 for (_, character, _), _ in rows],
            "label": np.arange(len(rows)),
        })

    monkeypatch.setattr(tfds.image_classification.Omniglot, "_info", info)
    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
        yield drawings, requested


def _images_by_class(collection):
    """{class name: sorted list of image bytes}: the drawing order inside a class is not compared."""
    grouped = {}
    for index, label in enumerate(collection.labels):
        image = collection.load(tf.constant(index, tf.int64)).numpy()
        grouped.setdefault(collection.class_names[label], []).append(image.tobytes())
    return {name: sorted(images) for name, images in grouped.items()}


@pytest.mark.parametrize("split", ["train", "test", "all"])
def test_tfds_omniglot_numbers_classes_as_the_zip_reader(tmp_path, mocked_tfds, split):
    drawings, requested = mocked_tfds
    _write_zips(tmp_path, drawings)
    from_zips = data.omniglot(tmp_path, split=split)
    from_tfds = data.omniglot_tfds(split=split)
    assert set(requested) == {"small1", "small2"}
    assert from_tfds.name == from_zips.name == f"omniglot/{split}"
    assert from_tfds.category_names == from_zips.category_names == ["A", "Greek", "B", "Cyrillic"]
    assert from_tfds.class_names == from_zips.class_names
    np.testing.assert_array_equal(from_tfds.labels, from_zips.labels)
    np.testing.assert_array_equal(from_tfds.categories, from_zips.categories)
    assert _images_by_class(from_tfds) == _images_by_class(from_zips)  # same pixels (inverted, one channel)


def test_tfds_omniglot_train_and_test_alphabets_and_resizing(mocked_tfds):
    train = data.omniglot_tfds(split="train", image_size=28)
    test = data.omniglot_tfds(split="test", image_size=28)
    assert {train.category_names[c] for c in train.categories} == {"A", "Greek"}
    assert {test.category_names[c] for c in test.categories} == {"B", "Cyrillic"}
    assert len(train) == 12 and len(test) == 12  # Greek kept once
    assert not set(train.labels) & set(test.labels)
    image = train.load(tf.constant(0, tf.int64))
    assert image.shape == (28, 28, 1) and image.dtype == tf.float32


def test_load_reads_tfds_by_name_or_when_root_lacks_the_zips(tmp_path, mocked_tfds):
    drawings, requested = mocked_tfds
    assert data.load("omniglot_tfds", split="test").class_names[-1] == "Cyrillic/character01"
    requested.clear()
    assert len(data.load("omniglot", split="test")) == 2120 and not requested  # the shipped zips, not TFDS
    with pytest.warns(UserWarning, match="does not hold"):
        fallback = data.load("omniglot", root=tmp_path / "nowhere", split="train")
    assert len(fallback) == 12
    _write_zips(tmp_path, drawings)
    requested.clear()
    assert len(data.load("omniglot", root=tmp_path, split="train")) == 12 and not requested  # zips win


def test_unprepared_tfds_omniglot_says_how_to_get_the_data(tmp_path):
    with pytest.raises(FileNotFoundError, match="pass root= a folder holding images_background_small1.zip"):
        data.omniglot_tfds(data_dir=str(tmp_path), download=False)
