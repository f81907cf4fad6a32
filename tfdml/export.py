"""Export an embedding model as a TF Serving SavedModel: ``models/<name>/<version>/``.

The export is atomic: the SavedModel is written to a hidden temporary directory
next to the target and renamed into place, so TF Serving (which polls
``models/<name>/`` for numeric version directories) never sees a half-written
version. Signatures:

- ``serving_default``: ``images`` float32 ``(b, h, w, c)``, exactly the model's input
  size, already preprocessed (the output of the eval preprocessing, e.g.
  ``LabelledImages.load``; values in [0, 255]) → ``{"embeddings": (b, d)}``. Images
  holding NaN or ±Inf are refused (``InvalidArgumentError``).
- ``serving_bytes``: ``image_bytes`` string ``(b,)``, each an original JPEG/PNG/GIF/BMP/WebP
  file of any size → decoded with the model's channel count (the first frame of an
  animation; :func:`tfdml.data.images.decode`), then the training data's eval preprocessing
  (``preprocess``, e.g. ``LabelledImages.preprocess``: inversion, resize method and
  size, scaling) → ``{"embeddings"}``. Images of more than ``max_image_pixels``
  pixels (height × width the decoder would allocate, read from the file's header before
  decoding: :func:`tfdml.data.images.header_size`) are refused, and so are formats whose
  size cannot be read that way (JPEG XL).

Only the embedding model is exported: loss parameters (β, proxies) live in the
loss and are never part of it. ``assets.extra/tf_serving_warmup_requests``
holds one warm-up ``PredictRequest`` per signature so TF Serving compiles the
graph before the first real request.

Example:

>>> path = export_embedding_model(embedder, "models", "digits_margin")   # models/digits_margin/1
>>> served = tf.saved_model.load(path).signatures["serving_default"]
>>> served(images=tf.zeros((1, 32, 32, 1)))["embeddings"].shape
TensorShape([1, 128])
"""

import os
import re

import keras
import numpy as np
import tensorflow as tf

from tfdml.data.images import decode, header_size
from tfdml.extras import require
from tfdml.io import write_directory_atomically
from tfdml.neighbors import exact_search
from tfdml.training.config import NAME_PATTERN

#: Largest decoded image (height × width) ``serving_bytes`` accepts by default: 4096 × 4096 (48 MiB as RGB).
MAX_IMAGE_PIXELS = 4096 * 4096
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
_WARMUP_PURPOSE = "An export (its TF Serving warm-up requests)"
# Top-level entries of a SavedModel version folder: the only ones an overwrite may replace.
SAVED_MODEL_ENTRIES = ("saved_model.pb", "fingerprint.pb", "variables", "assets", "assets.extra")


def next_version(model_dir):
    """1 + the largest numeric version directory under ``model_dir`` (1 if there is none)."""
    if not os.path.isdir(model_dir):
        return 1
    versions = [int(name) for name in os.listdir(model_dir) if re.fullmatch(r"\d+", name)]
    return max(versions, default=0) + 1


def resize_for_model(image_size):
    """The default preprocessing of ``serving_bytes``: bilinear resize to ``image_size`` (float32).

    Right only for models trained on images resized this way; pass the training data's own
    ``preprocess`` otherwise.
    """
    return lambda image: tf.image.resize(tf.cast(image, tf.float32), image_size)


def bytes_to_model_input(image_shape, preprocess, max_image_pixels=MAX_IMAGE_PIXELS):
    """``encoded image (scalar string) -> float32 image_shape``: size check, decode, ``preprocess``.

    The size (from the header) is checked before the decoder allocates anything; an image
    that ``preprocess`` does not bring to ``image_shape`` is refused with both shapes named.
    """
    height, width, channels = image_shape

    def to_input(encoded):
        size = header_size(encoded)
        # Each side is bounded first, so the product cannot overflow int64 (PNG sides go up to 2³²).
        fits = tf.reduce_all(size <= max_image_pixels) & (tf.reduce_prod(size) <= max_image_pixels)
        too_big = tf.debugging.Assert(
            fits,
            [f"serving_bytes: image larger than max_image_pixels={max_image_pixels}; its header says height, width =", size],
        )
        with tf.control_dependencies([too_big]):
            image = tf.cast(preprocess(decode(encoded, channels)), tf.float32)
        wrong_shape = tf.debugging.assert_equal(
            tf.shape(image),
            tf.constant(image_shape, tf.int32),
            message=f"serving_bytes: the eval preprocessing gave an image of another shape than the model's "
            f"input {image_shape}; send images it brings to {height}×{width} (that size, if it does not resize)",
        )
        with tf.control_dependencies([wrong_shape]):
            return tf.ensure_shape(tf.identity(image), image_shape)

    return to_input


def check_export_settings(name, version, base_dir, *, gallery=None, gallery_k=10, max_image_pixels=MAX_IMAGE_PIXELS):
    """Validate export settings before any work (``train`` calls this before training).

    Raises ``ValueError`` naming the setting for a bad model name (also of ``<name>-search``
    with a gallery), a non-positive or non-integer version or ``gallery_k``/``max_image_pixels``,
    a gallery that is neither ``"test"`` nor an existing folder, ``FileExistsError`` for a
    version that already exists, and ``MissingExtraError`` without ``tfdml[serving]``.
    """
    check_name(name)
    names = [name] + ([f"{name}-search"] if gallery else [])
    if version is not None:
        _check_positive_int(version, "export.version")
        for model_name in names:
            target = os.path.join(base_dir, model_name, str(version))
            if os.path.exists(target):
                raise FileExistsError(f"export.version: {target} already exists; choose another version or none.")
    if gallery:
        if gallery != "test" and not os.path.isdir(gallery):
            raise ValueError(f"export.gallery must be 'test' or an existing image folder; {gallery!r} is neither.")
        _check_positive_int(gallery_k, "export.gallery_k")
    _check_positive_int(max_image_pixels, "export.max_image_pixels")
    require("tensorflow_serving", _WARMUP_PURPOSE)


def check_name(name):
    """``train.py``'s rule: one folder name, never ``.``, ``..`` or hidden, so the export stays in ``base_dir``."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ValueError(
            f"Model name {name!r} must be one folder name: letters, digits, '_', '.', '-', "
            "starting with a letter or digit."
        )


def check_version(version):
    _check_positive_int(version, "version")


def _check_positive_int(value, what):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{what} must be a positive integer; got {value!r}.")


def write_warmup_requests(saved_model_dir, model_name, image_shape):
    """Write TF Serving's warm-up file: one PredictRequest per signature, batch of one."""
    require("tensorflow_serving", _WARMUP_PURPOSE)
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    png = tf.io.encode_png(tf.zeros((*image_shape[:2], image_shape[2]), tf.uint8)).numpy()
    requests = {
        "serving_default": ("images", tf.make_tensor_proto(np.zeros((1, *image_shape), np.float32))),
        "serving_bytes": ("image_bytes", tf.make_tensor_proto([png], dtype=tf.string)),
    }
    os.makedirs(os.path.join(saved_model_dir, "assets.extra"), exist_ok=True)
    with tf.io.TFRecordWriter(os.path.join(saved_model_dir, WARMUP_FILE)) as writer:
        for signature, (input_name, tensor) in requests.items():
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature)
            )
            request.inputs[input_name].CopyFrom(tensor)
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())


def check_export_target(name, version, embedding_model, base_dir):
    """Validate name/version/model; return ``(version, image_shape)``."""
    check_name(name)
    version = next_version(os.path.join(base_dir, name)) if version is None else version
    check_version(version)
    image_shape = tuple(embedding_model.input_shape[1:])
    if len(image_shape) != 3 or None in image_shape:
        raise ValueError(f"Export needs a model with a fixed (h, w, c) image input; got {embedding_model.input_shape}.")
    return int(version), tuple(int(s) for s in image_shape)


def write_serving_model(
    outputs_fn, image_shape, base_dir, name, version, *, preprocess, max_image_pixels, overwrite, track=()
):
    """Write a SavedModel whose two signatures (float images, encoded bytes) return ``outputs_fn(images)``."""
    _check_positive_int(max_image_pixels, "max_image_pixels")
    to_input = bytes_to_model_input(image_shape, preprocess or resize_for_model(image_shape[:2]), max_image_pixels)

    def from_floats(images):
        # Signature calls (and TF Serving) do not check the fed shape against the input
        # signature; without this a wrong shape fails deep inside a kernel, or not at all.
        images = tf.ensure_shape(images, (None, *image_shape))
        # A NaN pixel would otherwise come back as a plausible answer (top-k ranks NaN scores anywhere).
        return outputs_fn(tf.debugging.assert_all_finite(images, "serving_default: images contain NaN or Inf"))

    def from_bytes(image_bytes):
        spec = tf.TensorSpec(image_shape, tf.float32)
        return outputs_fn(tf.map_fn(to_input, tf.ensure_shape(image_bytes, (None,)), fn_output_signature=spec))

    def write(directory):
        archive = keras.export.ExportArchive()
        for resource in track:
            archive.track(resource)
        images_spec = tf.TensorSpec((None, *image_shape), tf.float32, name="images")
        archive.add_endpoint("serving_default", from_floats, input_signature=[images_spec])
        archive.add_endpoint(
            "serving_bytes", from_bytes, input_signature=[tf.TensorSpec((None,), tf.string, name="image_bytes")]
        )
        archive.write_out(directory, verbose=False)
        write_warmup_requests(directory, name, image_shape)

    return write_directory_atomically(
        os.path.join(base_dir, name, str(version)), write, overwrite=overwrite, owned=SAVED_MODEL_ENTRIES
    )


def export_embedding_model(
    embedding_model, base_dir, name, version=None, *, preprocess=None, max_image_pixels=MAX_IMAGE_PIXELS,
    overwrite=False,
):
    """Export ``embedding_model`` to ``base_dir/name/version`` for TF Serving and return that path.

    Args:
        embedding_model: Keras model, float images ``(b, h, w, c)`` in ``[0, 255]`` → embeddings.
        base_dir: the model base directory (TF Serving's ``--model_base_path`` parent), e.g. ``"models"``.
        name: model name (TF Serving's ``--model_name``): one folder name of letters, digits,
            ``.``, ``_``, ``-``, starting with a letter or digit (``train.py``'s rule).
        version: integer version; default: one more than the newest existing version.
        preprocess: eval preprocessing of one decoded uint8 image ``(h0, w0, c)`` (any size, the model's
            channel count) to the model's input, run by the bytes signature: the training data's
            ``LabelledImages.preprocess`` (``train.py`` passes it). Default: bilinear resize to the
            model's input size, right only for models trained on images resized that way.
        max_image_pixels: largest height × width ``serving_bytes`` decodes; larger images are refused.
        overwrite: replace an existing version (atomically) instead of raising.
    """
    version, image_shape = check_export_target(name, version, embedding_model, base_dir)

    def embed(images):
        return {"embeddings": embedding_model(images, training=False)}

    return write_serving_model(
        embed, image_shape, base_dir, name, version, preprocess=preprocess, max_image_pixels=max_image_pixels,
        overwrite=overwrite, track=[embedding_model],
    )


def export_retrieval_model(
    embedding_model, index, base_dir, name, version=None, *, k=10, preprocess=None,
    max_image_pixels=MAX_IMAGE_PIXELS, overwrite=False,
):
    """Export a model that embeds query images and searches ``index`` (a ``tfdml.index.GalleryIndex``)
    inside the graph: both signatures return ``{"ids", "distances", "labels"}``, each ``(b, k)``,
    nearest first. The gallery is stored as variables of the SavedModel; updating it means
    exporting a new version. ``k`` is fixed at export time and must not exceed the gallery size.
    The gallery must have been embedded with the same ``preprocess`` as the queries. Other
    arguments as for :func:`export_embedding_model`.
    """
    index.check_k(k)
    version, image_shape = check_export_target(name, version, embedding_model, base_dir)
    if embedding_model.output_shape[-1] != index.dim:
        raise ValueError(
            f"The model's embedding dimension {embedding_model.output_shape[-1]} differs from the index's {index.dim}."
        )
    gallery = tf.Module(name="gallery")
    gallery.embeddings = tf.Variable(index.embeddings, trainable=False, name="embeddings")
    gallery.ids = tf.Variable(index.ids, trainable=False, name="ids")
    gallery.labels = tf.Variable(index.labels, trainable=False, name="labels")

    def search(images):
        queries = embedding_model(images, training=False)
        distances, positions = exact_search(queries, gallery.embeddings, int(k), index.metric)
        # exact_search's chunk loop loses the static shape; clients and saved_model_cli need (b, k).
        positions = tf.ensure_shape(positions, (None, int(k)))
        return {
            "ids": tf.gather(gallery.ids, positions),
            "distances": tf.ensure_shape(distances, (None, int(k))),
            "labels": tf.gather(gallery.labels, positions),
        }

    return write_serving_model(
        search,
        image_shape,
        base_dir,
        name,
        version,
        preprocess=preprocess,
        max_image_pixels=max_image_pixels,
        overwrite=overwrite,
        track=[embedding_model, gallery],
    )
