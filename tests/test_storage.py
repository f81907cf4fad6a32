"""Issue 33, storage and serving: what tfdml writes survives a kill, and what it reads is checked.

D1/D33 the gallery index's ids, index.json and gallery.npz; D11 export names; D18-D20 the image
size limit of ``serving_bytes``. D2/D30 (a writer killed inside ``tfdml.io.write_directory_atomically``):
tests/test_io.py.
"""

import io
import os
import pathlib
import struct
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest
import tensorflow as tf

from tfdml import export, models
from tfdml.data import images
from tfdml.index import GalleryIndex

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def embedder():
    return models.build_embedding_model("convnet", input_shape=(8, 8, 1), embedding_dim=4, blocks=1, filters=2)

# ---------------------------------------------------------------- D1: ids checked at add with load's rule


@pytest.mark.parametrize(
    "ids",
    [
        np.arange(4) + 0.5,
        np.array([b"a0", b"a1", b"a2", b"a3"]),
        np.array([("t", k) for k in range(4)] + [None], dtype=object)[:4],
        np.array(["a", "b", "c", "d"], dtype=object),
        np.array([True, False, True, False]),
    ],
    ids=["float", "bytes", "object", "object-str", "bool"],
)
def test_d1_ids_load_would_refuse_are_refused_at_add(ids, tmp_path):
    index = GalleryIndex(dim=4)
    with pytest.raises(ValueError, match="ids must be integers or strings"):
        index.add(np.eye(4), ids=ids)
    assert len(index) == 0
    index.save(str(tmp_path / "idx"))  # what is saved can always be loaded
    assert len(GalleryIndex.load(str(tmp_path / "idx"))) == 0


@pytest.mark.parametrize("ids", [np.arange(4, dtype=np.uint32), np.array(["a", "bb", "c", "d"])], ids=["uint", "str"])
def test_d1_accepted_ids_come_back_from_load(ids, tmp_path):
    index = GalleryIndex(dim=4)
    index.add(np.eye(4), ids=ids)
    index.save(str(tmp_path / "idx"))
    np.testing.assert_array_equal(GalleryIndex.load(str(tmp_path / "idx")).ids, ids)


# ---------------------------------------------------------------- D33: load names the file and the problem


def saved_index(tmp_path, labels=None):
    path = tmp_path / "idx"
    index = GalleryIndex(dim=4)
    index.add(np.eye(4), ids=np.arange(4), labels=labels)
    index.save(str(path))
    return path


@pytest.mark.parametrize("dim", ["Infinity", "NaN", "true", "1e300"])
def test_d33_bad_dim_in_index_json_is_named(dim, tmp_path):
    path = saved_index(tmp_path)
    (path / "index.json").write_text(f'{{"dim": {dim}, "metric": "euclidean", "backend": "exact"}}')
    with pytest.raises(ValueError, match=r"index.json is not a valid gallery index description: dim must be a posi"):
        GalleryIndex.load(str(path))


def test_d33_garbage_gallery_file_is_not_called_pickled(tmp_path):
    path = saved_index(tmp_path)
    (path / "gallery.npz").write_bytes(b"garbage, not an archive")
    with pytest.raises(ValueError, match=r"gallery.npz is corrupt or not written by .* \(not an .npz archive\)"):
        GalleryIndex.load(str(path))


def test_d33_labels_beyond_int64_are_refused_not_wrapped(tmp_path):
    path = saved_index(tmp_path)
    with np.load(path / "gallery.npz") as stored:
        arrays = dict(stored)
    arrays["labels"] = np.full(4, 2**63, np.uint64)
    np.savez(path / "gallery.npz", **arrays)
    with pytest.raises(ValueError, match=r"gallery.npz: labels must fit in int64"):
        GalleryIndex.load(str(path))
    with pytest.raises(ValueError, match="labels must fit in int64"):
        GalleryIndex(dim=4).add(np.eye(4), ids=np.arange(4), labels=np.full(4, 2**63, np.uint64))
    # The largest int64 label is kept exactly.
    big = np.full(4, 2**63 - 1, np.uint64)
    loaded = GalleryIndex.load(str(saved_index(tmp_path / "b", labels=big)))
    np.testing.assert_array_equal(loaded.labels, big.astype(np.int64))


# ---------------------------------------------------------------- D11: export names


@pytest.mark.parametrize("name", ["..", ".", ".hidden", "-m"])
def test_d11_export_names_follow_train_pys_rule(name, embedder, tmp_path):
    base = tmp_path / "base"
    with pytest.raises(ValueError, match="Model name"):
        export.export_embedding_model(embedder, str(base), name, 1)
    with pytest.raises(ValueError, match="Model name"):
        export.check_export_settings(name, None, str(base))
    assert sorted(os.listdir(tmp_path)) == []


# ---------------------------------------------------------------- D18-D20: size limits of serving_bytes


def encoded(array, image_format, **options):
    buffer = io.BytesIO()
    PIL.Image.fromarray(array).save(buffer, format=image_format, **options)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def served_rgb(tmp_path_factory):
    """``serving_bytes`` of a 3-channel model that accepts 100 pixels at most."""
    embedder = models.build_embedding_model("convnet", input_shape=(8, 8, 3), embedding_dim=4, blocks=1, filters=2)
    path = export.export_embedding_model(embedder, str(tmp_path_factory.mktemp("models")), "rgb", max_image_pixels=100)
    return tf.saved_model.load(path).signatures["serving_bytes"]


def serve(served, *files):
    return served(image_bytes=tf.constant(list(files)))["embeddings"]


WEBP_KINDS = {
    "lossy": lambda a: encoded(a, "WEBP", quality=80),
    "lossless": lambda a: encoded(a, "WEBP", lossless=True),
    "alpha (VP8X)": lambda a: encoded(np.dstack([a, np.full(a.shape[:2], 128, np.uint8)]), "WEBP", quality=80),
}


@pytest.mark.parametrize("kind", list(WEBP_KINDS))
def test_d18_webp_size_is_read_from_its_header(served_rgb, kind):
    make = WEBP_KINDS[kind]
    small, big = np.zeros((10, 10, 3), np.uint8), np.zeros((10, 11, 3), np.uint8)
    assert serve(served_rgb, make(small)).shape == (1, 4)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"larger than max_image_pixels=100.*\[10 11\]"):
        serve(served_rgb, make(big))
    assert tuple(images.header_size(make(big)).numpy()) == (10, 11)


def test_d18_formats_whose_size_cannot_be_read_are_refused(served_rgb):
    jpeg_xl = b"\xff\x0a" + bytes(64)  # a JPEG XL codestream signature: TF would hand it to its JXL decoder
    with pytest.raises(tf.errors.InvalidArgumentError, match="Unknown image file format"):
        serve(served_rgb, jpeg_xl)


def test_d18_webp_decodes_for_gray_and_rgb_models_like_its_rgb_pixels(rng):
    rgb = rng.integers(0, 256, size=(6, 7, 3)).astype(np.uint8)
    webp = encoded(rgb, "WEBP", lossless=True)
    np.testing.assert_array_equal(images.decode(webp, 3), rgb)
    np.testing.assert_array_equal(images.decode(webp, 1), tf.image.rgb_to_grayscale(rgb))
    rgba = encoded(np.dstack([rgb, np.full((6, 7), 9, np.uint8)]), "WEBP", lossless=True)
    np.testing.assert_array_equal(images.decode(rgba, 3), rgb)


def gif_with_screen(array, screen):
    """A one-frame GIF of ``array`` whose logical screen claims ``screen`` (height, width)."""
    gif = bytearray(encoded(array, "GIF"))
    gif[6:10] = struct.pack("<HH", screen[1], screen[0])
    return bytes(gif)


def test_d19_gif_frames_larger_than_the_logical_screen_are_measured(served_rgb):
    frame = np.zeros((10, 11), np.uint8)
    assert tuple(images.header_size(gif_with_screen(frame, (4, 4))).numpy()) == (10, 11)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"larger than max_image_pixels=100.*\[10 11\]"):
        serve(served_rgb, gif_with_screen(frame, (4, 4)))
    assert serve(served_rgb, gif_with_screen(np.zeros((10, 10), np.uint8), (4, 4))).shape == (1, 4)


def animated_gif(frames, **options):
    buffer = io.BytesIO()
    first, *rest = [PIL.Image.fromarray(f) for f in frames]
    first.save(buffer, format="GIF", save_all=True, append_images=rest, optimize=False, disposal=1, **options)
    return buffer.getvalue()


def test_d20_an_animated_gif_decodes_to_its_first_frame(served_rgb, rng):
    frames = [rng.integers(0, 256, size=(9, 10)).astype(np.uint8) for _ in range(3)]
    gif = animated_gif(frames, duration=50, comment=b"extensions before the first frame")
    np.testing.assert_array_equal(images.decode(gif, 3), tf.io.decode_gif(gif)[0])
    assert serve(served_rgb, gif).shape == (1, 4)


MEMORY_CHILD = r"""
import resource, sys
import tensorflow as tf
from tfdml.data import images
peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
for path in sys.argv[1:]:
    images.decode(open(path, "rb").read(), 3)
    print(peak())
"""


def test_d20_memory_does_not_grow_with_the_frame_count(tmp_path):
    # giflib reads every frame into memory before TF takes the first: 60 frames of 2048×2048
    # (4.2 Mpx each, under the default limit) cost 230 MB more than 2 unless only the first is read.
    still = encoded(np.zeros((2048, 2048), np.uint8), "GIF")
    start = 13 + 3 * 2 ** ((still[10] & 7) + 1) * (still[10] >> 7)  # after the header and global colour table
    assert still[start] == 0x2C and still[-1:] == b";"
    for count in (2, 60):  # the same frame again and again
        (tmp_path / f"{count}.gif").write_bytes(still[:start] + still[start:-1] * count + b";")
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_CHILD, str(tmp_path / "2.gif"), str(tmp_path / "60.gif")],
        env=env, capture_output=True, text=True, check=True,
    )
    two, sixty = (int(line) for line in done.stdout.split())
    assert sixty - two < 60, f"peak memory grew by {sixty - two} MB for 58 more frames"
