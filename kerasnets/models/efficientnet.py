"""EfficientNet B0-B7, Lite0-4, compound-scaled variants and EfficientNetV2 B0-B3/S/M/L: a stem, a
stage table and a head.

Presets are data (:data:`EFFICIENTNET_PRESETS`); every network comes from :func:`EfficientNet`'s one code path
through the shared stage loop in :mod:`kerasnets.layers`. EfficientNetV2 is the same builder with other
stage tables (Fused-MBConv and MBConv stages, :data:`V2_LAYOUT`) and the keyword deltas of
keras.applications' efficientnet_v2.py (:data:`V2_FIELDS`). Every preset field is also a keyword delta of
the builder: timm's PyTorch-trained EfficientNets are ``strided_padding="symmetric"`` (``k // 2`` on
every side) and ``bn_epsilon=1e-5`` on the same presets (:mod:`kerasnets.timm.efficientnet`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from keras import layers

from kerasnets.layers.data_format import channel_axis, channels
from kerasnets.layers.factories import STRIDED_PADDINGS, LayerConfig, StageSpec, build_stages, conv_bn_act
from kerasnets.layers.preprocessing import IMAGENET_MEAN_RGB, IMAGENET_STD_RGB, mean_std_layers, validate_mean_std
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
    "PREPROCESSINGS",
    "TRAINING_ONLY_FIELDS",
    "CONV_KERNEL_INITIALIZER",
    "DENSE_KERNEL_INITIALIZER",
    "scaled_stages",
    "resolve_preset",
    "block_prefix",
    "EfficientNet",
    "EfficientNetLite",
    "PAPER_COEFFICIENTS",
    "V2_LAYOUT",
    "V2_FIELDS",
    "V2_TABLES",
    "efficientnetv2_stages",
    "OfficialV2Config",
    "EFFICIENTNETV2_OFFICIAL",
    "EFFICIENTNETV2_VARIANTS",
    "EfficientNetV2",
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


#: The EfficientNetV2 layout every variant shares (google/automl effnetv2_configs.py, keras.applications
#: efficientnet_v2.py): per stage (block, expand ratio, stride, SE ratio of the block's input width);
#: every kernel is 3x3. Fused-MBConv stages have no SE. B0-B3 and S use the first six stages, M and L all seven.
V2_LAYOUT: tuple[tuple[str, int, int, float], ...] = (
    ("fused_mbconv", 1, 1, 0.0),
    ("fused_mbconv", 4, 2, 0.0),
    ("fused_mbconv", 4, 2, 0.0),
    ("mbconv", 4, 2, 0.25),
    ("mbconv", 6, 1, 0.25),
    ("mbconv", 6, 2, 0.25),
    ("mbconv", 6, 1, 0.25),
)


def efficientnetv2_stages(filters: tuple[int, ...], repeats: tuple[int, ...]) -> tuple[StageSpec, ...]:
    """An EfficientNetV2 stage table: :data:`V2_LAYOUT` with each stage's output width and block count."""
    if len(filters) != len(repeats) or not 1 <= len(filters) <= len(V2_LAYOUT):
        raise ValueError(f"filters and repeats must give 1..{len(V2_LAYOUT)} stages each, got {filters} and {repeats}")
    return tuple(
        StageSpec(f"block{i + 1}", block, filters=width, repeats=count, stride=stride, kernel_size=3,
                  expand_ratio=expand, se_ratio=se)
        for i, ((block, expand, stride, se), width, count) in enumerate(zip(V2_LAYOUT, filters, repeats))
    )


#: EfficientNetV2 tables: (stem filters, stage tables). "base" is B0's, which B1-B3 scale like V1.
V2_TABLES: dict[str, tuple[int, tuple[StageSpec, ...]]] = {
    "base": (32, efficientnetv2_stages((16, 32, 48, 96, 112, 192), (1, 2, 2, 3, 5, 8))),
    "s": (24, efficientnetv2_stages((24, 48, 64, 128, 160, 256), (2, 4, 4, 6, 9, 15))),
    "m": (24, efficientnetv2_stages((24, 48, 80, 160, 176, 304, 512), (3, 5, 5, 7, 14, 18, 5))),
    "l": (32, efficientnetv2_stages((32, 64, 96, 192, 224, 384, 640), (4, 7, 7, 10, 19, 25, 7))),
}

#: Keras layout of EfficientNetV2 as keyword deltas on a V1 preset (keras.applications efficientnet_v2.py,
#: which google/automl's effnetv2_model.py agrees with): channels rounded without the 10% rule, Keras
#: 'same' padding (no ZeroPadding2D layers), the depthwise conv named ``dwconv2``, BN momentum 0.9.
V2_FIELDS: dict[str, Any] = {"round_limit": 0.0, "strided_padding": "same", "depthwise_label": "dwconv2",
                             "bn_momentum": 0.9}

#: In-model preprocessing of RGB 0..255 input, by preset:
#: "imagenet_variables": Rescaling(1/255) + a Normalization whose ImageNet mean/variance are weights
#: (keras.applications EfficientNet); "imagenet": the same with the statistics as constants (no weights;
#: keras.applications EfficientNetV2 B0-B3); "signed": Rescaling(1/128, offset=-1) to [-1, 1]
#: (EfficientNetV2 S/M/L, google/automl's ``(image - 128) / 128``). A preset's ``preprocessing`` may
#: instead be a ``(mean, std)`` pair of RGB 3-tuples on the 0..1 scale (timm's ``pretrained_cfg``):
#: :func:`~kerasnets.layers.preprocessing.mean_std_layers`, constants like "imagenet".
PREPROCESSINGS = ("imagenet_variables", "imagenet", "signed")


@dataclasses.dataclass(frozen=True)
class EfficientNetPreset:
    """One row of the preset table: scaling, the Lite overrides (tensorflow/tpu lite builder) and the
    EfficientNetV2 stage tables and keyword deltas (:data:`V2_FIELDS`).

    Every field is also a keyword delta of :func:`EfficientNet` (``strided_padding="symmetric"``,
    ``bn_epsilon=1e-5``, ``preprocessing=(mean, std)``: timm's PyTorch-trained EfficientNets,
    :mod:`kerasnets.timm.efficientnet`).
    """

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
    stages: tuple[StageSpec, ...] = BASE_STAGES  # the unscaled stage table
    stem_filters: int = 32  # the unscaled stem width (V2: the first stage's input width)
    round_limit: float = 0.9  # kerasnets.scaling.make_divisible: 0.9 for V1, 0 (plain rounding) for V2
    preprocessing: str | tuple = "imagenet_variables"  # one of PREPROCESSINGS, or a (mean, std) pair
    # LayerConfig.strided_padding: "tf_same" (V1), "same" (V2) or "symmetric" (PyTorch's k // 2 on every side)
    strided_padding: str = "tf_same"
    depthwise_label: str = "dwconv"  # LayerConfig.depthwise_label
    bn_momentum: float = 0.99  # the builder's default BatchNormalization momentum
    bn_epsilon: float = 1e-3  # BatchNormalization epsilon: TF's 1e-3 (keras.applications); PyTorch's is 1e-5

    def __post_init__(self) -> None:
        if isinstance(self.preprocessing, str):
            if self.preprocessing not in PREPROCESSINGS:
                raise ValueError(f"EfficientNetPreset.preprocessing must be one of {PREPROCESSINGS} or a (mean, std) "
                                 f"pair of RGB 3-tuples on the 0..1 scale, got {self.preprocessing!r}")
        else:  # frozen: store the checked pair as plain float tuples, so presets compare and hash
            object.__setattr__(self, "preprocessing", validate_mean_std(self.preprocessing))
        if self.strided_padding not in STRIDED_PADDINGS:
            raise ValueError(f"EfficientNetPreset.strided_padding must be one of {STRIDED_PADDINGS}, "
                             f"got {self.strided_padding!r}")
        if not 0 < self.bn_epsilon < 1:
            raise ValueError(f"EfficientNetPreset.bn_epsilon must be in (0, 1), got {self.bn_epsilon!r}")


#: EfficientNetPreset fields that change training only, not what trained weights compute: the
#: builder's own arguments (``dropout_rate``, ``bn_momentum``) set them, never a keyword delta, and
#: the model keeps the preset's name and its keras.applications twin.
TRAINING_ONLY_FIELDS = ("dropout", "bn_momentum")


CHANNEL_DIVISOR = 4


def _b(phi: int, width: float, depth: float, resolution: int, dropout: float) -> EfficientNetPreset:
    return EfficientNetPreset(f"efficientnetb{phi}", width, depth, resolution, dropout, twin=f"EfficientNetB{phi}")


def _lite(index: int, width: float, depth: float, resolution: int, dropout: float) -> EfficientNetPreset:
    return EfficientNetPreset(
        f"efficientnet-lite{index}", width, depth, resolution, dropout, "relu6", 0.0, True
    )


#: keras.applications' EfficientNetV2 dropout before the classifier, the same for every variant.
KERAS_V2_DROPOUT = 0.2


def _v2(variant: str, table: str, width: float, depth: float) -> EfficientNetPreset:
    """The ``efficientnetv2-<variant>`` preset: its resolution is the official evaluation size
    (:data:`EFFICIENTNETV2_OFFICIAL`), which keras.applications' default input size equals."""
    stem, stages = V2_TABLES[table]
    return EfficientNetPreset(
        f"efficientnetv2-{variant}", width, depth, EFFICIENTNETV2_OFFICIAL[variant].eval_size, KERAS_V2_DROPOUT,
        twin=f"EfficientNetV2{variant.upper()}",
        stages=stages, stem_filters=stem, preprocessing="imagenet" if variant.startswith("b") else "signed",
        **V2_FIELDS,
    )


@dataclasses.dataclass(frozen=True)
class OfficialV2Config:
    """One row of google/automl's ``efficientnetv2_params``: what keras.applications does not keep.

    Attributes:
        train_size: the final training resolution (progressive learning grows to it).
        eval_size: the evaluation resolution; the ``efficientnetv2-<variant>`` preset's
            ``resolution`` (keras.applications' default input size, the same numbers) is read from here.
        dropout: before the classifier (keras.applications uses 0.2 for every variant).
    """

    train_size: int
    eval_size: int
    dropout: float


#: google/automl efficientnetv2/effnetv2_configs.py, by variant.
EFFICIENTNETV2_OFFICIAL: dict[str, OfficialV2Config] = {
    "b0": OfficialV2Config(192, 224, 0.2),
    "b1": OfficialV2Config(192, 240, 0.2),
    "b2": OfficialV2Config(208, 260, 0.3),
    "b3": OfficialV2Config(240, 300, 0.3),
    "s": OfficialV2Config(300, 384, 0.2),
    "m": OfficialV2Config(384, 480, 0.3),
    "l": OfficialV2Config(384, 480, 0.4),
}
#: the variants of :func:`EfficientNetV2` ("b0", "b1", "b2", "b3", "s", "m", "l")
EFFICIENTNETV2_VARIANTS = tuple(EFFICIENTNETV2_OFFICIAL)


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
        _v2("b0", "base", 1.0, 1.0),
        _v2("b1", "base", 1.0, 1.1),
        _v2("b2", "base", 1.1, 1.2),
        _v2("b3", "base", 1.2, 1.4),
        _v2("s", "s", 1.0, 1.0),
        _v2("m", "m", 1.0, 1.0),
        _v2("l", "l", 1.0, 1.0),
    )
}
_DROPOUT_BY_PHI = tuple(EFFICIENTNET_PRESETS[f"efficientnetb{i}"].dropout for i in range(8))


def scaled_stages(preset: EfficientNetPreset, base: tuple[StageSpec, ...] | None = None) -> tuple[StageSpec, ...]:
    """Apply a preset's width and depth multipliers (and Lite overrides) to its stage table (or ``base``)."""
    base = preset.stages if base is None else base
    if preset.depth_rounding not in ("per_stage", "total"):
        raise ValueError(f"depth_rounding must be 'per_stage' or 'total', got {preset.depth_rounding!r}")
    if preset.depth_rounding == "total" and preset.fix_stem_head:
        raise ValueError("depth_rounding='total' scales every stage and the stem and head; it cannot be combined "
                         "with fix_stem_head=True (Lite): use depth_rounding='per_stage'")
    if preset.depth_rounding == "total" and base != BASE_STAGES:
        raise ValueError("depth_rounding='total' weighs MBConv blocks of the EfficientNet-B0 table; use "
                         "depth_rounding='per_stage' for other stage tables (EfficientNetV2)")
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
            "filters": round_filters(spec.filters, preset.width, preset.channel_divisor, preset.round_limit),
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


def block_prefix(spec: StageSpec, index: int) -> str:
    """The layer-name prefix of block ``index`` (from 0) of stage ``spec``, keras.applications' naming:
    block2a_, block2b_, ... (what weight loaders such as :mod:`kerasnets.timm.efficientnet` map onto)."""
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
    bn_momentum: float | None = None,
    include_preprocessing: bool = True,
    **preset_overrides: Any,
):
    """Build an EfficientNet (V1, Lite or V2) as a Keras functional model.

    Args:
        phi: compound-scaling exponent. Without ``coefficients`` an integer 0..7 selects the published
            EfficientNet-B{phi}; with ``coefficients`` any real phi applies paper Eq. 3.
        coefficients: ``(alpha, beta, gamma)`` (depth, width, resolution bases), each >= 1, e.g.
            :data:`PAPER_COEFFICIENTS` = (1.2, 1.1, 1.15).
        preset: a :data:`EFFICIENTNET_PRESETS` key or an :class:`EfficientNetPreset` (overrides ``phi``), used by
            the Lite and V2 builders (:func:`EfficientNetLite`, :func:`EfficientNetV2`).
        base_resolution: the phi = 0 resolution that Eq. 3 scales (with ``coefficients`` only).
        include_top, weights, input_tensor, input_shape, pooling, classes, classifier_activation, name:
            as keras.applications. ``weights`` is None, "imagenet" (B0-B7 and V2 only: the preset's
            keras.applications twin) or a ``.keras`` / ``.weights.h5`` path.
        dropout_rate: before the classifier (default: the preset's).
        drop_connect_rate: stochastic-depth rate of the last block, ramped linearly from 0.
        features_only: return ``{"stride_4", "stride_8", "stride_16", "stride_32"}`` stage outputs
            (timm ``features_only`` / Model Garden endpoints) instead of the head. ``weights`` then
            loads a whole network (ImageNet, or a file of this preset with or without its head) and
            the feature maps are its intermediate outputs (keras.applications B0: ``block2b_add``,
            ``block3b_add``, ``block5c_add``, ``block7a_project_bn``).
        synchronized_bn: use synchronized BatchNormalization (MirroredStrategy).
        bn_momentum: BatchNormalization momentum; default the preset's (V1: 0.99, the TF reference;
            V2: 0.9, keras.applications and google/automl). ~0.9 suits runs of a few hundred steps,
            whose moving statistics would otherwise lag the weights.
        include_preprocessing: put the preset's input scaling in the model (default, see below).
            False leaves it out, as keras.applications EfficientNetV2's ``include_preprocessing=False``:
            the model then takes input already scaled the way that layer would (V1 and V2 B0-B3:
            ImageNet-normalized; V2 S/M/L: [-1, 1]). With V1's Normalization weights left out,
            ``weights="imagenet"`` is refused.
        **preset_overrides: keyword deltas on the preset (:class:`EfficientNetPreset` fields), e.g.
            ``strided_padding="symmetric"`` (PyTorch's padding: ``k // 2`` on every side of the stem and
            every strided depthwise / fused conv, timm's ``efficientnet_b0``), ``bn_epsilon=1e-5``,
            ``preprocessing=(mean, std)`` (RGB 3-tuples on the 0..1 scale); the fields ``dropout`` and
            ``bn_momentum`` are set by the arguments ``dropout_rate`` and ``bn_momentum`` only (``dropout=``
            is a TypeError). A delta computes another function of the weights: the model is named
            ``<preset>_custom`` and has no ``weights="imagenet"``.

    Input contract: RGB pixels in 0..255 (uint8 or float). Rescaling and ImageNet Normalization (V2
    S/M/L: a rescaling to [-1, 1]) are layers of the model; do not divide by 255 yourself.
    """
    if preset is None:
        spec = resolve_preset(phi, coefficients, base_resolution)
    elif isinstance(preset, EfficientNetPreset):
        spec = preset
    elif preset in EFFICIENTNET_PRESETS:
        spec = EFFICIENTNET_PRESETS[preset]
    else:
        raise ValueError(f"preset must be one of {sorted(EFFICIENTNET_PRESETS)}, got {preset!r}")
    spec = _with_overrides(spec, preset_overrides)
    if weights == "imagenet" and spec.twin is None:
        raise ValueError(
            f"weights='imagenet' exists only for EfficientNet-B0..B7 (integer phi, no coefficients) and "
            f"EfficientNetV2-B0..B3/S/M/L (the keras.applications presets); "
            f"{spec.name} has no published weights: use weights=None, a .weights.h5 path or 'timm:<name>'"
        )
    if weights == "imagenet" and not include_preprocessing and spec.preprocessing == "imagenet_variables":
        raise ValueError(
            f"weights='imagenet' needs include_preprocessing=True for {spec.name}: its Normalization layer holds "
            "weights of the keras.applications file (EfficientNetV2 presets allow include_preprocessing=False)"
        )
    validate_common(weights, include_top, classes, pooling, input_shape)
    config = LayerConfig(
        activation=spec.activation,
        activation_label="activation",
        bn_momentum=spec.bn_momentum if bn_momentum is None else bn_momentum,
        bn_epsilon=spec.bn_epsilon,
        synchronized_bn=synchronized_bn,
        kernel_initializer=CONV_KERNEL_INITIALIZER,
        strided_padding=spec.strided_padding,
        depthwise_label=spec.depthwise_label,
    )
    img_input = model_input(input_tensor, input_shape, spec.resolution)
    x = _preprocess(img_input, spec.preprocessing) if include_preprocessing else img_input

    stem_filters = spec.stem_filters if spec.fix_stem_head else round_filters(
        spec.stem_filters, spec.width, spec.channel_divisor, spec.round_limit)
    x = conv_bn_act(x, stem_filters, 3, config, "stem", strides=2, padding=spec.strided_padding)
    x, endpoints = build_stages(
        x, scaled_stages(spec), config, block_prefix, drop_connect_rate=drop_connect_rate, input_stride=2
    )
    head_filters = HEAD_FILTERS if spec.fix_stem_head else round_filters(HEAD_FILTERS, spec.width,
                                                                         spec.channel_divisor, spec.round_limit)

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


def _with_overrides(spec: EfficientNetPreset, overrides: dict[str, Any]) -> EfficientNetPreset:
    """``spec`` with the builder's keyword deltas (any field but ``name``, ``twin`` and
    :data:`TRAINING_ONLY_FIELDS`); renamed ``<name>_custom`` without its twin when a delta changes a
    field's value (every such field changes what the weights compute)."""
    if not overrides:
        return spec
    if "dropout" in overrides:  # the builder's own argument sets it: one name for one setting
        raise TypeError("EfficientNet takes the dropout before the classifier as dropout_rate=, not dropout= "
                        f"(the preset's dropout is dropout_rate's default); got dropout={overrides['dropout']!r}")
    allowed = sorted(f.name for f in dataclasses.fields(EfficientNetPreset)
                     if f.name not in ("name", "twin", *TRAINING_ONLY_FIELDS))
    unknown = sorted(set(overrides) - set(allowed))
    if unknown:
        raise TypeError(f"EfficientNet got unknown keywords {unknown}; besides its own arguments it takes the preset's "
                        f"fields as keyword deltas: {allowed}")
    changed = dataclasses.replace(spec, **overrides)
    if changed == spec:  # deltas equal to the preset's values
        return spec
    return dataclasses.replace(changed, name=f"{spec.name}_custom", twin=None)


def _preprocess(x, kind: str | tuple):
    """The preset's in-model scaling of RGB 0..255 input (:data:`PREPROCESSINGS`, or a ``(mean, std)``
    pair); keras.applications' layers, with its fallback for other channel counts (no ImageNet
    statistics: V1 keeps mean 0 / variance 1, V2 rescales to [-1, 1]; a mean/std pair needs RGB)."""
    depth = channels(x)
    if not isinstance(kind, str):
        return mean_std_layers(x, *kind)
    if kind == "signed" or (kind == "imagenet" and depth != 3):
        return layers.Rescaling(1.0 / 128.0, offset=-1.0, name="rescaling")(x)
    x = layers.Rescaling(1.0 / 255.0, name="rescaling")(x)
    if kind == "imagenet":
        return layers.Normalization(axis=channel_axis(), mean=list(IMAGENET_MEAN_RGB),
                                    variance=[s * s for s in IMAGENET_STD_RGB], name="normalization")(x)
    normalization = layers.Normalization(axis=channel_axis(), name="normalization")
    x = normalization(x)
    if depth == 3:  # ImageNet statistics by default (keras.applications leaves mean 0 / variance 1)
        normalization.set_weights(
            [np.array(IMAGENET_MEAN_RGB), np.square(IMAGENET_STD_RGB), np.array(0)]
        )
        normalization.finalize_state()  # Normalization snapshots mean/variance; refresh it
    # keras.applications' ImageNet file stores the standard deviation as the variance (and adds a
    # Rescaling layer to undo it); transfer_weights folds that into this layer's variance instead.
    return x


def EfficientNetLite(index: int = 0, **kwargs):
    """EfficientNet-Lite{index} (0..4): ReLU6, no squeeze-excite, fixed stem and head; int8-friendly.

    ``kwargs`` are :func:`EfficientNet`'s (the preset's keyword deltas included), but ``preset``."""
    if isinstance(index, bool) or index not in range(5):
        raise ValueError(f"EfficientNet-Lite index must be an integer 0..4, got {index!r}")
    return EfficientNet(preset=f"efficientnet-lite{index}", **kwargs)


def EfficientNetV2(variant: str, **kwargs):
    """EfficientNetV2-{B0, B1, B2, B3, S, M, L} (Tan & Le, ICML 2021) in keras.applications' layout.

    ``variant`` is one of "b0", "b1", "b2", "b3", "s", "m", "l" (any case). The network is
    :func:`EfficientNet` with the preset ``efficientnetv2-<variant>``: stages 1-3 Fused-MBConv
    (no squeeze-excite), the rest MBConv with SE 0.25 (:data:`V2_LAYOUT`, :data:`V2_TABLES`); B1-B3
    scale B0's table by width/depth (1.0/1.1, 1.1/1.2, 1.2/1.4) as V1 does. Every keyword of
    :func:`EfficientNet` applies (``include_top``, ``weights``, ``input_tensor``, ``input_shape``,
    ``pooling``, ``classes``, ``classifier_activation``, ``name``, ``dropout_rate``,
    ``drop_connect_rate``, ``features_only``, ``include_preprocessing``, ``synchronized_bn``,
    ``bn_momentum``, the preset's keyword deltas such as ``bn_epsilon``) except ``phi``,
    ``coefficients``, ``preset`` and ``base_resolution``.
    Layer names and parameter counts are keras.applications' ``EfficientNetV2<variant>``, whose
    ImageNet weights ``weights="imagenet"`` copies.

    Input contract: RGB 0..255, like keras.applications: B0-B3 rescale to 0..1 and normalize with
    the ImageNet mean/std; S/M/L rescale to [-1, 1] (``x / 128 - 1``, google/automl's preprocessing).

    Where keras.applications and the official google/automl configs (effnetv2_configs.py,
    effnetv2_model.py, hparams.py) differ, keras.applications is the default:

    - dropout before the classifier: Keras 0.2 for every variant; official 0.2 (B0, B1, S), 0.3 (B2,
      B3, M), 0.4 (L): pass ``dropout_rate=EFFICIENTNETV2_OFFICIAL[variant].dropout``.
    - input size: both evaluate at 224/240/260/300 (B0-B3) and 384/480/480 (S/M/L), the default
      ``input_shape``; the official recipe trains at 192/192/208/240 and 300/384/384
      (``EFFICIENTNETV2_OFFICIAL[variant].train_size``), progressively: pass ``input_shape``.
    - convolution kernel initialization: Keras draws VarianceScaling(2, fan_out) from a truncated
      normal, the official code from an untruncated normal of the same standard deviation. This
      changes initialization only (no keyword).

    The rest agrees: stage tables, channel rounding without V1's 10% rule, stem/head widths, BN
    momentum 0.9 and epsilon 1e-3, drop-connect 0.2 ramped over the blocks, swish, 'same' padding.
    """
    if not isinstance(variant, str) or variant.lower() not in EFFICIENTNETV2_VARIANTS:
        raise ValueError(f"EfficientNetV2 variant must be one of {list(EFFICIENTNETV2_VARIANTS)}, got {variant!r}")
    fixed = sorted({"phi", "coefficients", "preset", "base_resolution"} & set(kwargs))
    if fixed:
        raise TypeError(f"EfficientNetV2 takes no {fixed}: the variant picks the preset (efficientnetv2-<variant>)")
    return EfficientNet(preset=f"efficientnetv2-{variant.lower()}", **kwargs)
