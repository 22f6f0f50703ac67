"""Layer factories shared by ResNet and EfficientNet: conv-BN-act, squeeze-excite, drop path,
the basic / bottleneck / pre-activation bottleneck / MBConv / Fused-MBConv blocks, and the one stage
loop that turns stage specs into blocks.

Everything here uses ``keras`` only (no TensorFlow), so the builders stay backend-agnostic.
Layer names are produced from a block prefix exactly as keras.applications names them
(``block2a_expand_conv``, ``conv3_block1_0_conv``), which is what makes weights interchangeable.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from keras import layers

from kerasnets.layers.data_format import channel_axis, channels, spatial_size
from kerasnets.scaling import correct_pad

__all__ = [
    "PADDINGS",
    "STRIDED_PADDINGS",
    "LayerConfig",
    "StageSpec",
    "batch_norm",
    "conv2d",
    "conv_bn_act",
    "squeeze_excite",
    "drop_path",
    "basic_block",
    "bottleneck_block",
    "preact_bottleneck_block",
    "mbconv_block",
    "fused_mbconv_block",
    "BLOCKS",
    "build_stages",
]


#: padding modes of :func:`conv2d` / :func:`conv_bn_act`
PADDINGS = ("same", "tf_same", "symmetric", "explicit")
#: the modes :attr:`LayerConfig.strided_padding` takes (those that pad only strided convs explicitly)
STRIDED_PADDINGS = ("tf_same", "same", "symmetric")


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
        strided_padding: how the strided convolutions of MBConv / Fused-MBConv blocks and the EfficientNet
            stem pad (one of :data:`STRIDED_PADDINGS`): "tf_same" (explicit ``ZeroPadding2D`` then a 'valid'
            conv, keras.applications EfficientNet) or "same" (Keras 'same', keras.applications
            EfficientNetV2) both compute TF-SAME padding (the layers differ, and
            :func:`kerasnets.transfer_weights` compares them); "symmetric" pads ``k // 2`` on every side
            (``ZeroPadding2D`` then a 'valid' conv), as PyTorch's ``nn.Conv2d(padding=k // 2)`` in timm's
            EfficientNets without the ``tf_`` prefix. Stride-1 convs pad 'same' in every mode.
        depthwise_label: name of MBConv's depthwise conv, ``{block}{label}`` ("dwconv" in
            keras.applications EfficientNet, "dwconv2" in EfficientNetV2).
        preact_bias: the pre-activation bottleneck's convs that no BN follows (the projection shortcut
            and the last 1x1) carry a bias (keras.applications ResNetV2) or not (timm's ResNetV2).
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
    strided_padding: str = "tf_same"
    depthwise_label: str = "dwconv"
    preact_bias: bool = True

    def __post_init__(self) -> None:
        if self.strided_padding not in STRIDED_PADDINGS:
            raise ValueError(f"LayerConfig.strided_padding must be one of {STRIDED_PADDINGS}, "
                             f"got {self.strided_padding!r}")


@dataclasses.dataclass(frozen=True)
class StageSpec:
    """One stage of a network: ``repeats`` blocks of one kind; one of them (the first, or the last) takes
    the stride.

    Attributes:
        name: stage prefix of layer names ("block2" for EfficientNet, "conv3" for ResNet).
        block: key in :data:`BLOCKS` ("basic", "bottleneck", "preact_bottleneck", "mbconv", "fused_mbconv").
        filters: output channels (for "bottleneck", the bottleneck width; the output is 4x).
        repeats: number of blocks.
        stride: stride of the stage (taken by one of its blocks).
        kernel_size: depthwise kernel (MBConv), fused kernel (Fused-MBConv) or middle kernel size.
        expand_ratio: MBConv / Fused-MBConv expansion factor.
        se_ratio: squeeze-excite width as a fraction of the block's input channels (0 = no SE).
        stride_block: which block takes the stride: "first" (He et al. v1, EfficientNet) or "last"
            (TF-slim resnet_v2 and keras.applications ResNetV2).
    """

    name: str
    block: str
    filters: int
    repeats: int
    stride: int = 1
    kernel_size: int = 3
    expand_ratio: int = 1
    se_ratio: float = 0.0
    stride_block: str = "first"

    def __post_init__(self) -> None:
        if self.block not in BLOCKS:
            raise ValueError(f"StageSpec.block must be one of {sorted(BLOCKS)}, got {self.block!r}")
        if self.repeats < 1:
            raise ValueError(f"StageSpec.repeats must be >= 1, got {self.repeats}")
        if self.stride not in (1, 2):
            raise ValueError(f"StageSpec.stride must be 1 or 2, got {self.stride}")
        if self.stride_block not in ("first", "last"):
            raise ValueError(f"StageSpec.stride_block must be 'first' or 'last', got {self.stride_block!r}")


def batch_norm(config: LayerConfig, name: str, zero_init: bool = False) -> layers.BatchNormalization:
    """The family's BatchNormalization (momentum, epsilon, synchronized) with a stable name."""
    return layers.BatchNormalization(
        axis=channel_axis(),
        momentum=config.bn_momentum,
        epsilon=config.bn_epsilon,
        synchronized=config.synchronized_bn,
        gamma_initializer="zeros" if zero_init else "ones",
        name=name,
    )




def _pad(x, kernel_size: int, strides: int, padding: str, name: str):
    """Apply the explicit padding a 'valid' conv needs; return (tensor, conv padding)."""
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
    if padding == "same" or (strides == 1 and padding != "explicit"):
        return x, "same"
    if padding == "tf_same":
        pad = correct_pad(spatial_size(x), kernel_size)
    else:  # "symmetric" (strided convs only) or "explicit" (every conv)
        pad = ((kernel_size // 2,) * 2,) * 2
    return layers.ZeroPadding2D(padding=pad, name=name)(x), "valid"


def conv2d(
    x,
    filters: int | None,
    kernel_size: int,
    config: LayerConfig,
    name: str,
    strides: int = 1,
    padding: str = "same",
    depthwise: bool = False,
    use_bias: bool | None = None,
    pad_name: str | None = None,
):
    """One convolution (or depthwise convolution) named ``name``, with the padding ``padding`` asks for.

    ``padding`` for strided convs: "same" (Keras), "tf_same" (explicit TF-SAME padding, as
    keras.applications EfficientNet) or "symmetric" (k//2 on every side, as torchvision);
    "explicit" pads k//2 on every side at any stride (keras.applications ResNetV2's 3x3s).
    ``use_bias`` defaults to ``config.conv_bias`` (the setting of convs followed by BN).
    """
    x, conv_padding = _pad(x, kernel_size, strides, padding, pad_name or f"{name}_pad")
    bias = config.conv_bias if use_bias is None else use_bias
    if depthwise:
        conv = layers.DepthwiseConv2D(kernel_size, depthwise_initializer=config.kernel_initializer,
                                      strides=strides, padding=conv_padding, use_bias=bias, name=name)
    else:
        conv = layers.Conv2D(filters, kernel_size, kernel_initializer=config.kernel_initializer,
                             strides=strides, padding=conv_padding, use_bias=bias, name=name)
    return conv(x)


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
    ``layer_names`` gives the three names. ``padding``: as :func:`conv2d`. ``activation=None``
    skips the activation.
    """
    conv_name, bn_name, act_name = layer_names or (
        f"{name}_conv",
        f"{name}_bn",
        f"{name}_{config.activation_label}",
    )
    x = conv2d(x, filters, kernel_size, config, conv_name, strides=strides, padding=padding, depthwise=depthwise,
               pad_name=pad_name)
    x = batch_norm(config, bn_name, zero_init=zero_init)(x)
    activation = config.activation if activation == "default" else activation
    if activation is not None:
        x = layers.Activation(activation, name=act_name)(x)
    return x


def squeeze_excite(x, reduced_filters: int, config: LayerConfig, prefix: str):
    """Squeeze-and-excite: global pool, 1x1 reduce (family activation), 1x1 expand (sigmoid), rescale."""
    width = channels(x)
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
        width,
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
    if stride == 1 and channels(x) == out_channels:
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


def preact_bottleneck_block(x, spec: StageSpec, stride: int, drop_rate: float, config: LayerConfig, prefix: str):
    """Pre-activation bottleneck (He et al. 2016, "Identity Mappings"; keras.applications ResNetV2).

    BN-ReLU first (``preact_bn``), then 1x1 -> 3x3 -> 1x1 (4x) with no BN after the last conv and
    no activation after the add. The projection shortcut (when the width changes) is a 1x1 conv of
    the pre-activated input; an identity shortcut takes the raw input, subsampled by a 1x1 max pool
    when the block is strided. Convs followed by BN carry a bias as ``config.conv_bias`` says; the
    two that are not (the projection and the last 1x1) do as ``config.preact_bias`` says (keras.applications:
    they do).
    """
    out_channels = 4 * spec.filters
    preact = batch_norm(config, f"{prefix}preact_bn")(x)
    preact = layers.Activation(config.activation, name=f"{prefix}preact_{config.activation_label}")(preact)
    if channels(x) != out_channels:
        shortcut, projection_stride = preact, stride
        if config.avg_down and stride > 1:
            shortcut = layers.AveragePooling2D(2, strides=stride, padding="same", name=f"{prefix}0_pool")(shortcut)
            projection_stride = 1
        shortcut = conv2d(shortcut, out_channels, 1, config, f"{prefix}0_conv", strides=projection_stride,
                          use_bias=config.preact_bias)
    elif stride > 1:
        shortcut = layers.MaxPooling2D(1, strides=stride, name=f"{prefix}0_pool")(x)
    else:
        shortcut = x
    stride_1x1, stride_3x3 = (stride, 1) if config.stride_in_1x1 else (1, stride)
    x = conv_bn_act(preact, spec.filters, 1, config, f"{prefix}1", strides=stride_1x1)
    x = conv_bn_act(x, spec.filters, spec.kernel_size, config, f"{prefix}2", strides=stride_3x3, padding="explicit",
                    pad_name=f"{prefix}2_pad")
    x = conv2d(x, out_channels, 1, config, f"{prefix}3_conv", use_bias=config.preact_bias)
    x = drop_path(x, drop_rate, f"{prefix}drop")
    return layers.Add(name=f"{prefix}out")([shortcut, x])


def _inverted_residual(x, inputs, stride: int, drop_rate: float, prefix: str):
    """MBConv / Fused-MBConv residual: drop path and add when the block keeps its shape."""
    if stride == 1 and channels(inputs) == channels(x):
        x = drop_path(x, drop_rate, f"{prefix}drop")
        x = layers.Add(name=f"{prefix}add")([x, inputs])
    return x


def mbconv_block(x, spec: StageSpec, stride: int, drop_rate: float, config: LayerConfig, prefix: str):
    """MBConv (inverted residual): 1x1 expand, depthwise kxk, squeeze-excite, 1x1 project, residual."""
    inputs = x
    in_channels = channels(x)
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
        padding=config.strided_padding,
        layer_names=(f"{prefix}{config.depthwise_label}", f"{prefix}bn", f"{prefix}activation"),
    )
    if 0 < spec.se_ratio <= 1:
        x = squeeze_excite(x, max(1, int(in_channels * spec.se_ratio)), config, prefix)
    x = conv_bn_act(x, spec.filters, 1, config, f"{prefix}project", activation=None)
    return _inverted_residual(x, inputs, stride, drop_rate, prefix)


def fused_mbconv_block(x, spec: StageSpec, stride: int, drop_rate: float, config: LayerConfig, prefix: str):
    """Fused-MBConv (EfficientNetV2): MBConv's 1x1 expansion and depthwise kxk fused into one kxk conv.

    Expansion e != 1: kxk conv to ``e x`` the input width (strided, ``expand_*``), optional
    squeeze-excite, 1x1 project without activation. e == 1: one kxk conv to the output width,
    BN and the activation (``project_*``). Residual as MBConv. Layer names and order are
    keras.applications EfficientNetV2's (and google/automl's FusedMBConvBlock).
    """
    inputs = x
    in_channels = channels(x)
    if spec.expand_ratio != 1:
        x = conv_bn_act(x, in_channels * spec.expand_ratio, spec.kernel_size, config, f"{prefix}expand",
                        strides=stride, padding=config.strided_padding)
    if 0 < spec.se_ratio <= 1:
        x = squeeze_excite(x, max(1, int(in_channels * spec.se_ratio)), config, prefix)
    if spec.expand_ratio != 1:
        x = conv_bn_act(x, spec.filters, 1, config, f"{prefix}project", activation=None)
    else:
        x = conv_bn_act(x, spec.filters, spec.kernel_size, config, f"{prefix}project", strides=stride,
                        padding=config.strided_padding)
    return _inverted_residual(x, inputs, stride, drop_rate, prefix)


#: Block registry: StageSpec.block -> factory(x, spec, stride, drop_rate, config, prefix).
BLOCKS: dict[str, Callable[..., Any]] = {
    "basic": basic_block,
    "bottleneck": bottleneck_block,
    "preact_bottleneck": preact_bottleneck_block,
    "mbconv": mbconv_block,
    "fused_mbconv": fused_mbconv_block,
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

    The first block of a stage (or the last, ``StageSpec.stride_block="last"``) takes the stride;
    the drop-path rate ramps linearly with the global block index,
    ``drop_connect_rate * b / total_blocks`` (as keras.applications). Returns the output and
    ``{stride: last block output at that stride}``.
    """
    total = sum(spec.repeats for spec in stages)
    endpoints: dict[int, Any] = {}
    stride_so_far = input_stride
    index = 0
    for spec in stages:
        block = BLOCKS[spec.block]
        strided = 0 if spec.stride_block == "first" else spec.repeats - 1
        for j in range(spec.repeats):
            stride = spec.stride if j == strided else 1
            x = block(x, spec, stride, drop_connect_rate * index / total, config, block_prefix(spec, j))
            index += 1
            stride_so_far *= stride
            endpoints[stride_so_far] = x
    return x, endpoints


