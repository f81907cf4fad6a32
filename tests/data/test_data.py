"""Readers: counts and class-disjoint splits, pixels against PIL, corrupt files, missing paths, TFDS mocks."""

import io
import zipfile

import numpy as np
import PIL.Image
import pytest
import sklearn.datasets
import tensorflow as tf
import tensorflow_datasets as tfds

from tfdml import data
from tfdml.data import Augmentation, LabelledImages


def _png(array):
    buffer = io.BytesIO()
    PIL.Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg(array):
    buffer = io.BytesIO()
    PIL.Image.fromarray(array).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _all_images(collection):
    return [image for image, _ in collection.dataset().as_numpy_iterator()]


def _load(collection, index):
    return collection.load(tf.constant(index, tf.int64)).numpy()


# ---------------------------------------------------------------- digits


def test_digits_splits_are_class_disjoint_halves():
    target = sklearn.datasets.load_digits().target
    train, test, every = (data.digits(split=s, image_size=None) for s in ("train", "test", "all"))
    assert set(train.labels) == {0, 1, 2, 3, 4} and set(test.labels) == {5, 6, 7, 8, 9}
    assert len(train) == np.sum(target < 5) and len(test) == np.sum(target >= 5) and len(every) == 1797
    assert train.labels.dtype == np.int64 and train.categories is None


def test_digits_pixels_are_scaled_to_255_and_resized():
    bunch = sklearn.datasets.load_digits()
    every = data.digits(split="all", image_size=None)
    np.testing.assert_allclose(_load(every, 3)[..., 0], bunch.images[3] * 255 / 16, rtol=1e-6)
    assert every.labels[3] == bunch.target[3]
    big = data.digits(split="test", image_size=32)
    image = _load(big, 0)
    assert image.shape == (32, 32, 1) and image.dtype == np.float32
    assert 0 <= image.min() and image.max() <= 255.0 + 1e-3
    # Bilinear upsampling keeps the mean intensity of the 8×8 original.
    first_test = np.flatnonzero(bunch.target >= 5)[0]
    assert abs(image.mean() - bunch.images[first_test].mean() * 255 / 16) < 2.0


def test_digits_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        data.digits(split="val")
    with pytest.raises(ValueError, match="image_size"):
        data.digits(image_size=0)


# ---------------------------------------------------------------- Omniglot (real zips)


def test_real_omniglot_counts_and_deduplication(omniglot_dir):
    every = data.omniglot(omniglot_dir, split="all", validate="decode")  # every packaged drawing decodes
    assert len(every) == 4840 and every.skipped == ()
    assert len(set(every.labels)) == 242 and len(set(every.categories)) == 8
    assert np.all(np.bincount(every.labels) == 20)
    assert every.category_names == [
        "Balinese", "Early_Aramaic", "Greek", "Korean", "Latin", "Japanese_(katakana)", "Sanskrit", "Tagalog"
    ]
    per_alphabet = np.bincount(every.categories) // 20
    assert dict(zip(every.category_names, per_alphabet)) == {
        "Balinese": 24, "Early_Aramaic": 22, "Greek": 24, "Korean": 40, "Latin": 26,
        "Japanese_(katakana)": 47, "Sanskrit": 42, "Tagalog": 17,
    }
    # A character (class) belongs to exactly one alphabet (category).
    pairs = set(zip(every.labels, every.categories))
    assert len(pairs) == 242


def test_real_omniglot_splits_by_alphabet(omniglot_dir):
    train = data.omniglot(omniglot_dir, split="train", validate="none")
    test = data.omniglot(omniglot_dir, split="test", validate="none")
    assert (len(train), len(test)) == (2720, 2120)
    assert set(train.labels) == set(range(136)) and set(test.labels) == set(range(136, 242))
    assert set(train.categories) == {0, 1, 2, 3, 4} and set(test.categories) == {5, 6, 7}


def _omniglot_drawings(omniglot_dir, alphabet, character):
    """PIL-decoded drawings of one character, in file-name order, from the first zip that has it."""
    for zip_name in ("images_background_small1.zip", "images_background_small2.zip"):
        with zipfile.ZipFile(omniglot_dir / zip_name) as archive:
            names = sorted(n for n in archive.namelist() if f"/{alphabet}/{character}/" in n and n.endswith(".png"))
            if names:
                return [np.array(PIL.Image.open(io.BytesIO(archive.read(n))).convert("L")) for n in names]
    raise AssertionError(f"{alphabet}/{character} not in the zips")


@pytest.mark.parametrize("index", [5, 1234, 4839])
def test_real_omniglot_pixels_match_pil(omniglot_dir, index):
    every = data.omniglot(omniglot_dir, split="all", validate="none")
    alphabet, character = every.class_names[every.labels[index]].split("/")
    assert alphabet == every.category_names[every.categories[index]]
    drawing = index - np.flatnonzero(every.labels == every.labels[index])[0]
    pixels = _omniglot_drawings(omniglot_dir, alphabet, character)[drawing]
    image = _load(every, index)
    assert image.shape == (105, 105, 1) and image.dtype == np.uint8
    np.testing.assert_array_equal(image[..., 0], 255 - pixels)  # inverted: strokes bright
    small = data.omniglot(omniglot_dir, split="all", image_size=28, invert=False, validate="none")
    resized = _load(small, index)
    assert resized.shape == (28, 28, 1)
    assert abs(resized.mean() - pixels.mean()) < 1.0  # area resize keeps the mean


def test_omniglot_missing_root_and_zip_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nowhere")):
        data.omniglot(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="images_background_small1.zip"):
        data.omniglot(tmp_path)


def _fake_omniglot(root, corrupt=False):
    """Two zips in the real layout: small1 = A, Shared; small2 = Shared, B (3 drawings per character)."""
    rng = np.random.default_rng(0)
    layout = {"images_background_small1": ["A", "Shared"], "images_background_small2": ["Shared", "B"]}
    shared_bytes = {}
    for zip_stem, alphabets in layout.items():
        with zipfile.ZipFile(root / f"{zip_stem}.zip", "w") as archive:
            for alphabet in alphabets:
                for character in ("character01", "character02"):
                    for drawing in range(3):
                        member = f"{alphabet}/{character}/{drawing:02d}.png"
                        encoded = shared_bytes.setdefault(
                            member, _png(rng.choice([0, 255], size=(10, 10)).astype(np.uint8))
                        )
                        if corrupt and alphabet == "B" and character == "character02" and drawing == 1:
                            encoded = encoded[:20]
                        archive.writestr(f"{zip_stem}/{member}", encoded)


def test_omniglot_layout_from_synthetic_zips(tmp_path):
    _fake_omniglot(tmp_path)
    every = data.omniglot(tmp_path, split="all")
    assert len(every) == 18  # 3 alphabets × 2 characters × 3 drawings; "Shared" once
    assert every.category_names == ["A", "Shared", "B"]
    train, test = data.omniglot(tmp_path, split="train"), data.omniglot(tmp_path, split="test")
    assert set(train.labels) == {0, 1, 2, 3} and set(test.labels) == {4, 5}
    assert set(test.categories) == {2}


def test_omniglot_corrupt_png_is_skipped_with_a_warning(tmp_path):
    _fake_omniglot(tmp_path, corrupt=True)
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image\(s\): B/character02/01.png"):
        test = data.omniglot(tmp_path, split="test")
    assert test.skipped == ("B/character02/01.png",) and len(test) == 5
    assert len(_all_images(test)) == 5  # a whole epoch runs


# ---------------------------------------------------------------- image folders and list files


def _write_folder(root, nested=False):
    """Writes 4 classes × 3 PNGs (category layout: 2 categories × 2 classes); returns {path: pixels}."""
    rng = np.random.default_rng(1)
    written = {}
    for class_index in range(4):
        class_dir = root / f"cat{class_index // 2}" / f"c{class_index}" if nested else root / f"c{class_index}"
        class_dir.mkdir(parents=True)
        for image_index in range(3):
            pixels = rng.integers(0, 256, size=(6 + image_index, 5, 3)).astype(np.uint8)
            (class_dir / f"{image_index}.png").write_bytes(_png(pixels))
            written[class_dir / f"{image_index}.png"] = pixels
    (root / "c0" if not nested else root / "cat0" / "c0").joinpath("notes.txt").write_text("not an image")
    return written


def test_image_folder_flat_layout_labels_and_pixels(tmp_path):
    written = _write_folder(tmp_path)
    folder = data.image_folder(tmp_path)
    assert len(folder) == 12 and folder.categories is None
    np.testing.assert_array_equal(folder.labels, np.repeat(np.arange(4), 3))
    assert folder.class_names == ["c0", "c1", "c2", "c3"]
    expected = list(written.values())
    for index, image in enumerate(_all_images(folder)):
        np.testing.assert_array_equal(image, expected[index])


def test_image_folder_category_layout(tmp_path):
    _write_folder(tmp_path, nested=True)
    folder = data.image_folder(tmp_path, split="all")
    np.testing.assert_array_equal(folder.categories, np.repeat([0, 0, 1, 1], 3))
    assert folder.category_names == ["cat0", "cat1"] and folder.class_names[2] == "cat1/c2"


def test_image_folder_class_disjoint_split(tmp_path):
    _write_folder(tmp_path)
    train, test = data.image_folder(tmp_path, split="train"), data.image_folder(tmp_path, split="test")
    assert set(train.labels) == {0, 1} and set(test.labels) == {2, 3}
    one = data.image_folder(tmp_path, split="train", train_classes=1)
    assert set(one.labels) == {0}
    with pytest.raises(ValueError, match="train_classes"):
        data.image_folder(tmp_path, split="test", train_classes=4)


def test_image_folder_grayscale_and_jpeg(tmp_path):
    (tmp_path / "a").mkdir()
    pixels = np.full((8, 8, 3), 200, np.uint8)
    (tmp_path / "a" / "x.JPG").write_bytes(_jpeg(pixels))
    grey = data.image_folder(tmp_path, channels=1)
    image = _load(grey, 0)
    assert image.shape == (8, 8, 1) and abs(int(image.mean()) - 200) <= 2


def test_image_folder_corrupt_files_are_skipped_counted_and_named(tmp_path):
    _write_folder(tmp_path)
    truncated = tmp_path / "c1" / "1.png"
    truncated.write_bytes(truncated.read_bytes()[:40])
    garbage = tmp_path / "c3" / "bad.jpg"
    garbage.write_bytes(b"this is not a jpeg")
    cut_jpeg = tmp_path / "c2" / "cut.jpg"
    cut_jpeg.write_bytes(_jpeg(np.full((64, 64, 3), 90, np.uint8))[:300])
    with pytest.warns(UserWarning, match="skipped 3 unreadable") as caught:
        folder = data.image_folder(tmp_path)
    for bad in (truncated, garbage, cut_jpeg):
        assert str(bad) in str(caught[0].message)
    assert set(folder.skipped) == {str(truncated), str(garbage), str(cut_jpeg)} and len(folder) == 12 - 1
    labels = [label for _, label in folder.dataset().as_numpy_iterator()]
    assert sorted(labels) == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 3]


def test_a_folder_of_only_corrupt_images_is_an_error(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(ValueError, match="none of the 1 images could be decoded"):
        data.image_folder(tmp_path)


def test_header_validation_catches_non_images_only(tmp_path):
    _write_folder(tmp_path)
    (tmp_path / "c3" / "bad.jpg").write_bytes(b"this is not a jpeg")
    with pytest.warns(UserWarning, match="skipped 1"):
        folder = data.image_folder(tmp_path, validate="header")
    assert folder.skipped == (str(tmp_path / "c3" / "bad.jpg"),)
    with pytest.raises(ValueError, match="validate"):
        data.image_folder(tmp_path, validate="sometimes")


def test_image_folder_bad_layouts_and_missing_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing_root"):
        data.image_folder(tmp_path / "missing_root")
    with pytest.raises(ValueError, match="no class or category folders"):
        data.image_folder(tmp_path)
    _write_folder(tmp_path)
    (tmp_path / "group" / "inner").mkdir(parents=True)
    with pytest.raises(ValueError, match="mixed layout"):
        data.image_folder(tmp_path)


def _write_list(tmp_path, rows, header=""):
    list_path = tmp_path / "list.csv"
    list_path.write_text(header + "".join(",".join(map(str, row)) + "\n" for row in rows))
    return list_path


def test_list_file_integer_ids_categories_and_pixels(tmp_path):
    written = _write_folder(tmp_path / "images")
    paths = [p.relative_to(tmp_path / "images").as_posix() for p in written]
    rows = [(path, 10 + i // 3, 100 + i // 6) for i, path in enumerate(paths)]
    listed = data.list_file(_write_list(tmp_path, rows, header="path,class,category\n# comment\n"),
                            image_root=tmp_path / "images")
    np.testing.assert_array_equal(listed.labels, np.repeat([10, 11, 12, 13], 3))
    np.testing.assert_array_equal(listed.categories, np.repeat([100, 101], 6))
    np.testing.assert_array_equal(_load(listed, 4), list(written.values())[4])
    train = data.list_file(tmp_path / "list.csv", image_root=tmp_path / "images", split="train")
    assert set(train.labels) == {10, 11}


def test_list_file_named_classes_relative_paths_and_no_category(tmp_path):
    written = _write_folder(tmp_path)
    rows = [(p.relative_to(tmp_path).as_posix(), f"item_{i % 2}") for i, p in enumerate(written)]
    listed = data.list_file(_write_list(tmp_path, rows))
    assert listed.class_names == ["item_0", "item_1"]
    np.testing.assert_array_equal(listed.labels, np.arange(12) % 2)
    assert listed.categories is not None and np.all(listed.categories == -1)


def test_list_file_errors_name_the_file_and_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.csv"):
        data.list_file(tmp_path / "absent.csv")
    _write_folder(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"ghost\.png.*line 2"):
        data.list_file(_write_list(tmp_path, [("c0/0.png", 0), ("c0/ghost.png", 0)]))
    with pytest.raises(ValueError, match="line 2"):
        data.list_file(_write_list(tmp_path, [("c0/0.png", 0), ("c0/1.png",)]))


# ---------------------------------------------------------------- TFDS (mocked)


def _mock_tfds(num_labels, with_super_class=False):
    """`as_dataset_fn` yielding real JPEG bytes, one example per label, split name kept in `requested`."""
    requested = []
    rows, cols = np.meshgrid(np.arange(16), np.arange(24), indexing="ij")
    pixels = np.stack([rows * 15, cols * 10, np.full_like(rows, 90)], axis=-1).astype(np.uint8)  # smooth: JPEG-friendly

    def as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
        requested.append(str(split))
        labels = np.arange(num_labels, dtype=np.int64)
        label_key = "class_id" if with_super_class else "label"
        examples = {"image": [_jpeg(pixels)] * num_labels, label_key: labels}
        if with_super_class:
            examples["super_class_id"] = labels % 12
        return tf.data.Dataset.from_tensor_slices(examples)

    return as_dataset, requested, pixels


@pytest.mark.parametrize("name, classes, first_test", [("caltech_birds2011", 200, 100), ("cars196", 196, 98)])
def test_tfds_cub_and_cars_split_by_class_over_both_tfds_splits(name, classes, first_test):
    as_dataset, requested, pixels = _mock_tfds(classes)
    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
        train = data.tfds_dataset(name, split="train")
        test = data.tfds_dataset(name, split="test")
    assert set(requested) == {"train+test"}
    np.testing.assert_array_equal(train.labels, np.arange(first_test))
    np.testing.assert_array_equal(test.labels, np.arange(first_test, classes))
    assert train.name == f"{name}/train" and len(train.class_names) == classes
    image = _load(test, 0)
    assert image.shape == (16, 24, 3) and np.abs(image.astype(int) - pixels).mean() < 4  # JPEG round trip


def test_tfds_sop_uses_official_splits_and_super_class_categories():
    as_dataset, requested, _ = _mock_tfds(30, with_super_class=True)
    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
        test = data.load("sop", split="test")
    assert requested == ["test"]
    np.testing.assert_array_equal(test.labels, np.arange(30))
    np.testing.assert_array_equal(test.categories, np.arange(30) % 12)
    assert len(test.category_names) == 12


def test_tfds_corrupt_image_is_skipped():
    def as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
        good = _jpeg(np.zeros((4, 4, 3), np.uint8))
        return tf.data.Dataset.from_tensor_slices({"image": [good, b"\x00" * 10, good], "label": [0, 1, 150]})

    with tfds.testing.mock_data(as_dataset_fn=as_dataset), pytest.warns(UserWarning, match="skipped 1"):
        every = data.load("cub200", split="all")
    assert every.skipped == ("caltech_birds2011[1]",)
    np.testing.assert_array_equal(every.labels, [0, 150])


def test_tfds_unprepared_dataset_says_how_to_prepare(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"tfds build cars196"):
        data.tfds_dataset("cars196", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="name"):
        data.tfds_dataset("mnist")


# ---------------------------------------------------------------- dispatch and pipelines


def test_load_dispatches_by_name_and_resizes(tmp_path):
    assert data.load("digits", split="test", image_size=None).name == "digits/test"
    assert _load(data.load("digits", split="test", image_size=12), 0).shape == (12, 12, 1)
    _write_folder(tmp_path)
    assert len(data.load("folder", root=tmp_path, split="all")) == 12
    resized = data.load("folder", root=tmp_path, split="train", image_size=4)
    image = _load(resized, 0)
    assert image.shape == (4, 4, 3) and image.dtype == np.float32
    np.testing.assert_allclose(image, tf.image.resize(_load(data.image_folder(tmp_path), 0), [4, 4], antialias=True))
    with pytest.raises(ValueError, match="image_size"):
        data.load("folder", root=tmp_path, image_size=-1)
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
        data.load("imagenet")
    with pytest.raises(ValueError, match="needs root"):
        data.load("folder")  # Omniglot without root falls back to TFDS (tests/data/test_omniglot_tfds.py)


def test_dataset_epochs_shuffle_cache_and_categories():
    collection = data.digits(split="train", image_size=None)
    small = collection.subset(np.arange(0, 40, 4), "digits/some")
    assert isinstance(small, LabelledImages) and len(small) == 10
    np.testing.assert_array_equal(small.labels, collection.labels[::4][:10])
    np.testing.assert_array_equal(_load(small, 2), _load(collection, 8))

    pipeline = small.dataset(shuffle=True, seed=1, cache=True, with_categories=True)
    first = [(image, label, category) for image, label, category in pipeline.as_numpy_iterator()]
    second = [label for _, label, _ in pipeline.as_numpy_iterator()]
    assert sorted(label for _, label, _ in first) == sorted(small.labels)
    assert sorted(second) == sorted(small.labels)
    assert [label for _, label, _ in first] != second  # reshuffled each epoch
    assert all(category == -1 for _, _, category in first)


def test_map_indices_loads_and_augments_sampled_indices():
    collection = data.digits(split="all", image_size=16)
    indices = tf.data.Dataset.from_tensor_slices(tf.constant([5, 5, 900], tf.int64))
    augmented = collection.map_indices(indices, Augmentation("base", size=8, seed=0)).batch(3)
    images, labels = next(iter(augmented))
    assert images.shape == (3, 8, 8, 1)
    np.testing.assert_array_equal(labels, collection.labels[[5, 5, 900]])
    assert not np.allclose(images[0], images[1])  # the same image gets its own random crop


def test_an_empty_class_folder_is_called_empty(tmp_path):
    """Issue 14, item 13: not a 'mixed layout ... (a category)'."""
    _write_folder(tmp_path)
    (tmp_path / "c9").mkdir()
    with pytest.raises(ValueError, match=r"class folder .*c9 is empty") as error:
        data.image_folder(tmp_path)
    assert "mixed layout" not in str(error.value)


def test_an_empty_class_folder_in_the_category_layout_is_called_empty(tmp_path):
    _write_folder(tmp_path, nested=True)
    (tmp_path / "cat1" / "c9").mkdir()
    with pytest.raises(ValueError, match=r"class folder .*c9 is empty"):
        data.image_folder(tmp_path, split="all")
