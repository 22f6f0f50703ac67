"""Layer factories shared by ResNet and EfficientNet: conv-BN-act, squeeze-excite, drop path,
the basic / bottleneck / MBConv blocks, and the one stage loop that turns stage specs into blocks.

Everything here uses ``keras`` only (no TensorFlow), so the builders stay backend-agnostic.
Layer names are produced from a block prefix exactly as keras.applications names them
(``block2a_expand_conv``, ``conv3_block1_0_conv``), which is what makes weights interchangeable.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from keras import layers

from kerasnets.scaling import correct_pad

__all__ = [
    "LayerConfig",
    "StageSpec",
    "batch_norm",
    "conv_bn_act",
    "squeeze_excite",
    "drop_path",
    "basic_block",
    "bottleneck_block",
    "mbconv_block",
    "BLOCKS",
    "build_stages",
]


@dataclasses.dataclass(frozen=True)
class LayerConfig:
    """Family-wide layer settings, passed once instead of threading a dozen arguments through every block.

    Attributes:
        activation: Keras activation name used after every BN that has one ("swish", "relu", "relu6").
        activation_label: suffix of activation layer names ("activation" in EfficientNet, "relu" in ResNet).
        bn_momentum / bn_epsilon: BatchNormalization settings.
        synchronized_bn: use ``BatchNormalization(synchronized=True)`` (needed under MirroredStrategy so
            every replica keeps the same moving statistics).
        conv_bias: whether the convolutions followed by BN carry a bias (ResNet v1 / keras.applications).
        kernel_initializer: initializer of every convolution kernel.
        zero_init_last_bn: initialise the last BN gamma of each residual branch to zero.
        stride_in_1x1: ResNet v1 puts the stride on the first 1x1 conv; v1.5 and later on the 3x3.
        avg_down: ResNet-D shortcut: 2x2 average pool, then a stride-1 1x1 projection.
    """

    activation: str = "swish"
    activation_label: str = "activation"
    bn_momentum: float = 0.99
    bn_epsilon: float = 1e-3
    synchronized_bn: bool = False
    conv_bias: bool = False
    kernel_initializer: Any = "glorot_uniform"
    zero_init_last_bn: bool = False
    stride_in_1x1: bool = False
    avg_down: bool = False


@dataclasses.dataclass(frozen=True)
class StageSpec:
    """One stage of a network: ``repeats`` blocks of one kind; the first one takes the stride.

    Attributes:
        name: stage prefix of layer names ("block2" for EfficientNet, "conv3" for ResNet).
        block: key in :data:`BLOCKS` ("basic", "bottleneck", "mbconv").
        filters: output channels (for "bottleneck", the bottleneck width; the output is 4x).
        repeats: number of blocks.
        stride: stride of the first block.
        kernel_size: depthwise kernel (MBConv) or middle kernel size.
        expand_ratio: MBConv expansion factor.
        se_ratio: squeeze-excite width as a fraction of the block's input channels (0 = no SE).
    """

    name: str
    block: str
    filters: int
    repeats: int
    stride: int = 1
    kernel_size: int = 3
    expand_ratio: int = 1
    se_ratio: float = 0.0

    def __post_init__(self) -> None:
        if self.block not in BLOCKS:
            raise ValueError(f"StageSpec.block must be one of {sorted(BLOCKS)}, got {self.block!r}")
        if self.repeats < 1:
            raise ValueError(f"StageSpec.repeats must be >= 1, got {self.repeats}")
        if self.stride not in (1, 2):
            raise ValueError(f"StageSpec.stride must be 1 or 2, got {self.stride}")


def batch_norm(config: LayerConfig, name: str, zero_init: bool = False) -> layers.BatchNormalization:
    """The family's BatchNormalization (momentum, epsilon, synchronized) with a stable name."""
    return layers.BatchNormalization(
        axis=-1,
        momentum=config.bn_momentum,
        epsilon=config.bn_epsilon,
        synchronized=config.synchronized_bn,
        gamma_initializer="zeros" if zero_init else "ones",
        name=name,
    )


def _pad(x, kernel_size: int, strides: int, padding: str, name: str):
    """Apply the explicit padding a strided 'valid' conv needs; return (tensor, conv padding)."""
    if strides == 1 or padding == "same":
        return x, "same"
    if padding == "tf_same":
        pad = correct_pad(tuple(x.shape[1:3]), kernel_size)
    elif padding == "symmetric":
        pad = ((kernel_size // 2,) * 2,) * 2
    else:
        raise ValueError(f"padding must be 'same', 'tf_same' or 'symmetric', got {padding!r}")
    return layers.ZeroPadding2D(padding=pad, name=name)(x), "valid"


def conv_bn_act(
    x,
    filters: int | None,
    kernel_size: int,
    config: LayerConfig,
    name: str,
    strides: int = 1,
    activation: str | None = "default",
    padding: str = "same",
    depthwise: bool = False,
    zero_init: bool = False,
    layer_names: tuple[str, str, str] | None = None,
    pad_name: str | None = None,
):
    """Convolution (or depthwise convolution), BatchNormalization, then an optional activation.

    Layers are named ``{name}_conv``, ``{name}_bn`` and ``{name}_{activation_label}`` unless
    ``layer_names`` gives the three names. ``padding`` for strided convs: "same" (Keras),
    "tf_same" (explicit TF-SAME padding, as keras.applications EfficientNet) or "symmetric"
    (k//2 on every side, as torchvision). ``activation=None`` skips the activation.
    """
    conv_name, bn_name, act_name = layer_names or (
        f"{name}_conv",
        f"{name}_bn",
        f"{name}_{config.activation_label}",
    )
    x, conv_padding = _pad(x, kernel_size, strides, padding, pad_name or f"{conv_name}_pad")
    if depthwise:
        conv = layers.DepthwiseConv2D(kernel_size, depthwise_initializer=config.kernel_initializer,
                                      strides=strides, padding=conv_padding, use_bias=config.conv_bias, name=conv_name)
    else:
        conv = layers.Conv2D(filters, kernel_size, kernel_initializer=config.kernel_initializer,
                             strides=strides, padding=conv_padding, use_bias=config.conv_bias, name=conv_name)
    x = conv(x)
    x = batch_norm(config, bn_name, zero_init=zero_init)(x)
    activation = config.activation if activation == "default" else activation
    if activation is not None:
        x = layers.Activation(activation, name=act_name)(x)
    return x


def squeeze_excite(x, reduced_filters: int, config: LayerConfig, prefix: str):
    """Squeeze-and-excite: global pool, 1x1 reduce (family activation), 1x1 expand (sigmoid), rescale."""
    channels = x.shape[-1]
    se = layers.GlobalAveragePooling2D(keepdims=True, name=f"{prefix}se_squeeze")(x)
    se = layers.Conv2D(
        reduced_filters,
        1,
        padding="same",
        activation=config.activation,
        kernel_initializer=config.kernel_initializer,
        name=f"{prefix}se_reduce",
    )(se)
    se = layers.Conv2D(
        channels,
        1,
        padding="same",
        activation="sigmoid",
        kernel_initializer=config.kernel_initializer,
        name=f"{prefix}se_expand",
    )(se)
    return layers.Multiply(name=f"{prefix}se_excite")([x, se])


def drop_path(x, rate: float, name: str):
    """Stochastic depth: drop the whole residual branch per sample (Dropout with noise_shape (N,1,1,1))."""
    if rate <= 0:
        return x
    return layers.Dropout(rate, noise_shape=(None, 1, 1, 1), name=name)(x)


def _residual_shortcut(x, out_channels: int, stride: int, config: LayerConfig, prefix: str):
    """Identity, or a 1x1 projection (after a 2x2 average pool for ResNet-D) when the shape changes."""
    if stride == 1 and x.shape[-1] == out_channels:
        return x
    if config.avg_down and stride > 1:
        x = layers.AveragePooling2D(2, strides=stride, padding="same", name=f"{prefix}0_pool")(x)
        stride = 1
    return conv_bn_act(x, out_channels, 1, config, f"{prefix}0", strides=stride, activation=None)


def _close_residual(x, shortcut, drop_rate: float, config: LayerConfig, prefix: str):
    """Drop path on the branch, add the shortcut, then the post-add activation (ResNet)."""
    x = drop_path(x, drop_rate, f"{prefix}drop")
    x = layers.Add(name=f"{prefix}add")([shortcut, x])
    return layers.Activation(config.activation, name=f"{prefix}out")(x)


def basic_block(x, spec: StageSpec, stride: int, drop_rate: float, config: LayerConfig, prefix: str):
    """ResNet basic block (ResNet-18/34): 3x3 -> 3x3, plus identity or projection shortcut."""
    shortcut = _residual_shortcut(x, spec.filters, stride, config, prefix)
    x = conv_bn_act(x, spec.filters, 3, config, f"{prefix}1", strides=stride, padding="symmetric")
    x = conv_bn_act(
        x, spec.filters, 3, config, f"{prefix}2", activation=None, zero_init=config.zero_init_last_bn
    )
    return _close_residual(x, shortcut, drop_rate, config, prefix)


def bottleneck_block(x, spec: StageSpec, stride: int, drop_rate: float, config: LayerConfig, prefix: str):
    """ResNet bottleneck: 1x1 reduce -> 3x3 -> 1x1 expand (4x); stride on the 1x1 (v1) or the 3x3."""
    out_channels = 4 * spec.filters
    shortcut = _residual_shortcut(x, out_channels, stride, config, prefix)
    stride_1x1, stride_3x3 = (stride, 1) if config.stride_in_1x1 else (1, stride)
    x = conv_bn_act(x, spec.filters, 1, config, f"{prefix}1", strides=stride_1x1)
    x = conv_bn_act(
        x, spec.filters, spec.kernel_size, config, f"{prefix}2", strides=stride_3x3, padding="symmetric"
    )
    x = conv_bn_act(
        x, out_channels, 1, config, f"{prefix}3", activation=None, zero_init=config.zero_init_last_bn
    )
    return _close_residual(x, shortcut, drop_rate, config, prefix)


def mbconv_block(x, spec: StageSpec, stride: int, drop_rate: float, config: LayerConfig, prefix: str):
    """MBConv (inverted residual): 1x1 expand, depthwise kxk, squeeze-excite, 1x1 project, residual."""
    inputs = x
    in_channels = x.shape[-1]
    if spec.expand_ratio != 1:
        x = conv_bn_act(x, in_channels * spec.expand_ratio, 1, config, f"{prefix}expand")
    x = conv_bn_act(
        x,
        None,
        spec.kernel_size,
        config,
        prefix,
        strides=stride,
        depthwise=True,
        padding="tf_same",
        layer_names=(f"{prefix}dwconv", f"{prefix}bn", f"{prefix}activation"),
    )
    if 0 < spec.se_ratio <= 1:
        x = squeeze_excite(x, max(1, int(in_channels * spec.se_ratio)), config, prefix)
    x = conv_bn_act(x, spec.filters, 1, config, f"{prefix}project", activation=None)
    if stride == 1 and in_channels == spec.filters:
        x = drop_path(x, drop_rate, f"{prefix}drop")
        x = layers.Add(name=f"{prefix}add")([x, inputs])
    return x


#: Block registry: StageSpec.block -> factory(x, spec, stride, drop_rate, config, prefix).
BLOCKS: dict[str, Callable[..., Any]] = {
    "basic": basic_block,
    "bottleneck": bottleneck_block,
    "mbconv": mbconv_block,
}


def build_stages(
    x,
    stages: Sequence[StageSpec],
    config: LayerConfig,
    block_prefix: Callable[[StageSpec, int], str],
    drop_connect_rate: float = 0.0,
    input_stride: int = 1,
) -> tuple[Any, dict[int, Any]]:
    """The one stage loop: build every block of every stage.

    The first block of a stage takes the stride (and projection); the drop-path rate ramps
    linearly with the global block index, ``drop_connect_rate * b / total_blocks`` (as
    keras.applications). Returns the output and ``{stride: last tensor at that stride}``.
    """
    total = sum(spec.repeats for spec in stages)
    endpoints: dict[int, Any] = {}
    stride_so_far = input_stride
    index = 0
    for spec in stages:
        block = BLOCKS[spec.block]
        for j in range(spec.repeats):
            stride = spec.stride if j == 0 else 1
            x = block(x, spec, stride, drop_connect_rate * index / total, config, block_prefix(spec, j))
            index += 1
        stride_so_far *= spec.stride
        endpoints[stride_so_far] = x
    return x, endpoints


