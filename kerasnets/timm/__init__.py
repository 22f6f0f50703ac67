"""timm checkpoints (``config.json`` + ``model.safetensors``) loaded into kerasnets models, by name.

    model = kerasnets.from_timm("resnet50.a1_in1k")          # hub name: fetched by huggingface_hub
    model = kerasnets.from_timm("/data/timm/resnet50.a1_in1k")  # a folder snapshot_download left
    model = kerasnets.ResNet(50, weights="timm:resnet50.a1_in1k")  # the same loader, in a builder

The model takes RGB 0..255 like every kerasnets model, with the checkpoint's mean/std inside it
(``include_preprocessing=False``: the bare network, for normalized input); its
:class:`~kerasnets.serving.PreprocessingContract` (timm's crop_pct, interpolation, mean/std, input
size) rides on the model (:func:`kerasnets.serving.attached_contract`) and is written by
:func:`kerasnets.serving.save_keras`, ``export.saved_model`` and the training engine, so predict,
evaluate, export and ``serve_bytes`` preprocess as timm does.

Each family (:mod:`kerasnets.timm.resnet`, :mod:`kerasnets.timm.efficientnet`) is a
:class:`~kerasnets.timm.mapping.TimmFamily`; :func:`family_for` finds an architecture's.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from kerasnets.layers.preprocessing import CaffePreprocessing, validate_mean_std
from kerasnets.models.common import CLASSIFIER_NAME
from kerasnets.models.pretrained import TIMM_PREFIX, is_timm_weights, zero_classifier
from kerasnets.models.weights import leaf_layers
from kerasnets.serving import PreprocessingContract, attach_contract, timm_contract
from kerasnets.timm.checkpoint import TimmCheckpoint, locate, read_safetensors
from kerasnets.timm import efficientnet, resnet
from kerasnets.timm.mapping import TimmFamily, load_timm_state

__all__ = ["from_timm", "build_architecture", "pretrained_cfg_of", "families", "FAMILIES", "family_for",
           "supported_architectures", "load_timm", "is_timm_weights", "timm_source", "TIMM_PREFIX", "TimmFamily"]

#: every family, in the order :func:`family_for` searches them
FAMILIES: tuple[TimmFamily, ...] = (resnet.FAMILY, efficientnet.FAMILY)


def families() -> tuple[TimmFamily, ...]:
    """Every family kerasnets reads timm checkpoints of: :data:`FAMILIES`."""
    return FAMILIES


def supported_architectures() -> tuple[str, ...]:
    """Every timm architecture name some family reads."""
    return tuple(name for family in families() for name in family.architectures)


def family_for(architecture: str) -> TimmFamily:
    """The family that reads ``architecture``; ValueError listing every supported name otherwise."""
    for family in families():
        if architecture in family.architectures:
            return family
    raise ValueError(f"timm architecture {architecture!r} is not supported; supported: "
                     f"{', '.join(supported_architectures())}")


def timm_source(weights: str) -> str:
    """``"timm:resnet50.a1_in1k"`` -> ``"resnet50.a1_in1k"``; ValueError when nothing follows."""
    source = weights[len(TIMM_PREFIX):] if is_timm_weights(weights) else weights
    if not source:
        raise ValueError("weights='timm:' names no checkpoint: use timm:<hub name> (timm:resnet50.a1_in1k) or "
                         "timm:<folder with config.json and model.safetensors>")
    return source


def _model_contract(model: keras.Model, checkpoint: TimmCheckpoint) -> PreprocessingContract:
    """timm's preprocessing as ``model``'s contract (its classes named as the checkpoint's when they are
    the checkpoint's)."""
    classes = int(model.output_shape[-1]) if CLASSIFIER_NAME in {layer.name for layer in model.layers} else 0
    names = checkpoint.label_names if classes == checkpoint.num_classes else ()
    return timm_contract(model.input_shape[1:], checkpoint.pretrained_cfg,
                         names or tuple(str(i) for i in range(classes)), checkpoint.architecture)


def _require_channels_last(what: str) -> None:
    """ValueError under ``keras.config.image_data_format() == "channels_first"``: a timm model with its
    preprocessing inside gets a :class:`~kerasnets.serving.PreprocessingContract`, whose eval pipeline
    and ``serve_bytes`` feed (batch, height, width, RGB) images."""
    if keras.config.image_data_format() != "channels_last":
        raise ValueError(f"{what} with timm's preprocessing inside needs keras.config.image_data_format() "
                         f"'channels_last' (its preprocessing contract serves (batch, height, width, RGB) images), "
                         f"got {keras.config.image_data_format()!r}: call "
                         "keras.config.set_image_data_format('channels_last'), or pass include_preprocessing=False "
                         "for the bare network")


def _mean_std(checkpoint: TimmCheckpoint) -> tuple[tuple, tuple]:
    cfg = checkpoint.pretrained_cfg
    return validate_mean_std((cfg.get("mean"), cfg.get("std")))


def from_timm(name_or_folder: str | os.PathLike, *, architecture: str | None = None,
              pretrained_cfg: dict | None = None, include_top: bool = True, classes: int | None = None,
              include_preprocessing: bool = True, **builder_kwargs: Any) -> keras.Model:
    """The kerasnets model of a timm checkpoint, with its weights and timm's preprocessing.

    Args:
        name_or_folder: a hub name (``"timm/resnet50.a1_in1k"``, ``"resnet50.a1_in1k"``: fetched by
            huggingface_hub into its cache), a folder with ``config.json`` + ``model.safetensors`` (as
            ``snapshot_download`` leaves it) or a lone ``.safetensors`` file (``architecture`` required).
        architecture: timm's architecture name, for a lone file.
        pretrained_cfg: keys replacing the checkpoint's ``pretrained_cfg`` (mean, std, crop_pct, ...).
        include_top: keep the classifier (the checkpoint's, loaded).
        classes: the classifier's width; default the checkpoint's. Another width gets a new,
            zero-initialised classifier (fine-tuning); everything else is loaded. A lone file records
            no width: ``classes`` is required and its classifier is loaded.
        include_preprocessing: put ``Rescaling(1/255)`` + ``Normalization(mean, std)`` in the model, so
            it takes RGB 0..255 (default); False: the bare network, for timm-normalized input.
        **builder_kwargs: passed to the family's builder (``input_shape``, ``pooling``, ``dropout_rate``,
            ``drop_connect_rate``, ``classifier_activation``, ``name``, ``features_only``, ...).
            ``features_only=True``: the model returns the stage ends at strides 4/8/16/32 as a dict
            (timm's ``features_only``); the head modules it lacks (the classifier; EfficientNet's head
            conv and its norm too) have their tensors skipped, every other tensor is loaded strictly.

    The model's :class:`~kerasnets.serving.PreprocessingContract` (timm's ``crop_pct`` as the eval
    crop, its interpolation, mean/std and input size) is attached to it
    (:func:`kerasnets.serving.attached_contract`) when its preprocessing is inside.

    Raises:
        ValueError: an unsupported architecture (the message lists the supported ones), a checkpoint
            with a missing, extra or mis-shaped tensor (the first one, both shapes), a hub name that
            cannot be fetched (the message says how to pass a local folder), timm's preprocessing
            inside under ``channels_first`` (its contract serves channels-last images; the bare
            network, ``include_preprocessing=False``, is built in either format).
    """
    if include_preprocessing:
        _require_channels_last(f"from_timm({os.fspath(name_or_folder)!r})")
    checkpoint = locate(name_or_folder, architecture, pretrained_cfg)
    width = checkpoint.num_classes if classes is None else classes
    if include_top and not width:
        raise ValueError(f"{checkpoint.source!r} records no num_classes: pass classes=N (or include_top=False)")
    model = _build(checkpoint, include_top=include_top, classes=width or 1000,
                   include_preprocessing=include_preprocessing, **builder_kwargs)
    _load(model, checkpoint, family_for(checkpoint.architecture),
          new_classifier=_other_classes(checkpoint, include_top and width))
    if include_preprocessing:
        attach_contract(model, _model_contract(model, checkpoint))
    return model


def _other_classes(checkpoint: TimmCheckpoint, width: int, class_names: Sequence[str] | None = None) -> bool:
    """Whether a classifier of ``width`` classes (0: none) named ``class_names`` is not the checkpoint's
    (a lone file's width is unknown: its classifier is loaded, and must fit)."""
    if not width or not checkpoint.num_classes:
        return False
    return width != checkpoint.num_classes or bool(
        class_names and checkpoint.label_names and tuple(class_names) != checkpoint.label_names)


def _build(checkpoint: TimmCheckpoint, **builder_kwargs: Any) -> keras.Model:
    """The family's model of ``checkpoint``'s architecture, with its mean/std, without weights."""
    return family_for(checkpoint.architecture).build(checkpoint.architecture, preprocessing=_mean_std(checkpoint),
                                                     **builder_kwargs)


def build_architecture(name_or_folder: str | os.PathLike, **builder_kwargs: Any) -> keras.Model:
    """timm checkpoint ``name_or_folder``'s architecture as a kerasnets model, without its weights (e.g.
    for :func:`load_timm` after building under a distribution strategy), its mean/std inside when
    ``include_preprocessing=True`` (the builder's default otherwise)."""
    return _build(locate(name_or_folder), **builder_kwargs)


def _load(model: keras.Model, checkpoint: TimmCheckpoint, family: TimmFamily, new_classifier: bool) -> int:
    """Load ``checkpoint`` into ``model`` by name, strictly (the head modules a truncated model lacks
    skipped); ``new_classifier``: the classifier is not loaded but zeroed
    (:func:`kerasnets.models.pretrained.zero_classifier`). Returns the number of tensors loaded."""
    state = read_safetensors(checkpoint.weights_path)
    architecture = checkpoint.architecture
    loaded = load_timm_state(model, state, family.layer_map(architecture, model), family.head_modules(architecture),
                             skip_classifier=new_classifier)
    if new_classifier:
        zero_classifier(model)
    return loaded


#: config keys that do not change what a layer computes from its weights (initialisers, training
#: settings, names): left out when a model is checked against timm's architecture
_NOT_COMPUTATION = {"name", "trainable", "dtype", "momentum", "synchronized", "seed", "rate", "noise_shape", "lora_rank",
                    "lora_alpha", "quantization_config", "build_config"}


def _computation(layer: keras.layers.Layer) -> dict:
    return {key: value for key, value in layer.get_config().items()
            if key not in _NOT_COMPUTATION and not key.endswith(("_initializer", "_regularizer", "_constraint"))}


def _check_architecture(model: keras.Model, family: TimmFamily, checkpoint: TimmCheckpoint) -> None:
    """ValueError unless every layer of timm's bare network (built by the family at ``model``'s input
    size) is in ``model``, by name, computing the same (padding, strides, epsilon, ...)."""
    reference = _build(checkpoint, include_top=False, include_preprocessing=False,
                       input_shape=tuple(model.input_shape[1:]))
    ours = {layer.name: layer for layer in leaf_layers(model)}
    for layer in leaf_layers(reference):
        if isinstance(layer, keras.layers.InputLayer):
            continue
        mine = ours.get(layer.name)
        if mine is None or type(mine) is not type(layer) or _computation(mine) != _computation(layer):
            theirs = _computation(layer)
            found = "no such layer" if mine is None else f"{type(mine).__name__} {_computation(mine)}"
            raise ValueError(f"model {model.name!r} is not timm's {checkpoint.architecture!r}: its layer {layer.name!r} "
                             f"should be {type(layer).__name__} {theirs}, it has {found}. Build it with "
                             f"kerasnets.from_timm({checkpoint.source!r}) (or the builder's weights='timm:...')")


def _check_preprocessing(model: keras.Model, checkpoint: TimmCheckpoint) -> bool:
    """Whether ``model`` normalizes inside as the checkpoint's mean/std say (True) or takes normalized
    input (False); ValueError for any other in-model preprocessing."""
    mean, std = _mean_std(checkpoint)
    layers = [layer for layer in leaf_layers(model)
              if isinstance(layer, (CaffePreprocessing, keras.layers.Rescaling, keras.layers.Normalization))]
    if not layers:
        return False
    if len(layers) == 2 and isinstance(layers[0], keras.layers.Rescaling) and isinstance(
            layers[1], keras.layers.Normalization):
        scale, offset = (np.ravel(layers[0].get_config()[k]).astype(float) for k in ("scale", "offset"))
        found_mean = np.ravel(keras.ops.convert_to_numpy(layers[1].mean))
        found_var = np.ravel(keras.ops.convert_to_numpy(layers[1].variance))
        if (np.allclose(scale, 1 / 255, atol=1e-9) and np.allclose(offset, 0) and np.allclose(found_mean, mean, atol=1e-6)
                and np.allclose(found_var, np.square(std), atol=1e-6)):
            return True
    described = ", ".join(f"{type(layer).__name__} {layer.name!r}" for layer in layers)
    raise ValueError(f"model {model.name!r} preprocesses its input ({described}) unlike timm's {checkpoint.architecture!r} "
                     f"checkpoint, which takes (x / 255 - mean) / std with mean={list(mean)}, std={list(std)}: build it "
                     "with preprocessing=(mean, std), or include_preprocessing=False for normalized input, or use "
                     "kerasnets.from_timm")


def load_timm(model: keras.Model, source: str | os.PathLike, class_names: Sequence[str] | None = None) -> dict:
    """Load timm checkpoint ``source`` into an already built ``model`` (the builders' ``weights="timm:..."``
    and ``kerasnets train --weights timm:...``), after checking that ``model`` is timm's architecture
    (layer by layer) with timm's preprocessing inside or none.

    The classifier is loaded when its width is the checkpoint's (and ``class_names``, when given, are
    the checkpoint's labels where it records them), else zero-initialised; a model without one
    gets the backbone. Returns ``{"source", "loaded", "head_reinitialized", "architecture"}``.
    """
    checkpoint = locate(source)
    family = family_for(checkpoint.architecture)
    _check_architecture(model, family, checkpoint)
    normalizes = _check_preprocessing(model, checkpoint)
    head = next((layer for layer in leaf_layers(model) if layer.name == CLASSIFIER_NAME), None)
    other_classes = _other_classes(checkpoint, int(head.units) if head is not None else 0, class_names)
    if normalizes:
        _require_channels_last(f"model {model.name!r}")
    loaded = _load(model, checkpoint, family, new_classifier=other_classes)
    if normalizes:
        attach_contract(model, _model_contract(model, checkpoint))
    return {"source": checkpoint.source, "loaded": loaded, "head_reinitialized": other_classes,
            "architecture": checkpoint.architecture}


def pretrained_cfg_of(source: str | os.PathLike) -> dict:
    """The ``pretrained_cfg`` of timm checkpoint ``source`` (with the architecture under ``"architecture"``)."""
    checkpoint = locate(source)
    return {**checkpoint.pretrained_cfg, "architecture": checkpoint.architecture}
