"""The core of timm loading: a family's ``{timm module prefix: kerasnets layer name}`` table, expanded
by each keras layer's type into ``{timm tensor name: (variable, layout change)}``, then loaded strictly.

A family states only which module is which layer (:class:`TimmFamily`); how a module's tensors become
a layer's variables is decided here, once, by the layer's type:

- ``Conv2D``: ``prefix.weight`` OIHW -> HWIO, ``prefix.bias``;
- ``DepthwiseConv2D``: ``prefix.weight`` (C*M, 1, kh, kw) -> (kh, kw, C, M), ``prefix.bias``;
- ``Dense``: ``prefix.weight`` (out, in) -> (in, out), ``prefix.bias``; a 1x1 conv classifier's
  (out, in, 1, 1) weight too (timm's ResNetV2 ``head.fc``);
- ``BatchNormalization``: ``weight`` / ``bias`` / ``running_mean`` / ``running_var`` -> ``gamma`` /
  ``beta`` / ``moving_mean`` / ``moving_variance`` (``num_batches_tracked`` is ignored).

Loading is by name only, never by position, and strict: a checkpoint tensor nothing consumes, a model
variable nothing fills or a tensor of the wrong shape fails with one ValueError naming the first
offending timm tensor and both shapes. The one exception is decided here, once
(:func:`absent_head`): a model built with ``include_top=False`` or ``features_only=True`` lacks the
last of the family's :attr:`TimmFamily.head_modules` (the classifier; the head conv and final norm
too), and those modules' tensors are skipped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras
import numpy as np

from kerasnets.models.common import CLASSIFIER_NAME
from kerasnets.models.weights import leaf_layers

__all__ = ["TimmFamily", "TensorSlot", "IGNORED_SUFFIXES", "absent_head", "expand_layer_map", "load_timm_state"]

#: checkpoint tensors that carry no weight (BatchNorm's step counter)
IGNORED_SUFFIXES = (".num_batches_tracked",)


@dataclasses.dataclass(frozen=True)
class TimmFamily:
    """How one timm model family maps onto a kerasnets builder.

    Attributes:
        architectures: timm ``architecture`` names this family reads (exact names, e.g. "resnet50d").
        build: ``build(architecture, **builder_kwargs) -> keras.Model``: the kerasnets model of that
            architecture (the variant / preset deltas applied), with the builder's keyword arguments
            (``include_top``, ``classes``, ``input_shape``, ``include_preprocessing``, ``name``, ...) passed
            on. :func:`kerasnets.timm.from_timm` always passes ``preprocessing=(mean, std)``, the
            checkpoint's ``pretrained_cfg`` mean/std (RGB, 0..1 scale): the builder puts
            :func:`~kerasnets.layers.preprocessing.mean_std_layers` in the model with them when
            ``include_preprocessing`` is true.
        layer_map: ``layer_map(architecture, model) -> {timm module prefix: kerasnets layer name}``,
            e.g. ``{"conv1": "conv1_conv", "bn1": "conv1_bn", "layer1.0.conv1": "conv2_block1_1_conv",
            "fc": "predictions"}``, the whole network's, classifier included.
        head_modules: ``head_modules(architecture) -> (timm module, ...)``: the modules after the last
            feature map, in network order (EfficientNet ``conv_head``, ``bn2``, ``classifier``; ResNet
            ``fc``). A model without its top lacks the last of them, a ``features_only`` one all of
            them: :func:`absent_head`.
    """

    architectures: tuple[str, ...]
    build: Callable[..., keras.Model]
    layer_map: Callable[[str, keras.Model], dict[str, str]]
    head_modules: Callable[[str], tuple[str, ...]]


@dataclasses.dataclass(frozen=True)
class TensorSlot:
    """Where one timm tensor goes: ``layer``'s variable ``variable`` after the layout change ``to_keras``.

    Attributes:
        layer: the kerasnets layer's name.
        variable: the keras variable (``layer.kernel``, ``layer.gamma``, ...).
        to_keras: numpy array in timm's layout -> the same values in keras' layout.
        timm_shape: the shape timm stores for this variable (from the keras shape).
        also_accepts: another shape timm may store the same values in (a 1x1 conv classifier's
            (out, in, 1, 1) for a Dense kernel), reshaped to ``timm_shape``; None if none.
    """

    layer: str
    variable: Any
    to_keras: Callable[[np.ndarray], np.ndarray]
    timm_shape: tuple[int, ...]
    also_accepts: tuple[int, ...] | None = None


def _same(array: np.ndarray) -> np.ndarray:
    return array


def _conv_kernel(array: np.ndarray) -> np.ndarray:  # OIHW -> HWIO
    return np.transpose(array, (2, 3, 1, 0))


def _dense_kernel(array: np.ndarray) -> np.ndarray:  # (out, in) -> (in, out)
    return np.transpose(array, (1, 0))


def _depthwise_kernel(multiplier: int) -> Callable[[np.ndarray], np.ndarray]:
    """torch's depthwise (C*M, 1, kh, kw), output channel c*M + m -> keras (kh, kw, C, M)."""

    def convert(array: np.ndarray) -> np.ndarray:
        channels_out, _, height, width = array.shape
        return np.transpose(array.reshape(channels_out // multiplier, multiplier, height, width), (2, 3, 0, 1))

    return convert


def _slots_of(layer: keras.layers.Layer) -> dict[str, tuple]:
    """``{timm tensor suffix: (variable, to_keras, timm shape[, also accepted shape])}`` of one keras
    layer, by its type."""
    slots: dict[str, tuple] = {}
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        h, w, c, m = layer.kernel.shape
        slots["weight"] = (layer.kernel, _depthwise_kernel(m), (c * m, 1, h, w))
    elif isinstance(layer, keras.layers.Conv2D):
        h, w, i, o = layer.kernel.shape
        slots["weight"] = (layer.kernel, _conv_kernel, (o, i, h, w))
    elif isinstance(layer, keras.layers.Dense):
        i, o = layer.kernel.shape
        slots["weight"] = (layer.kernel, _dense_kernel, (o, i), (o, i, 1, 1))
    elif isinstance(layer, keras.layers.BatchNormalization):
        for suffix, attribute in (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
                                  ("running_var", "moving_variance")):
            variable = getattr(layer, attribute, None)
            if variable is not None:
                slots[suffix] = (variable, _same, tuple(variable.shape))
        return slots
    else:
        raise TypeError(f"timm weights map onto Conv2D, DepthwiseConv2D, Dense or BatchNormalization layers; "
                        f"layer {layer.name!r} is a {type(layer).__name__}")
    if getattr(layer, "bias", None) is not None:
        slots["bias"] = (layer.bias, _same, tuple(layer.bias.shape))
    return slots


def absent_head(layer_map: Mapping[str, str], model: keras.Model, head_modules: Sequence[str]) -> tuple[str, ...]:
    """The head modules (``head_modules``, in network order) whose layers ``model`` does not have: a
    model built without its top or with ``features_only`` lacks the last of them, and nothing else.

    Raises:
        ValueError: a head module is not in ``layer_map`` (the family's head modules and table
            disagree), or a head module's layer is absent while a later one is present (not a model
            truncated by ``include_top=False`` / ``features_only``: the family's table and builder
            disagree).
    """
    missing = [module for module in head_modules if module not in layer_map]
    if missing:
        raise ValueError(f"head modules {missing} are not in the family's layer map: its head_modules "
                         "and layer_map disagree (each head module must map to a kerasnets layer)")
    names = {layer.name for layer in leaf_layers(model)}
    absent = tuple(module for module in head_modules if layer_map[module] not in names)
    if absent and absent != tuple(head_modules[len(head_modules) - len(absent):]):
        raise ValueError(f"model {model.name!r} lacks the head layers of timm modules {list(absent)} but has later ones "
                         f"of {list(head_modules)}: only a model truncated at its end (include_top=False, "
                         "features_only=True) may lack head layers")
    return absent


def expand_layer_map(layer_map: Mapping[str, str], model: keras.Model,
                     head_modules: Sequence[str] = ()) -> dict[str, TensorSlot]:
    """``{timm tensor name: TensorSlot}`` for every layer ``layer_map`` names that ``model`` has.

    The head modules :func:`absent_head` finds absent are left out; any other layer the model lacks,
    or a layer named twice, is a family bug and raises ValueError.
    """
    layers = {layer.name: layer for layer in leaf_layers(model)}
    skipped = set(absent_head(layer_map, model, head_modules))
    slots: dict[str, TensorSlot] = {}
    seen: dict[str, str] = {}
    for prefix, name in layer_map.items():
        if prefix in skipped:
            continue
        if name not in layers:
            raise ValueError(f"timm module {prefix!r} maps onto layer {name!r}, which model {model.name!r} does not "
                             "have (the family's layer map and builder disagree)")
        if name in seen:
            raise ValueError(f"layer {name!r} is mapped from two timm modules, {seen[name]!r} and {prefix!r}")
        seen[name] = prefix
        for suffix, found in _slots_of(layers[name]).items():
            slots[f"{prefix}.{suffix}"] = TensorSlot(name, *found)
    return slots


def _is_preprocessing_constant(layer: keras.layers.Layer) -> bool:
    """Normalization's non-trainable statistics: kerasnets' own constants, not timm weights."""
    return isinstance(layer, keras.layers.Normalization)


def load_timm_state(model: keras.Model, state: Mapping[str, np.ndarray], layer_map: Mapping[str, str],
                    head_modules: Sequence[str] = (), *, skip_classifier: bool = False) -> int:
    """Load a timm ``state`` (``{tensor name: array}``) into ``model`` through ``layer_map``; strict.

    Args:
        model: the kerasnets model the family built.
        state: the checkpoint's tensors, in the checkpoint's order (the order offenders are reported in).
        layer_map: the family's ``{timm module prefix: kerasnets layer name}``.
        head_modules: the family's :attr:`TimmFamily.head_modules` of the architecture: those the model
            lacks (:func:`absent_head`: no top, ``features_only``) have their tensors skipped.
        skip_classifier: the model's classifier is not loaded (fine-tuning to other classes): its
            tensors are consumed unread, whatever their shape, and the layer keeps what it holds (the
            caller initialises it).

    Otherwise every tensor (but ``num_batches_tracked``) must fill exactly one variable of the same
    shape, and every variable (but Normalization's preprocessing constants) must be filled.

    Returns:
        the number of tensors loaded.

    Raises:
        ValueError: naming the first offending timm tensor (in checkpoint order) and both shapes, or the
            first model variable no tensor fills.
    """
    slots = expand_layer_map(layer_map, model, head_modules)
    skipped_modules = set(absent_head(layer_map, model, head_modules))
    if skip_classifier:
        skipped_modules |= {prefix for prefix, name in layer_map.items() if name == CLASSIFIER_NAME}
    skipped_prefixes = tuple(f"{prefix}." for prefix in skipped_modules)

    def skip(name: str) -> bool:
        return name.startswith(skipped_prefixes) if skipped_prefixes else False

    values: list[tuple[Any, np.ndarray]] = []
    for name, array in state.items():
        if name.endswith(IGNORED_SUFFIXES) or skip(name):
            continue
        array = np.asarray(array)
        slot = slots.get(name)
        if slot is None:
            raise ValueError(f"timm checkpoint tensor {name!r} (shape {tuple(array.shape)}) has no place in model "
                             f"{model.name!r}: expected shape None, it maps onto no layer (the checkpoint is another "
                             "architecture, or the family's layer map misses a module)")
        if slot.also_accepts is not None and tuple(array.shape) == slot.also_accepts:
            array = array.reshape(slot.timm_shape)
        if tuple(array.shape) != slot.timm_shape:
            raise ValueError(f"timm checkpoint tensor {name!r} has shape {tuple(array.shape)}, but layer "
                             f"{slot.layer!r} needs {slot.timm_shape} (keras {tuple(slot.variable.shape)})")
        values.append((slot.variable, slot.to_keras(array)))
    for name, slot in slots.items():
        if name not in state and not skip(name):
            raise ValueError(f"timm checkpoint has no tensor {name!r}: layer {slot.layer!r} needs shape "
                             f"{slot.timm_shape} (keras {tuple(slot.variable.shape)}), the checkpoint has none")
    filled = {id(slot.variable) for slot in slots.values()}
    for layer in leaf_layers(model):
        if _is_preprocessing_constant(layer):
            continue
        for variable in layer.weights:
            if id(variable) not in filled:
                raise ValueError(f"model variable {variable.path!r} (shape {tuple(variable.shape)}) of model "
                                 f"{model.name!r} is filled by no timm tensor: expected shape {tuple(variable.shape)}, "
                                 "the family's layer map has no module for it")
    for variable, array in values:
        variable.assign(array.astype(keras.backend.standardize_dtype(variable.dtype)))
    return len(values)
