"""Encoded-image tables: decode-on-load functions and construction-time validation.

Readers keep images encoded (PNG/JPEG/GIF/BMP/WebP bytes in memory, or file paths on
disk) and decode one image per ``load(index)`` call inside ``tf.data``. Images that
cannot be decoded are found once, when the reader is built, so a corrupt file is
skipped with a warning instead of stopping an epoch halfway.
"""

import warnings

import numpy as np
import tensorflow as tf

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp")
VALIDATION_MODES = ("decode", "header", "none")

# Leading bytes of the formats `tf.io.decode_image` reads (WebP: "RIFF", 4 bytes, "WEBP").
_JPEG, _PNG, _GIF, _BMP, _RIFF, _WEBP = b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF8", b"BM", b"RIFF", b"WEBP"
_MAGIC_NUMBERS = (_JPEG, _PNG, b"GIF87a", b"GIF89a", _BMP)
_HEADER_BYTES = 8
# Bytes of a header that hold its size (PNG: IHDR width, height at 16, 20; BMP: 18, 22; WebP: up to 30).
_SIZE_HEADER_BYTES = 30


def decode(encoded, channels):
    """Decodes one encoded image to a uint8 ``(h, w, channels)`` tensor (first frame of a GIF or WebP).

    ``channels`` is 1 (grayscale) or 3 (RGB) for every format, or any count ``tf.io.decode_image``
    accepts. JPEG and PNG are converted by their decoders; GIF (always RGB), BMP (gray, RGB or RGBA)
    and WebP (RGB or RGBA) are decoded with their own channel count, then converted: alpha dropped,
    ``tf.image.rgb_to_grayscale`` to gray, ``tf.image.grayscale_to_rgb`` to RGB. Only the formats
    whose size :func:`header_size` reads are decoded (JPEG XL, which TF also reads, is refused).
    A GIF is cut after its first frame, since giflib reads every frame into memory before TF takes
    the first; one whose first frame cannot be found that way is refused.
    """
    encoded = tf.convert_to_tensor(encoded, tf.string)
    header = _header(encoded)
    known = tf.debugging.Assert(
        tf.reduce_any([_is(header, magic) for magic in (_JPEG, _PNG, _GIF, _BMP, _WEBP)]),
        ["Unknown image file format: one of JPEG, PNG, GIF, BMP or WebP required"],
    )
    with tf.control_dependencies([known]):
        encoded = tf.cond(_is(header, _GIF), lambda: _cut_after_first_frame(encoded), lambda: tf.identity(encoded))
    if channels not in (1, 3):
        image = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
        return tf.ensure_shape(image, [None, None, channels])
    own_channels = tf.reduce_any([_is(header, magic) for magic in (_GIF, _BMP, _WEBP)])
    image = tf.cond(
        own_channels,
        lambda: _convert_channels(tf.io.decode_image(encoded, channels=0, expand_animations=False), channels),
        lambda: tf.io.decode_image(encoded, channels=channels, expand_animations=False),
    )
    return tf.ensure_shape(image, [None, None, channels])


def _cut_after_first_frame(gif):
    """``gif`` ending after its first frame, or an ``InvalidArgumentError`` if that frame is not found."""
    _, first, complete = _gif_first_frame(gif)
    check = tf.debugging.Assert(
        complete, ["Invalid GIF: no complete first frame (truncated, corrupt, or data sub-blocks of a few bytes)"]
    )
    with tf.control_dependencies([check]):
        return tf.identity(first)


def _convert_channels(image, channels):
    """A uint8 gray, RGB or RGBA image (channel count known only at run time) as ``channels`` (1 or 3)."""
    is_gray = tf.equal(tf.shape(image)[-1], 1)
    gray = lambda: tf.ensure_shape(image[..., :1], [None, None, 1])  # noqa: E731
    rgb = lambda: tf.ensure_shape(image[..., :3], [None, None, 3])  # noqa: E731
    if channels == 1:
        return tf.cond(is_gray, gray, lambda: tf.image.rgb_to_grayscale(rgb()))
    return tf.cond(is_gray, lambda: tf.image.grayscale_to_rgb(gray()), rgb)


def header_size(encoded):
    """``(height, width)`` int64 that the decoder allocates for an encoded image, read without decoding it.

    JPEG through ``tf.io.extract_jpeg_shape``; PNG (big-endian IHDR fields) and BMP (little-endian,
    height negative for top-down rows) from their fixed header fields; WebP from its first chunk
    (``VP8 ``, ``VP8L`` or ``VP8X``: the canvas, which libwebp checks the image against, and which
    bounds every frame); GIF from the logical screen and the first frame's descriptor, whichever
    is larger (giflib allocates a frame at its own size). ``(0, 0)`` for other or truncated data,
    which :func:`decode` then rejects.
    """
    encoded = tf.convert_to_tensor(encoded, tf.string)
    header = _header(encoded)

    def field(offset, dtype, little_endian=True):
        size = dtype.size
        value = tf.io.decode_raw(tf.strings.substr(header, offset, size), dtype, little_endian=little_endian)[0]
        return tf.cast(value, tf.int64)

    def unsigned32(offset, little_endian):
        return tf.math.floormod(field(offset, tf.int32, little_endian), 1 << 32)

    def webp_size():
        chunk = tf.strings.substr(header, 12, 4)
        vp8l = unsigned32(21, True)  # after the 0x2f signature: 14 bits width - 1, 14 bits height - 1
        unsigned24 = lambda offset: field(offset, tf.uint16) + 65536 * field(offset + 2, tf.uint8)  # noqa: E731
        return tf.case(
            [
                (tf.equal(chunk, b"VP8 "), lambda: tf.stack([field(28, tf.uint16), field(26, tf.uint16)]) % (1 << 14)),
                (tf.equal(chunk, b"VP8L"), lambda: tf.stack([vp8l // (1 << 14) % (1 << 14), vp8l % (1 << 14)]) + 1),
                (tf.equal(chunk, b"VP8X"), lambda: tf.stack([unsigned24(27), unsigned24(24)]) + 1),
            ],
            default=lambda: tf.zeros([2], tf.int64),
        )

    return tf.case(
        [
            (_is(header, _JPEG), lambda: tf.cast(tf.io.extract_jpeg_shape(encoded)[:2], tf.int64)),
            (_is(header, _PNG), lambda: tf.stack([unsigned32(20, False), unsigned32(16, False)])),
            (_is(header, _GIF), lambda: _gif_first_frame(encoded)[0]),
            (_is(header, _BMP), lambda: tf.abs(tf.stack([field(22, tf.int32), field(18, tf.int32)]))),
            (_is(header, _WEBP), webp_size),
        ],
        default=lambda: tf.zeros([2], tf.int64),
        exclusive=True,
    )


def _header(encoded):
    """The first bytes of ``encoded``, padded: every fixed-offset read is valid, a truncated header reads zeros."""
    return tf.strings.substr(tf.strings.join([encoded, b"\0" * _SIZE_HEADER_BYTES]), 0, _SIZE_HEADER_BYTES)


def _is(header, magic):
    """Whether ``header`` starts like the format of ``magic`` (``_WEBP``: a RIFF file of form WEBP)."""
    if magic == _WEBP:
        return tf.equal(tf.strings.substr(header, 0, 4), _RIFF) & tf.equal(tf.strings.substr(header, 8, 4), _WEBP)
    return tf.equal(tf.strings.substr(header, 0, len(magic)), magic)


@tf.function(input_signature=[tf.TensorSpec([], tf.string)], autograph=False)  # a graph loop, even when eager
def _gif_first_frame(encoded):
    """``(size, first, complete)`` of an encoded GIF: the int64 ``(height, width)`` giflib allocates for
    its first frame (the logical screen or the frame's extent, whichever is larger), and the file cut
    after that frame, so that giflib, which reads every frame before TF takes the first, reads one.

    A GIF is a chain of blocks (extensions, then image descriptors), each followed by data sub-blocks
    (a length byte and that many bytes, until a zero length); the walk takes one sub-block per step,
    in constant memory. Encoders write 255-byte sub-blocks, so a file needing more than one step per
    32 bytes (a hostile one: 1-byte sub-blocks cost one step per 2 bytes) is given up on, and so is
    one without a complete first frame (``complete`` is false).
    """
    data = tf.io.decode_raw(encoded, tf.uint8)
    n = tf.size(data)

    def byte(position):  # zero past the end (a truncated file)
        return tf.where(position < n, tf.cast(tf.gather(data, tf.clip_by_value(position, 0, n - 1)), tf.int32), 0)

    def u16(position):
        return tf.cast(byte(position) + 256 * byte(position + 1), tf.int64)

    def color_table(flags):  # bytes of the colour table a packed-flags byte announces
        return tf.where(flags >= 128, 3 * tf.bitwise.left_shift(2, flags % 8), 0)

    blocks, extension, image, done = 0, 1, 2, 3

    def step(position, phase, descriptor):
        """One block introducer or one sub-block: extensions (0x21, a label, sub-blocks) until the first
        image descriptor (0x2C, 9 bytes, a colour table, the LZW code size, sub-blocks)."""
        at = byte(position)
        in_blocks = tf.equal(phase, blocks)
        found = in_blocks & tf.equal(at, 0x2C)
        chain_ends = ~in_blocks & tf.equal(at, 0)
        next_position = tf.where(
            in_blocks,
            tf.where(found, position + 11 + color_table(byte(position + 9)), position + 2),
            position + tf.where(chain_ends, 1, at + 1),
        )
        next_phase = tf.where(
            in_blocks,
            tf.where(found, image, tf.where(tf.equal(at, 0x21), extension, done)),
            tf.where(chain_ends, tf.where(tf.equal(phase, image), done, blocks), phase),
        )
        return next_position, next_phase, tf.where(found, position, descriptor)

    position, phase, descriptor = tf.while_loop(
        lambda position, phase, descriptor: (phase != done) & (position < n),
        step,
        (13 + color_table(byte(10)), blocks, -1),
        maximum_iterations=n // 32 + 1024,
    )
    complete = tf.equal(phase, done) & (descriptor >= 0) & (position <= n)
    screen = tf.stack([u16(8), u16(6)])
    # The frame's top + height and left + width.
    extent = tf.stack([u16(descriptor + 3) + u16(descriptor + 7), u16(descriptor + 1) + u16(descriptor + 5)])
    size = tf.where(complete, tf.maximum(screen, extent), screen)
    first = tf.strings.join([tf.strings.substr(encoded, 0, tf.minimum(position, n)), b";"])
    return size, first, complete


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
