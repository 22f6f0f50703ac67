"""Weight interchange by structure: :func:`transfer_weights` copies weights between two models of the
same architecture (the weight-owning layers, in layer order; names play no part), folding
keras.applications' EfficientNet normalization quirk. Loading pretrained files for fine-tuning is
:mod:`kerasnets.models.pretrained`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np


__all__ = ["leaf_layers", "transfer_weights", "classifier_layer", "refresh_cached_state", "computation",
           "computation_mismatch", "COMPUTATION_FIELDS"]

_POOLING_TYPES = (
    keras.layers.GlobalAveragePooling1D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalAveragePooling3D,
    keras.layers.GlobalMaxPooling1D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.GlobalMaxPooling3D,
)
_ARCHITECTURE_HINT = (
    "build the same preset/variant (e.g. ResNet variant='v1' for keras.applications ResNet50, "
    "EfficientNet(0) for EfficientNetB0)"
)


# --------------------------------------------------------------------------- model structure


def leaf_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Every layer of ``model`` in layer order, nested models replaced by their own layers (recursively)."""
    leaves: list[keras.layers.Layer] = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            leaves.extend(leaf_layers(layer))
        else:
            leaves.append(layer)
    return leaves


def _shapes(layer: keras.layers.Layer) -> list[tuple]:
    return [tuple(int(d) for d in w.shape) for w in layer.weights]


def _classifier_index(leaves: Sequence[keras.layers.Layer]) -> int | None:
    """Index in ``leaves`` of the classifier head: the last weighted layer when it is a Dense fed by
    global pooling (possibly through dropout, activations or flattening), else None."""
    weighted = [i for i, layer in enumerate(leaves) if layer.weights]
    if not weighted or not isinstance(leaves[weighted[-1]], keras.layers.Dense):
        return None
    last = weighted[-1]
    previous = weighted[-2] if len(weighted) > 1 else -1
    between = leaves[previous + 1 : last]
    if any(isinstance(layer, (*_POOLING_TYPES, keras.layers.Flatten)) for layer in between):
        return last
    return None


def classifier_layer(model: keras.Model) -> keras.layers.Dense | None:
    """The model's classifier head (the final Dense fed by global pooling / dropout), or None without one."""
    leaves = leaf_layers(model)
    index = _classifier_index(leaves)
    return None if index is None else leaves[index]


def _follower(leaves: Sequence[keras.layers.Layer], index: int) -> keras.layers.Layer | None:
    """The layer right after ``leaves[index]`` if it consumes exactly that layer's output, else None."""
    if index + 1 >= len(leaves):
        return None
    layer, after = leaves[index], leaves[index + 1]
    try:
        return after if after.input is layer.output else None
    except (AttributeError, ValueError):  # layers called more than once have no single input/output
        return None


def _rescaling_after(leaves: Sequence[keras.layers.Layer], index: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(scale, offset) of a positive constant Rescaling right after the Normalization at ``index``.

    Only such a Rescaling can be folded into the Normalization (y = (x - m) / sqrt(v) * s + o is a
    normalization with variance v / s^2 and mean m - o * sqrt(v) / s when s > 0).
    """
    follower = _follower(leaves, index)
    if not isinstance(follower, keras.layers.Rescaling):
        return None
    norm = leaves[index]
    if getattr(norm, "invert", False):
        return None
    scale = np.asarray(keras.ops.convert_to_numpy(follower.scale), dtype="float64")
    offset = np.asarray(keras.ops.convert_to_numpy(follower.offset), dtype="float64")
    mean_shape = tuple(norm.weights[0].shape)
    try:
        fits = np.broadcast_shapes(scale.shape, offset.shape, mean_shape) == mean_shape
    except ValueError:
        return None
    if not fits or not np.all(scale > 0):
        return None
    return np.broadcast_to(scale, mean_shape), np.broadcast_to(offset, mean_shape)


def _effective_normalization(leaves, index: int, values: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(mean, variance) that the Normalization at ``index`` with weights ``values`` applies, after folding
    a following Rescaling (keras.applications EfficientNet's ImageNet quirk: variance holds the std and a
    Rescaling(1/sqrt(std)) follows; tensorflow#49930)."""
    mean, variance = np.asarray(values[0], "float64"), np.asarray(values[1], "float64")
    folded = _rescaling_after(leaves, index)
    if folded is None:
        return mean, variance
    scale, offset = folded
    return mean - offset * np.sqrt(variance) / scale, variance / np.square(scale)


def _normalization_weights(leaves, index: int, effective: tuple[np.ndarray, np.ndarray], count) -> list[np.ndarray]:
    """Weights for the Normalization at ``index`` such that, with the Rescaling after it (if any),
    it normalizes with the ``effective`` (mean, variance)."""
    mean, variance = effective
    folded = _rescaling_after(leaves, index)
    if folded is not None:
        scale, offset = folded
        variance = variance * np.square(scale)
        mean = mean + offset * np.sqrt(variance) / scale
    return [mean, variance, count]


# --------------------------------------------------------------------------- what a layer computes

#: Config fields that change what a weighted layer computes from its weights (the rest, e.g. name,
#: trainable, dtype, initializers, regularizers, BN momentum, do not change a forward pass).
COMPUTATION_FIELDS = ("kernel_size", "strides", "padding", "dilation_rate", "groups", "depth_multiplier",
                      "data_format", "activation", "epsilon", "center", "scale", "axis", "invert")


def _canonical_axis(layer: keras.layers.Layer, axis: Any) -> Any:
    """``axis`` with negative entries counted from the layer's input rank (BN axis=3 == axis=-1 on 4D)."""
    try:
        rank = len(layer.input.shape)
    except (AttributeError, ValueError):  # not called yet, or called more than once
        return axis
    if isinstance(axis, (list, tuple)):
        return tuple(a % rank if isinstance(a, int) else a for a in axis)
    return axis % rank if isinstance(axis, int) else axis


def computation(leaves: Sequence[keras.layers.Layer], index: int, *, head: bool = False) -> dict[str, Any]:
    """What the weighted layer ``leaves[index]`` computes, beyond its weight shapes: its class, the
    :data:`COMPUTATION_FIELDS` of its config (padding left out for 1x1 kernels, where it changes
    nothing) and the activation of an ``Activation`` layer that consumes its output. ``head=True``
    leaves out the classifier's output activation (softmax or logits is the caller's choice, the
    weights are the same)."""
    layer = leaves[index]
    config = layer.get_config()
    found: dict[str, Any] = {"class": type(layer).__name__}
    for field in COMPUTATION_FIELDS:
        if field in config and not (head and field == "activation"):
            value = config[field]
            found[field] = _canonical_axis(layer, value) if field == "axis" else value
    if set(found.get("kernel_size", ())) == {1}:  # a 1x1 kernel pads nothing, "same" or "valid"
        found.pop("padding", None)
    # the activations its consumers apply (every call site, in whichever model it was called)
    then = sorted({str(node.operation.get_config()["activation"]) for node in getattr(layer, "_outbound_nodes", [])
                   if isinstance(node.operation, keras.layers.Activation)})
    if then:
        found["then"] = then[0] if len(then) == 1 else then
    return found


# --------------------------------------------------------------------------- transfer


class _LayoutMismatch(ValueError):
    """A transfer_weights mismatch; ``what`` is the description without the models' names and hint."""

    def __init__(self, message: str, what: str) -> None:
        super().__init__(message)
        self.what = what


def _weighted(model: keras.Model, skip_classifier: bool) -> tuple[list, list[int], int | None]:
    """(leaf layers, indices of the weighted ones in pairing order, index of the classifier or None)."""
    leaves = leaf_layers(model)
    head = _classifier_index(leaves)
    skipped = head if skip_classifier else None
    return leaves, [i for i, layer in enumerate(leaves) if layer.weights and i != skipped], head


def computation_mismatch(source: keras.Model, target: keras.Model, skip_classifier: bool = False) -> str | None:
    """The first pair of weighted layers (paired in order, as :func:`transfer_weights` pairs them, up
    to the shorter model) whose :func:`computation` differs, described with both; None if none does."""
    (src_leaves, src_idx, src_head), (dst_leaves, dst_idx, dst_head) = (
        _weighted(model, skip_classifier) for model in (source, target))
    for k, (i, j) in enumerate(zip(src_idx, dst_idx)):
        at_head = i == src_head or j == dst_head
        src_does = computation(src_leaves, i, head=at_head)
        dst_does = computation(dst_leaves, j, head=at_head)
        if src_does != dst_does:
            differ = sorted(f for f in set(src_does) | set(dst_does) if src_does.get(f) != dst_does.get(f))
            return (
                f"weighted layer {k + 1} (of {len(src_idx)}) has the same weight shapes but computes something "
                f"else ({', '.join(differ)} differ): source layer {src_leaves[i].name!r} is {src_does}, target "
                f"layer {dst_leaves[j].name!r} is {dst_does}"
            )
    return None


def _plan(source: keras.Model, target: keras.Model, skip_classifier: bool) -> list[tuple[keras.layers.Layer, list]]:
    """Pair the weighted layers of both models in order, check every shape and what each pair computes,
    and compute what to write."""
    (src_leaves, src_idx, src_head), (dst_leaves, dst_idx, dst_head) = (
        _weighted(model, skip_classifier) for model in (source, target))
    for k in range(max(len(src_idx), len(dst_idx))):
        src = src_leaves[src_idx[k]] if k < len(src_idx) else None
        dst = dst_leaves[dst_idx[k]] if k < len(dst_idx) else None
        src_shapes = _shapes(src) if src is not None else None
        dst_shapes = _shapes(dst) if dst is not None else None
        if src_shapes != dst_shapes:
            src_name = repr(src.name) if src is not None else "(none: no more weighted layers)"
            dst_name = repr(dst.name) if dst is not None else "(none: no more weighted layers)"
            at_head = (k < len(src_idx) and src_idx[k] == src_head) or (k < len(dst_idx) and dst_idx[k] == dst_head)
            hint = (
                "pass skip_classifier=True to copy everything but the classifier"
                if at_head and not skip_classifier
                else _ARCHITECTURE_HINT
            )
            what = (
                f"weighted layer {k + 1} (of {len(src_idx)} / {len(dst_idx)}) differs: source layer {src_name} "
                f"has shapes {src_shapes}, target layer {dst_name} has {dst_shapes}"
            )
            raise _LayoutMismatch(
                f"cannot transfer weights from {source.name!r} to {target.name!r}: {what}; {hint}", what
            )
    what = computation_mismatch(source, target, skip_classifier)
    if what is not None:
        raise _LayoutMismatch(
            f"cannot transfer weights from {source.name!r} to {target.name!r}: {what}; {_ARCHITECTURE_HINT}", what
        )
    plan = []
    for i, j in zip(src_idx, dst_idx):
        src, dst = src_leaves[i], dst_leaves[j]
        values = [np.asarray(v) for v in src.get_weights()]
        both_normalize = isinstance(src, keras.layers.Normalization) and isinstance(dst, keras.layers.Normalization)
        if both_normalize and len(values) == 3:
            effective = _effective_normalization(src_leaves, i, values)
            values = _normalization_weights(dst_leaves, j, effective, values[2])
        plan.append((dst, [np.asarray(v, dtype=w.dtype) for v, w in zip(values, dst.weights)]))
    return plan


def refresh_cached_state(layers: Sequence[keras.layers.Layer]) -> None:
    """Recompute what ``layers`` cache from their weights, after ``set_weights``.

    Keras' ``Normalization`` snapshots its mean and variance as tensors when it is built (and when
    ``finalize_state`` or ``load_own_variables`` runs); ``set_weights`` leaves that snapshot stale, so
    a cloned model given ImageNet statistics by ``set_weights`` would still normalize with mean 0,
    variance 1. Pass ``leaf_layers(model)`` after ``model.set_weights(...)``.
    """
    for layer in layers:
        if hasattr(layer, "finalize_state"):
            layer.finalize_state()


def _apply(plan: list[tuple[keras.layers.Layer, list]]) -> None:
    for layer, values in plan:
        layer.set_weights(values)
        refresh_cached_state([layer])


def transfer_weights(source: keras.Model, target: keras.Model, *, skip_classifier: bool = False) -> keras.Model:
    """Copy the weights of ``source`` into ``target`` by structure; returns ``target``.

    The weight-owning layers of both models are paired in layer order (a nested model, e.g. a backbone
    inside a classifier, counts as its own layers in order); layer names play no part. Every pair's
    weight shapes are checked before anything is written: on the first mismatch (shapes or the number
    of weighted layers) a ValueError names the layer of each model and both shape lists, and ``target``
    is left untouched. So is what each pair computes with those weights (:func:`computation`: class,
    strides, padding, kernel size, dilation, groups, activations, BN epsilon, axes), so that layouts
    with equal shapes (ResNet v1.5 and ``stride_in_1x1=True`` or ``avg_down=True``) are refused with
    both layers' settings instead of copied into a network that computes something else. Fields that
    do not change a forward pass (names, dtypes, initializers, BN momentum, the classifier's output
    activation) play no part.

    Normalization layers are copied by effect: a Normalization immediately followed by a constant
    Rescaling normalizes with variance / scale^2, so keras.applications' EfficientNet with ImageNet
    weights (variance = std, then Rescaling(1/sqrt(std))) transfers into a model without that
    Rescaling (and back) with identical outputs.

    Args:
        source: the model to copy from (e.g. a keras.applications model).
        target: the model to write into; the same architecture as ``source``.
        skip_classifier: leave the classifier head (the final Dense fed by global pooling / dropout) of
            both models out of the pairing, so a backbone copies into a model with another class count
            (or with / without a top); the target's head keeps its weights.
    """
    _apply(_plan(source, target, skip_classifier))
    return target
