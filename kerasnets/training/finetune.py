"""Model building for fine-tuning: a preset for the data at hand, or the architecture of a saved run.

``kerasnets train recipes/finetune.py --weights saved_models/x/model.keras`` fine-tunes the network
an earlier run saved: :func:`saved_architecture` rebuilds that architecture (from the ``.keras``
file's config, no weights) at the new resolution and class count, and the engine then copies the
weights in by structure (:func:`kerasnets.load_pretrained`), leaving a new classifier when the class
count differs. ``--weights timm:<hub name or folder>`` fine-tunes a timm checkpoint:
:func:`timm_architecture` builds timm's architecture (its mean/std inside), the engine loads the
checkpoint by name, evaluates with timm's eval crop and interpolation (:func:`timm_eval_options`) and
records timm's ``pretrained_cfg`` in the run's contract (:func:`weights_pretrained_cfg`).
"""

from __future__ import annotations

import inspect
import json
import zipfile
from typing import Any

import keras

from kerasnets.presets import PRESETS, build

__all__ = ["build_preset", "saved_architecture", "timm_architecture", "timm_eval_options", "weights_pretrained_cfg"]


def build_preset(name: str, image_size: int | None, num_classes: int, synchronized_bn: bool = False,
                 **options: Any) -> keras.Model:
    """Preset ``name`` (``kerasnets info`` lists them) for RGB 0..255 images of ``image_size`` (None:
    any size, for progressive stages) and
    ``num_classes`` outputs. ``options`` the preset's builder does not accept are ignored (a recipe's
    ``model_options`` apply to whichever family ``--model`` picks); ResNet gets its caffe
    preprocessing inside the model, as every kerasnets pipeline yields RGB 0..255."""
    key = name.lower()
    if key not in PRESETS:
        raise ValueError(f"unknown model {name!r}; allowed (kerasnets info): {', '.join(PRESETS)}")
    builder = PRESETS[key][0]
    parameters = inspect.signature(builder).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    kwargs = {k: v for k, v in options.items() if takes_any or k in parameters}
    if "include_preprocessing" in parameters:
        kwargs.setdefault("include_preprocessing", True)
    return build(key, input_shape=(image_size, image_size, 3), classes=num_classes,
                 synchronized_bn=synchronized_bn, **kwargs)


def timm_architecture(weights: str, image_size: int | None, num_classes: int, synchronized_bn: bool = False,
                      **options: Any) -> keras.Model:
    """timm checkpoint ``weights``' (``"timm:..."``) architecture, without its weights (the engine loads
    them), for RGB 0..255 images of ``image_size`` and ``num_classes`` outputs, its mean/std inside."""
    from kerasnets.timm import build_architecture, timm_source

    return build_architecture(timm_source(weights), input_shape=(image_size, image_size, 3), classes=num_classes,
                              include_preprocessing=True, synchronized_bn=synchronized_bn, **options)


def weights_pretrained_cfg(weights: Any) -> dict:
    """timm's ``pretrained_cfg`` of ``--weights timm:...`` (what the run's contract records), else {}."""
    from kerasnets.timm import is_timm_weights, pretrained_cfg_of, timm_source

    return pretrained_cfg_of(timm_source(weights)) if is_timm_weights(weights) else {}


def timm_eval_options(weights: Any, image_size: int, eval_options: dict) -> dict:
    """``eval_options`` with timm's eval crop (``crop_pct`` as ``crop_padding`` at ``image_size``,
    ``resize_first``) and interpolation (``resize_method``) when ``weights`` is a timm checkpoint; keys
    the recipe sets win."""
    cfg = weights_pretrained_cfg(weights)
    if not cfg:
        return dict(eval_options)
    from kerasnets.serving import timm_contract

    served = timm_contract((image_size, image_size, 3), cfg, (), cfg["architecture"])
    return {"crop_padding": served.crop_padding, "resize_method": served.resize_method,
            "resize_first": served.resize_first, **eval_options}


def _classifier(layers: list[dict]) -> dict | None:
    named = [layer for layer in layers if layer.get("name") == "predictions"]
    dense = [layer for layer in layers if layer.get("class_name") == "Dense"]
    return (named or dense[-1:] or [None])[-1]


def saved_architecture(path: str, image_size: int, num_classes: int) -> keras.Model:
    """The architecture stored in the ``.keras`` file at ``path``, rebuilt (new weights) for
    ``image_size`` x ``image_size`` inputs and ``num_classes`` outputs.

    Works for functional models whose layers do not depend on the input size (every kerasnets
    classifier). The layers compute in the current dtype policy, not the one the file was saved
    under (the classifier in float32). Raises ValueError for a file that is not a ``.keras`` model
    or has no classifier.
    """
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path!r} is not a .keras file (a zip written by model.save)")
    with zipfile.ZipFile(path) as archive:
        document = json.loads(archive.read("config.json"))
    config = document.get("config", {})
    layers = config.get("layers")
    if document.get("class_name") != "Functional" or not layers:
        raise ValueError(f"{path!r} holds a {document.get('class_name')!r} model; fine-tuning rebuilds functional "
                         "models (every kerasnets builder): pass --model PRESET instead")
    for layer in layers:
        if layer.get("class_name") == "InputLayer":
            shape = layer["config"]["batch_shape"]
            layer["config"]["batch_shape"] = [shape[0], image_size, image_size, *shape[3:]]
    head = _classifier(layers)
    if head is None:
        raise ValueError(f"{path!r} has no Dense classifier to replace; pass --model PRESET instead")
    head["config"]["units"] = int(num_classes)
    _current_precision(layers, head)
    document.pop("compile_config", None)
    document.pop("build_config", None)
    return keras.saving.deserialize_keras_object(document)


def _current_precision(layers: list[dict], head: dict) -> None:
    """Give every layer the current dtype policy (the run's: the engine builds models inside
    ``precision_scope``) instead of the one the file was saved under, the classifier float32 (as
    kerasnets' builders keep it); nested models' layers too. A model saved under mixed_float16 on a
    GPU otherwise computes float16 on a float32 run, without loss scaling."""
    policy = keras.config.dtype_policy().name
    for layer in layers:
        config = layer.get("config", {})
        dtype = config.get("dtype")
        if isinstance(dtype, dict) and dtype.get("class_name", "").endswith("DTypePolicy"):
            config["dtype"] = {**dtype, "config": {**dtype.get("config", {}),
                                                   "name": "float32" if layer is head else policy}}
        if isinstance(config.get("layers"), list):
            _current_precision(config["layers"], head)
