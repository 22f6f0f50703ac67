"""Pretrained weights for fine-tuning: what ``weights=`` of the builders and ``--weights`` of the
training command load: ``"imagenet"`` (keras.applications' twin), a ``.keras`` model or a
``.weights.h5`` file, copied by structure (:func:`kerasnets.transfer_weights`), or a timm checkpoint
(``"timm:<hub name or folder>"``, by name: :func:`kerasnets.timm.load_timm`); a classifier that is
not copied (another class count, other classes) is zero-initialised.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from kerasnets.layers.preprocessing import IMAGENET_STD_RGB
from kerasnets.models.weights import (
    _LayoutMismatch,
    _apply,
    _plan,
    _shapes,
    classifier_layer,
    computation_mismatch,
    leaf_layers,
)
from kerasnets.serving import read_contract

__all__ = ["load_pretrained", "PretrainedReport", "imagenet_twin", "load_weights", "zero_classifier", "TIMM_PREFIX",
           "is_timm_weights"]

#: ``weights="timm:<hub name or folder>"`` (builders) and ``--weights timm:...`` (``kerasnets train``)
TIMM_PREFIX = "timm:"


def is_timm_weights(weights: Any) -> bool:
    """Whether a builder's / ``--weights`` value names a timm checkpoint (``"timm:..."``)."""
    return isinstance(weights, str) and weights.startswith(TIMM_PREFIX)


@dataclasses.dataclass(frozen=True)
class PretrainedReport:
    """What :func:`load_pretrained` did.

    Attributes:
        source: ``"imagenet (keras.applications.EfficientNetB0)"`` or the file's path.
        layers_copied: number of weighted layers written into the model.
        head_reinitialized: True when the model has a classifier that was NOT copied (the class count
            differs from the source's, or the source has no classifier): it is zero-initialised.
        detail: one human-readable line saying the above.
    """

    source: str
    layers_copied: int
    head_reinitialized: bool
    detail: str

    def __str__(self) -> str:
        return self.detail


def imagenet_twin(twin: str, include_top: bool, input_shape: tuple | None) -> keras.Model:
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


def _infer_twin(model: keras.Model) -> str | None:
    """The keras.applications model with ``model``'s weight layout, found from its blocks, or None."""
    from kerasnets.models.efficientnet import EFFICIENTNET_PRESETS, scaled_stages  # lazy: efficientnet imports this module
    from kerasnets.models.freeze import model_blocks
    from kerasnets.models.resnet import RESNET_SPECS
    from kerasnets.scaling import round_filters

    names = {layer.name: layer for layer in leaf_layers(model)}
    blocks = model_blocks(model)
    per_stage: dict[str, int] = {}
    for block in blocks:
        stage = re.match(r"(block\d+|conv[2-5])", block)
        if stage:
            per_stage[stage.group(1)] = per_stage.get(stage.group(1), 0) + 1
    if "stem_conv" in names:
        for preset in EFFICIENTNET_PRESETS.values():
            if preset.twin is None:
                continue
            stages = scaled_stages(preset)
            stem = round_filters(preset.stem_filters, preset.width, preset.channel_divisor, preset.round_limit)
            fits = names["stem_conv"].filters == stem and len(per_stage) == len(stages)
            for spec in stages:
                project = names.get(f"{spec.name}a_project_conv")
                filters = getattr(project, "filters", 0)
                has_se = f"{spec.name}a_se_reduce" in names
                fits = fits and per_stage.get(spec.name) == spec.repeats and filters == spec.filters
                fits = fits and has_se == (spec.se_ratio > 0)
            if fits:  # B1 and B2 differ in widths only
                return preset.twin
        return None
    conv1 = names.get("conv1_conv")
    if conv1 is not None and conv1.use_bias and "conv2_block1_3_conv" in names:
        repeats = tuple(per_stage.get(f"conv{i}", 0) for i in range(2, 6))
        suffix = "V2" if "conv2_block1_preact_bn" in names else ""
        for depth, (kind, counts) in RESNET_SPECS.items():
            if kind == "bottleneck" and counts == repeats and depth >= 50:
                return f"ResNet{depth}{suffix}"
    return None


def _imagenet(model: keras.Model, twin: str | None) -> PretrainedReport:
    twin = twin or _infer_twin(model)
    if twin is None:
        raise ValueError(
            f"no ImageNet weights exist for {model.name!r} (only EfficientNet-B0..B7, EfficientNetV2-B0..B3/S/M/L "
            "and ResNet-50/101/152 variant='v1' or 'v2' have them); build one of those, or use weights=None or a "
            "file path"
        )
    head = classifier_layer(model)
    with_top = head is not None and head.units == 1000
    source = imagenet_twin(twin, with_top, None)
    copied = _count_and_apply(source, model, skip_classifier=not with_top)
    reinit = head is not None and not with_top
    detail = f"copied {copied} weighted layers from keras.applications.{twin} ImageNet weights"
    if reinit:
        detail += (
            f"; classifier {head.name!r} ({head.units} classes, ImageNet has 1000) "
            "not copied (zero-initialised)"
        )
    return PretrainedReport(f"imagenet (keras.applications.{twin})", copied, reinit, detail)


#: kerasnets' default ResNet model names -> preset names (kerasnets.presets).
_RESNET_NAME_TO_PRESET = (
    (r"resnet(\d+)(_v1|d|v2)?", r"resnet\1\2"),  # models are named as their preset
    (r"resnet(\d+)_v1_5", r"resnet\1"),  # files saved before the names were the presets'
    (r"resnet(\d+)_d", r"resnet\1d"),
)


def _preset_hint(model_name: str | None) -> str:
    """How to rebuild the architecture a file was saved from, from the saved model's default name."""
    if not model_name:
        return "build the preset, variant and classes it was saved from (e.g. --model efficientnetb0)"
    for pattern, preset in _RESNET_NAME_TO_PRESET:
        if re.fullmatch(pattern, model_name):
            name = re.sub(pattern, preset, model_name)
            return f"build the preset it was saved from (model {model_name!r}: --model {name})"
    if re.fullmatch(r"efficientnet(b\d|-lite\d|v2-(b[0-3]|[sml]))", model_name):
        return f"build the preset it was saved from (--model {model_name})"
    return f"build the architecture it was saved from (model {model_name!r}, e.g. --model efficientnetb0)"


def _count_and_apply(source: keras.Model, target: keras.Model, skip_classifier: bool) -> int:
    plan = _plan(source, target, skip_classifier)
    _apply(plan)
    return len(plan)


def _from_keras_file(model: keras.Model, path: str, class_names: Sequence[str] | None = None) -> PretrainedReport:
    try:
        source = keras.saving.load_model(path, compile=False)
    except Exception as error:
        raise ValueError(
            f"could not load the model file {path!r} ({type(error).__name__}: {str(error).splitlines()[0]}); "
            "pass a .keras file written by model.save() or a .weights.h5 file"
        ) from error
    src_head, dst_head = classifier_layer(source), classifier_layer(model)
    same_head = src_head is not None and dst_head is not None and src_head.units == dst_head.units
    contract = read_contract(path)
    other_classes = class_names is not None and contract is not None and tuple(class_names) != contract.class_names
    skip = (src_head is not None or dst_head is not None) and (not same_head or other_classes)
    try:
        copied = _count_and_apply(source, model, skip_classifier=skip)
    except _LayoutMismatch as error:
        raise ValueError(
            f"{path!r} does not fit {model.name!r}: {error.what}; {_preset_hint(source.name)}"
        ) from None
    reinit = dst_head is not None and skip
    detail = f"copied {copied} weighted layers from {path}"
    if reinit:
        had = f"{src_head.units} classes" if src_head is not None else "no classifier"
        if same_head and other_classes:
            had = f"other classes: {list(contract.class_names)[:5]}"
        detail += (
            f"; classifier {dst_head.name!r} ({dst_head.units} classes, the file has {had}) "
            "not copied (zero-initialised)"
        )
    return PretrainedReport(path, copied, reinit, detail)


def _snake_case(name: str) -> str:
    """Keras' ``naming.to_snake_case`` (the group names of ``save_weights`` files)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _h5_layer_paths(model: keras.Model, prefix: str = "") -> list[tuple[keras.layers.Layer, str]]:
    """(leaf layer, group path) as Keras' ``save_weights`` lays out a Functional/Sequential model:
    ``layers/<snake_case class name>[_<n>]``, numbered per class in layer order, nested models inside."""
    used: dict[str, int] = {}
    found = []
    for layer in model.layers:
        base = _snake_case(type(layer).__name__)
        used[base] = used.get(base, -1) + 1
        path = f"{prefix}layers/{base}" + (f"_{used[base]}" if used[base] else "")
        if type(layer).__name__ in ("Functional", "Sequential"):
            found.extend(_h5_layer_paths(layer, path + "/"))
        else:
            found.append((layer, path))
    return found


def _h5_shapes(handle: Any, group: str) -> list[tuple]:
    """Shapes of every array under an h5 group, in numeric order (``vars/0``, ``vars/1``, ...)."""
    import h5py

    if group not in handle:
        return []
    arrays: list[tuple[tuple, tuple]] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            arrays.append((tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in name.split("/")), obj.shape))

    handle[group].visititems(visit)
    return [tuple(int(d) for d in shape) for _, shape in sorted(arrays)]


def _h5_dataset_names(handle: Any) -> list[str]:
    import h5py

    names: list[str] = []
    handle.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return names


def _from_weights_file(model: keras.Model, path: str) -> PretrainedReport:
    import h5py

    head = classifier_layer(model)
    file_units = None
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise ValueError(
            f"cannot read {path!r} as a Keras .weights.h5 file ({error}); re-save it with model.save_weights"
        ) from None
    with handle:
        fix = _preset_hint(handle["vars"].attrs.get("name") if "vars" in handle else None)
        listed = _h5_layer_paths(model)
        for layer, group in listed:
            expected, found = _shapes(layer), _h5_shapes(handle, group)
            if expected == found:
                continue
            if layer is head and len(found) == len(expected) and found and len(found[0]) == 2:
                units = found[0][1]
                as_file = [(head.kernel.shape[0], units)] + ([(units,)] if head.use_bias else [])
                if found == as_file:
                    file_units = units
                    continue
            saved_as = handle[group + "/vars"].attrs.get("name") if group + "/vars" in handle else None
            there = f"the file's layer {saved_as!r} has {found}" if saved_as else f"the file has {found or 'nothing'}"
            raise ValueError(
                f"weights file {path!r} does not fit {model.name!r}, it was saved from another architecture: "
                f"layer {layer.name!r} has shapes {expected} in the model, {there}; {fix}"
            )
        _check_saved_preset(model, path, handle["vars"].attrs.get("name") if "vars" in handle else None, fix)
        known = {group for _, group in listed}
        groups = {name.rsplit("/vars/", 1)[0] for name in _h5_dataset_names(handle)} - known
        extra = sorted(g for g in groups if not any(g.startswith(k + "/") for k in known))
        if extra:
            raise ValueError(
                f"weights file {path!r} does not fit {model.name!r}, it was saved from another architecture with "
                f"more weighted layers ({len(extra)} have no counterpart in the model, e.g. {extra[0]!r}); {fix}"
            )
    reinit = file_units is not None
    donor = _clone(model, head.name, file_units) if reinit else keras.models.clone_model(model)
    try:
        donor.load_weights(path)
    except Exception as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"weights file {path!r} does not fit {model.name!r} ({first}); {fix}") from None
    _square_std_stored_as_variance(donor)
    copied = _count_and_apply(donor, model, skip_classifier=reinit)
    detail = f"copied {copied} weighted layers from {path}"
    if reinit:
        detail += (
            f"; classifier {head.name!r} ({head.units} classes, the file has {file_units}) "
            "not copied (zero-initialised)"
        )
    return PretrainedReport(path, copied, reinit, detail)


def _check_saved_preset(model: keras.Model, path: str, saved_name: Any, fix: str) -> None:
    """Refuse a weights file whose preset computes something else than ``model`` with the same shapes.

    A ``.weights.h5`` file holds arrays and its model's name, not the layers' settings: ResNet-50
    v1.5 weights fit ResNet-50 with ``avg_down=True`` or ``stride_in_1x1=True`` shape for shape. When
    the saved name is a kerasnets preset (models are named as their preset, a variant that computes
    differently gets ``_custom``) other than ``model``'s name, that preset is built and each weighted
    layer's :func:`~kerasnets.models.weights.computation` compared. Files of models named otherwise
    are checked by shape only, and so are files whose arrays are not that preset's shape for shape:
    their name is another library's (keras.applications names its ResNet-50 v1 ``resnet50``, the
    name of kerasnets' v1.5 preset).
    """
    from kerasnets.presets import PRESETS, build  # lazy: presets imports the builders, which import this module

    if not isinstance(saved_name, str) or saved_name == model.name or saved_name not in PRESETS:
        return
    reference = build(saved_name, include_top=False, input_shape=tuple(model.inputs[0].shape[1:]))
    reference_shapes = [tuple(w.shape) for w in reference.weights]
    if reference_shapes != [tuple(w.shape) for w in model.weights][: len(reference_shapes)]:
        return  # not that preset's arrays: the shape-by-shape load decides
    what = computation_mismatch(reference, model, skip_classifier=True)
    if what is not None:
        raise ValueError(
            f"weights file {path!r} was saved from {saved_name!r}, which computes something else than "
            f"{model.name!r} with the same weight shapes ({what.replace('source layer', 'its layer')}); {fix}"
        )


def _square_std_stored_as_variance(model: keras.Model) -> None:
    """Undo keras.applications' EfficientNet quirk in weights read from a file without its model.

    Its ImageNet weights store the standard deviation as the Normalization variance and rely on a
    following ``Rescaling(1 / sqrt(std))`` layer (tensorflow#49930). A ``.weights.h5`` file keeps the
    std but not that layer, so the variance read from it is squared here: the ImageNet std values
    are never a real variance.
    """
    for layer in leaf_layers(model):
        if isinstance(layer, keras.layers.Normalization) and len(layer.weights) == 3:
            mean, variance, count = layer.get_weights()
            if variance.shape == (3,) and np.allclose(variance, IMAGENET_STD_RGB, rtol=0, atol=1e-6):
                layer.set_weights([mean, np.square(variance), count])
                layer.finalize_state()


def _clone(model: keras.Model, head_name: str, units: int) -> keras.Model:
    """A fresh copy of ``model``'s architecture whose classifier ``head_name`` has ``units`` classes."""

    def edit(node):
        if isinstance(node, dict):
            config = node.get("config")
            if node.get("class_name") == "Dense" and isinstance(config, dict) and config.get("name") == head_name:
                return {**node, "config": {**config, "units": units}}
            return {key: edit(value) for key, value in node.items()}
        if isinstance(node, list):
            return [edit(value) for value in node]
        return node

    return model.__class__.from_config(edit(model.get_config()))


def load_pretrained(
    model: keras.Model, weights: str | os.PathLike | None, *, twin: str | None = None,
    class_names: Sequence[str] | None = None,
) -> PretrainedReport | None:
    """Load pretrained weights into ``model`` for fine-tuning; returns what was copied (None for None).

    Args:
        model: the built model to write into (any class count).
        weights: one of
            - None: nothing happens.
            - "imagenet": keras.applications' ImageNet weights of the twin architecture. A 1000-class
              model gets the classifier too; any other class count (or no top) gets the backbone only
              and a zero-initialised classifier.
            - a ``.keras`` file (``model.save``): copied by structure; if its class count differs from
              ``model``'s, or its stored class names (the preprocessing contract of a kerasnets run)
              differ from ``class_names``, everything but the classifier is copied.
            - a ``.weights.h5`` file (``model.save_weights``): read as ``model``'s architecture; a
              different class count in the file is allowed (the classifier is then not copied).
            - ``"timm:<hub name or folder>"``: a timm checkpoint, loaded by name after checking that
              ``model`` is its architecture with its preprocessing (or none) inside
              (:func:`kerasnets.timm.load_timm`); another class count (or other class names) leaves the
              classifier new.

            A classifier that is not copied is zeroed (BiT's head init), so training starts from
            uniform predictions instead of the reference init's confident random ones.
        twin: keras.applications constructor name for "imagenet" (e.g. "EfficientNetB0"); inferred from
            the model's blocks when None.
        class_names: the classes ``model`` will be trained on (the training engine passes them): a
            ``.keras`` classifier trained on other classes is not copied, even with the same count.

    Raises ValueError (one line naming the file, the first mismatching layer and both shapes, and the
    fix) for a missing file, another extension, or a file of another architecture; ``model`` is left
    untouched then. RuntimeError when the ImageNet file cannot be downloaded.
    """
    if weights is None:
        return None
    report = _load_pretrained(model, weights, twin, class_names)
    if report.head_reinitialized and not is_timm_weights(weights):  # load_timm zeroes its new classifier itself
        zero_classifier(model)
    return report


def zero_classifier(model: keras.Model) -> None:
    """Zero the new classifier (BiT's head init): fine-tuning starts from uniform predictions.

    The reference EfficientNet head init (VarianceScaling(1/3, fan_out)) is sized for 1000 classes;
    with a handful of classes its weights are ~10x larger and, on pretrained features that share a
    positive component, the untrained head starts confidently wrong (measured: loss 2.4 instead of
    ln 5 = 1.6 on 5 classes), which a frozen-backbone phase then spends its steps undoing.
    """
    head = classifier_layer(model)
    if head is not None:
        head.set_weights([np.zeros(tuple(w.shape), w.dtype) for w in head.weights])


def _from_timm(model: keras.Model, weights: str, class_names) -> PretrainedReport:
    from kerasnets.timm import load_timm, timm_source  # lazy: kerasnets.timm imports the builders

    done = load_timm(model, timm_source(weights), class_names)
    head = "; the classifier is new (zero-initialised)" if done["head_reinitialized"] else ""
    return PretrainedReport(weights, done["loaded"], done["head_reinitialized"],
                            f"{done['loaded']} tensors of timm {done['architecture']!r} from {done['source']!r}{head}")


def _load_pretrained(model: keras.Model, weights: Any, twin: str | None, class_names) -> PretrainedReport:
    if isinstance(weights, str) and weights == "imagenet":
        return _imagenet(model, twin)
    if is_timm_weights(weights):
        return _from_timm(model, weights, class_names)
    if not isinstance(weights, (str, os.PathLike)):
        raise TypeError(f"weights must be None, 'imagenet', 'timm:<name>' or a file path, got {type(weights).__name__}")
    path = os.fspath(weights)
    if not os.path.isfile(path):
        raise ValueError(
            f"weights must be None, 'imagenet', 'timm:<hub name or folder>' or the path of a .keras / .weights.h5 file; "
            f"no file at {path!r}"
        )
    if path.endswith(".keras"):
        return _from_keras_file(model, path, class_names)
    if path.endswith(".weights.h5"):
        return _from_weights_file(model, path)
    raise ValueError(
        f"cannot load weights from {path!r}: expected a .keras file (model.save) or a .weights.h5 file "
        "(model.save_weights); re-save it in one of those formats"
    )


def load_weights(model: keras.Model, weights: str | os.PathLike | None, twin: str | None,
                 whole_networks: Sequence[keras.Model] = ()) -> None:
    """The builders' ``weights`` argument: :func:`load_pretrained` with the builder's keras.applications twin.

    ``whole_networks`` (``features_only``): models that share ``model``'s layers and continue them to a
    head (without, then with a classifier). ImageNet weights and files of whole networks fit one of
    them, not the truncated ``model``; they are tried in order, then ``model`` itself (a file saved
    from a ``features_only`` model), and the first that fits is loaded, so ``model``'s layers hold
    the weights. ImageNet weights go into the first only (the twin without its classifier). When none
    fits, the ValueError of the first is raised.
    """
    candidates = [*whole_networks, model]
    if isinstance(weights, str) and weights == "imagenet":
        candidates = candidates[:1]
    first_error = None
    for candidate in candidates:
        try:
            load_pretrained(candidate, weights, twin=twin)
            return
        except ValueError as error:
            first_error = first_error or error
    raise first_error
