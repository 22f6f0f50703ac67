"""EfficientNet B0-B7, Lite0-4 and compound-scaled variants: a stem, a stage table and a head.

Presets are data (:data:`EFFICIENTNET_PRESETS`); every network comes from :func:`EfficientNet`'s one code path
through the shared stage loop in :mod:`kerasnets.layers`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from keras import layers

from kerasnets.layers.factories import LayerConfig, StageSpec, build_stages, conv_bn_act
from kerasnets.layers.preprocessing import IMAGENET_MEAN_RGB, IMAGENET_STD_RGB
from kerasnets.models.common import (
    classifier_head,
    endpoint_outputs,
    finish_model,
    model_input,
    validate_common,
)
from kerasnets.models.pretrained import load_weights
from kerasnets.scaling import (PAPER_COEFFICIENTS, compound_scale, distribute_repeats, round_filters, round_repeats,
                               validate_coefficients)

__all__ = [
    "BASE_STAGES",
    "EfficientNetPreset",
    "EFFICIENTNET_PRESETS",
    "CONV_KERNEL_INITIALIZER",
    "DENSE_KERNEL_INITIALIZER",
    "scaled_stages",
    "resolve_preset",
    "EfficientNet",
    "EfficientNetLite",
    "PAPER_COEFFICIENTS",
]

#: EfficientNet-B0 (paper Table 1): MBConv stages after a 3x3 stride-2 stem with 32 channels.
BASE_STAGES: tuple[StageSpec, ...] = (
    StageSpec("block1", "mbconv", filters=16, repeats=1, stride=1, kernel_size=3, expand_ratio=1, se_ratio=0.25),
    StageSpec("block2", "mbconv", filters=24, repeats=2, stride=2, kernel_size=3, expand_ratio=6, se_ratio=0.25),
    StageSpec("block3", "mbconv", filters=40, repeats=2, stride=2, kernel_size=5, expand_ratio=6, se_ratio=0.25),
    StageSpec("block4", "mbconv", filters=80, repeats=3, stride=2, kernel_size=3, expand_ratio=6, se_ratio=0.25),
    StageSpec("block5", "mbconv", filters=112, repeats=3, stride=1, kernel_size=5, expand_ratio=6, se_ratio=0.25),
    StageSpec("block6", "mbconv", filters=192, repeats=4, stride=2, kernel_size=5, expand_ratio=6, se_ratio=0.25),
    StageSpec("block7", "mbconv", filters=320, repeats=1, stride=1, kernel_size=3, expand_ratio=6, se_ratio=0.25),
)
STEM_FILTERS = 32
HEAD_FILTERS = 1280

#: keras.applications' EfficientNet initializers (the TF reference's).
CONV_KERNEL_INITIALIZER = {
    "class_name": "VarianceScaling",
    "config": {"scale": 2.0, "mode": "fan_out", "distribution": "truncated_normal"},
}
DENSE_KERNEL_INITIALIZER = {
    "class_name": "VarianceScaling",
    "config": {"scale": 1.0 / 3.0, "mode": "fan_out", "distribution": "uniform"},
}


@dataclasses.dataclass(frozen=True)
class EfficientNetPreset:
    """One row of the preset table: scaling and the Lite overrides (tensorflow/tpu lite builder)."""

    name: str
    width: float
    depth: float
    resolution: int
    dropout: float
    activation: str = "swish"
    se_ratio: float | None = None  # None keeps the stage table's ratio; 0 removes SE (Lite)
    fix_stem_head: bool = False  # Lite: stem 32 / head 1280 unscaled, first and last stage depth unscaled
    twin: str | None = None  # keras.applications constructor with identical layout, if any
    # "per_stage": each stage's repeats rounded up (the reference's B0-B7 rule); "total": the total
    # block count follows depth, shared out over stages (kerasnets.scaling.distribute_repeats)
    depth_rounding: str = "per_stage"
    channel_divisor: int = 8  # channel counts are rounded to multiples of this (kerasnets.scaling.make_divisible)


CHANNEL_DIVISOR = 4


def _b(phi: int, width: float, depth: float, resolution: int, dropout: float) -> EfficientNetPreset:
    return EfficientNetPreset(f"efficientnetb{phi}", width, depth, resolution, dropout, twin=f"EfficientNetB{phi}")


def _lite(index: int, width: float, depth: float, resolution: int, dropout: float) -> EfficientNetPreset:
    return EfficientNetPreset(
        f"efficientnet-lite{index}", width, depth, resolution, dropout, "relu6", 0.0, True
    )


#: The official (width, depth, resolution, dropout) table. B-rows are NOT alpha^phi etc.: they are
#: the published, hand-rounded values keras.applications and tensorflow/tpu use.
EFFICIENTNET_PRESETS: dict[str, EfficientNetPreset] = {
    p.name: p
    for p in (
        _b(0, 1.0, 1.0, 224, 0.2),
        _b(1, 1.0, 1.1, 240, 0.2),
        _b(2, 1.1, 1.2, 260, 0.3),
        _b(3, 1.2, 1.4, 300, 0.3),
        _b(4, 1.4, 1.8, 380, 0.4),
        _b(5, 1.6, 2.2, 456, 0.4),
        _b(6, 1.8, 2.6, 528, 0.5),
        _b(7, 2.0, 3.1, 600, 0.5),
        _lite(0, 1.0, 1.0, 224, 0.2),
        _lite(1, 1.0, 1.1, 240, 0.2),
        _lite(2, 1.1, 1.2, 260, 0.3),
        _lite(3, 1.2, 1.4, 280, 0.3),
        _lite(4, 1.4, 1.8, 300, 0.3),
    )
}
_DROPOUT_BY_PHI = tuple(EFFICIENTNET_PRESETS[f"efficientnetb{i}"].dropout for i in range(8))


def scaled_stages(preset: EfficientNetPreset, base: tuple[StageSpec, ...] = BASE_STAGES) -> tuple[StageSpec, ...]:
    """Apply a preset's width and depth multipliers (and Lite overrides) to the base stage table."""
    if preset.depth_rounding not in ("per_stage", "total"):
        raise ValueError(f"depth_rounding must be 'per_stage' or 'total', got {preset.depth_rounding!r}")
    if preset.depth_rounding == "total" and preset.fix_stem_head:
        raise ValueError("depth_rounding='total' scales every stage and the stem and head; it cannot be combined "
                         "with fix_stem_head=True (Lite): use depth_rounding='per_stage'")
    totals = None
    if preset.depth_rounding == "total":  # the whole network's FLOPs follow depth x width^2 x resolution^2
        repeats = [s.repeats for s in base]
        b0_fixed, b0_costs = _cost_terms(base, [s.filters for s in base], STEM_FILTERS, HEAD_FILTERS, BASE_RESOLUTION)
        b0 = b0_fixed + sum(r * c for r, c in zip(repeats, b0_costs))
        law = preset.depth * preset.width ** 2 * (preset.resolution / BASE_RESOLUTION) ** 2
        divisor = preset.channel_divisor
        fixed, costs = _cost_terms(base, [round_filters(s.filters, preset.width, divisor) for s in base],
                                   round_filters(STEM_FILTERS, preset.width, divisor),
                                   round_filters(HEAD_FILTERS, preset.width, divisor), preset.resolution)
        totals = distribute_repeats(repeats, preset.depth, costs, target=law * b0 - fixed)
    stages = []
    for i, spec in enumerate(base):
        keep_depth = preset.fix_stem_head and i in (0, len(base) - 1)
        repeats = totals[i] if totals is not None else round_repeats(spec.repeats, preset.depth)
        changes: dict[str, Any] = {
            "filters": round_filters(spec.filters, preset.width, preset.channel_divisor),
            "repeats": spec.repeats if keep_depth else repeats,
        }
        if preset.se_ratio is not None:
            changes["se_ratio"] = preset.se_ratio
        stages.append(dataclasses.replace(spec, **changes))
    return tuple(stages)


BASE_RESOLUTION = 224


def _mbconv_cost(inputs: int, outputs: int, expand_ratio: int, kernel: int, size_in: float, stride: int,
                 se_ratio: float) -> float:
    """Multiply-adds of one MBConv block's convolutions (expansion, depthwise, squeeze-excite, projection)."""
    expanded = inputs * expand_ratio
    size_out = math.ceil(size_in / stride)  # "same" padding
    squeeze = max(1, int(inputs * se_ratio)) if se_ratio > 0 else 0
    return (size_in ** 2 * inputs * expanded * (expand_ratio != 1) + size_out ** 2 * kernel ** 2 * expanded
            + 2 * expanded * squeeze + size_out ** 2 * expanded * outputs)


def _cost_terms(base: tuple[StageSpec, ...], filters: list[int], stem: int, head: int,
                resolution: int) -> tuple[float, list[float]]:
    """The network's multiply-adds as ``fixed + sum(repeats_i * per_block_i)``: ``fixed`` holds the
    stem, the head and what each stage's first block costs beyond its later ones."""
    size = math.ceil(resolution / 2)
    fixed, per_block, inputs = size ** 2 * 27 * stem, [], stem
    for spec, outputs in zip(base, filters):
        first = _mbconv_cost(inputs, outputs, spec.expand_ratio, spec.kernel_size, size, spec.stride, spec.se_ratio)
        size = math.ceil(size / spec.stride)
        later = _mbconv_cost(outputs, outputs, spec.expand_ratio, spec.kernel_size, size, 1, spec.se_ratio)
        fixed += first - later
        per_block.append(later)
        inputs = outputs
    return fixed + size ** 2 * inputs * head, per_block


def resolve_preset(phi: Any, coefficients: Any = None, base_resolution: int = 224) -> EfficientNetPreset:
    """Preset for ``phi``: the official B{phi} row, or paper Eq. 3 when ``coefficients`` are given
    (resolution ``base_resolution * gamma^phi``, rounded to a multiple of 8)."""
    if coefficients is None:
        if isinstance(phi, bool) or not isinstance(phi, int) or not 0 <= phi <= 7:
            raise ValueError(
                f"phi must be an integer 0..7 (EfficientNet-B0..B7) when coefficients is None, got {phi!r}; "
                "pass coefficients=(alpha, beta, gamma), e.g. kerasnets.PAPER_COEFFICIENTS, for any real phi"
            )
        return EFFICIENTNET_PRESETS[f"efficientnetb{phi}"]
    alpha, beta, gamma = validate_coefficients(coefficients)
    scale = compound_scale(phi, (alpha, beta, gamma), base_resolution=base_resolution, dropout_by_phi=_DROPOUT_BY_PHI)
    label = f"{phi:g}".replace("-", "m").replace(".", "p")
    return EfficientNetPreset(
        f"efficientnet_phi{label}", scale.width, scale.depth, scale.resolution, scale.dropout, depth_rounding="total",
        channel_divisor=CHANNEL_DIVISOR
    )


def _block_prefix(spec: StageSpec, index: int) -> str:
    """keras.applications naming: block2a_, block2b_, ..."""
    return f"{spec.name}{chr(ord('a') + index)}_"


def EfficientNet(
    phi: float = 0,
    coefficients: tuple[float, float, float] | None = None,
    *,
    preset: str | EfficientNetPreset | None = None,
    base_resolution: int = 224,
    include_top: bool = True,
    weights: str | None = None,
    input_tensor=None,
    input_shape: tuple | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: Any = "softmax",
    name: str | None = None,
    dropout_rate: float | None = None,
    drop_connect_rate: float = 0.2,
    features_only: bool = False,
    synchronized_bn: bool = False,
    bn_momentum: float = 0.99,
):
    """Build an EfficientNet as a Keras functional model.

    Args:
        phi: compound-scaling exponent. Without ``coefficients`` an integer 0..7 selects the published
            EfficientNet-B{phi}; with ``coefficients`` any real phi applies paper Eq. 3.
        coefficients: ``(alpha, beta, gamma)`` (depth, width, resolution bases), each >= 1, e.g.
            :data:`PAPER_COEFFICIENTS` = (1.2, 1.1, 1.15).
        preset: a :data:`EFFICIENTNET_PRESETS` key or an :class:`EfficientNetPreset` (overrides ``phi``), used by
            the Lite aliases.
        base_resolution: the phi = 0 resolution that Eq. 3 scales (with ``coefficients`` only).
        include_top, weights, input_tensor, input_shape, pooling, classes, classifier_activation, name:
            as keras.applications. ``weights`` is None, "imagenet" (B0-B7 only) or a ``.weights.h5`` path.
        dropout_rate: before the classifier (default: the preset's).
        drop_connect_rate: stochastic-depth rate of the last block, ramped linearly from 0.
        features_only: return ``{"stride_4", "stride_8", "stride_16", "stride_32"}`` stage outputs
            (timm ``features_only`` / Model Garden endpoints) instead of the head. ``weights`` then
            loads a whole network (ImageNet, or a file of this preset with or without its head) and
            the feature maps are its intermediate outputs (keras.applications B0: ``block2b_add``,
            ``block3b_add``, ``block5c_add``, ``block7a_project_bn``).
        synchronized_bn: use synchronized BatchNormalization (MirroredStrategy).
        bn_momentum: BatchNormalization momentum (0.99 = TF reference; ~0.9 for runs of a few
            hundred steps, whose moving statistics would otherwise lag the weights).

    Input contract: RGB pixels in 0..255 (uint8 or float). Rescaling and ImageNet Normalization are
    layers of the model; do not divide by 255 yourself.
    """
    if preset is None:
        spec = resolve_preset(phi, coefficients, base_resolution)
    elif isinstance(preset, EfficientNetPreset):
        spec = preset
    elif preset in EFFICIENTNET_PRESETS:
        spec = EFFICIENTNET_PRESETS[preset]
    else:
        raise ValueError(f"preset must be one of {sorted(EFFICIENTNET_PRESETS)}, got {preset!r}")
    if weights == "imagenet" and spec.twin is None:
        raise ValueError(
            f"weights='imagenet' exists only for EfficientNet-B0..B7 (integer phi, no coefficients); "
            f"{spec.name} has no published weights: use weights=None or a .weights.h5 path"
        )
    validate_common(weights, include_top, classes, pooling, input_shape)
    config = LayerConfig(
        activation=spec.activation,
        activation_label="activation",
        bn_momentum=bn_momentum,
        bn_epsilon=1e-3,
        synchronized_bn=synchronized_bn,
        kernel_initializer=CONV_KERNEL_INITIALIZER,
    )
    img_input = model_input(input_tensor, input_shape, spec.resolution)
    channels = img_input.shape[-1]

    x = layers.Rescaling(1.0 / 255.0, name="rescaling")(img_input)
    normalization = layers.Normalization(axis=-1, name="normalization")
    x = normalization(x)
    if channels == 3:  # ImageNet statistics by default (keras.applications leaves mean 0 / variance 1)
        normalization.set_weights(
            [np.array(IMAGENET_MEAN_RGB), np.square(IMAGENET_STD_RGB), np.array(0)]
        )
        normalization.finalize_state()  # Normalization snapshots mean/variance; refresh it
    # keras.applications' ImageNet file stores the standard deviation as the variance (and adds a
    # Rescaling layer to undo it); transfer_weights folds that into this layer's variance instead.

    stem_filters = STEM_FILTERS if spec.fix_stem_head else round_filters(STEM_FILTERS, spec.width, spec.channel_divisor)
    x = conv_bn_act(x, stem_filters, 3, config, "stem", strides=2, padding="tf_same")
    x, endpoints = build_stages(
        x, scaled_stages(spec), config, _block_prefix, drop_connect_rate=drop_connect_rate, input_stride=2
    )
    head_filters = HEAD_FILTERS if spec.fix_stem_head else round_filters(HEAD_FILTERS, spec.width,
                                                                         spec.channel_divisor)

    def head(with_classifier: bool, pooling: str | None):
        top = conv_bn_act(x, head_filters, 1, config, "top")
        return classifier_head(
            top,
            with_classifier,
            pooling,
            classes,
            classifier_activation,
            dropout_rate=spec.dropout if dropout_rate is None else dropout_rate,
            kernel_initializer=DENSE_KERNEL_INITIALIZER,
        )

    outputs = endpoint_outputs(endpoints) if features_only else head(include_top, pooling)
    model = finish_model(img_input, input_tensor, outputs, name or spec.name)
    whole = []
    if features_only and weights is not None:  # pretrained weights are a whole network's: load them there
        whole = [finish_model(img_input, input_tensor, head(top, None), model.name) for top in (False, True)]
    load_weights(model, weights, twin=spec.twin, whole_networks=whole)
    return model


def EfficientNetLite(index: int = 0, **kwargs):
    """EfficientNet-Lite{index} (0..4): ReLU6, no squeeze-excite, fixed stem and head; int8-friendly."""
    if isinstance(index, bool) or index not in range(5):
        raise ValueError(f"EfficientNet-Lite index must be an integer 0..4, got {index!r}")
    return EfficientNet(preset=f"efficientnet-lite{index}", **kwargs)
