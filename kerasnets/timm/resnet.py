"""timm's ResNets onto :func:`kerasnets.ResNet`: ``resnet18``..``resnet152`` (torchvision's v1.5
layout), ``resnet*d`` (deep stem, average-pool shortcut) and ``resnetv2_50/101/152`` (pre-activation).

Read from timm's ``models/resnet.py`` and ``models/resnetv2.py``:

- v1.5 / D are kerasnets' "v1.5" / "d" variants as they are: 7x7/2 conv padded 3, max pool 3/2 padded
  1, stride on the 3x3 (padded 1), BN epsilon 1e-5, no conv biases; ResNet-D's deep stem
  (3x3/2 32, 3x3 32, 3x3 64) and shortcut ``AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False)``
  (Keras' "same" average pool: the same windows, padding never counted).
- ResNetV2 differs from keras.applications' ResNetV2 (kerasnets "v2") by four keyword deltas,
  :data:`TIMM_V2_DELTAS`: each stage's stride on its first block (``downsample_last=False``), no conv
  biases (``preact_bias=False``), BN epsilon 1e-5, and torch's -inf-padded stem max pool after the
  un-normalized stem conv (``stem_pool_padding="-inf"``). Its final ``norm`` is kerasnets'
  ``post_bn`` + ``post_relu``; its classifier ``head.fc`` is a 1x1 conv (read as the Dense).
"""

from __future__ import annotations

from typing import Any

import keras

from kerasnets.models.common import CLASSIFIER_NAME
from kerasnets.models.resnet import RESNET_SPECS, ResNet
from kerasnets.timm.mapping import TimmFamily

__all__ = ["FAMILY", "ARCHITECTURES", "TIMM_V2_DELTAS", "build", "layer_map", "head_modules"]

#: keras.applications' ResNetV2 ("v2") -> timm's ResNetV2
TIMM_V2_DELTAS: dict[str, Any] = dict(downsample_last=False, preact_bias=False, bn_epsilon=1e-5,
                                      stem_pool_padding="-inf")

#: timm architecture -> (depth, kerasnets variant, keyword deltas on it)
ARCHITECTURES: dict[str, tuple[int, str, dict[str, Any]]] = {
    **{f"resnet{depth}": (depth, "v1.5", {}) for depth in RESNET_SPECS},
    **{f"resnet{depth}d": (depth, "d", {}) for depth in RESNET_SPECS},
    **{f"resnetv2_{depth}": (depth, "v2", TIMM_V2_DELTAS) for depth in (50, 101, 152)},
}


def _spec(architecture: str) -> tuple[int, str, dict[str, Any]]:
    """``ARCHITECTURES[architecture]``; ValueError naming the supported architectures otherwise."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"timm architecture {architecture!r} is not a ResNet of kerasnets.timm; "
                         f"supported: {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[architecture]


def _classifier_module(architecture: str) -> str:
    """timm's classifier module: ``head.fc`` (ResNetV2) or ``fc``."""
    return "head.fc" if _spec(architecture)[1] == "v2" else "fc"


def build(architecture: str, **builder_kwargs: Any) -> keras.Model:
    """:func:`kerasnets.ResNet` of timm's ``architecture`` (named after it unless ``name`` is given)."""
    depth, variant, deltas = _spec(architecture)
    builder_kwargs.setdefault("name", architecture)
    return ResNet(depth, variant, **{**deltas, **builder_kwargs})


def _stem(architecture: str) -> dict[str, str]:
    if architecture.startswith("resnetv2_"):
        return {"stem.conv": "conv1_conv"}
    if architecture.endswith("d"):  # nn.Sequential(conv, bn, act, conv, bn, act, conv), then bn1
        return {"conv1.0": "conv1_1_conv", "conv1.1": "conv1_1_bn", "conv1.3": "conv1_2_conv",
                "conv1.4": "conv1_2_bn", "conv1.6": "conv1_3_conv", "bn1": "conv1_3_bn"}
    return {"conv1": "conv1_conv", "bn1": "conv1_bn"}


def layer_map(architecture: str, model: keras.Model) -> dict[str, str]:
    """``{timm module: kerasnets layer}`` of ``architecture`` (the shortcut projections that ``model``
    has: a block's first block changes shape)."""
    depth, variant, _ = _spec(architecture)
    kind, repeats = RESNET_SPECS[depth]
    names = {layer.name for layer in model.layers}
    table = _stem(architecture)
    for stage, count in enumerate(repeats):
        for block in range(count):
            ours = f"conv{stage + 2}_block{block + 1}_"
            if variant == "v2":
                theirs = f"stages.{stage}.blocks.{block}."
                table.update({f"{theirs}norm1": f"{ours}preact_bn", f"{theirs}conv1": f"{ours}1_conv",
                              f"{theirs}norm2": f"{ours}1_bn", f"{theirs}conv2": f"{ours}2_conv",
                              f"{theirs}norm3": f"{ours}2_bn", f"{theirs}conv3": f"{ours}3_conv"})
                if f"{ours}0_conv" in names:
                    table[f"{theirs}downsample.conv"] = f"{ours}0_conv"
                continue
            theirs = f"layer{stage + 1}.{block}."
            for k in range(1, (3 if kind == "bottleneck" else 2) + 1):
                table.update({f"{theirs}conv{k}": f"{ours}{k}_conv", f"{theirs}bn{k}": f"{ours}{k}_bn"})
            if f"{ours}0_conv" in names:  # downsample = (AvgPool2d or Identity,) conv, bn for ResNet-D
                first = 1 if variant == "d" else 0
                table.update({f"{theirs}downsample.{first}": f"{ours}0_conv",
                              f"{theirs}downsample.{first + 1}": f"{ours}0_bn"})
    if variant == "v2":
        table["norm"] = "post_bn"
    table[_classifier_module(architecture)] = CLASSIFIER_NAME
    return table


def head_modules(architecture: str) -> tuple[str, ...]:
    """timm's modules after the last feature map: the classifier only, ``head.fc`` (ResNetV2, whose
    final ``norm`` is part of its stride-32 features) or ``fc``. ValueError naming the supported
    architectures for another name."""
    return (_classifier_module(architecture),)


#: the ResNet family of :mod:`kerasnets.timm`
FAMILY = TimmFamily(architectures=tuple(ARCHITECTURES), build=build, layer_map=layer_map, head_modules=head_modules)
