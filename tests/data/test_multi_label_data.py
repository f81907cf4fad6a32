"""Multi-label data: the list-file reader (format, errors naming file and line) and Omniglot characters
overlaid in pairs (each drawing used once, labels of both characters)."""

import numpy as np
import PIL.Image
import pytest
import tensorflow as tf

from tfdml.data import load, multi_label_list_file, omniglot_pairs


@pytest.fixture
def listed(tmp_path):
    for name in ("a.png", "b.png", "c.png"):
        PIL.Image.fromarray(np.full((6, 6, 3), 40, np.uint8)).save(tmp_path / name)
    path = tmp_path / "labels.tsv"
    path.write_text("path\tlabels\tsplit\n# a comment\na.png\tmilk,cereal\ttrain\n\nb.png\tcereal\ttest\nc.png\t\ttrain\n")
    return path


def test_the_list_file_gives_multi_hot_label_sets_by_name_and_split(listed):
    every = multi_label_list_file(listed)
    assert every.class_names == ["cereal", "milk"]
    np.testing.assert_array_equal(every.labels, [[1, 1], [1, 0], [0, 0]])
    assert every.load(tf.constant(0, tf.int64)).shape == (6, 6, 3)
    train = load("multi_label_list", root=listed, split="train", image_size=4)
    np.testing.assert_array_equal(train.labels, [[1, 1], [0, 0]])
    assert train.load(tf.constant(1, tf.int64)).shape == (4, 4, 3) and train.multi_label and train.num_classes == 2


@pytest.mark.parametrize(
    "row, message",
    [
        ("a.png", r"labels.tsv, line 2: expected 'path'\\t'label1,label2"),
        ("a.png\tmilk,,cereal", r"labels.tsv, line 2: an empty label in 'milk,,cereal'"),
        ("a.png\tmilk\tvalidation", r"labels.tsv, line 2: the split field must be 'train' or 'test', got 'validation'"),
    ],
)
def test_a_bad_row_is_named_by_file_and_line(tmp_path, row, message):
    path = tmp_path / "labels.tsv"
    path.write_text(f"b.png\tmilk,cereal\n{row}\n")
    with pytest.raises(ValueError, match=message):
        multi_label_list_file(path)


def test_missing_images_and_rows_without_a_split_are_named(listed):
    listed.write_text(listed.read_text() + "gone.png\tmilk\ttrain\n")
    with pytest.raises(FileNotFoundError, match=r"1 listed image\(s\) do not exist, first .*gone.png .*line 7"):
        multi_label_list_file(listed)
    listed.write_text("a.png\tmilk,cereal\ttrain\nb.png\tmilk\n")
    with pytest.raises(ValueError, match="line 2: split='test' reads the rows whose third field"):
        multi_label_list_file(listed, split="test")


def test_omniglot_pairs_overlay_each_drawing_once_with_both_labels():
    pairs = omniglot_pairs(split="test", image_size=12, characters=5, seed=1)
    assert pairs.labels.shape[1] == 5 and set(pairs.labels.sum(axis=1)) == {1, 2}
    np.testing.assert_array_equal(pairs.labels.sum(axis=0), [20] * 5)  # each character's 20 drawings, once each
    assert 0.15 < np.mean(pairs.labels.sum(axis=1) == 1) < 0.5  # 25 % singles, more where two drawings clash
    assert pairs.class_names[0] == "Japanese_(katakana)/character01"  # the first held-out alphabet
    stack = np.stack([pairs.load(tf.constant(i, tf.int64)).numpy() for i in (0, len(pairs) - 1)])
    assert stack.shape == (2, 12, 12, 1) and stack.max() > 200 and stack.mean() < 128  # bright strokes
    with pytest.raises(ValueError, match="omniglot_pairs: characters must be in 2..106"):
        omniglot_pairs(split="test", characters=1)
