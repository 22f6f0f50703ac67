"""Where the channels are: every builder follows ``keras.config.image_data_format()`` at build time, as
keras.applications does, and reads the channel axis and image shapes through these functions only.

Keras layers (Conv2D, pooling, ZeroPadding2D) already follow the global format on their own; what a
builder decides itself (BatchNormalization and Normalization axes, channel counts, TF-SAME padding
from the spatial size, the default input shape) comes from here.
"""

from __future__ import annotations

import keras

__all__ = ["DATA_FORMATS", "channel_axis", "channels", "spatial_size", "image_shape", "split_image_shape"]

#: Keras' image data formats
DATA_FORMATS = ("channels_last", "channels_first")


def _channels_first() -> bool:
    return keras.config.image_data_format() == "channels_first"


def channel_axis() -> int:
    """The channel axis of a 4D image batch: -1 (channels_last) or 1 (channels_first)."""
    return 1 if _channels_first() else -1


def channels(x) -> int | None:
    """The channel count of a 4D image tensor."""
    return x.shape[channel_axis()]


def spatial_size(x) -> tuple[int | None, int | None]:
    """(height, width) of a 4D image tensor."""
    return tuple(x.shape[2:4] if _channels_first() else x.shape[1:3])


def image_shape(height: int | None, width: int | None, depth: int) -> tuple:
    """One image's shape in the current format: (height, width, depth) or (depth, height, width)."""
    return (depth, height, width) if _channels_first() else (height, width, depth)


def split_image_shape(shape: tuple) -> tuple:
    """(height, width, channels) of a rank-3 image shape given in the current format."""
    return (shape[1], shape[2], shape[0]) if _channels_first() else tuple(shape)
