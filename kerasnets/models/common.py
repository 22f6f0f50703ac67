"""What every family shares around its stages: input validation, the classifier head, endpoints."""

from __future__ import annotations

from typing import Any

import keras
from keras import layers

from kerasnets.layers.data_format import channel_axis, image_shape, split_image_shape

__all__ = ["POOLINGS", "ENDPOINT_STRIDES", "model_input", "validate_common", "classifier_head", "finish_model",
           "CLASSIFIER_NAME"]

POOLINGS = (None, "avg", "max")
ENDPOINT_STRIDES = (4, 8, 16, 32)
MIN_SIZE = 32
#: the classifier Dense layer's name (keras.applications'): what weight loaders look for
CLASSIFIER_NAME = "predictions"


def validate_common(
    weights: str | None,
    include_top: bool,
    classes: int,
    pooling: str | None,
    input_shape: tuple | None,
) -> None:
    """Check the keras.applications-style arguments shared by every builder; raise ValueError on bad ones."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
        raise ValueError(f"classes must be a positive integer, got {classes!r}")
    if weights == "imagenet" and include_top and classes != 1000:
        raise ValueError(
            f"weights='imagenet' with include_top=True needs classes=1000, got classes={classes}; "
            "pass include_top=False to put your own classifier on the ImageNet backbone"
        )
    if input_shape is not None:
        shape = tuple(input_shape)
        if len(shape) != 3:
            raise ValueError(f"input_shape must be {_layout()} (rank 3, keras.config.image_data_format() "
                             f"{keras.config.image_data_format()!r}), got {input_shape!r}")
        height, width, channels = split_image_shape(shape)
        for size in (height, width):
            if size is not None and (not isinstance(size, int) or size < MIN_SIZE):
                raise ValueError(f"input_shape height and width must be None or integers >= {MIN_SIZE}, got "
                                 f"{input_shape!r}, read as {_layout()}")
        if not isinstance(channels, int) or channels < 1:
            raise ValueError(f"input_shape channels must be a positive integer, got {input_shape!r}, read as {_layout()}")
        if weights == "imagenet" and channels != 3:
            raise ValueError(f"weights='imagenet' needs 3 input channels (RGB), got input_shape={input_shape!r}")


def _layout() -> str:
    """How an ``input_shape`` is read under the current image data format."""
    return "(channels, height, width)" if channel_axis() == 1 else "(height, width, channels)"


def model_input(input_tensor, input_shape: tuple | None, default_size: int):
    """The model's input: ``input_tensor`` if given, else ``Input(input_shape)``, by default an RGB
    ``default_size`` square in the current image data format ((size, size, 3) channels last)."""
    if input_shape is None:
        input_shape = image_shape(default_size, default_size, 3)
    if input_tensor is None:
        return layers.Input(shape=tuple(input_shape), name="input_layer")
    if not keras.backend.is_keras_tensor(input_tensor):
        return layers.Input(tensor=input_tensor, shape=tuple(input_shape), name="input_layer")
    return input_tensor


def classifier_head(
    x,
    include_top: bool,
    pooling: str | None,
    classes: int,
    classifier_activation: Any,
    dropout_rate: float = 0.0,
    kernel_initializer: Any = "glorot_uniform",
):
    """Global pooling, optional dropout and the ``predictions`` Dense, named as keras.applications.

    The classifier always computes in float32 so that mixed precision keeps a float32 softmax.
    """
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        if dropout_rate > 0:
            x = layers.Dropout(dropout_rate, name="top_dropout")(x)
        return layers.Dense(
            classes,
            activation=classifier_activation,
            kernel_initializer=kernel_initializer,
            dtype="float32" if keras.config.dtype_policy().name.startswith("mixed") else None,
            name=CLASSIFIER_NAME,
        )(x)
    if pooling == "avg":
        return layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if pooling == "max":
        return layers.GlobalMaxPooling2D(name="max_pool")(x)
    return x


def finish_model(inputs, input_tensor, outputs, name: str) -> keras.Model:
    """Wrap the graph in a functional Model, taking ``input_tensor``'s source inputs into account."""
    if input_tensor is not None:
        inputs = keras.utils.get_source_inputs(input_tensor)  # as keras.applications does
    return keras.Model(inputs, outputs, name=name)


def endpoint_outputs(endpoints: dict[int, Any]) -> dict[str, Any]:
    """``{"stride_4": ..., "stride_32": ...}`` from the stage loop's ``{stride: tensor}``."""
    return {f"stride_{s}": endpoints[s] for s in ENDPOINT_STRIDES if s in endpoints}
