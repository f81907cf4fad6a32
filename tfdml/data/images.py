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
_JPEG, _PNG, _GIF, _BMP = b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF8", b"BM"
_MAGIC_NUMBERS = (_JPEG, _PNG, b"GIF87a", b"GIF89a", _BMP)
_HEADER_BYTES = 8
# Bytes of a PNG/GIF/BMP header that hold its size (PNG: IHDR width, height at 16, 20; BMP: 18, 22).
_SIZE_HEADER_BYTES = 26


def decode(encoded, channels):
    """Decodes one encoded image to a uint8 ``(h, w, channels)`` tensor (first frame of a GIF).

    ``channels`` is 1 (grayscale) or 3 (RGB) for every format, or any count ``tf.io.decode_image``
    accepts. JPEG and PNG are converted by their decoders; GIF (always RGB) and BMP (gray, RGB or
    RGBA) are decoded with their own channel count, then converted: alpha dropped,
    ``tf.image.rgb_to_grayscale`` to gray, ``tf.image.grayscale_to_rgb`` to RGB.
    """
    encoded = tf.convert_to_tensor(encoded, tf.string)
    if channels not in (1, 3):
        image = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
        return tf.ensure_shape(image, [None, None, channels])
    prefix = tf.strings.substr(encoded, 0, len(_GIF))
    own_channels = tf.logical_or(tf.equal(prefix, _GIF), tf.equal(tf.strings.substr(prefix, 0, len(_BMP)), _BMP))
    image = tf.cond(
        own_channels,
        lambda: _convert_channels(tf.io.decode_image(encoded, channels=0, expand_animations=False), channels),
        lambda: tf.io.decode_image(encoded, channels=channels, expand_animations=False),
    )
    return tf.ensure_shape(image, [None, None, channels])


def _convert_channels(image, channels):
    """A uint8 gray, RGB or RGBA image (channel count known only at run time) as ``channels`` (1 or 3)."""
    is_gray = tf.equal(tf.shape(image)[-1], 1)
    gray = lambda: tf.ensure_shape(image[..., :1], [None, None, 1])  # noqa: E731
    rgb = lambda: tf.ensure_shape(image[..., :3], [None, None, 3])  # noqa: E731
    if channels == 1:
        return tf.cond(is_gray, gray, lambda: tf.image.rgb_to_grayscale(rgb()))
    return tf.cond(is_gray, lambda: tf.image.grayscale_to_rgb(gray()), rgb)


def header_size(encoded):
    """``(height, width)`` int64 of an encoded JPEG/PNG/GIF/BMP read from its header, without decoding it.

    JPEG through ``tf.io.extract_jpeg_shape``; PNG (big-endian IHDR fields), GIF (little-endian
    logical screen size) and BMP (little-endian, height negative for top-down rows) from their
    fixed header fields. ``(0, 0)`` for other or truncated data, which the decoder then rejects.
    """
    encoded = tf.convert_to_tensor(encoded, tf.string)
    # Padding makes every fixed-offset read valid; a truncated header reads as zeros.
    header = tf.strings.substr(tf.strings.join([encoded, b"\0" * _SIZE_HEADER_BYTES]), 0, _SIZE_HEADER_BYTES)

    def field(offset, dtype, little_endian):
        size = dtype.size
        value = tf.io.decode_raw(tf.strings.substr(header, offset, size), dtype, little_endian=little_endian)[0]
        return tf.cast(value, tf.int64)

    def unsigned32(offset, little_endian):
        return tf.math.floormod(field(offset, tf.int32, little_endian), 1 << 32)

    def starts_with(magic):
        return tf.equal(tf.strings.substr(header, 0, len(magic)), magic)

    return tf.case(
        [
            (starts_with(_JPEG), lambda: tf.cast(tf.io.extract_jpeg_shape(encoded)[:2], tf.int64)),
            (starts_with(_PNG), lambda: tf.stack([unsigned32(20, False), unsigned32(16, False)])),
            (starts_with(_GIF), lambda: tf.stack([field(8, tf.uint16, True), field(6, tf.uint16, True)])),
            (starts_with(_BMP), lambda: tf.abs(tf.stack([field(22, tf.int32, True), field(18, tf.int32, True)]))),
        ],
        default=lambda: tf.zeros([2], tf.int64),
        exclusive=True,
    )


def bytes_table(encoded):
    """``index -> encoded[index]`` from an in-memory table of image bytes."""
    table = tf.constant(np.asarray(encoded, dtype=object))
    return lambda index: tf.gather(table, index)


def file_table(paths):
    """``index -> bytes of the file paths[index]``."""
    table = tf.constant([str(p) for p in paths])
    return lambda index: tf.io.read_file(tf.gather(table, index))


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
