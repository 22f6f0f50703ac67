"""Finding and reading a timm checkpoint: ``config.json`` (architecture, ``pretrained_cfg``) and
``model.safetensors`` (read with numpy: no torch, no safetensors package).

Where a checkpoint comes from (:func:`locate`):

- a local folder as ``huggingface_hub.snapshot_download`` leaves it (``config.json`` +
  ``model.safetensors``);
- a lone ``.safetensors`` file, with the architecture named (``architecture="resnet50"``);
- a hub name, ``"timm/resnet50.a1_in1k"`` or ``"resnet50.a1_in1k"`` (the ``timm/`` organisation is
  implied), fetched by ``huggingface_hub`` (imported only then: ``pip install kerasnets[timm]``) into
  its own cache. Offline, one ValueError says how to pass a local folder instead.

The safetensors format is read here in a few lines (an 8-byte little-endian header length, a JSON
header of ``{name: {dtype, shape, data_offsets}}``, then the raw little-endian bytes): numpy is
already a dependency, the file is memory-mapped so a large checkpoint is not copied twice, and
``safetensors.numpy`` would add a dependency for the same few lines (the tests use it, as an
independent writer of the files this reads).
"""

from __future__ import annotations

import dataclasses
import json
import os
import struct
from typing import Any

import numpy as np

__all__ = ["TimmCheckpoint", "DEFAULT_PRETRAINED_CFG", "SAFETENSORS_DTYPES", "locate", "read_safetensors",
           "hub_repo_id"]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
HUB_ORGANISATION = "timm"

#: safetensors dtype -> numpy dtype (BF16 is widened to float32 exactly: its bits are float32's top half)
SAFETENSORS_DTYPES: dict[str, Any] = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "F64": np.float64,
                                      "I64": np.int64, "I32": np.int32}

#: what a lone ``.safetensors`` file is served with unless ``pretrained_cfg`` says otherwise: timm's
#: generic ``_cfg`` (ImageNet mean/std, 224 px, crop_pct 0.875, bilinear)
DEFAULT_PRETRAINED_CFG: dict[str, Any] = {
    "input_size": [3, 224, 224], "crop_pct": 0.875, "interpolation": "bilinear",
    "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
}


@dataclasses.dataclass(frozen=True)
class TimmCheckpoint:
    """A located timm checkpoint.

    Attributes:
        source: what the user passed (hub name, folder or file).
        weights_path: the ``.safetensors`` file.
        architecture: timm's ``architecture`` (``"resnet50"``).
        num_classes: the classifier's width in the checkpoint.
        pretrained_cfg: timm's preprocessing record (mean, std, crop_pct, interpolation, input_size, ...).
        label_names: the classes' names when ``config.json`` lists them, else ().
    """

    source: str
    weights_path: str
    architecture: str
    num_classes: int
    pretrained_cfg: dict
    label_names: tuple[str, ...] = ()


def hub_repo_id(name: str) -> str:
    """``"resnet50.a1_in1k"`` -> ``"timm/resnet50.a1_in1k"``; a name with an owner is kept."""
    return name if "/" in name else f"{HUB_ORGANISATION}/{name}"


#: hub repo id -> the snapshot folder this process fetched it into: a ``kerasnets train --weights
#: timm:<hub name>`` run locates its checkpoint several times (architecture, eval crop, weights, contract)
#: and asks the hub once
_SNAPSHOTS: dict[str, str] = {}


def _download(name: str) -> str:
    """The snapshot folder of hub model ``name`` (config and weights only), from huggingface_hub's cache;
    asked once per process (:data:`_SNAPSHOTS`, while the folder still holds both files)."""
    known = _SNAPSHOTS.get(hub_repo_id(name))
    if known is not None and all(os.path.isfile(os.path.join(known, f)) for f in (CONFIG_FILE, WEIGHTS_FILE)):
        return known
    _SNAPSHOTS[hub_repo_id(name)] = _fetch(name)
    return _SNAPSHOTS[hub_repo_id(name)]


def _fetch(name: str) -> str:
    """``huggingface_hub.snapshot_download`` of hub model ``name``'s config and weights; ValueError saying
    how to pass a local folder when it cannot."""
    local_hint = ("pass a local folder instead: on a machine with network, `huggingface-cli download "
                  f"{hub_repo_id(name)} config.json model.safetensors --local-dir DIR`, copy DIR here and call "
                  "from_timm('DIR') (or --weights timm:DIR)")
    try:
        from huggingface_hub import snapshot_download
    except ImportError as error:
        raise ValueError(f"timm hub name {name!r} needs huggingface_hub (pip install 'kerasnets[timm]'); or "
                         f"{local_hint}") from error
    try:
        return snapshot_download(repo_id=hub_repo_id(name), allow_patterns=[CONFIG_FILE, WEIGHTS_FILE])
    except Exception as error:  # offline, unknown repo, HTTP errors: the hub raises many types
        raise ValueError(f"could not fetch timm checkpoint {hub_repo_id(name)!r} from the Hugging Face hub "
                         f"({type(error).__name__}: {error}). Offline? {local_hint}") from error


def _read_config(folder: str) -> dict:
    path = os.path.join(folder, CONFIG_FILE)
    with open(path) as handle:
        config = json.load(handle)
    if not isinstance(config, dict) or not isinstance(config.get("architecture"), str):
        raise ValueError(f"{path!r} is not a timm config: it needs an 'architecture' string (timm writes "
                         "{'architecture', 'num_classes', 'pretrained_cfg'})")
    return config


def locate(source: str | os.PathLike, architecture: str | None = None,
           pretrained_cfg: dict | None = None) -> TimmCheckpoint:
    """Find the checkpoint ``source`` names: a folder, a ``.safetensors`` file or a hub name.

    Args:
        source: a folder with ``config.json`` and ``model.safetensors``; a ``.safetensors`` file
            (``architecture`` required); or a hub name (``"timm/resnet50.a1_in1k"``, ``"resnet50.a1_in1k"``).
        architecture: timm's architecture name; required for a lone file, else it must agree with
            ``config.json``.
        pretrained_cfg: keys that replace the checkpoint's ``pretrained_cfg`` (a lone file starts from
            :data:`DEFAULT_PRETRAINED_CFG`).

    Raises:
        ValueError: a folder without the two files, a lone file without ``architecture``, a hub name
            that cannot be fetched (offline: the message says how to pass a local folder).
    """
    text = os.fspath(source)
    if os.path.isfile(text):
        if not text.endswith(".safetensors"):
            raise ValueError(f"{text!r}: a timm checkpoint is a folder (config.json + model.safetensors), a "
                             ".safetensors file or a hub name")
        if architecture is None:
            raise ValueError(f"{text!r} is a lone .safetensors file: name its timm architecture, e.g. "
                             "from_timm(path, architecture='resnet50') (or pass the folder with its config.json)")
        state_classes = None
        config: dict = {"architecture": architecture, "pretrained_cfg": dict(DEFAULT_PRETRAINED_CFG)}
        weights = text
    else:
        folder = text if os.path.isdir(text) else _download(text)
        weights = os.path.join(folder, WEIGHTS_FILE)
        missing = [f for f in (CONFIG_FILE, WEIGHTS_FILE) if not os.path.isfile(os.path.join(folder, f))]
        if missing:
            raise ValueError(f"timm checkpoint folder {folder!r} lacks {missing}: it needs config.json and "
                             "model.safetensors, as huggingface_hub.snapshot_download leaves them")
        config = _read_config(folder)
        if architecture is not None and architecture != config["architecture"]:
            raise ValueError(f"architecture={architecture!r} but {folder!r} holds a {config['architecture']!r} "
                             "checkpoint: leave architecture out for a folder")
        state_classes = config.get("num_classes")
    cfg = {**DEFAULT_PRETRAINED_CFG, **(config.get("pretrained_cfg") or {}), **(pretrained_cfg or {})}
    num_classes = state_classes if state_classes is not None else cfg.get("num_classes", 0)
    labels = tuple(str(n) for n in config.get("label_names") or ())
    return TimmCheckpoint(text, weights, config["architecture"], int(num_classes or 0), cfg, labels)


def _header(handle, path: str) -> tuple[dict, int]:
    raw = handle.read(8)
    if len(raw) != 8:
        raise ValueError(f"{path!r} is not a safetensors file: shorter than its 8-byte header length")
    (length,) = struct.unpack("<Q", raw)
    size = os.fstat(handle.fileno()).st_size
    if length > size - 8:
        raise ValueError(f"{path!r} is not a safetensors file: header length {length} exceeds the file ({size} bytes)")
    try:
        header = json.loads(handle.read(length))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path!r} is not a safetensors file: its header is not JSON ({error})") from error
    return header, 8 + length


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """``{tensor name: numpy array}`` of a safetensors file, in the file's header order.

    F32 / F64 / I64 / I32 keep their dtype, F16 stays float16, BF16 becomes float32 (exact). The
    file is memory-mapped: arrays are read-only views until copied.

    Raises:
        ValueError: not a safetensors file, an unsupported dtype (the message lists the supported
            ones), or a tensor whose byte range does not match its shape.
    """
    path = os.fspath(path)
    with open(path, "rb") as handle:
        header, start = _header(handle, path)
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=start) if os.path.getsize(path) > start else np.zeros(0, np.uint8)
    tensors: dict[str, np.ndarray] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        dtype = entry.get("dtype")
        if dtype not in SAFETENSORS_DTYPES:
            raise ValueError(f"{path!r}: tensor {name!r} has dtype {dtype!r}; supported: {sorted(SAFETENSORS_DTYPES)}")
        begin, end = entry["data_offsets"]
        shape = tuple(int(d) for d in entry["shape"])
        numpy_dtype = np.dtype(SAFETENSORS_DTYPES[dtype]).newbyteorder("<")
        if end - begin != int(np.prod(shape, dtype=np.int64)) * numpy_dtype.itemsize or end > data.size:
            raise ValueError(f"{path!r}: tensor {name!r} of shape {shape} ({dtype}) has a byte range {begin}..{end} "
                             "that does not match it")
        array = data[begin:end].view(numpy_dtype).reshape(shape)
        if dtype == "BF16":
            array = (array.astype(np.uint32) << 16).view(np.float32)
        tensors[name] = array
    return tensors
