"""The preprocessing contract that travels with a trained model.

A model is only as good as the pixels it is served: the resolution, the eval crop, the resize
method, the input range and the class names it was trained with. The training engine records them
as a :class:`PreprocessingContract` and stores it

- inside ``model.keras`` (an extra ``kerasnets.json`` entry of the zip; Keras ignores it on load),
- as ``preprocessing.json`` inside the SavedModel folder (``serve_bytes`` also bakes it in),
- under ``"preprocessing"`` in the JSON file beside each ``.tflite`` file,

and ``kerasnets predict``, ``kerasnets evaluate``, ``kerasnets export`` and ``export.saved_model``
read it back with :func:`read_contract` (command-line flags still override). Pure Python: no
TensorFlow import.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import zipfile
from collections.abc import Sequence
from typing import Any

from kerasnets.storage import atomic_write_text, staged

__all__ = ["PreprocessingContract", "CONTRACT_ENTRY", "CARVE", "write_keras_contract", "read_contract", "read_class_names",
           "write_contract_file", "write_labels", "crop_padding_for", "timm_contract", "attach_contract",
           "attached_contract", "save_keras", "TIMM_INTERPOLATIONS"]

#: How the run's held-out files were carved, recorded in the contract's ``evaluation`` (``"carve"``):
#: each file by the SHA-256 of its seed, class and path in its class folder
#: (:func:`kerasnets.data.files.held_out`). Contracts written before it have no ``carve``.
CARVE = "sha256-per-file"
#: Name of the contract's entry inside a ``.keras`` zip file.
CONTRACT_ENTRY = "kerasnets.json"
_FIELDS_FILE = "preprocessing.json"


@dataclasses.dataclass(frozen=True)
class PreprocessingContract:
    """How images must be prepared for a model: what its eval pipeline did when it was trained.

    Attributes:
        image_size: (height, width) the model takes.
        channels: input channels (3 = RGB).
        resize_method: "bilinear" or "bicubic", as in the eval pipeline.
        crop_padding: center crop of ``size / (size + crop_padding)`` of the short side (0 = the
            whole image resized; 32 = the EfficientNet reference eval).
        input_range: pixel range the model takes; kerasnets models normalize inside (0..255).
        class_names: the label of each output.
        evaluation: where the run measured its accuracy: ``{"data", "split", "seed",
            "validation_split", "carve"}`` (``kerasnets evaluate`` on the same data re-draws the same
            held-out carve, never the training images; ``carve`` is :data:`CARVE`); empty when unknown.
        resize_first: the eval crop resizes the whole image first (short side ``s + crop_padding``)
            and then cuts the center ``s`` (timm's eval, :func:`kerasnets.data.transforms.center_crop`),
            instead of cutting the window and resizing it; the same window, another sampling grid.
        pretrained_cfg: the preprocessing record of the checkpoint the weights came from, kept as
            given (timm's ``pretrained_cfg``: ``mean``, ``std`` (inside the model), ``crop_pct``,
            ``interpolation``, ``input_size``, plus ``architecture``); what is served follows from it
            (:func:`timm_contract`). Empty for models trained from scratch or keras weights.
    """

    image_size: tuple[int, int]
    channels: int
    resize_method: str
    crop_padding: int
    class_names: tuple[str, ...]
    input_range: tuple[float, float] = (0.0, 255.0)
    evaluation: dict = dataclasses.field(default_factory=dict, compare=False)
    resize_first: bool = False
    pretrained_cfg: dict = dataclasses.field(default_factory=dict, compare=False)

    @property
    def crop_fraction(self) -> float:
        """The center-crop fraction (timm's ``crop_pct``): ``s / (s + crop_padding)``, ``s`` the short side of
        ``image_size``, of the largest window of the model's aspect ratio (``transforms.center_crop``)."""
        short = min(self.image_size)
        return short / (short + self.crop_padding)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``crop_fraction`` included for readers of other libraries)."""
        return {"image_size": list(self.image_size), "channels": self.channels,
                "resize_method": self.resize_method, "crop_padding": self.crop_padding,
                "crop_fraction": round(self.crop_fraction, 6), "input_range": list(self.input_range),
                "class_names": list(self.class_names),
                "layout": "NHWC RGB; normalization is inside the model: do not divide by 255",
                "evaluation": dict(self.evaluation), "resize_first": self.resize_first,
                **({"pretrained_cfg": dict(self.pretrained_cfg)} if self.pretrained_cfg else {})}

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> PreprocessingContract:
        """Inverse of :meth:`to_dict`; unknown keys are ignored."""
        return cls(image_size=tuple(int(v) for v in document["image_size"]), channels=int(document["channels"]),
                   resize_method=str(document["resize_method"]), crop_padding=int(document["crop_padding"]),
                   class_names=tuple(str(n) for n in document["class_names"]),
                   input_range=tuple(float(v) for v in document.get("input_range", (0.0, 255.0))),
                   evaluation=dict(document.get("evaluation") or {}),
                   resize_first=bool(document.get("resize_first", False)),
                   pretrained_cfg=dict(document.get("pretrained_cfg") or {}))

    @classmethod
    def for_model(cls, model: Any, preprocessing: dict[str, Any], class_names: Sequence[str],
                  evaluation: dict[str, Any] | None = None,
                  pretrained_cfg: dict[str, Any] | None = None) -> PreprocessingContract:
        """The contract of ``model`` evaluated with a pipeline whose settings are ``preprocessing``
        (``DatasetInfo.preprocessing`` of the eval dataset), on the data ``evaluation`` names, with
        weights from a checkpoint whose preprocessing record is ``pretrained_cfg`` (if any)."""
        height, width, channels = (int(d) for d in model.input_shape[1:])
        return cls((height, width), channels, str(preprocessing["resize_method"]), int(preprocessing["crop_padding"]),
                   tuple(str(n) for n in class_names), evaluation=dict(evaluation or {}),
                   resize_first=bool(preprocessing.get("resize_first", False)), pretrained_cfg=dict(pretrained_cfg or {}))


#: timm ``interpolation`` values the eval pipeline reproduces (``kerasnets.data.transforms.RESIZE_METHODS``)
TIMM_INTERPOLATIONS = ("bilinear", "bicubic")


def crop_padding_for(size: int, crop_pct: float) -> int:
    """timm's ``crop_pct`` as the eval pipeline's ``crop_padding`` at ``size`` px: timm resizes the
    short side to ``floor(size / crop_pct)`` and center-crops ``size``, i.e. it keeps the central
    ``size / floor(size / crop_pct)`` of the short side, which ``crop_padding = floor(size / crop_pct) -
    size`` keeps too (224 px: 0.875 -> 32, 0.95 -> 11, 1.0 -> 0)."""
    if not 0 < crop_pct <= 1:
        raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct!r}")
    return math.floor(size / crop_pct) - size


def timm_contract(input_shape: Sequence[Any], pretrained_cfg: dict[str, Any], class_names: Sequence[str],
                  architecture: str) -> PreprocessingContract:
    """The contract of a model (RGB, channels last, ``input_shape`` (H, W, C)) with timm weights whose
    preprocessing record is ``pretrained_cfg``: timm's eval crop (:func:`crop_padding_for` of its
    ``crop_pct`` at the model's short side, resized first as timm does for a square model; a
    non-square one gets the same fraction as a window) and interpolation; mean/std are inside the model.
    ValueError for an interpolation the pipeline cannot reproduce (allowed: :data:`TIMM_INTERPOLATIONS`)."""
    height, width, channels = (int(d) if d is not None else None for d in input_shape)
    if height is None or width is None:
        raise ValueError(f"a preprocessing contract needs a fixed input size, got {tuple(input_shape)}")
    interpolation = pretrained_cfg.get("interpolation", "bicubic")
    if interpolation not in TIMM_INTERPOLATIONS:
        raise ValueError(f"timm interpolation {interpolation!r} cannot be served; allowed: {list(TIMM_INTERPOLATIONS)} "
                         "(pass pretrained_cfg={'interpolation': ...})")
    kept = {k: pretrained_cfg[k] for k in ("mean", "std", "crop_pct", "interpolation", "input_size", "crop_mode")
            if k in pretrained_cfg}
    return PreprocessingContract((height, width), channels, interpolation,
                                 crop_padding_for(min(height, width), float(pretrained_cfg.get("crop_pct", 0.875))),
                                 tuple(str(n) for n in class_names), resize_first=height == width,
                                 pretrained_cfg={**kept, "architecture": architecture})


#: the attribute of a built model that holds its contract before it is saved
_CONTRACT_ATTRIBUTE = "kerasnets_contract"


def attach_contract(model: Any, contract: PreprocessingContract) -> None:
    """Keep ``contract`` on the in-memory ``model`` (``kerasnets.from_timm`` does), for
    :func:`save_keras`, ``export.saved_model`` and the training engine to write out."""
    object.__setattr__(model, _CONTRACT_ATTRIBUTE, contract)


def attached_contract(model: Any) -> PreprocessingContract | None:
    """The contract :func:`attach_contract` put on ``model``, or None."""
    return getattr(model, _CONTRACT_ATTRIBUTE, None)


def save_keras(model: Any, path: str, contract: PreprocessingContract | None = None) -> str:
    """``model.save(path)`` (a ``.keras`` file) with its contract inside (``contract``, else the one
    attached to the model; ValueError when there is neither), atomically: a temporary file, then a rename."""
    contract = contract or attached_contract(model)
    if contract is None:
        raise ValueError(f"model {getattr(model, 'name', model)!r} has no preprocessing contract: pass contract=..., "
                         "or build it with kerasnets.from_timm (which attaches one)")
    if not path.endswith(".keras"):
        raise ValueError(f"save_keras writes a .keras file, got {path!r}")
    with staged(path, ".keras") as tmp:  # a local file: the contract is added with zipfile before it is published
        model.save(tmp)
        write_keras_contract(tmp, contract)
    return path


def write_keras_contract(path: str, contract: PreprocessingContract) -> None:
    """Add (or replace) the contract entry of the ``.keras`` file at ``path``.

    Call it on a temporary file before renaming it into place: the engine's saves stay atomic.
    """
    with zipfile.ZipFile(path) as archive:
        if CONTRACT_ENTRY in archive.namelist():
            raise ValueError(f"{path!r} already holds a {CONTRACT_ENTRY}; write the contract once, on a fresh save")
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(CONTRACT_ENTRY, json.dumps({"preprocessing": contract.to_dict()}, indent=2))


def _from_json_file(path: str, key: str | None) -> PreprocessingContract | None:
    if not os.path.isfile(path):
        return None
    with open(path) as handle:
        document = json.load(handle)
    document = document.get(key) if key else document
    return PreprocessingContract.from_dict(document) if document else None


def read_contract(path: str) -> PreprocessingContract | None:
    """The contract stored with a ``.keras`` file, a SavedModel folder or a ``.tflite`` file; None
    for models saved without one (e.g. by plain Keras)."""
    if os.path.isdir(path):
        return _from_json_file(os.path.join(path, _FIELDS_FILE), None)
    if path.endswith(".tflite"):
        return _from_json_file(os.path.splitext(path)[0] + ".json", "preprocessing")
    if path.endswith(".keras") and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if CONTRACT_ENTRY not in archive.namelist():
                return None
            document = json.loads(archive.read(CONTRACT_ENTRY))
        return PreprocessingContract.from_dict(document["preprocessing"])
    return None


def write_contract_file(folder: str, contract: PreprocessingContract) -> str:
    """Write ``preprocessing.json`` and ``labels.txt`` (one class name per line) into ``folder``."""
    target = os.path.join(folder, _FIELDS_FILE)
    atomic_write_text(target, json.dumps(contract.to_dict(), indent=2))
    write_labels(os.path.join(folder, "labels.txt"), contract.class_names)
    return target


def write_labels(path: str, class_names: Sequence[str]) -> None:
    """``labels.txt``: one class name per line (names may contain spaces, never newlines)."""
    bad = [n for n in class_names if "\n" in n or "\r" in n]
    if bad:
        raise ValueError(f"class names cannot contain line breaks: {bad[:3]!r}")
    atomic_write_text(path, "".join(f"{n}\n" for n in class_names))


def read_class_names(model_path: str) -> tuple[str, ...] | None:
    """Class names of a saved model: its contract, else a ``labels.txt`` beside it (one per line)."""
    contract = read_contract(model_path)
    if contract is not None:
        return contract.class_names
    folder = model_path if os.path.isdir(model_path) else os.path.dirname(os.path.abspath(model_path))
    labels = os.path.join(folder, "labels.txt")
    if not os.path.isfile(labels):
        return None
    with open(labels) as handle:
        return tuple(line.rstrip("\n") for line in handle if line.rstrip("\n"))
