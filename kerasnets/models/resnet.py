"""ResNet-18/26/34/50/101/152 in the v1 (keras.applications), v1.5 (torchvision) and D (Bag of Tricks) layouts,
and ResNet-50/101/152 v2 (pre-activation, keras.applications ResNetV2).

Depths are a spec table (:data:`RESNET_SPECS`), variants are keyword deltas on a
:class:`ResNetVariant`; the stages come from the shared stage loop in :mod:`kerasnets.layers`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from keras import layers

from kerasnets.layers.factories import LayerConfig, StageSpec, batch_norm, build_stages, conv2d, conv_bn_act
from kerasnets.layers.preprocessing import CaffePreprocessing, mean_std_layers, validate_mean_std
from kerasnets.models.common import (
    classifier_head,
    endpoint_outputs,
    finish_model,
    model_input,
    validate_common,
)
from kerasnets.models.pretrained import load_weights

__all__ = ["RESNET_SPECS", "ResNetVariant", "VARIANTS", "DEFAULT_VARIANT", "TRAINING_ONLY_FIELDS", "PREPROCESSINGS",
           "variant_depths", "resnet_stages", "ResNet"]

#: depth -> (block kind, blocks per stage). Stage widths are 64, 128, 256, 512.
RESNET_SPECS: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    26: ("bottleneck", (2, 2, 2, 2)),  # timm's resnet26
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
STAGE_WIDTHS = (64, 128, 256, 512)

#: torchvision's kaiming_normal_(mode="fan_out", nonlinearity="relu").
HE_FAN_OUT = {"class_name": "VarianceScaling", "config": {"scale": 2.0, "mode": "fan_out", "distribution": "untruncated_normal"}}


@dataclasses.dataclass(frozen=True)
class ResNetVariant:
    """The knobs that distinguish ResNet layouts (timm-style keyword deltas).

    Attributes:
        stem: "7x7" (conv 7x7/2 + maxpool) or "deep" (3x3 convs 32-32-64, ResNet-C/D).
        stride_in_1x1: stride on the bottleneck's first 1x1 (v1) instead of the 3x3 (v1.5).
        conv_bias: biases on convolutions followed by BN (keras.applications v1).
        bn_momentum / bn_epsilon: BatchNormalization settings.
        avg_down: ResNet-D average-pool shortcut.
        zero_init_last_bn: zero-initialise each residual branch's last BN gamma.
        twin_prefix / twin_suffix: keras.applications constructor ``{prefix}{depth}{suffix}`` whose weights
            interchange (depths 50, 101, 152), if any.
        preact: pre-activation blocks (He et al. 2016, "Identity Mappings"): BN-ReLU before each
            block's convs, a stem conv without BN, and ``post_bn`` / ``post_relu`` after the last
            stage (keras.applications ResNetV2). Bottleneck depths only.
        downsample_last: each stage's stride is taken by the last block of the stage before (TF-slim
            resnet_v2, keras.applications ResNetV2: conv2..conv4 end strided, conv5 keeps its size)
            instead of the first block of the stage.
        preprocessing: what ``include_preprocessing=True`` puts in the model for RGB 0..255 input:
            "caffe" (BGR minus the ImageNet mean, keras.applications ResNet), "tf" (``x / 127.5 - 1``,
            keras.applications ResNetV2's ``preprocess_input``) or a ``(mean, std)`` pair of RGB
            3-tuples on the 0..1 scale (``Rescaling(1/255)`` + ``Normalization``, timm's
            ``pretrained_cfg``: :func:`~kerasnets.layers.preprocessing.mean_std_layers`).
        preact_bias: pre-activation only: biases on the convs no BN follows (the stem conv, the
            projection shortcuts, each block's last 1x1), as keras.applications ResNetV2; timm's
            ResNetV2 has none.
        stem_pool_padding: what the stem's 3x3/2 max pool pads with: "zeros" (``ZeroPadding2D``,
            keras.applications) or "-inf" (torch's ``MaxPool2d(3, 2, padding=1)``, timm). They differ
            only where the pool's input can be negative: the pre-activation stem, whose conv has no BN
            and no ReLU after it.
    """

    stem: str = "7x7"
    stride_in_1x1: bool = False
    conv_bias: bool = False
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    avg_down: bool = False
    zero_init_last_bn: bool = True
    kernel_initializer: Any = dataclasses.field(default_factory=lambda: HE_FAN_OUT)
    twin_prefix: str | None = None
    twin_suffix: str = ""
    preact: bool = False
    downsample_last: bool = False
    preprocessing: str | tuple = "caffe"
    preact_bias: bool = True
    stem_pool_padding: str = "zeros"


#: ResNetVariant fields that change training or initialization only, not what trained weights compute
#: (so a model with them overridden keeps its preset's name and its ImageNet weights).
TRAINING_ONLY_FIELDS = ("bn_momentum", "zero_init_last_bn", "kernel_initializer")


def _computes_like(variant: ResNetVariant, other: ResNetVariant) -> bool:
    """Whether two variants compute the same function of the same weights (differing at most in
    :data:`TRAINING_ONLY_FIELDS`)."""
    return dataclasses.replace(variant, **{f: getattr(other, f) for f in TRAINING_ONLY_FIELDS}) == other


_V15 = ResNetVariant()
#: "v1": keras.applications; "v1.5": torchvision / NVIDIA; "d": Bag of Tricks ResNet-D (timm resnet*d).
VARIANTS: dict[str, ResNetVariant] = {
    "v1": dataclasses.replace(
        _V15,
        stride_in_1x1=True,
        conv_bias=True,
        bn_momentum=0.99,
        bn_epsilon=1.001e-5,
        zero_init_last_bn=False,
        kernel_initializer="glorot_uniform",
        twin_prefix="ResNet",
    ),
    "v1.5": _V15,
    "d": dataclasses.replace(_V15, stem="deep", avg_down=True),
    "v2": dataclasses.replace(
        _V15,
        bn_momentum=0.99,
        bn_epsilon=1.001e-5,
        zero_init_last_bn=False,
        kernel_initializer="glorot_uniform",
        twin_prefix="ResNet",
        twin_suffix="V2",
        preact=True,
        downsample_last=True,
        preprocessing="tf",
    ),
}
#: variant -> suffix of its preset and model name: ``resnet50`` (v1.5), ``resnet50_v1``, ``resnet50d``,
#: ``resnet50v2`` (keras.applications' name)
VARIANT_SUFFIXES: dict[str, str] = {"v1.5": "", "v1": "_v1", "d": "d", "v2": "v2", "custom": "_custom"}
DEFAULT_VARIANT = "v1.5"


def variant_depths(variant: ResNetVariant) -> tuple[int, ...]:
    """The depths ``variant`` exists at: every depth of :data:`RESNET_SPECS`, bottleneck depths only
    for pre-activation variants."""
    return tuple(depth for depth, (block, _) in RESNET_SPECS.items() if not variant.preact or block == "bottleneck")


def resnet_stages(depth: int, variant: ResNetVariant | None = None) -> tuple[StageSpec, ...]:
    """The four stages (conv2..conv5) of a ResNet of the given depth (and variant: pre-activation
    blocks, strides at the end of stages)."""
    if depth not in RESNET_SPECS:
        raise ValueError(f"ResNet depth must be one of {sorted(RESNET_SPECS)}, got {depth!r}")
    variant = variant or VARIANTS[DEFAULT_VARIANT]
    if depth not in variant_depths(variant):
        raise ValueError(f"pre-activation ResNets (variant 'v2', preact=True) have bottleneck blocks: depth must be "
                         f"one of {list(variant_depths(variant))}, got {depth!r}")
    block, repeats = RESNET_SPECS[depth]
    if variant.preact:
        block = f"preact_{block}"
    strides = (2, 2, 2, 1) if variant.downsample_last else (1, 2, 2, 2)
    return tuple(
        StageSpec(f"conv{i + 2}", block, filters=width, repeats=n, stride=stride,
                  stride_block="last" if variant.downsample_last else "first")
        for i, (width, n, stride) in enumerate(zip(STAGE_WIDTHS, repeats, strides))
    )


#: ResNetVariant.preprocessing -> the layer ``include_preprocessing=True`` applies to RGB 0..255 input
#: (besides a ``(mean, std)`` pair: :func:`~kerasnets.layers.preprocessing.mean_std_layers`).
PREPROCESSINGS = {
    "caffe": lambda x: CaffePreprocessing(name="caffe_preprocessing")(x),
    "tf": lambda x: layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescaling")(x),
}


#: ResNetVariant.stem_pool_padding values
STEM_POOL_PADDINGS = ("zeros", "-inf")


def _preprocess(x, preprocessing):
    """The variant's in-model preprocessing of RGB 0..255 input: a :data:`PREPROCESSINGS` name or a
    ``(mean, std)`` pair."""
    if isinstance(preprocessing, str):
        return PREPROCESSINGS[preprocessing](x)
    return mean_std_layers(x, *preprocessing)


def _check_preprocessing(preprocessing) -> None:
    """ValueError unless ``preprocessing`` is a :data:`PREPROCESSINGS` name or a valid ``(mean, std)`` pair."""
    if isinstance(preprocessing, str):
        if preprocessing not in PREPROCESSINGS:
            raise ValueError(f"ResNet preprocessing must be one of {sorted(PREPROCESSINGS)} or a (mean, std) pair of "
                             f"RGB 3-tuples on the 0..1 scale, got {preprocessing!r}")
        return
    validate_mean_std(preprocessing)


def _block_prefix(spec: StageSpec, index: int) -> str:
    """keras.applications naming: conv3_block1_, conv3_block2_, ..."""
    return f"{spec.name}_block{index + 1}_"


def _stem(x, variant: ResNetVariant, config: LayerConfig):
    """7x7/2 conv (or the deep 3x3 stem) then 3x3/2 max pool: output stride 4.

    The pool pads 1 on every side, with zeros (keras.applications) or with -inf (torch): -inf padding
    is a 3x3 stride-1 "same" max pool (Keras' "same" pooling never picks the padding, and at stride 1 it
    pads 1 on every side) sampled at stride 2 by a 1x1 max pool, which equals torch's
    ``MaxPool2d(3, 2, padding=1)`` at any input size.
    """
    if variant.stem == "deep":
        x = conv_bn_act(x, 32, 3, config, "conv1_1", strides=2, padding="symmetric")
        x = conv_bn_act(x, 32, 3, config, "conv1_2")
        x = conv_bn_act(x, 64, 3, config, "conv1_3")
    elif variant.preact:  # the first block's preact_bn normalizes it: no BN, so the conv has a bias
        x = conv2d(x, 64, 7, config, "conv1_conv", strides=2, padding="symmetric", use_bias=variant.preact_bias,
                   pad_name="conv1_pad")
    else:
        x = conv_bn_act(x, 64, 7, config, "conv1", strides=2, padding="symmetric", pad_name="conv1_pad")
    if variant.stem_pool_padding == "-inf":
        x = layers.MaxPooling2D(3, strides=1, padding="same", name="pool1_max")(x)
        return layers.MaxPooling2D(1, strides=2, name="pool1_pool")(x)
    x = layers.ZeroPadding2D(padding=((1, 1), (1, 1)), name="pool1_pad")(x)
    return layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)


def ResNet(
    depth: int = 50,
    variant: str | ResNetVariant = DEFAULT_VARIANT,
    *,
    include_top: bool = True,
    weights: str | None = None,
    input_tensor=None,
    input_shape: tuple | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: Any = "softmax",
    name: str | None = None,
    dropout_rate: float = 0.0,
    drop_connect_rate: float = 0.0,
    features_only: bool = False,
    synchronized_bn: bool = False,
    include_preprocessing: bool = False,
    **variant_overrides: Any,
):
    """Build a ResNet as a Keras functional model.

    Args:
        depth: 18, 34 (basic blocks), 26 (timm's), 50, 101 or 152 (bottleneck blocks).
        variant: "v1.5" (default: stride on the 3x3, no conv bias; torchvision, NVIDIA and most modern
            recipes), "v1" (keras.applications ResNet50/101/152), "d" (deep stem + average-pool
            shortcut), "v2" (pre-activation, keras.applications ResNet50V2/101V2/152V2: depths 50, 101,
            152; the stride at the end of conv2..conv4), or a :class:`ResNetVariant`.
        include_top, weights, input_tensor, input_shape, pooling, classes, classifier_activation, name:
            as keras.applications. ``weights="imagenet"`` needs variant "v1" or "v2" and depth 50/101/152.
        dropout_rate: dropout before the classifier. drop_connect_rate: stochastic depth, ramped.
        features_only: return the last block outputs at strides 4/8/16/32 as a dict instead of the head;
            ``weights`` loads a whole network into the layers they share (keras.applications ResNet50:
            ``conv2_block3_out`` ... ``conv5_block3_out``; ResNet50V2: ``conv2_block2_out``,
            ``conv3_block3_out``, ``conv4_block5_out`` and ``post_relu``, the normalized stride-32 features).
        synchronized_bn: synchronized BatchNormalization (MirroredStrategy).
        include_preprocessing: put the variant's preprocessing in the model so it takes RGB 0..255:
            :class:`CaffePreprocessing` (v1, v1.5, d), ``Rescaling(1/127.5, offset=-1)`` (v2) or a
            ``preprocessing=(mean, std)`` override's ``Rescaling`` + ``Normalization``.
        **variant_overrides: keyword deltas on the variant, e.g. ``stem="deep"``, ``bn_momentum=0.9``.
            The model is named after the variant it computes (``resnet50``, ``resnet50_v1``,
            ``resnet50d``; ``resnet50_custom`` when the overrides change more than
            :data:`TRAINING_ONLY_FIELDS`), which is what weights files record and are checked against.

    Input contract: caffe-preprocessed BGR (``kerasnets.preprocessing.caffe_preprocess``), exactly like
    keras.applications ResNet; v2: RGB scaled to [-1, 1] (``keras.applications.resnet_v2.preprocess_input``);
    with ``include_preprocessing=True``, RGB pixels in 0..255.
    """
    if isinstance(variant, str):
        if variant not in VARIANTS:
            raise ValueError(f"ResNet variant must be one of {sorted(VARIANTS)}, got {variant!r}")
        spec = VARIANTS[variant]
    elif isinstance(variant, ResNetVariant):
        spec = variant
    else:
        raise TypeError(f"variant must be a name in {sorted(VARIANTS)} or a ResNetVariant, got {type(variant).__name__}")
    if variant_overrides:
        fields = {f.name for f in dataclasses.fields(ResNetVariant)}
        unknown = sorted(set(variant_overrides) - fields)
        if unknown:
            raise ValueError(f"unknown ResNet variant keywords {unknown}; allowed: {sorted(fields)}")
        spec = dataclasses.replace(spec, **variant_overrides)
    # the variant it computes names the model (the preset's name) and decides its ImageNet weights
    variant_name = next((known for known, v in VARIANTS.items() if _computes_like(spec, v)), "custom")
    if spec.stem not in ("7x7", "deep"):
        raise ValueError(f"ResNet stem must be '7x7' or 'deep', got {spec.stem!r}")
    _check_preprocessing(spec.preprocessing)
    if spec.stem_pool_padding not in STEM_POOL_PADDINGS:
        raise ValueError(f"ResNet stem_pool_padding must be one of {list(STEM_POOL_PADDINGS)}, "
                         f"got {spec.stem_pool_padding!r}")
    if spec.preact and spec.stem == "deep":
        raise ValueError("a pre-activation ResNet (preact=True) has the 7x7 stem: use stem='7x7'")
    stages = resnet_stages(depth, spec)
    twin = f"{spec.twin_prefix}{depth}{spec.twin_suffix}" if spec.twin_prefix and depth >= 50 else None
    if weights == "imagenet" and (twin is None or variant_name == "custom"):
        raise ValueError(
            "weights='imagenet' exists for variant='v1' or 'v2' with depth 50, 101 or 152 (the keras.applications "
            f"ResNets); got depth={depth}, variant={variant!r}"
            f"{f' with {variant_overrides}' if variant_overrides else ''}. Use weights=None or a .weights.h5 path"
        )
    validate_common(weights, include_top, classes, pooling, input_shape)
    config = LayerConfig(
        activation="relu",
        activation_label="relu",
        bn_momentum=spec.bn_momentum,
        bn_epsilon=spec.bn_epsilon,
        synchronized_bn=synchronized_bn,
        conv_bias=spec.conv_bias,
        kernel_initializer=spec.kernel_initializer,
        zero_init_last_bn=spec.zero_init_last_bn,
        stride_in_1x1=spec.stride_in_1x1,
        avg_down=spec.avg_down,
        preact_bias=spec.preact_bias,
    )
    img_input = model_input(input_tensor, input_shape, 224)
    x = _preprocess(img_input, spec.preprocessing) if include_preprocessing else img_input
    x = _stem(x, spec, config)
    x, endpoints = build_stages(x, stages, config, _block_prefix, drop_connect_rate, input_stride=4)
    if spec.preact:  # the blocks end in raw sums: normalize and activate the last one
        x = batch_norm(config, "post_bn")(x)
        x = layers.Activation(config.activation, name=f"post_{config.activation_label}")(x)
        endpoints[max(endpoints)] = x

    def head(with_classifier: bool, pooling: str | None):
        return classifier_head(x, with_classifier, pooling, classes, classifier_activation, dropout_rate)

    outputs = endpoint_outputs(endpoints) if features_only else head(include_top, pooling)
    default_name = f"resnet{depth}{VARIANT_SUFFIXES[variant_name]}"  # the preset's name
    model = finish_model(img_input, input_tensor, outputs, name or default_name)
    whole = []
    if features_only and weights is not None:  # pretrained weights are a whole network's: load them there
        whole = [finish_model(img_input, input_tensor, head(top, None), model.name) for top in (False, True)]
    load_weights(model, weights, twin=twin, whole_networks=whole)
    return model
