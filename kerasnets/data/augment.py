"""Training augmentations: AutoAugment policy v0 (tensorflow/tpu EfficientNet), Keras RandAugment,
Keras MixUp / CutMix. All operate on float32 RGB in 0..255 inside tf.data.

AutoAugment has no Keras layer, so its 25 sub-policies are written here with TensorFlow image ops,
with the reference's level-to-argument rules (``_MAX_LEVEL = 10``) and its constants for policy v0
(``distort_image_with_autoaugment``: ``translate_const=250``; 100 is RandAugment's). Given a
per-example seed its every random choice is a stateless op.

The Keras layers (RandAugment, MixUp, CutMix) run as Keras wrote them, but draw from a per-batch
seed instead of their stateful SeedGenerator (:func:`stateless_call`): their draws are stateless
ops too, the ones the layer makes when its generator's state is that seed. So every random choice
of the training pipeline is keyed by the run's seed and the element's position in the stream, and a
tf.data iterator over it can be checkpointed and resumes exactly.
"""

from __future__ import annotations

import math
from typing import Callable

import keras
import tensorflow as tf

from kerasnets.data.transforms import stateless_seed

__all__ = ["POLICY_V0", "AUTOAUGMENT_OPS", "TRANSLATE_CONST", "autoaugment", "randaugment_layer", "batch_mixer",
           "stateless_call"]

MAX_LEVEL = 10.0
FILL_VALUE = 128
#: AutoAugment's translate constant (tensorflow/tpu ``distort_image_with_autoaugment``); RandAugment uses 100.
TRANSLATE_CONST = 250

#: AutoAugment ImageNet policy v0 used to train EfficientNet (tensorflow/tpu autoaugment.py).
POLICY_V0 = (
    (("Equalize", 0.8, 1), ("ShearY", 0.8, 4)),
    (("Color", 0.4, 9), ("Equalize", 0.6, 3)),
    (("Color", 0.4, 1), ("Rotate", 0.6, 8)),
    (("Solarize", 0.8, 3), ("Equalize", 0.4, 7)),
    (("Solarize", 0.4, 2), ("Solarize", 0.6, 2)),
    (("Color", 0.2, 0), ("Equalize", 0.8, 8)),
    (("Equalize", 0.4, 8), ("SolarizeAdd", 0.8, 3)),
    (("ShearX", 0.2, 9), ("Rotate", 0.6, 8)),
    (("Color", 0.6, 1), ("Equalize", 1.0, 2)),
    (("Invert", 0.4, 9), ("Rotate", 0.6, 0)),
    (("Equalize", 1.0, 9), ("ShearY", 0.6, 3)),
    (("Color", 0.4, 7), ("Equalize", 0.6, 0)),
    (("Posterize", 0.4, 6), ("AutoContrast", 0.4, 7)),
    (("Solarize", 0.6, 8), ("Color", 0.6, 9)),
    (("Solarize", 0.2, 4), ("Rotate", 0.8, 9)),
    (("Rotate", 1.0, 7), ("TranslateY", 0.8, 9)),
    (("ShearX", 0.0, 0), ("Solarize", 0.8, 4)),
    (("ShearY", 0.8, 0), ("Color", 0.6, 4)),
    (("Color", 1.0, 0), ("Rotate", 0.6, 2)),
    (("Equalize", 0.8, 4), ("Equalize", 0.0, 8)),
    (("Equalize", 1.0, 4), ("AutoContrast", 0.6, 2)),
    (("ShearY", 0.4, 7), ("SolarizeAdd", 0.6, 7)),
    (("Posterize", 0.8, 2), ("Solarize", 0.6, 10)),
    (("Solarize", 0.6, 8), ("Equalize", 0.6, 1)),
    (("Color", 0.8, 6), ("Rotate", 0.4, 5)),
)


def _blend(degenerate: tf.Tensor, image: tf.Tensor, factor: float) -> tf.Tensor:
    """PIL ImageEnhance blend: ``degenerate + factor * (image - degenerate)``, clipped to 0..255."""
    return tf.clip_by_value(degenerate + factor * (image - degenerate), 0.0, 255.0)


def _transform(image: tf.Tensor, matrix) -> tf.Tensor:
    """Projective transform (output -> input coordinates), nearest neighbour, gray fill."""
    shape = tf.shape(image)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None],
        transforms=tf.cast(tf.reshape(matrix, [1, 8]), tf.float32),
        output_shape=shape[:2],
        fill_value=tf.constant(FILL_VALUE, tf.float32),
        interpolation="NEAREST",
        fill_mode="CONSTANT",
    )[0]


def _uniform(seed: tf.Tensor | None) -> tf.Tensor:
    """A float in [0, 1): stateless when ``seed`` (shape [2]) is given, else from the stateful RNG."""
    if seed is None:
        return tf.random.uniform([])
    return tf.random.stateless_uniform([], seed=seed)


def _signed(value: float, seed: tf.Tensor | None = None) -> tf.Tensor:
    """``value`` with a random sign, as the reference's ``_randomly_negate_tensor``."""
    return tf.where(_uniform(seed) < 0.5, -value, value)


def _rotate(image, level, seed=None):
    radians = _signed(level / MAX_LEVEL * 30.0, seed) * math.pi / 180.0
    height, width = tf.cast(tf.shape(image)[0], tf.float32), tf.cast(tf.shape(image)[1], tf.float32)
    cos, sin = tf.cos(radians), tf.sin(radians)
    x_offset = ((width - 1) - (cos * (width - 1) - sin * (height - 1))) / 2.0
    y_offset = ((height - 1) - (sin * (width - 1) + cos * (height - 1))) / 2.0
    return _transform(image, tf.stack([cos, -sin, x_offset, sin, cos, y_offset, 0.0, 0.0]))


def _shear_x(image, level, seed=None):
    s = _signed(level / MAX_LEVEL * 0.3, seed)
    return _transform(image, tf.stack([1.0, s, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]))


def _shear_y(image, level, seed=None):
    s = _signed(level / MAX_LEVEL * 0.3, seed)
    return _transform(image, tf.stack([1.0, 0.0, 0.0, s, 1.0, 0.0, 0.0, 0.0]))


def _translate_y(image, level, seed=None):
    pixels = _signed(level / MAX_LEVEL * TRANSLATE_CONST, seed)
    return _transform(image, tf.stack([1.0, 0.0, 0.0, 0.0, 1.0, -pixels, 0.0, 0.0]))


def _color(image, level, seed=None):
    gray = tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(image))
    return _blend(gray, image, level / MAX_LEVEL * 1.8 + 0.1)


def _posterize(image, level, seed=None):
    shift = 8 - int(level / MAX_LEVEL * 4)
    pixels = tf.cast(image, tf.uint8)
    return tf.cast(tf.bitwise.left_shift(tf.bitwise.right_shift(pixels, shift), shift), tf.float32)


def _solarize(image, level, seed=None):
    threshold = float(int(level / MAX_LEVEL * 256))
    return tf.where(image < threshold, image, 255.0 - image)


def _solarize_add(image, level, seed=None):
    added = tf.clip_by_value(image + float(int(level / MAX_LEVEL * 110)), 0.0, 255.0)
    return tf.where(image < 128.0, added, image)


def _invert(image, level, seed=None):
    del level
    return 255.0 - image


def _autocontrast(image, level, seed=None):
    del level
    low = tf.reduce_min(image, axis=[0, 1], keepdims=True)
    high = tf.reduce_max(image, axis=[0, 1], keepdims=True)
    scale = tf.where(high > low, 255.0 / tf.maximum(high - low, 1e-6), 1.0)
    offset = tf.where(high > low, -low * scale, 0.0)
    return tf.clip_by_value(image * scale + offset, 0.0, 255.0)


def _equalize_channel(channel: tf.Tensor) -> tf.Tensor:
    values = tf.cast(channel, tf.int32)
    histogram = tf.histogram_fixed_width(values, [0, 255], nbins=256)
    nonzero = tf.boolean_mask(histogram, histogram > 0)
    step = (tf.reduce_sum(nonzero) - nonzero[-1]) // 255
    lut = (tf.cumsum(histogram) + step // 2) // tf.maximum(step, 1)
    lut = tf.clip_by_value(tf.concat([[0], lut[:-1]], 0), 0, 255)
    return tf.cast(tf.where(step > 0, tf.gather(lut, values), values), tf.float32)  # no tf.cond: cheap to trace


def _equalize(image, level, seed=None):
    del level
    return tf.stack([_equalize_channel(image[..., c]) for c in range(3)], axis=-1)


#: op name -> fn(float image 0..255 HxWx3, level 0..10, seed=None) -> image; ``seed`` (shape [2]) makes the
#: random sign of Rotate/Shear/Translate stateless, None draws it from the stateful RNG.
AUTOAUGMENT_OPS = {
    "AutoContrast": _autocontrast,
    "Equalize": _equalize,
    "Invert": _invert,
    "Rotate": _rotate,
    "Posterize": _posterize,
    "Solarize": _solarize,
    "SolarizeAdd": _solarize_add,
    "Color": _color,
    "ShearX": _shear_x,
    "ShearY": _shear_y,
    "TranslateY": _translate_y,
}


def autoaugment(image: tf.Tensor, policy=POLICY_V0, seed: tf.Tensor | None = None) -> tf.Tensor:
    """Apply one uniformly chosen sub-policy: each of its ops with its probability, at its level.

    ``seed``: a shape-[2] integer tensor (one per image) makes every choice (sub-policy, whether each
    op applies, its sign) a stateless op keyed by it: same seed, same output, and a tf.data iterator
    over it can be checkpointed. None: the stateful RNG (not checkpointable).
    """
    image = tf.round(tf.clip_by_value(tf.cast(image, tf.float32), 0.0, 255.0))
    if seed is not None:
        seed = stateless_seed(seed)

    def sub_seed(index: int) -> tf.Tensor | None:
        return None if seed is None else tf.random.experimental.stateless_fold_in(seed, index)

    def branch(sub_policy):
        def apply():
            out = image
            for position, (name, probability, level) in enumerate(sub_policy):
                # both ops of the chosen sub-policy are computed and selected: cheaper to trace than tf.cond
                applied = AUTOAUGMENT_OPS[name](out, level, sub_seed(2 + 2 * position))
                out = tf.where(_uniform(sub_seed(1 + 2 * position)) < probability, applied, out)
            return out

        return apply

    if seed is None:
        index = tf.random.uniform([], 0, len(policy), dtype=tf.int32)
    else:
        index = tf.random.stateless_uniform([], seed=sub_seed(0), minval=0, maxval=len(policy), dtype=tf.int32)
    out = tf.switch_case(index, [branch(p) for p in policy])
    out.set_shape(image.shape)
    return out


class _SeedStream(keras.random.SeedGenerator):
    """A SeedGenerator with no state, for one traced call: its n-th draw is ``seed + [0, n]``, what
    Keras' SeedGenerator draws n-th from the state ``seed`` (``next``: the state, then the state plus
    [0, 1]), counted in Python as the call is traced. No variable: the draws are stateless ops."""

    def __init__(self, seed: tf.Tensor):  # no super().__init__(): it would create the state variable
        self._seed, self._draws = seed, 0

    def next(self, ordered: bool = True) -> tf.Tensor:
        """The next seed: ``seed + [0, n]`` at the n-th draw."""
        del ordered
        self._draws += 1
        return self._seed + tf.constant([0, self._draws - 1], self._seed.dtype)


def stateless_call(layer: keras.layers.Layer, data, seed):
    """``layer(data, training=True)`` for a Keras random preprocessing layer (RandAugment, MixUp,
    CutMix, ...), its random draws keyed by ``seed`` (a shape-[2] integer tensor) instead of its
    stateful SeedGenerator: what the layer outputs when its generator's state is ``seed`` (a layer
    built with ``seed=s`` outputs on its first call what this gives for ``seed=[s, 0]``). The same
    seed gives the same output, and a tf.data map over it has no stateful op (checkpointable).
    RandAugment passes its own generator to its sub-layers: they draw from the stream too.
    """
    if not isinstance(getattr(layer, "generator", None), keras.random.SeedGenerator):
        raise TypeError(f"stateless_call takes a Keras random preprocessing layer (one with a SeedGenerator: "
                        f"RandAugment, MixUp, CutMix, ...), got {type(layer).__name__}")
    stream = _SeedStream(stateless_seed(seed))
    # every backend's generator is the stream for this call; an instance attribute, not tracked by the layer
    object.__setattr__(layer, "_get_seed_generator", lambda backend=None: stream)
    try:
        return layer(data, training=True)
    finally:
        object.__delattr__(layer, "_get_seed_generator")


def randaugment_layer(randaugment: bool | dict) -> keras.layers.RandAugment:
    """Keras RandAugment (default 2 ops, factor 0.5) for 0..255 images; applied to whole batches
    with :func:`stateless_call` (the batch's seed makes its draws).

    Every batch gets a fresh choice of ops: the choice is drawn from the batch's seed, a tensor of
    the map, so tracing the map does not freeze it (keras#21169; a test guards it). Images of a
    batch share the ops, each with its own random magnitude, as the Keras layer does for a batch:
    batching keeps it ~20x faster than calling the layer image by image.
    """
    options = {"num_ops": 2, "factor": 0.5, **(randaugment if isinstance(randaugment, dict) else {})}
    return keras.layers.RandAugment(value_range=(0, 255), **options)


def batch_mixer(mixup_alpha: float, cutmix_alpha: float) -> Callable:
    """fn(images, one_hot_labels, seed) applying Keras MixUp or CutMix (one of the two, 50/50, if
    both) to a batch, every draw keyed by ``seed`` (shape [2]; :func:`stateless_call`).

    ``mixup_alpha`` and ``cutmix_alpha`` are the Beta(alpha, alpha) parameters of the mixing
    weight, as in timm and the papers (1.0: uniform)."""
    if not 0 <= cutmix_alpha <= 1:
        raise ValueError(f"cutmix_alpha must be in [0, 1] (Keras CutMix draws Beta(alpha, alpha) with alpha <= 1; "
                         f"1.0 is the CutMix paper's and timm's default), got {cutmix_alpha!r}")
    mixup = keras.layers.MixUp(alpha=mixup_alpha) if mixup_alpha > 0 else None
    # Keras CutMix draws its Beta parameter uniformly from ``factor`` ((0, f) for a single float f);
    # a range of one point is timm's cutmix_alpha: lambda ~ Beta(alpha, alpha)
    cutmix = keras.layers.CutMix(factor=(cutmix_alpha, cutmix_alpha)) if cutmix_alpha > 0 else None

    def apply(layer, images, labels, seed):
        out = stateless_call(layer, {"images": images, "labels": labels}, seed)
        return tf.cast(out["images"], tf.float32), tf.cast(out["labels"], tf.float32)

    def mix(images, labels, seed):
        if mixup is not None and cutmix is not None:
            choice_seed, layer_seed = tf.unstack(tf.random.experimental.stateless_split(stateless_seed(seed), 2))
            return tf.cond(
                tf.random.stateless_uniform([], seed=choice_seed) < 0.5,
                lambda: apply(mixup, images, labels, layer_seed),
                lambda: apply(cutmix, images, labels, layer_seed),
            )
        return apply(mixup or cutmix, images, labels, seed)

    return mix
