"""kerasnets: ResNet and EfficientNet for Keras 3, exactly as the papers define them.

Builders (``EfficientNet``, ``ResNet`` and their aliases) use keras only; training, data and export
live in submodules that import TensorFlow lazily.
"""

from kerasnets.layers.preprocessing import CaffePreprocessing, caffe_preprocess
from kerasnets.models.efficientnet import PRESETS as EFFICIENTNET_PRESETS
from kerasnets.models.efficientnet import EfficientNet, EfficientNetLite
from kerasnets.models.resnet import ResNet, ResNetVariant
from kerasnets.models.freeze import FreezeReport, freeze, model_blocks
from kerasnets.models.pretrained import PretrainedReport, load_pretrained
from kerasnets.models.weights import transfer_weights
from kerasnets.presets import ALIASES, PRESETS, build
from kerasnets.profile import profile
from kerasnets.scaling import PAPER_COEFFICIENTS, compound_scale

__version__ = "0.1.0"

globals().update(ALIASES)

__all__ = [
    "EfficientNet",
    "EfficientNetLite",
    "ResNet",
    "ResNetVariant",
    "transfer_weights",
    "load_pretrained",
    "PretrainedReport",
    "freeze",
    "model_blocks",
    "FreezeReport",
    "profile",
    "build",
    "PRESETS",
    "EFFICIENTNET_PRESETS",
    "PAPER_COEFFICIENTS",
    "compound_scale",
    "CaffePreprocessing",
    "caffe_preprocess",
    *ALIASES,
]
