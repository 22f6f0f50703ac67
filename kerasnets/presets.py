"""Named presets of every family, and the keras.applications-style aliases generated from them."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import keras

from kerasnets.models.efficientnet import PRESETS as EFFICIENTNET_PRESETS
from kerasnets.models.efficientnet import EfficientNet
from kerasnets.models.resnet import RESNET_SPECS, VARIANTS, ResNet

__all__ = ["PRESETS", "build", "ALIASES"]


def _resnet_presets() -> dict[str, tuple[Callable[..., keras.Model], dict[str, Any]]]:
    table = {}
    for depth in RESNET_SPECS:
        for variant in VARIANTS:
            suffix = {"v1.5": "", "v1": "_v1", "d": "d"}[variant]
            table[f"resnet{depth}{suffix}"] = (ResNet, {"depth": depth, "variant": variant})
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


#: keras.applications-style constructors: ResNet18..ResNet152 (default variant v1.5; pass
#: variant="v1" for the keras.applications layout), EfficientNetB0..B7, EfficientNetLite0..4.
ALIASES: dict[str, Callable[..., keras.Model]] = {
    **{f"ResNet{d}": _alias(f"ResNet{d}", f"resnet{d}") for d in RESNET_SPECS},
    **{f"EfficientNetB{i}": _alias(f"EfficientNetB{i}", f"efficientnetb{i}") for i in range(8)},
    **{f"EfficientNetLite{i}": _alias(f"EfficientNetLite{i}", f"efficientnet-lite{i}") for i in range(5)},
}
