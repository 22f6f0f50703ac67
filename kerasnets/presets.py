"""Named presets of every family, and the keras.applications-style aliases generated from them."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import keras

from kerasnets.models.efficientnet import EFFICIENTNET_PRESETS
from kerasnets.models.efficientnet import EfficientNet
from kerasnets.models.resnet import VARIANT_SUFFIXES, VARIANTS, ResNet, variant_depths

__all__ = ["PRESETS", "build", "ALIASES", "ResNet18", "ResNet34", "ResNet50", "ResNet101", "ResNet152", "ResNet50V2",
           "ResNet101V2", "ResNet152V2", "EfficientNetB0", "EfficientNetB1", "EfficientNetB2", "EfficientNetB3",
           "EfficientNetB4", "EfficientNetB5", "EfficientNetB6", "EfficientNetB7", "EfficientNetLite0", "EfficientNetLite1",
           "EfficientNetLite2", "EfficientNetLite3", "EfficientNetLite4", "EfficientNetV2B0", "EfficientNetV2B1",
           "EfficientNetV2B2", "EfficientNetV2B3", "EfficientNetV2S", "EfficientNetV2M", "EfficientNetV2L"]


def _resnet_presets() -> dict[str, tuple[Callable[..., keras.Model], dict[str, Any]]]:
    table = {}
    for variant, spec in VARIANTS.items():
        for depth in variant_depths(spec):
            table[f"resnet{depth}{VARIANT_SUFFIXES[variant]}"] = (ResNet, {"depth": depth, "variant": variant})
    return table


#: preset name -> (builder, keyword arguments). ``resnet50`` is v1.5, ``resnet50_v1`` the
#: keras.applications layout, ``resnet50d`` ResNet-D, ``resnet50v2`` pre-activation (keras.applications
#: ResNet50V2); ``efficientnetv2-s`` etc. are EfficientNetV2 in keras.applications' layout.
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
#: ResNet50V2..ResNet152V2 (pre-activation, keras.applications' layout), EfficientNetB0..B7,
#: EfficientNetLite0..4, EfficientNetV2B0..B3/S/M/L.
ResNet18 = _alias("ResNet18", "resnet18")
ResNet34 = _alias("ResNet34", "resnet34")
ResNet50 = _alias("ResNet50", "resnet50")
ResNet101 = _alias("ResNet101", "resnet101")
ResNet152 = _alias("ResNet152", "resnet152")
ResNet50V2 = _alias("ResNet50V2", "resnet50v2")
ResNet101V2 = _alias("ResNet101V2", "resnet101v2")
ResNet152V2 = _alias("ResNet152V2", "resnet152v2")
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
EfficientNetV2B0 = _alias("EfficientNetV2B0", "efficientnetv2-b0")
EfficientNetV2B1 = _alias("EfficientNetV2B1", "efficientnetv2-b1")
EfficientNetV2B2 = _alias("EfficientNetV2B2", "efficientnetv2-b2")
EfficientNetV2B3 = _alias("EfficientNetV2B3", "efficientnetv2-b3")
EfficientNetV2S = _alias("EfficientNetV2S", "efficientnetv2-s")
EfficientNetV2M = _alias("EfficientNetV2M", "efficientnetv2-m")
EfficientNetV2L = _alias("EfficientNetV2L", "efficientnetv2-l")

#: alias name -> constructor (the names above)
ALIASES: dict[str, Callable[..., keras.Model]] = {f.__name__: f for f in (
    ResNet18, ResNet34, ResNet50, ResNet101, ResNet152, EfficientNetB0, EfficientNetB1, EfficientNetB2,
    EfficientNetB3, EfficientNetB4, EfficientNetB5, EfficientNetB6, EfficientNetB7, EfficientNetLite0,
    EfficientNetLite1, EfficientNetLite2, EfficientNetLite3, EfficientNetLite4, ResNet50V2, ResNet101V2, ResNet152V2,
    EfficientNetV2B0, EfficientNetV2B1, EfficientNetV2B2, EfficientNetV2B3, EfficientNetV2S, EfficientNetV2M,
    EfficientNetV2L,
)}
