"""Image transforms of the published recipes, as tf.data map functions.

Train: Inception-style random-resized crop (on the encoded JPEG with ``decode_and_crop_jpeg`` when
the input is bytes, downscaled by 2, 4 or 8 in the DCT domain when the window is at least that
many times the output: a 12-MP photo is never decoded at full resolution), random horizontal flip. Given a per-example seed tensor (shape [2]) every random
choice is a stateless op keyed by it, so a ``tf.data`` iterator over the transformed data can be
checkpointed (TF refuses to serialize stateful random ops) and replays exactly. Eval: center crop
with ``crop_padding`` (the EfficientNet reference eval: crop ``size / (size + 32)`` of the short
side; a (height, width) output crops the largest window of its aspect ratio), resize. Every image
leaves as float32 RGB in 0..255: normalization stays inside the model.

Encoded bytes are checked before any pixel is decoded (:func:`check_encoded`: signature, declared
size, the pixel budget ``max_pixels`` of :mod:`kerasnets.data.headers`, the file's end: a JPEG or
PNG cut short is refused), as graph ops, so the check runs in ``tf.data`` and inside a SavedModel alike.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import tensorflow as tf

from kerasnets.data import headers
from kerasnets.data.headers import DEFAULT_MAX_PIXELS, END_MARKERS, TRUNCATED

__all__ = ["decode_rgb", "random_resized_crop", "center_crop", "train_transform", "eval_transform", "RESIZE_METHODS",
           "is_stateless_seed", "stateless_seed", "check_encoded", "output_size", "DEFAULT_MAX_PIXELS"]

RESIZE_METHODS = ("bilinear", "bicubic")

#: A Python int (op-level seed of stateful ops, as before), None, or a stateless seed: a shape-[2] integer tensor.
Seed = Any


def is_stateless_seed(seed: Seed) -> bool:
    """True for a per-example seed (a shape-[2] integer tensor or array); False for None or an integer."""
    return seed is not None and not isinstance(seed, (int, np.integer))


def stateless_seed(seed: Seed) -> tf.Tensor:
    """``seed`` as a shape-[2] int64 tensor; TypeError when it is no such pair."""
    tensor = tf.convert_to_tensor(seed)
    if not tensor.dtype.is_integer or (tensor.shape.rank is not None and tensor.shape.as_list() not in ([2], [None])):
        raise TypeError(f"a stateless seed is a shape-[2] integer tensor (e.g. tf.data.Dataset.random().batch(2)), "
                        f"got {tensor.dtype.name} of shape {tensor.shape}; pass a Python int for a stateful op seed")
    return tf.cast(tensor, tf.int64)


def _bytes_at(encoded: tf.Tensor, offset, length: int) -> tf.Tensor:
    """``length`` bytes of ``encoded`` from ``offset`` as int64 values (zeros past its end)."""
    offset = tf.minimum(tf.cast(offset, tf.int32), tf.strings.length(encoded))
    piece = tf.strings.substr(tf.strings.join([tf.strings.substr(encoded, offset, length), "\0" * length]), 0, length)
    return tf.reshape(tf.cast(tf.io.decode_raw(piece, tf.uint8), tf.int64), [length])


def _number(values: tf.Tensor, order: str, signed: bool) -> tf.Tensor:
    """The integer that the bytes ``values`` (int64 tensor) encode, as ``int.from_bytes`` reads them."""
    values = values if order == "big" else values[::-1]
    number = tf.constant(0, tf.int64)
    for i in range(values.shape[0]):
        number = number * 256 + values[i]
    if signed:
        half = 1 << (8 * values.shape[0] - 1)
        number = tf.where(number >= half, number - 2 * half, number)
    return number


def _jpeg_frame(encoded: tf.Tensor):
    """(found, height, width, progressive, data offset) from a JPEG's start-of-frame: the walk of
    :func:`kerasnets.data.headers.read_header` over the same markers, as graph ops. As there, the
    walk goes on past the frame to the start of scan: the data offset is where its entropy-coded
    data begins (the end of the frame segment when no scan follows)."""
    size = tf.cast(tf.strings.length(encoded), tf.int64)

    def step(pos, done, frame, height, width, progressive, offset):
        marker = _bytes_at(encoded, pos, 9)  # FF, code, length (2 bytes), precision, height (2), width (2)
        code, length = marker[1], marker[2] * 256 + marker[3]
        valid = (marker[0] == 0xFF) & (pos + 4 <= size) & (pos < headers.JPEG_HEADER_LIMIT)
        segment = valid & (code != 0xFF)  # not a fill byte
        new_frame = segment & tf.reduce_any(tf.equal(code, headers.JPEG_SOF)) & ~frame
        cut_frame = new_frame & (pos + 9 > size)  # a frame whose size is cut off: no frame at all
        new_frame = new_frame & ~cut_frame
        scan = segment & (code == 0xDA) & frame
        done = ~valid | cut_frame | (segment & ((code == 0xD9) | (code == 0xDA) | (length < 2)))
        height = tf.where(new_frame, marker[5] * 256 + marker[6], height)
        width = tf.where(new_frame, marker[7] * 256 + marker[8], width)
        progressive = tf.where(new_frame, tf.reduce_any(tf.equal(code, headers.JPEG_PROGRESSIVE_SOF)), progressive)
        offset = tf.where(new_frame | scan, pos + 2 + length, offset)
        pos = tf.where(code == 0xFF, pos + 1, pos + 2 + length)
        return pos, done, frame | new_frame, height, width, progressive, offset

    zero = tf.constant(0, tf.int64)
    _, _, found, height, width, progressive, offset = tf.while_loop(
        lambda pos, done, *_: tf.logical_not(done), step,
        (tf.constant(2, tf.int64), tf.constant(False), tf.constant(False), zero, zero, tf.constant(False), zero),
        maximum_iterations=headers.JPEG_MAX_STEPS)
    return found, height, width, progressive, offset


def _contains(encoded: tf.Tensor, piece: bytes) -> tf.Tensor:
    """Whether the bytes ``piece`` occur in ``encoded`` (a scalar string tensor)."""
    return tf.size(tf.strings.split(encoded, sep=piece)) > 1


def _truncated(encoded: tf.Tensor, kind: str, applies: tf.Tensor, data_offset=0) -> tf.Tensor:
    """Whether the encoded ``kind`` image lacks its end, the rule of
    :func:`kerasnets.data.files.check_image_file`: a PNG's last 16 bytes hold its IEND chunk, a
    GIF ends with its trailer, a JPEG holds an end-of-image marker in its last 16 bytes or
    anywhere after ``data_offset`` (a motion photo's MP4 or padding may follow it; the file is
    searched only then, and only when ``applies``: the bytes are a JPEG with a frame)."""
    length = tf.strings.length(encoded)
    tail = tf.strings.substr(encoded, tf.maximum(length - 16, 0), 16)
    end = END_MARKERS.get(kind)
    if kind == "PNG":
        return ~_contains(tail, end)
    if kind == "GIF":
        return tf.strings.substr(tail, tf.maximum(tf.strings.length(tail) - len(end), 0), len(end)) != end
    if kind == "JPEG":
        start = tf.minimum(tf.cast(data_offset, tf.int32), length)
        return tf.cond(applies & ~_contains(tail, end),
                       lambda: ~_contains(tf.strings.substr(encoded, start, length - start), end),
                       lambda: tf.constant(False))
    return tf.constant(False)


def _webp_frame(encoded: tf.Tensor):
    """Whether a WebP's first chunk is one of :data:`~kerasnets.data.headers.WEBP_CHUNKS`, and its
    canvas height and width (the Python reader, ``headers._webp``, does the same)."""
    chunk = tf.strings.substr(tf.strings.join([encoded, "\0" * 16]), 12, 4)  # padded: substr raises past the end
    known, height, width = tf.constant(False), tf.constant(0, tf.int64), tf.constant(0, tf.int64)
    for name, (w_at, w_len, h_at, h_len, mask, added) in headers.WEBP_CHUNKS.items():
        raw_width = _number(_bytes_at(encoded, w_at, w_len), "little", False)
        raw_height = (tf.bitwise.right_shift(raw_width, 14) if h_at < 0
                      else _number(_bytes_at(encoded, h_at, h_len), "little", False))
        this = tf.equal(chunk, name.decode("latin-1"))
        known = known | this
        width = tf.where(this, tf.bitwise.bitwise_and(raw_width, mask) + added, width)
        height = tf.where(this, tf.bitwise.bitwise_and(raw_height, mask) + added, height)
    return known, height, width


def check_encoded(encoded: tf.Tensor, max_pixels: int = DEFAULT_MAX_PIXELS, cropped: bool = True) -> tf.Tensor:
    """Why the encoded image ``encoded`` (a scalar string tensor) cannot be decoded within ``max_pixels``,
    or "" when it can: graph ops on its header and its end (the reasons of
    :func:`kerasnets.data.files.check_image_file`, decided by the same table and rule,
    :mod:`kerasnets.data.headers`: a JPEG or PNG cut short is refused, a JPEG with data after its
    end-of-image marker is not). Never raises on any bytes."""
    max_pixels = headers.check_max_pixels(max_pixels)
    length = tf.cast(tf.strings.length(encoded), tf.int64)
    # (``cropped``: the bytes go through the crops, which decode baseline JPEGs DCT-downscaled; False
    # for a full-resolution decode, where every pixel counts: :func:`kerasnets.data.headers.decoded_pixels`)
    head = tf.strings.substr(encoded, 0, 8)
    reason = tf.constant(headers.NOT_AN_IMAGE)
    for kind, (magics, fields, order, signed) in headers.FORMATS.items():
        matches = tf.reduce_any([tf.strings.substr(head, 0, len(m)) == m for m in magics])
        if fields is None:  # JPEG
            found, height, width, progressive, data_offset = _jpeg_frame(encoded)
            scaled = headers.at_eighth(height, width) if cropped else height * width
            pixels = tf.where(progressive, height * width, scaled)
            what = tf.where(progressive, "progressive JPEG", "JPEG")
            short = tf.logical_not(found)
            short_reason = tf.constant(headers.NO_JPEG_FRAME)
            truncated = _truncated(encoded, kind, matches & found, data_offset)
        elif fields == "webp":
            known, height, width = _webp_frame(encoded)
            pixels, what = height * width, tf.constant(kind)
            # another RIFF file (WAV, AVI); padded: substr raises past the end
            riff_only = tf.strings.substr(tf.strings.join([encoded, "\0" * 12]), 8, 4) != "WEBP"
            short = riff_only | (length < headers.WEBP_HEADER) | tf.logical_not(known)
            short_reason = tf.where(riff_only, headers.NOT_AN_IMAGE, tf.where(
                length < headers.WEBP_HEADER,
                tf.strings.join([f"truncated {kind} (header cut at ", tf.strings.as_string(length), " bytes)"]),
                headers.NO_WEBP_CHUNK))
            truncated = tf.constant(False)
        else:
            w_at, w_len, h_at, h_len = fields
            width = _number(_bytes_at(encoded, w_at, w_len), order, signed)
            height = tf.abs(_number(_bytes_at(encoded, h_at, h_len), order, signed))
            pixels, what = height * width, tf.constant(kind)
            short = length < h_at + h_len
            short_reason = tf.strings.join([f"truncated {kind} (header cut at ", tf.strings.as_string(length),
                                            " bytes)"])
            truncated = _truncated(encoded, kind, matches)
        text = [tf.strings.as_string(v) for v in (width, height, pixels)]
        size_problem = tf.where(
            (height <= 0) | (width <= 0),
            tf.strings.join([f"corrupt {kind} header (declares ", text[0], "x", text[1], " pixels)"]),
            tf.where(pixels > max_pixels, headers.budget_message(what, text[0], text[1], text[2], str(max_pixels)), ""))
        problem = tf.where(short, short_reason, tf.where(truncated, TRUNCATED.get(kind, ""), size_problem))
        reason = tf.where(matches, problem, reason)
    return tf.where(length == 0, "zero bytes", reason)


def _checked(encoded: tf.Tensor, max_pixels: int, cropped: bool = True) -> tf.Tensor:
    """``encoded``, once :func:`check_encoded` passed; InvalidArgumentError naming the reason otherwise."""
    reason = check_encoded(encoded, max_pixels, cropped)
    if tf.executing_eagerly():  # the reason alone, not Assert's summary of its tensors
        if reason.numpy():
            raise tf.errors.InvalidArgumentError(None, None, reason.numpy().decode())
        return encoded
    with tf.control_dependencies([tf.debugging.Assert(tf.equal(reason, ""), [reason], name="image_check")]):
        return tf.identity(encoded)


def _decode_rgb(encoded: tf.Tensor) -> tf.Tensor:
    image = tf.io.decode_image(encoded, channels=3, dtype=tf.uint8, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def decode_rgb(encoded: tf.Tensor, max_pixels: int = DEFAULT_MAX_PIXELS) -> tf.Tensor:
    """Decode JPEG/PNG/BMP/GIF/WebP bytes to uint8 RGB (grayscale, RGBA, palette and 16-bit become RGB uint8).

    The header is checked first (:func:`check_encoded`, every pixel counted: this decode is at full
    resolution): a file that declares more than ``max_pixels`` pixels is an InvalidArgumentError
    naming why, before any pixel is decoded.
    """
    return _decode_rgb(_checked(encoded, max_pixels, cropped=False))


def _to_rgb(image: tf.Tensor) -> tf.Tensor:
    """uint8 RGB from an already decoded image of 1, 3 or 4 channels."""
    image = tf.convert_to_tensor(image)
    channels = image.shape[-1]
    if channels == 1:
        image = tf.image.grayscale_to_rgb(image)
    elif channels == 4:
        image = image[..., :3]
    if image.dtype != tf.uint8:
        image = tf.cast(tf.clip_by_value(tf.cast(image, tf.float32), 0.0, 255.0), tf.uint8)
    return image


def _image_shape(image_or_bytes: tf.Tensor) -> tf.Tensor:
    """Height and width of decoded pixels, or of JPEG bytes (read from the header only)."""
    if image_or_bytes.dtype == tf.string:
        return tf.io.extract_jpeg_shape(image_or_bytes)[:2]
    return tf.shape(image_or_bytes)[:2]


#: JPEG DCT-domain downscaling factors libjpeg offers (``decode_jpeg(ratio=...)``).
DCT_RATIOS = (1, 2, 4, 8)


def dct_ratio(height: tf.Tensor, width: tf.Tensor, size: int) -> tf.Tensor:
    """Index into :data:`DCT_RATIOS` of the largest factor that keeps the window's short side at
    least ``size`` pixels (a 12-MP photo's 3,000 px crop to 224 decodes at 1/8: 375 px)."""
    short = tf.minimum(height, width)
    return tf.add_n([tf.cast(short >= r * size, tf.int32) for r in DCT_RATIOS[1:]])


def _decode_window(encoded: tf.Tensor, offset_y, offset_x, height, width, size: int) -> tf.Tensor:
    """Decode only a window of a JPEG, downscaled in the DCT domain by the largest power of two
    that leaves at least ``size`` pixels on its short side (what DALI and FFCV exploit: the
    inverse DCT, colour conversion and resize of the skipped resolution never run). libjpeg
    scales the whole image to ``ceil(dim / r)``; the window is given in those scaled pixels."""

    def branch(ratio: int):
        def decode():
            window = tf.stack([offset_y // ratio, offset_x // ratio,
                               tf.maximum(height // ratio, 1), tf.maximum(width // ratio, 1)])
            return tf.image.decode_and_crop_jpeg(encoded, window, channels=3, ratio=ratio)

        return decode

    image = tf.switch_case(dct_ratio(height, width, size), [branch(r) for r in DCT_RATIOS])
    image.set_shape([None, None, 3])
    return image


def _crop(image_or_bytes: tf.Tensor, offset_y, offset_x, height, width, size: int) -> tf.Tensor:
    """Crop a window that will be resized to ``size``; JPEG bytes are decoded only inside the
    window, DCT-downscaled when it is at least twice ``size`` (:func:`_decode_window`)."""
    if image_or_bytes.dtype == tf.string:
        return _decode_window(image_or_bytes, offset_y, offset_x, height, width, size)
    return tf.image.crop_to_bounding_box(_to_rgb(image_or_bytes), offset_y, offset_x, height, width)


def _on_pixels_or_jpeg(image_or_bytes: tf.Tensor, transform, max_pixels: int = DEFAULT_MAX_PIXELS,
                       checked: bool = False) -> tf.Tensor:
    """Run ``transform`` on JPEG bytes as they are, on other encoded formats after one decode; encoded
    bytes are checked first (:func:`check_encoded`: InvalidArgumentError naming why, before decoding),
    unless ``checked``: the caller ran :func:`check_encoded` on them and decodes only what it passed."""
    if image_or_bytes.dtype != tf.string:
        return transform(image_or_bytes)
    encoded = image_or_bytes if checked else _checked(image_or_bytes, max_pixels)
    return tf.cond(
        tf.io.is_jpeg(encoded),
        lambda: transform(encoded),
        lambda: transform(_decode_rgb(encoded)),
    )


def output_size(size: int | tuple[int, int]) -> tuple[int, int]:
    """``(height, width)`` of an output ``size``: an int (square) or a (height, width) pair of positive ints."""
    pair = (size, size) if isinstance(size, (int, np.integer)) and not isinstance(size, bool) else size
    try:
        height, width = (int(v) for v in pair)
        valid = (all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in pair)
                 and min(height, width) > 0)
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ValueError(f"size must be a positive int or a (height, width) pair of positive ints, got {size!r}")
    return height, width


def _resize(image: tf.Tensor, size: int | tuple[int, int], method: str) -> tf.Tensor:
    # the uint8 window goes in as it is: the resize kernels compute in float32 either way, and a
    # float32 copy of the window first took 4 bytes a pixel more (1.9 GB peak for an 88-MP PNG, now 1.0)
    image = tf.cast(tf.image.resize(image, list(output_size(size)), method=method), tf.float32)
    return tf.clip_by_value(image, 0.0, 255.0)  # bicubic overshoots


def center_crop(image_or_bytes: tf.Tensor, size: int | tuple[int, int], crop_padding: int = 32,
                method: str = "bicubic", max_pixels: int = DEFAULT_MAX_PIXELS, checked: bool = False,
                resize_first: bool = False) -> tf.Tensor:
    """Center crop ``s / (s + crop_padding)`` of the image, resized to ``size`` (``s`` x ``s`` for an int,
    (height, width) for a pair; ``s`` is its short side).

    The window has the output's aspect ratio: the largest one that fits in the image, scaled by that
    fraction (a square output: the fraction of the image's short side). Encoded bytes that
    :func:`check_encoded` refuses (more than ``max_pixels`` decoded pixels, a file cut short:
    :mod:`kerasnets.data.headers`) are an InvalidArgumentError naming the reason, raised before any
    pixel is decoded. ``checked=True``: the caller already ran :func:`check_encoded` on the bytes
    (with this ``max_pixels``) and crops only those it passed, so the check is not run twice.

    ``resize_first=True`` is timm's (torchvision's) eval instead, the same window resampled on
    another grid: the whole image resized (antialiased, as PIL) so that its short side is
    ``s + crop_padding`` (the long side ``int(...)`` of its ratio), then the center ``size`` cut at
    rounded offsets (``Resize(floor(s / crop_pct))`` + ``CenterCrop(s)``); a square ``size`` only.
    """
    out = output_size(size)
    if resize_first:
        if out[0] != out[1]:
            raise ValueError(f"resize_first (timm's eval crop) needs a square size, got {out}")
        if image_or_bytes.dtype == tf.string:
            encoded = image_or_bytes if checked else _checked(image_or_bytes, max_pixels, cropped=False)
            image_or_bytes = _decode_rgb(encoded)
        return _resize_then_crop(_to_rgb(image_or_bytes), out[0], crop_padding, method)
    return _on_pixels_or_jpeg(image_or_bytes, lambda image: _center_crop(image, out, crop_padding, method), max_pixels,
                              checked)


def _resize_then_crop(image: tf.Tensor, size: int, crop_padding: int, method: str) -> tf.Tensor:
    """torchvision's ``Resize(size + crop_padding)`` (short side; long side truncated) then ``CenterCrop(size)``."""
    shape = tf.shape(image)
    height, width = tf.cast(shape[0], tf.float64), tf.cast(shape[1], tf.float64)
    short = tf.constant(size + crop_padding, tf.float64)
    new_h = tf.where(height <= width, short, tf.floor(short * height / width))
    new_w = tf.where(height <= width, tf.floor(short * width / height), short)
    resized = tf.image.resize(image, tf.cast(tf.stack([new_h, new_w]), tf.int32), method=method, antialias=True)
    top = tf.cast(tf.round((new_h - size) / 2.0), tf.int32)  # Python's round: half to even, as tf.round
    left = tf.cast(tf.round((new_w - size) / 2.0), tf.int32)
    crop = tf.image.crop_to_bounding_box(resized, top, left, size, size)
    return tf.clip_by_value(tf.cast(crop, tf.float32), 0.0, 255.0)


def _center_window(height, width, out: tuple[int, int], crop_padding: int):
    """(offset_y, offset_x, crop_height, crop_width) of the eval center crop of an ``out`` = (h, w)
    output: ``s / (s + crop_padding)`` (``s = min(h, w)``) of the largest h:w window of the image."""
    short = min(out)
    fraction = short / (short + crop_padding)
    height_f, width_f = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    crop_h = tf.maximum(tf.cast(fraction * tf.minimum(height_f, width_f * (out[0] / out[1])), tf.int32), 1)
    crop_w = tf.maximum(tf.cast(fraction * tf.minimum(width_f, height_f * (out[1] / out[0])), tf.int32), 1)
    return (height - crop_h + 1) // 2, (width - crop_w + 1) // 2, crop_h, crop_w


def _center_crop(image_or_bytes: tf.Tensor, out: tuple[int, int], crop_padding: int, method: str) -> tf.Tensor:
    shape = _image_shape(image_or_bytes)
    offset_y, offset_x, crop_h, crop_w = _center_window(shape[0], shape[1], out, crop_padding)
    return _resize(_crop(image_or_bytes, offset_y, offset_x, crop_h, crop_w, min(out)), out, method)


def random_resized_crop(
    image_or_bytes: tf.Tensor,
    size: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    method: str = "bilinear",
    seed: Seed = None,
    crop_padding: int = 32,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    checked: bool = False,
) -> tf.Tensor:
    """Inception random-resized crop (``sample_distorted_bounding_box``), center-crop fallback.

    As the TPU reference, when no acceptable box was found in 10 attempts (the sampler then returns
    the whole image) the eval center crop (with the same ``crop_padding``) is used instead.
    ``seed``: a shape-[2] integer tensor picks the box with the stateless sampler (same seed, same
    box; checkpointable in tf.data); a Python int or None seeds the stateful sampler as an op seed.
    ``max_pixels`` and ``checked``: the pixel budget of encoded bytes, and whether the caller
    checked them already, as in :func:`center_crop`.
    """
    if is_stateless_seed(seed):
        seed = stateless_seed(seed)
    return _on_pixels_or_jpeg(
        image_or_bytes, lambda image: _random_resized_crop(image, size, scale, ratio, method, seed, crop_padding),
        max_pixels, checked)


def _random_resized_crop(image_or_bytes, size, scale, ratio, method, seed, crop_padding) -> tf.Tensor:
    shape = _image_shape(image_or_bytes)
    sampler = dict(
        image_size=tf.concat([shape, [3]], axis=0),
        bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]),
        min_object_covered=0.1,
        aspect_ratio_range=ratio,
        area_range=scale,
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    if is_stateless_seed(seed):
        begin, box_size, _ = tf.image.stateless_sample_distorted_bounding_box(seed=seed, **sampler)
    else:
        begin, box_size, _ = tf.image.sample_distorted_bounding_box(seed=seed or 0, **sampler)
    # no acceptable box (the sampler returned the whole image): the eval center crop instead;
    # chosen arithmetically, since control flow in a tf.data map costs more than the crop itself
    whole_image = tf.reduce_all(tf.equal(box_size[:2], shape))
    window = tf.where(whole_image, tf.stack(_center_window(shape[0], shape[1], (size, size), crop_padding)),
                      tf.stack([begin[0], begin[1], box_size[0], box_size[1]]))
    return _resize(_crop(image_or_bytes, window[0], window[1], window[2], window[3], size), size, method)


def train_transform(
    size: int,
    scale: tuple[float, float] = (0.08, 1.0),
    flip: bool = True,
    method: str = "bilinear",
    seed: int | None = None,
    crop_padding: int = 32,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    checked: bool = False,
) -> Callable[..., tuple[tf.Tensor, tf.Tensor]]:
    """Map function ``(image_or_bytes, label, element_seed=None) -> (float32 image 0..255, label)`` for training.
    ``checked``: encoded bytes were checked already (:func:`check_encoded`), as in :func:`center_crop`.

    With ``element_seed`` (a shape-[2] integer tensor, one per example, e.g. zipped from
    ``tf.data.Dataset.random(seed).batch(2)``) the crop and the flip are stateless ops keyed by
    sub-seeds of it: the same seed gives the same image, and the pipeline's iterator can be
    checkpointed. Without it they are stateful ops with the op-level ``seed`` (not checkpointable).
    """

    def transform(image, label, element_seed: Seed = None):
        if element_seed is None:
            image = random_resized_crop(image, size, scale=scale, method=method, seed=seed, crop_padding=crop_padding,
                                        max_pixels=max_pixels, checked=checked)
            if flip:
                image = tf.image.random_flip_left_right(image, seed=seed)
            return image, label
        crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(stateless_seed(element_seed), 2))
        image = random_resized_crop(image, size, scale=scale, method=method, seed=crop_seed, crop_padding=crop_padding,
                                    max_pixels=max_pixels, checked=checked)
        if flip:
            image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
        return image, label

    return transform


def eval_transform(size: int, crop_padding: int = 32, method: str = "bicubic",
                   max_pixels: int = DEFAULT_MAX_PIXELS,
                   resize_first: bool = False, checked: bool = False) -> Callable[..., tuple[tf.Tensor, tf.Tensor]]:
    """Map function ``(image_or_bytes, label) -> (float32 image 0..255, label)`` for evaluation
    (:func:`center_crop`; ``checked`` as there)."""

    def transform(image, label):
        return center_crop(image, size, crop_padding=crop_padding, method=method, max_pixels=max_pixels,
                           checked=checked, resize_first=resize_first), label

    return transform
