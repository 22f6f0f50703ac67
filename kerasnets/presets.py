"""Named presets of every family, and the keras.applications-style aliases generated from them."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import keras

from kerasnets.models.efficientnet import EFFICIENTNET_PRESETS
from kerasnets.models.efficientnet import EfficientNet
from kerasnets.models.resnet import RESNET_SPECS, VARIANT_SUFFIXES, VARIANTS, ResNet

__all__ = ["PRESETS", "build", "ALIASES", "ResNet18", "ResNet34", "ResNet50", "ResNet101", "ResNet152", "EfficientNetB0", "EfficientNetB1", "EfficientNetB2", "EfficientNetB3", "EfficientNetB4", "EfficientNetB5", "EfficientNetB6", "EfficientNetB7", "EfficientNetLite0", "EfficientNetLite1", "EfficientNetLite2", "EfficientNetLite3", "EfficientNetLite4"]


def _resnet_presets() -> dict[str, tuple[Callable[..., keras.Model], dict[str, Any]]]:
    table = {}
    for depth in RESNET_SPECS:
        for variant in VARIANTS:
            table[f"resnet{depth}{VARIANT_SUFFIXES[variant]}"] = (ResNet, {"depth": depth, "variant": variant})
    return table


#: preset name -> (builder, keyword arguments). ``resnet50`` is v1.5, ``resnet50_v1`` the
#: keras.applications layout, ``resnet50d`` ResNet-D.
PRESETS: dict[str, tuple[Callable[..., keras.Model], dict[str, Any]]] = {
    **_resnet_presets(),
    **{name: (EfficientNet, {"preset": name}) for name in EFFICIENTNET_PRESETS},
}


def build(preset: str, **kwargs: Any) -> keras.Model:
    """Build a model by preset name (see :data:`PRESETS`), e.g. ``build("efficientnetb0", classes=10)``."""
    key = preset.lower()
    if key not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; allowed: {sorted(PRESETS)}")
    builder, fixed = PRESETS[key]
    return builder(**fixed, **kwargs)


def _alias(alias: str, preset: str) -> Callable[..., keras.Model]:
    builder, fixed = PRESETS[preset]

    @functools.wraps(builder)
    def make(**kwargs: Any) -> keras.Model:
        return builder(**fixed, **kwargs)

    make.__name__ = make.__qualname__ = alias
    make.__doc__ = f"{alias}: ``{builder.__name__}({', '.join(f'{k}={v!r}' for k, v in fixed.items())}, **kwargs)``."
    return make


#: keras.applications-style constructors: ResNet18..ResNet152 (v1.5, the ``resnet<depth>`` presets),
#: EfficientNetB0..B7, EfficientNetLite0..4.
ResNet18 = _alias("ResNet18", "resnet18")
ResNet34 = _alias("ResNet34", "resnet34")
ResNet50 = _alias("ResNet50", "resnet50")
ResNet101 = _alias("ResNet101", "resnet101")
ResNet152 = _alias("ResNet152", "resnet152")
EfficientNetB0 = _alias("EfficientNetB0", "efficientnetb0")
EfficientNetB1 = _alias("EfficientNetB1", "efficientnetb1")
EfficientNetB2 = _alias("EfficientNetB2", "efficientnetb2")
EfficientNetB3 = _alias("EfficientNetB3", "efficientnetb3")
EfficientNetB4 = _alias("EfficientNetB4", "efficientnetb4")
EfficientNetB5 = _alias("EfficientNetB5", "efficientnetb5")
EfficientNetB6 = _alias("EfficientNetB6", "efficientnetb6")
EfficientNetB7 = _alias("EfficientNetB7", "efficientnetb7")
EfficientNetLite0 = _alias("EfficientNetLite0", "efficientnet-lite0")
EfficientNetLite1 = _alias("EfficientNetLite1", "efficientnet-lite1")
EfficientNetLite2 = _alias("EfficientNetLite2", "efficientnet-lite2")
EfficientNetLite3 = _alias("EfficientNetLite3", "efficientnet-lite3")
EfficientNetLite4 = _alias("EfficientNetLite4", "efficientnet-lite4")

#: alias name -> constructor (the names above)
ALIASES: dict[str, Callable[..., keras.Model]] = {f.__name__: f for f in (
    ResNet18, ResNet34, ResNet50, ResNet101, ResNet152, EfficientNetB0, EfficientNetB1, EfficientNetB2,
    EfficientNetB3, EfficientNetB4, EfficientNetB5, EfficientNetB6, EfficientNetB7, EfficientNetLite0,
    EfficientNetLite1, EfficientNetLite2, EfficientNetLite3, EfficientNetLite4,
)}
