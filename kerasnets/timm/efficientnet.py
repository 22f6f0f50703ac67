"""timm's EfficientNets onto :func:`kerasnets.EfficientNet`: ``efficientnet_b0``..``b5`` and
``efficientnet_lite0`` (trained in PyTorch by timm), ``tf_efficientnet_b0``..``b7``,
``tf_efficientnet_lite0``..``4`` and ``tf_efficientnetv2_b0``..``b3`` / ``s`` / ``m`` / ``l`` (ported from
TensorFlow).

Read from timm's ``models/efficientnet.py`` (``_gen_efficientnet``, ``_gen_efficientnet_lite``,
``_gen_efficientnetv2_*``), ``_efficientnet_builder.py`` and ``_efficientnet_blocks.py``:

- Every architecture is a kerasnets preset as it is (stage tables, ``round_channels`` = kerasnets'
  ``round_filters`` with the same divisor and 10% rule, per-stage ``ceil`` depth scaling, Lite's fixed
  stem / head / first and last stage depth, ReLU6 and no squeeze-excite), squeeze-excite reducing to
  ``round(expanded * 0.25 / expand_ratio)`` = a quarter of the block's input width (timm's
  ``se_from_exp=False``), swish (SiLU) in the SE's reduction, a sigmoid gate.
- The ``tf_`` ports use TF "same" padding (timm's ``Conv2dSame``) and BN epsilon 1e-3: keras.applications'
  layout, no delta. timm's own ``efficientnet_*`` use PyTorch padding, ``nn.Conv2d(padding=k // 2)``, and
  ``nn.BatchNorm2d``'s epsilon 1e-5: the keyword deltas :data:`TORCH_DELTAS`.
- ``tf_efficientnetv2_xl`` is refused (with every other unlisted name): kerasnets' EfficientNetV2 has
  keras.applications' variants, B0-B3 / S / M / L, and no XL stage table.

Module names: ``conv_stem`` / ``bn1`` (stem), ``blocks.{stage}.{block}.*`` (one timm stage per kerasnets
stage, :data:`BLOCK_MODULES`), ``conv_head`` / ``bn2`` (head), ``classifier``.
"""

from __future__ import annotations

from typing import Any

import keras

from kerasnets.layers.factories import StageSpec
from kerasnets.models.common import CLASSIFIER_NAME
from kerasnets.models.efficientnet import EFFICIENTNET_PRESETS, EfficientNet, block_prefix, scaled_stages
from kerasnets.timm.mapping import TimmFamily

__all__ = ["FAMILY", "ARCHITECTURES", "TORCH_DELTAS", "BLOCK_MODULES", "STEM_MODULES", "HEAD", "HEAD_MODULES",
           "timm_block", "build", "layer_map", "head_modules"]

#: kerasnets' EfficientNet (TF padding, BN epsilon 1e-3) -> timm's PyTorch-trained EfficientNets
TORCH_DELTAS: dict[str, Any] = {"strided_padding": "symmetric", "bn_epsilon": 1e-5}

#: timm architecture -> (kerasnets preset, keyword deltas on it)
ARCHITECTURES: dict[str, tuple[str, dict[str, Any]]] = {
    **{f"efficientnet_b{i}": (f"efficientnetb{i}", TORCH_DELTAS) for i in range(6)},
    "efficientnet_lite0": ("efficientnet-lite0", TORCH_DELTAS),
    **{f"tf_efficientnet_b{i}": (f"efficientnetb{i}", {}) for i in range(8)},
    **{f"tf_efficientnet_lite{i}": (f"efficientnet-lite{i}", {}) for i in range(5)},
    **{f"tf_efficientnetv2_{v}": (f"efficientnetv2-{v}", {}) for v in ("b0", "b1", "b2", "b3", "s", "m", "l")},
}

#: timm block type -> ((timm module in the block, kerasnets layer suffix), ...); ``{dw}`` is the
#: preset's depthwise label. "ds": DepthwiseSeparableConv (MBConv with expansion 1), "ir":
#: InvertedResidual (MBConv), "cn": ConvBnAct (Fused-MBConv with expansion 1), "er": EdgeResidual
#: (Fused-MBConv). The ``se.*`` modules exist where the stage has squeeze-excite.
BLOCK_MODULES: dict[str, tuple[tuple[str, str], ...]] = {
    "ds": (("conv_dw", "{dw}"), ("bn1", "bn"), ("se.conv_reduce", "se_reduce"), ("se.conv_expand", "se_expand"),
           ("conv_pw", "project_conv"), ("bn2", "project_bn")),
    "ir": (("conv_pw", "expand_conv"), ("bn1", "expand_bn"), ("conv_dw", "{dw}"), ("bn2", "bn"),
           ("se.conv_reduce", "se_reduce"), ("se.conv_expand", "se_expand"), ("conv_pwl", "project_conv"),
           ("bn3", "project_bn")),
    "cn": (("conv", "project_conv"), ("bn1", "project_bn")),
    "er": (("conv_exp", "expand_conv"), ("bn1", "expand_bn"), ("se.conv_reduce", "se_reduce"),
           ("se.conv_expand", "se_expand"), ("conv_pwl", "project_conv"), ("bn2", "project_bn")),
}

#: the modules before the blocks
STEM_MODULES: dict[str, str] = {"conv_stem": "stem_conv", "bn1": "stem_bn"}

#: timm's modules after the last feature map (the head conv, its norm, the classifier), in network order
HEAD: dict[str, str] = {"conv_head": "top_conv", "bn2": "top_bn", "classifier": CLASSIFIER_NAME}

#: :data:`HEAD`'s modules, in order (the family's ``head_modules``)
HEAD_MODULES = tuple(HEAD)


def timm_block(spec: StageSpec) -> str:
    """timm's block type (a :data:`BLOCK_MODULES` key) of a kerasnets EfficientNet stage."""
    fused = spec.block == "fused_mbconv"
    if spec.expand_ratio == 1:
        return "cn" if fused else "ds"
    return "er" if fused else "ir"


def _architecture(architecture: str) -> tuple[str, dict[str, Any]]:
    if architecture not in ARCHITECTURES:
        raise ValueError(f"timm architecture {architecture!r} is not an EfficientNet kerasnets reads; supported: "
                         f"{', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[architecture]


def build(architecture: str, **builder_kwargs: Any) -> keras.Model:
    """:func:`kerasnets.EfficientNet` of timm's ``architecture``: its preset with :data:`TORCH_DELTAS`
    where timm trained it, named after the architecture unless ``name`` is given. ``builder_kwargs``
    are the builder's (``preprocessing=(mean, std)`` is a preset delta)."""
    preset, deltas = _architecture(architecture)
    builder_kwargs.setdefault("name", architecture)
    return EfficientNet(preset=preset, **{**deltas, **builder_kwargs})


def layer_map(architecture: str, model: keras.Model) -> dict[str, str]:
    """``{timm module: kerasnets layer}`` of ``architecture`` (``model`` is the one :func:`build` made;
    the table follows the preset's stage table)."""
    preset = EFFICIENTNET_PRESETS[_architecture(architecture)[0]]
    table = {**STEM_MODULES, **HEAD}
    for stage, spec in enumerate(scaled_stages(preset)):
        modules = [(module, layer.format(dw=preset.depthwise_label))
                   for module, layer in BLOCK_MODULES[timm_block(spec)]
                   if spec.se_ratio > 0 or not module.startswith("se.")]
        for index in range(spec.repeats):
            ours = block_prefix(spec, index)
            table.update({f"blocks.{stage}.{index}.{module}": f"{ours}{layer}" for module, layer in modules})
    return table


def head_modules(architecture: str) -> tuple[str, ...]:
    """:data:`HEAD_MODULES`, for every EfficientNet architecture."""
    _architecture(architecture)
    return HEAD_MODULES


#: the EfficientNet family of :mod:`kerasnets.timm`
FAMILY = TimmFamily(architectures=tuple(ARCHITECTURES), build=build, layer_map=layer_map, head_modules=head_modules)
