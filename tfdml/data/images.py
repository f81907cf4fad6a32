"""Encoded-image tables: decode-on-load functions and construction-time validation.

Readers keep images encoded (PNG/JPEG/GIF/BMP bytes in memory, or file paths on
disk) and decode one image per ``load(index)`` call inside ``tf.data``. Images that
cannot be decoded are found once, when the reader is built, so a corrupt file is
skipped with a warning instead of stopping an epoch halfway.
"""

import warnings

import numpy as np
import tensorflow as tf

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp")
VALIDATION_MODES = ("decode", "header", "none")

# Leading bytes of the formats `tf.io.decode_image` reads.
_MAGIC_NUMBERS = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM")
_HEADER_BYTES = 8


def decode(encoded, channels):
    """Decodes one encoded image to a uint8 ``(h, w, channels)`` tensor (first frame of a GIF)."""
    image = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
    return tf.ensure_shape(image, [None, None, channels])


def bytes_table(encoded):
    """``index -> encoded[index]`` from an in-memory table of image bytes."""
    table = tf.constant(np.asarray(encoded, dtype=object))
    return lambda index: tf.gather(table, index)


def file_table(paths):
    """``index -> bytes of the file paths[index]``."""
    table = tf.constant([str(p) for p in paths])
    return lambda index: tf.io.read_file(tf.gather(table, index))


def decoding(encoded, channels):
    """``load(index)``: decodes ``encoded(index)`` to ``channels`` channels."""
    return lambda index: decode(encoded(index), channels)


def decodable(sources, *, from_files, channels, mode="decode"):
    """Boolean mask of the images that can be read.

    Args:
        sources: encoded image bytes, or file paths when ``from_files``.
        from_files: whether ``sources`` are paths.
        channels: channel count passed to the decoder (as the loader will use).
        mode: ``"decode"`` decodes every image once (parallel ``tf.data`` map, errors
            ignored); ``"header"`` only checks the leading bytes for a known image
            format; ``"none"`` trusts every image.
    """
    if mode not in VALIDATION_MODES:
        raise ValueError(f"validate must be one of {VALIDATION_MODES}, got {mode!r}")
    count = len(sources)
    if mode == "none" or count == 0:
        return np.ones(count, dtype=bool)
    if mode == "header":
        return np.array([_has_image_header(_leading_bytes(s, from_files)) for s in sources], dtype=bool)
    table = tf.constant([str(s) for s in sources] if from_files else np.asarray(sources, dtype=object))

    def decoded_index(index, source):
        encoded = tf.io.read_file(source) if from_files else source
        return index, tf.shape(decode(encoded, channels))

    readable = (
        tf.data.Dataset.from_tensor_slices((tf.range(count, dtype=tf.int64), table))
        .map(decoded_index, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
        .ignore_errors()
        .batch(4096)
    )
    mask = np.zeros(count, dtype=bool)
    for indices, _ in readable.as_numpy_iterator():
        mask[indices] = True
    return mask


def report_skipped(name, skipped, total):
    """Warns that the ``skipped`` images (names) were dropped from ``name``; raises if all ``total`` were."""
    if not skipped:
        return
    shown = ", ".join(str(s) for s in skipped[:10])
    more = f" and {len(skipped) - 10} more" if len(skipped) > 10 else ""
    if len(skipped) == total:
        raise ValueError(f"{name}: none of the {total} images could be decoded: {shown}{more}")
    warnings.warn(f"{name}: skipped {len(skipped)} unreadable image(s): {shown}{more}", stacklevel=3)


def _leading_bytes(source, from_files):
    if not from_files:
        return bytes(source[:_HEADER_BYTES])
    with open(source, "rb") as image_file:
        return image_file.read(_HEADER_BYTES)


def _has_image_header(header):
    return any(header.startswith(magic) for magic in _MAGIC_NUMBERS)
