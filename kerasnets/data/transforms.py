"""Image transforms of the published recipes, as tf.data map functions.

Train: Inception-style random-resized crop (on the encoded JPEG with ``decode_and_crop_jpeg`` when
the input is bytes, downscaled by 2, 4 or 8 in the DCT domain when the window is at least that
many times the output: a 12-MP photo is never decoded at full resolution), random horizontal flip. Given a per-example seed tensor (shape [2]) every random
choice is a stateless op keyed by it, so a ``tf.data`` iterator over the transformed data can be
checkpointed (TF refuses to serialize stateful random ops) and replays exactly. Eval: center crop
with ``crop_padding`` (the EfficientNet reference eval: crop ``size / (size + 32)`` of the short
side), resize. Every image
leaves as float32 RGB in 0..255: normalization stays inside the model.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import tensorflow as tf

__all__ = ["decode_rgb", "random_resized_crop", "center_crop", "train_transform", "eval_transform", "RESIZE_METHODS",
           "is_stateless_seed", "stateless_seed"]

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


def decode_rgb(encoded: tf.Tensor) -> tf.Tensor:
    """Decode JPEG/PNG/BMP/GIF bytes to uint8 RGB (grayscale, RGBA, palette and 16-bit become RGB uint8)."""
    image = tf.io.decode_image(encoded, channels=3, dtype=tf.uint8, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


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


def _on_pixels_or_jpeg(image_or_bytes: tf.Tensor, transform) -> tf.Tensor:
    """Run ``transform`` on JPEG bytes as they are, on other encoded formats after one decode."""
    if image_or_bytes.dtype != tf.string:
        return transform(image_or_bytes)
    return tf.cond(
        tf.io.is_jpeg(image_or_bytes),
        lambda: transform(image_or_bytes),
        lambda: transform(decode_rgb(image_or_bytes)),
    )


def _resize(image: tf.Tensor, size: int, method: str) -> tf.Tensor:
    image = tf.image.resize(tf.cast(image, tf.float32), [size, size], method=method)
    return tf.clip_by_value(image, 0.0, 255.0)  # bicubic overshoots


def center_crop(image_or_bytes: tf.Tensor, size: int, crop_padding: int = 32, method: str = "bicubic") -> tf.Tensor:
    """Center crop ``size / (size + crop_padding)`` of the short side, resized to ``size`` x ``size``."""
    return _on_pixels_or_jpeg(image_or_bytes, lambda image: _center_crop(image, size, crop_padding, method))


def _center_window(height, width, size: int, crop_padding: int):
    """(offset_y, offset_x, side) of the eval center crop: ``size / (size + crop_padding)`` of the short side."""
    crop = tf.cast((size / (size + crop_padding)) * tf.cast(tf.minimum(height, width), tf.float32), tf.int32)
    crop = tf.maximum(crop, 1)
    return (height - crop + 1) // 2, (width - crop + 1) // 2, crop


def _center_crop(image_or_bytes: tf.Tensor, size: int, crop_padding: int, method: str) -> tf.Tensor:
    shape = _image_shape(image_or_bytes)
    offset_y, offset_x, crop = _center_window(shape[0], shape[1], size, crop_padding)
    return _resize(_crop(image_or_bytes, offset_y, offset_x, crop, crop, size), size, method)


def random_resized_crop(
    image_or_bytes: tf.Tensor,
    size: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    method: str = "bilinear",
    seed: Seed = None,
    crop_padding: int = 32,
) -> tf.Tensor:
    """Inception random-resized crop (``sample_distorted_bounding_box``), center-crop fallback.

    As the TPU reference, when no acceptable box was found in 10 attempts (the sampler then returns
    the whole image) the eval center crop (with the same ``crop_padding``) is used instead.
    ``seed``: a shape-[2] integer tensor picks the box with the stateless sampler (same seed, same
    box; checkpointable in tf.data); a Python int or None seeds the stateful sampler as an op seed.
    """
    if is_stateless_seed(seed):
        seed = stateless_seed(seed)
    return _on_pixels_or_jpeg(
        image_or_bytes, lambda image: _random_resized_crop(image, size, scale, ratio, method, seed, crop_padding))


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
    center_y, center_x, side = _center_window(shape[0], shape[1], size, crop_padding)
    window = tf.where(whole_image, tf.stack([center_y, center_x, side, side]),
                      tf.stack([begin[0], begin[1], box_size[0], box_size[1]]))
    return _resize(_crop(image_or_bytes, window[0], window[1], window[2], window[3], size), size, method)


def train_transform(
    size: int,
    scale: tuple[float, float] = (0.08, 1.0),
    flip: bool = True,
    method: str = "bilinear",
    seed: int | None = None,
    crop_padding: int = 32,
) -> Callable[..., tuple[tf.Tensor, tf.Tensor]]:
    """Map function ``(image_or_bytes, label, element_seed=None) -> (float32 image 0..255, label)`` for training.

    With ``element_seed`` (a shape-[2] integer tensor, one per example, e.g. zipped from
    ``tf.data.Dataset.random(seed).batch(2)``) the crop and the flip are stateless ops keyed by
    sub-seeds of it: the same seed gives the same image, and the pipeline's iterator can be
    checkpointed. Without it they are stateful ops with the op-level ``seed`` (not checkpointable).
    """

    def transform(image, label, element_seed: Seed = None):
        if element_seed is None:
            image = random_resized_crop(image, size, scale=scale, method=method, seed=seed, crop_padding=crop_padding)
            if flip:
                image = tf.image.random_flip_left_right(image, seed=seed)
            return image, label
        crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(stateless_seed(element_seed), 2))
        image = random_resized_crop(image, size, scale=scale, method=method, seed=crop_seed, crop_padding=crop_padding)
        if flip:
            image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
        return image, label

    return transform


def eval_transform(size: int, crop_padding: int = 32,
                   method: str = "bicubic") -> Callable[..., tuple[tf.Tensor, tf.Tensor]]:
    """Map function ``(image_or_bytes, label) -> (float32 image 0..255, label)`` for evaluation."""

    def transform(image, label):
        return center_crop(image, size, crop_padding=crop_padding, method=method), label

    return transform
