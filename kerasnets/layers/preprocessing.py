"""Input preprocessing that lives inside the model, so the input contract is one thing: RGB 0..255."""

from __future__ import annotations

import keras
from keras import ops

from kerasnets.layers.data_format import DATA_FORMATS, channel_axis, channels

__all__ = ["CAFFE_MEAN_BGR", "IMAGENET_MEAN_RGB", "IMAGENET_STD_RGB", "caffe_preprocess", "CaffePreprocessing",
           "mean_std_layers", "validate_mean_std"]

#: Per-channel means subtracted by caffe-style preprocessing, in BGR order (keras.applications ResNet).
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
#: ImageNet RGB statistics on the 0..1 scale (used by EfficientNet's in-model Normalization).
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)


def validate_mean_std(mean_std) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """``(mean, std)``, two RGB 3-tuples on the 0..1 scale (std > 0), as plain float tuples.

    The one check of a mean/std pair that a builder's ``preprocessing`` field (or a timm
    ``pretrained_cfg``) gives; raises ValueError saying what is allowed.
    """
    try:
        mean, std = (tuple(float(v) for v in part) for part in mean_std)
    except (TypeError, ValueError):
        mean = std = ()
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ValueError("a mean/std preprocessing must be a pair (mean, std) of RGB 3-tuples on the 0..1 scale "
                         f"with std > 0, e.g. ({IMAGENET_MEAN_RGB}, {IMAGENET_STD_RGB}); got {mean_std!r}")
    return mean, std


def mean_std_layers(x, mean, std):
    """RGB 0..255 -> ``(x / 255 - mean) / std``: ``Rescaling(1/255, name="rescaling")`` then keras'
    ``Normalization(mean, variance=std**2, name="normalization")`` along the channel axis.

    ``mean`` and ``std`` are RGB 3-tuples on the 0..1 scale (timm's ``pretrained_cfg`` mean/std). Both
    layers hold constants in their config: no weights, no custom object, serializable as they are.
    """
    mean, std = validate_mean_std((mean, std))
    if channels(x) != 3:
        raise ValueError(f"preprocessing=(mean, std) normalizes RGB input (3 channels), got {channels(x)} channels: "
                         "use include_preprocessing=False, or the family's named preprocessing")
    x = keras.layers.Rescaling(1.0 / 255.0, name="rescaling")(x)
    return keras.layers.Normalization(axis=channel_axis(), mean=list(mean), variance=[s * s for s in std],
                                      name="normalization")(x)


def caffe_preprocess(images):
    """Caffe preprocessing of RGB images in 0..255: convert to BGR and subtract the ImageNet BGR mean.

    Identical to ``keras.applications.resnet.preprocess_input`` for channels-last input; accepts a
    NumPy array or a tensor of any float dtype and returns float32 of the same shape.
    """
    images = ops.cast(ops.convert_to_tensor(images), "float32")
    if images.shape[-1] != 3:
        raise ValueError(f"caffe_preprocess expects RGB images with 3 channels last, got shape {tuple(images.shape)}")
    return ops.flip(images, axis=-1) - ops.convert_to_tensor(CAFFE_MEAN_BGR, dtype="float32")


@keras.saving.register_keras_serializable(package="kerasnets")
class CaffePreprocessing(keras.layers.Layer):
    """In-model caffe preprocessing (RGB 0..255 -> BGR, mean subtracted): the ResNet v1 contract as a layer.

    ``data_format``: "channels_last" or "channels_first"; None (default) takes
    ``keras.config.image_data_format()`` when the layer is made, and the config keeps what was taken.
    """

    def __init__(self, data_format: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = keras.config.image_data_format() if data_format is None else data_format
        if self.data_format not in DATA_FORMATS:
            raise ValueError(f"data_format must be one of {DATA_FORMATS} or None, got {data_format!r}")

    def call(self, inputs):
        """Flip RGB to BGR and subtract :data:`CAFFE_MEAN_BGR` along the channel axis."""
        inputs = ops.cast(inputs, self.compute_dtype)
        mean = ops.convert_to_tensor(CAFFE_MEAN_BGR, dtype=self.compute_dtype)
        if self.data_format == "channels_first":
            return ops.flip(inputs, axis=1) - ops.reshape(mean, (3, 1, 1))
        return ops.flip(inputs, axis=-1) - mean

    def compute_output_shape(self, input_shape):
        """Same shape as the input."""
        return input_shape

    def get_config(self):
        """The base layer's arguments and ``data_format``."""
        return {**super().get_config(), "data_format": self.data_format}
