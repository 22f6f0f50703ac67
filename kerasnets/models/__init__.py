"""Model builders: ResNet (v1, v1.5, D, v2) and EfficientNet (V1, Lite, V2) families built from the shared layer factories."""

from kerasnets.models.efficientnet import EFFICIENTNET_PRESETS
from kerasnets.models.efficientnet import EfficientNet, EfficientNetLite, EfficientNetV2
from kerasnets.models.resnet import VARIANTS as RESNET_VARIANTS
from kerasnets.models.resnet import ResNet
from kerasnets.models.freeze import FreezeReport, freeze, model_blocks
from kerasnets.models.pretrained import PretrainedReport, load_pretrained
from kerasnets.models.weights import transfer_weights

__all__ = [
    "EfficientNet",
    "EfficientNetLite",
    "EfficientNetV2",
    "ResNet",
    "transfer_weights",
    "load_pretrained",
    "PretrainedReport",
    "freeze",
    "model_blocks",
    "FreezeReport",
    "EFFICIENTNET_PRESETS",
    "RESNET_VARIANTS",
]
