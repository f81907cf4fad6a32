"""Export an embedding model as a TF Serving SavedModel: ``models/<name>/<version>/``.

The export is atomic: the SavedModel is written to a hidden temporary directory
next to the target and renamed into place, so TF Serving (which polls
``models/<name>/`` for numeric version directories) never sees a half-written
version. Signatures:

- ``serving_default``: ``images`` float32 ``(b, h, w, c)`` in ``[0, 255]`` →
  ``{"embeddings": (b, d)}``;
- ``serving_bytes``: ``image_bytes`` string ``(b,)`` of encoded JPEG/PNG/BMP/GIF →
  decode, eval preprocessing (resize to the model's input size) → ``{"embeddings"}``.

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

from tfdml.io import write_directory_atomically

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
# Top-level entries of a SavedModel version folder: the only ones an overwrite may replace.
SAVED_MODEL_ENTRIES = ("saved_model.pb", "fingerprint.pb", "variables", "assets", "assets.extra")


def next_version(model_dir):
    """1 + the largest numeric version directory under ``model_dir`` (1 if there is none)."""
    if not os.path.isdir(model_dir):
        return 1
    versions = [int(name) for name in os.listdir(model_dir) if re.fullmatch(r"\d+", name)]
    return max(versions, default=0) + 1


def resize_for_model(image_size, channels):
    """Eval preprocessing of one decoded uint8 image: ``channels`` channels, bilinear resize, float32."""

    def preprocess(image):
        image = tf.image.resize(tf.cast(image, tf.float32), image_size)
        return tf.ensure_shape(image, (*image_size, channels))

    return preprocess


def write_warmup_requests(saved_model_dir, model_name, image_shape):
    """Write TF Serving's warm-up file: one PredictRequest per signature, batch of one."""
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
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name or ""):
        raise ValueError(f"Model name {name!r} must be non-empty and use only letters, digits, '_', '.', '-'.")
    version = next_version(os.path.join(base_dir, name)) if version is None else version
    if int(version) != version or version <= 0:
        raise ValueError(f"version must be a positive integer; got {version!r}.")
    image_shape = tuple(embedding_model.input_shape[1:])
    if len(image_shape) != 3 or None in image_shape:
        raise ValueError(f"Export needs a model with a fixed (h, w, c) image input; got {embedding_model.input_shape}.")
    return int(version), tuple(int(s) for s in image_shape)


def write_serving_model(outputs_fn, image_shape, base_dir, name, version, *, preprocess, overwrite, track=()):
    """Write a SavedModel whose two signatures (float images, encoded bytes) return ``outputs_fn(images)``."""
    height, width, channels = image_shape
    preprocess = preprocess or resize_for_model((height, width), channels)

    def from_floats(images):
        # Signature calls (and TF Serving) do not check the fed shape against the input
        # signature; without this a wrong shape fails deep inside a kernel, or not at all.
        return outputs_fn(tf.ensure_shape(images, (None, *image_shape)))

    def from_bytes(image_bytes):
        def decode(encoded):
            return preprocess(tf.io.decode_image(encoded, channels=channels, expand_animations=False))

        spec = tf.TensorSpec((height, width, channels), tf.float32)
        return outputs_fn(tf.map_fn(decode, tf.ensure_shape(image_bytes, (None,)), fn_output_signature=spec))

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


def export_embedding_model(embedding_model, base_dir, name, version=None, *, preprocess=None, overwrite=False):
    """Export ``embedding_model`` to ``base_dir/name/version`` for TF Serving and return that path.

    Args:
        embedding_model: Keras model, float images ``(b, h, w, c)`` in ``[0, 255]`` → embeddings.
        base_dir: the model base directory (TF Serving's ``--model_base_path`` parent), e.g. ``"models"``.
        name: model name (TF Serving's ``--model_name``).
        version: integer version; default: one more than the newest existing version.
        preprocess: eval preprocessing of one decoded uint8 image ``(h0, w0, c)`` for the bytes signature;
            default: bilinear resize to the model's input size.
        overwrite: replace an existing version (atomically) instead of raising.
    """
    version, image_shape = check_export_target(name, version, embedding_model, base_dir)

    def embed(images):
        return {"embeddings": embedding_model(images, training=False)}

    return write_serving_model(
        embed, image_shape, base_dir, name, version, preprocess=preprocess, overwrite=overwrite, track=[embedding_model]
    )


def export_retrieval_model(
    embedding_model, index, base_dir, name, version=None, *, k=10, preprocess=None, overwrite=False
):
    """Export a model that embeds query images and searches ``index`` (a ``tfdml.index.GalleryIndex``)
    inside the graph: both signatures return ``{"ids", "distances", "labels"}``, each ``(b, k)``,
    nearest first. The gallery is stored as variables of the SavedModel; updating it means
    exporting a new version. ``k`` is fixed at export time and must not exceed the gallery size.
    """
    from tfdml.index import exact_search

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
        return {
            "ids": tf.gather(gallery.ids, positions),
            "distances": distances,
            "labels": tf.gather(gallery.labels, positions),
        }

    return write_serving_model(
        search,
        image_shape,
        base_dir,
        name,
        version,
        preprocess=preprocess,
        overwrite=overwrite,
        track=[embedding_model, gallery],
    )
