"""Shared layer factories used by every kerasnets family (ResNet and EfficientNet alike)."""

from kerasnets.layers.factories import (
    BLOCKS,
    LayerConfig,
    StageSpec,
    basic_block,
    batch_norm,
    bottleneck_block,
    build_stages,
    conv_bn_act,
    drop_path,
    mbconv_block,
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
    "conv_bn_act",
    "drop_path",
    "mbconv_block",
    "squeeze_excite",
    "CaffePreprocessing",
    "caffe_preprocess",
]
