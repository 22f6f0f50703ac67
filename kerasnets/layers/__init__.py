"""Shared layer factories used by every kerasnets family (ResNet and EfficientNet alike)."""

from kerasnets.layers.factories import (
    BLOCKS,
    LayerConfig,
    StageSpec,
    basic_block,
    batch_norm,
    bottleneck_block,
    build_stages,
    conv2d,
    conv_bn_act,
    drop_path,
    fused_mbconv_block,
    mbconv_block,
    preact_bottleneck_block,
    squeeze_excite,
)
from kerasnets.layers.preprocessing import CaffePreprocessing, caffe_preprocess

__all__ = [
    "BLOCKS",
    "LayerConfig",
    "StageSpec",
    "basic_block",
    "batch_norm",
    "bottleneck_block",
    "build_stages",
    "conv2d",
    "conv_bn_act",
    "drop_path",
    "fused_mbconv_block",
    "mbconv_block",
    "preact_bottleneck_block",
    "squeeze_excite",
    "CaffePreprocessing",
    "caffe_preprocess",
]
