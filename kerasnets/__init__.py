"""kerasnets: ResNet and EfficientNet for Keras 3, exactly as the papers define them.

Builders (``EfficientNet``, ``EfficientNetV2``, ``ResNet`` and their aliases) use keras only; training, data and export
live in submodules that import TensorFlow lazily.
"""

from kerasnets.layers.preprocessing import CaffePreprocessing, caffe_preprocess
from kerasnets.models.efficientnet import EFFICIENTNET_PRESETS
from kerasnets.models.efficientnet import EfficientNet, EfficientNetLite, EfficientNetV2
from kerasnets.models.resnet import ResNet, ResNetVariant
from kerasnets.models.freeze import FreezeReport, freeze, model_blocks
from kerasnets.models.pretrained import PretrainedReport, load_pretrained
from kerasnets.models.weights import transfer_weights
from kerasnets.presets import (  # keras.applications-style constructors
    PRESETS,
    EfficientNetB0, EfficientNetB1, EfficientNetB2, EfficientNetB3, EfficientNetB4, EfficientNetB5, EfficientNetB6,
    EfficientNetB7, EfficientNetLite0, EfficientNetLite1, EfficientNetLite2, EfficientNetLite3, EfficientNetLite4,
    EfficientNetV2B0, EfficientNetV2B1, EfficientNetV2B2, EfficientNetV2B3, EfficientNetV2S, EfficientNetV2M,
    EfficientNetV2L,
    ResNet18, ResNet34, ResNet50, ResNet101, ResNet152, ResNet50V2, ResNet101V2, ResNet152V2,
    build,
)
from kerasnets.profile import profile
from kerasnets.timm import from_timm
from kerasnets.scaling import PAPER_COEFFICIENTS, compound_scale

__version__ = "0.1.0"

__all__ = [
    "EfficientNet",
    "EfficientNetLite",
    "EfficientNetV2",
    "ResNet",
    "ResNetVariant",
    "transfer_weights",
    "load_pretrained",
    "PretrainedReport",
    "freeze",
    "model_blocks",
    "FreezeReport",
    "profile",
    "from_timm",
    "build",
    "PRESETS",
    "EFFICIENTNET_PRESETS",
    "PAPER_COEFFICIENTS",
    "compound_scale",
    "CaffePreprocessing",
    "caffe_preprocess",
    "ResNet18", "ResNet34", "ResNet50", "ResNet101", "ResNet152", "ResNet50V2", "ResNet101V2", "ResNet152V2",
    "EfficientNetB0", "EfficientNetB1", "EfficientNetB2", "EfficientNetB3", "EfficientNetB4", "EfficientNetB5",
    "EfficientNetB6", "EfficientNetB7",
    "EfficientNetLite0", "EfficientNetLite1", "EfficientNetLite2", "EfficientNetLite3", "EfficientNetLite4",
    "EfficientNetV2B0", "EfficientNetV2B1", "EfficientNetV2B2", "EfficientNetV2B3", "EfficientNetV2S", "EfficientNetV2M",
    "EfficientNetV2L",
]
