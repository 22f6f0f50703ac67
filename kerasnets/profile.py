"""Model profiling: parameter counts and multiply-add FLOPs, counted per layer."""

from __future__ import annotations

import math
from typing import Any

import keras

from kerasnets.layers.data_format import image_shape, split_image_shape

__all__ = ["layer_flops", "profile"]


def _channels_first(layer: keras.layers.Layer) -> bool:
    """Whether a convolution's tensors are (N, C, H, W): its own ``data_format`` (Keras fills it from
    ``keras.config.image_data_format()`` when the layer is made)."""
    return getattr(layer, "data_format", "channels_last") == "channels_first"


def _spatial(shape, channels_first: bool = False) -> int:
    """Positions of one image: the product of the spatial dimensions of a batch ``shape``."""
    return math.prod(int(d) for d in (shape[2:] if channels_first else shape[1:-1]))


def _channels(shape, channels_first: bool = False) -> int:
    """The channel count of a batch ``shape``."""
    return int(shape[1] if channels_first else shape[-1])


def layer_flops(layer: keras.layers.Layer) -> int:
    """Multiply-adds of one layer for one image (the EfficientNet paper's FLOPs convention).

    Counted: Conv2D (incl. grouped), DepthwiseConv2D, SeparableConv2D, Conv2DTranspose, Dense, and
    the layers of nested models (a backbone inside a classifier). Everything else (BN, activations,
    pooling, adds) is elementwise and left out, as in the papers' tables. A convolution's channel
    axis is its own ``data_format``'s (channels last or first); a Dense layer acts on the last axis.
    """
    if isinstance(layer, keras.Model):  # nested functional / sequential model: its own layers,
        inner = layer  # at the size it is called with (a backbone built for any size: None)
        if None in tuple(layer.input_shape[1:]) and layer._inbound_nodes:
            site = layer._inbound_nodes[0].input_tensors[0].shape
            inner = keras.models.clone_model(layer, input_tensors=keras.Input(tuple(site[1:])))
        return sum(layer_flops(sublayer) for sublayer in inner.layers)
    first = _channels_first(layer)
    if isinstance(layer, keras.layers.SeparableConv2D):
        kh, kw = layer.kernel_size
        in_channels, out = _channels(layer.input.shape, first), layer.output.shape
        depthwise = in_channels * layer.depth_multiplier
        return _spatial(out, first) * depthwise * (kh * kw + _channels(out, first))
    if isinstance(layer, keras.layers.Conv2DTranspose):  # every input pixel scatters a kh x kw kernel
        kh, kw = layer.kernel_size
        return _spatial(layer.input.shape, first) * kh * kw * _channels(layer.input.shape, first) * layer.filters
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        kh, kw = layer.kernel_size
        out = layer.output.shape
        return _spatial(out, first) * _channels(out, first) * kh * kw
    if isinstance(layer, keras.layers.Conv2D):
        kh, kw = layer.kernel_size
        in_channels = _channels(layer.input.shape, first)
        out = layer.output.shape
        return _spatial(out, first) * _channels(out, first) * kh * kw * in_channels // layer.groups
    if isinstance(layer, keras.layers.Dense):
        positions = math.prod(int(d) for d in layer.input.shape[1:-1]) if len(layer.input.shape) > 2 else 1
        return positions * int(layer.input.shape[-1]) * layer.units
    return 0


def profile(model: keras.Model, image_size: int | tuple[int, int] | None = None) -> dict[str, Any]:
    """Parameters, trainable parameters and multiply-add FLOPs of a functional model.

    Args:
        model: a functional model with one image input, laid out as
            ``keras.config.image_data_format()`` says: (H, W, C) channels last, (C, H, W) channels first.
        image_size: needed only when the model's input has no fixed height/width; the model is then
            re-traced (cloned, weights not copied) at that size.

    Returns:
        ``{"params", "trainable_params", "flops", "input_size"}``; ``flops`` counts multiply-adds of a
        single image at ``input_size`` = (height, width).
    """
    shape = tuple(model.input_shape[1:])
    if len(shape) != 3:
        layout = "(C, H, W)" if keras.config.image_data_format() == "channels_first" else "(H, W, C)"
        raise ValueError(f"profile expects a model with one image input {layout} "
                         f"({keras.config.image_data_format()}), got input shape {model.input_shape}")
    height, width, depth = split_image_shape(shape)
    traced = model
    if image_size is not None or None in (height, width):
        if image_size is None:
            raise ValueError(
                f"the model's input {model.input_shape} has no fixed size: pass image_size=224 (or (h, w))"
            )
        height, width = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        traced = keras.models.clone_model(model, input_tensors=keras.Input(image_shape(height, width, depth)))
    flops = sum(layer_flops(layer) for layer in traced.layers)
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    return {
        "params": int(model.count_params()),
        "trainable_params": int(trainable),
        "flops": int(flops),
        "input_size": (int(height), int(width)),
    }
