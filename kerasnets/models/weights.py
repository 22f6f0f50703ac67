"""Weight interchange with keras.applications and loading of weights files."""

from __future__ import annotations

import os
import re

import keras

__all__ = ["transfer_weights", "load_weights", "imagenet_twin"]

_AUTO_SUFFIX = re.compile(r"_\d+$")


def _weighted_layers(model: keras.Model) -> dict[str, keras.layers.Layer]:
    """Layers that own weights, keyed by name (Keras' auto-numbering ``_3`` suffix stripped)."""
    found: dict[str, keras.layers.Layer] = {}
    for layer in model.layers:
        if layer.weights:
            found[_AUTO_SUFFIX.sub("", layer.name)] = layer
    return found


def transfer_weights(source: keras.Model, target: keras.Model) -> keras.Model:
    """Copy every weight of ``source`` (e.g. a keras.applications model) into ``target`` by layer name.

    Layers are paired by name (layer names are kerasnets' contract with keras.applications).
    Raises ValueError naming the first layer that is missing or whose weight shapes differ; nothing
    is written to ``target`` unless every layer fits. Returns ``target``.
    """
    src, dst = _weighted_layers(source), _weighted_layers(target)
    missing = [name for name in dst if name not in src]
    extra = [name for name in src if name not in dst]
    if missing or extra:
        raise ValueError(
            f"cannot transfer weights from {source.name!r} to {target.name!r}: layers differ; "
            f"only in target: {missing[:5]}, only in source: {extra[:5]}. Build the matching "
            "architecture (e.g. ResNet variant='v1' for keras.applications ResNet50)"
        )
    plan = []
    for name, layer in dst.items():
        values = src[name].get_weights()
        shapes = [tuple(w.shape) for w in layer.weights]
        if [tuple(v.shape) for v in values] != shapes:
            raise ValueError(
                f"cannot transfer weights: layer {name!r} has shapes {shapes} in {target.name!r} but "
                f"{[tuple(v.shape) for v in values]} in {source.name!r}"
            )
        plan.append((layer, values))
    for layer, values in plan:
        layer.set_weights(values)
        if hasattr(layer, "finalize_state"):  # Normalization caches mean/variance tensors from its weights
            layer.finalize_state()
    return target


def imagenet_twin(twin: str, include_top: bool, input_shape: tuple) -> keras.Model:
    """Build keras.applications' ``twin`` with ImageNet weights (Keras downloads them once)."""
    constructor = getattr(keras.applications, twin)
    try:
        return constructor(weights="imagenet", include_top=include_top, input_shape=input_shape)
    except Exception as error:  # urllib raises several types; all mean the file could not be fetched
        raise RuntimeError(
            f"could not get the ImageNet weights of keras.applications.{twin} ({type(error).__name__}: "
            f"{error}). Without network access, copy the weights file into ~/.keras/models/ (the "
            "name Keras expects), or load a local file with weights='/path/model.weights.h5'"
        ) from error


def load_weights(model: keras.Model, weights: str | os.PathLike | None, twin: str | None, include_top: bool) -> None:
    """Apply the builders' ``weights`` argument: None, "imagenet" (via the keras.applications twin) or a path."""
    if weights is None:
        return
    if weights == "imagenet":
        if twin is None:
            raise ValueError(f"no ImageNet weights exist for {model.name!r}; use weights=None or a path")
        shape = tuple(model.input_shape[1:])
        transfer_weights(imagenet_twin(twin, include_top, shape), model)
        return
    path = os.fspath(weights)
    if not os.path.isfile(path):
        raise ValueError(f"weights must be None, 'imagenet' or the path of a .weights.h5 file; no file at {path!r}")
    try:
        model.load_weights(path)
    except Exception as error:
        raise ValueError(
            f"weights file {path!r} does not fit {model.name!r} ({error}); it was saved from another "
            "architecture: build the same preset/depth/variant and classes it was saved from"
        ) from error
