"""Model builders: ResNet and EfficientNet families built from the shared layer factories."""

from kerasnets.models.efficientnet import PRESETS as EFFICIENTNET_PRESETS
from kerasnets.models.efficientnet import EfficientNet, EfficientNetLite
from kerasnets.models.resnet import VARIANTS as RESNET_VARIANTS
from kerasnets.models.resnet import ResNet
from kerasnets.models.weights import transfer_weights

__all__ = ["EfficientNet", "EfficientNetLite", "ResNet", "transfer_weights", "EFFICIENTNET_PRESETS", "RESNET_VARIANTS"]
