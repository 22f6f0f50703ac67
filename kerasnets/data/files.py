"""Image folders on disk: layout detection, listing, cheap integrity checks, seeded splits.

Two layouts are recognized: ``root/<class>/<images>`` (class-per-subfolder, the splits are a seeded
carve) and ``root/{train,val|validation,test}/<class>/<images>`` (split layout, any casing, as
downloaded datasets ship). The class list of a split layout is the union over its split folders.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
from dataclasses import dataclass, field

from kerasnets.data.headers import DEFAULT_MAX_PIXELS, END_MARKERS, TRUNCATED, find_jpeg_end, over_budget, read_header

__all__ = [
    "IMAGE_EXTENSIONS", "SPLITS", "ImageFolder", "FolderLayout", "canonical_split", "folder_layout",
    "folder_splits", "scan_folder", "select_split", "split_indices", "check_image_file", "checked_file", "carve_key", "held_out",
]

log = logging.getLogger("kerasnets.data")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
#: Split names accepted by ``load`` for folders, digits and arrays ("val" is an alias of "validation").
SPLITS = ("train", "validation", "test", "all")
_SPLIT_ALIASES = {"train": "train", "val": "validation", "validation": "validation", "test": "test", "all": "all"}
_SPLIT_FOLDERS = ("train", "val", "validation", "test")
_EXTS = "/".join(e[1:] for e in IMAGE_EXTENSIONS)


def check_image_file(path: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> str | None:
    """Why ``path`` cannot be a readable image, or None if it looks whole.

    Reasons: zero bytes, wrong signature, a header that declares no size or more pixels than
    ``max_pixels`` (:func:`kerasnets.data.headers.over_budget`, decided before any decode),
    truncation. Reads the header and the last bytes: a PNG must end with its IEND chunk, a GIF
    with its trailer, a JPEG must hold an end-of-image marker after its scan data (usually its
    last bytes; a motion photo's MP4 or padding may follow it, and then the file is searched).
    Files that pass can still be corrupt inside; the pipeline's ``ignore_errors`` is the second
    line of defence.
    """
    return checked_file(path, max_pixels)[0]


def checked_file(path: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[str | None, int]:
    """:func:`check_image_file`'s reason (None: readable) and the size in bytes of the file it
    checked (read from the open file: what the pipeline compares to see that it is still that file;
    -1 when it could not be opened)."""
    size = -1
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size == 0:
                return "zero bytes", size
            header = read_header(handle)
            if isinstance(header, str):
                return header, size
            handle.seek(max(0, size - 16))
            tail = handle.read(16)
            if header.format == "JPEG" and END_MARKERS["JPEG"] not in tail and find_jpeg_end(handle, header.data_offset) < 0:
                return TRUNCATED["JPEG"], size
    except OSError as error:
        return f"unreadable ({error.strerror})", size
    if header.format == "PNG" and END_MARKERS["PNG"] not in tail:
        return TRUNCATED["PNG"], size
    if header.format == "GIF" and not tail.endswith(END_MARKERS["GIF"]):
        return TRUNCATED["GIF"], size
    return over_budget(header, max_pixels), size


def canonical_split(split: str) -> str:
    """``"train"``, ``"validation"``, ``"test"`` or ``"all"`` for any casing of those or of the alias ``"val"``."""
    key = _SPLIT_ALIASES.get(str(split).lower())
    if key is None:
        raise ValueError(f"split must be one of {SPLITS} (or 'val'), any casing; got {split!r}")
    return key


@dataclass(frozen=True)
class ImageFolder:
    """The readable files of a folder (or of one split of it), their labels, and what was skipped."""

    paths: tuple[str, ...]
    labels: tuple[int, ...]
    class_names: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...]
    sizes: tuple[int, ...] = ()  # bytes of each file when the scan checked it


@dataclass(frozen=True)
class FolderLayout:
    """Which layout ``root`` has: ``split_dirs`` maps "train"/"validation"/"test" to folders (empty: class-per-subfolder).

    ``max_pixels`` is the pixel budget the scan of its files applies (:func:`check_image_file`).
    """

    root: str
    class_names: tuple[str, ...]
    split_dirs: dict = field(default_factory=dict)
    max_pixels: int = DEFAULT_MAX_PIXELS


def _subdirs(path: str) -> list[str]:
    with os.scandir(path) as entries:  # d_type: no stat per file in folders of thousands of images
        return sorted(e.name for e in entries if not e.name.startswith(".") and e.is_dir())


def _no_subfolders(path: str, what: str) -> ValueError:
    entries = [f for f in os.listdir(path) if not f.startswith(".")]
    if not entries:
        splits = f" or {path}/train|val|test/<class_name>/" if what == "image folder" else ""
        return ValueError(f"{what} {path!r} is empty (no files, no class subfolders); "
                          f"put the images in {path}/<class_name>/{splits}")
    loose = [f for f in entries if f.lower().endswith(IMAGE_EXTENSIONS)]
    if loose:
        return ValueError(f"{what} {path!r} has no class subfolders ({len(loose)} images lie directly in it): "
                          f"move them into one subfolder per class, {path}/<class_name>/<images>")
    return ValueError(f"{what} {path!r} has no class subfolders and no {_EXTS} images; "
                      f"expected {path}/<class_name>/<images>")


def folder_layout(root: str) -> FolderLayout:
    """Detect the layout of ``root`` from its listing (no file is opened); ValueError when it fits neither."""
    if not os.path.isdir(root):
        raise ValueError(f"image folder {root!r} does not exist (expected root/<class_name>/<image files>)")
    subdirs = _subdirs(root)
    if not subdirs:
        raise _no_subfolders(root, "image folder")
    splits = [d for d in subdirs if d.lower() in _SPLIT_FOLDERS]
    if not splits:
        for name in subdirs:
            nested = [d for d in _subdirs(os.path.join(root, name)) if d.lower() in _SPLIT_FOLDERS]
            if nested:
                raise ValueError(f"folder {os.path.join(root, name)!r} holds split folders {nested}, a nesting that fits "
                                 f"neither layout; pass {os.path.join(root, name)!r} as the source")
        return FolderLayout(root, tuple(subdirs))
    others = [d for d in subdirs if d not in splits]
    if others:
        raise ValueError(f"image folder {root!r} mixes split folders {splits} with other folders {others}; "
                         f"use either root/<class_name>/ or root/train|val|test/<class_name>/ only")
    split_dirs: dict[str, str] = {}
    for name in splits:
        key = canonical_split(name)
        if key in split_dirs:
            raise ValueError(f"image folder {root!r} has two {key} folders ({os.path.basename(split_dirs[key])!r} and "
                             f"{name!r}); keep one")
        split_dirs[key] = os.path.join(root, name)
    names: set[str] = set()
    for path in split_dirs.values():
        classes = _subdirs(path)
        if not classes:
            raise _no_subfolders(path, "split folder")
        nested = [c for c in classes if c.lower() in _SPLIT_FOLDERS]
        if nested:
            raise ValueError(f"split folder {path!r} holds split folders {nested}, a nesting that fits neither "
                             f"layout; expected {path}/<class_name>/<images>")
        names.update(classes)
    return FolderLayout(root, tuple(sorted(names)), split_dirs)


def folder_splits(layout: FolderLayout, validation_split: float | None) -> tuple[str, ...]:
    """The splits ``load`` accepts for this folder and ``validation_split`` ("all" always last)."""
    _check_fraction(validation_split)
    if not layout.split_dirs:
        carve = 0.2 if validation_split is None else validation_split
        return ("train", "validation", "all") if carve > 0 else ("train", "all")
    if "validation" in layout.split_dirs and validation_split:
        raise ValueError(f"image folder {layout.root!r} has a validation folder, so validation_split={validation_split} "
                         f"is ambiguous; drop validation_split (the folder is the validation split)")
    carvable = "train" in layout.split_dirs and bool(validation_split)
    return tuple(s for s in SPLITS[:3] if s in layout.split_dirs or (s == "validation" and carvable)) + ("all",)


def _scan_class(class_dir: str, max_pixels: int) -> tuple[list[tuple[str, int]], list[tuple[str, str]], int]:
    """((readable path, its size), (skipped path, why) pairs, image files seen) under ``class_dir``, in
    sorted order. File names that are not UTF-8 (e.g. latin-1 bytes) stay ``os.fsdecode`` strings:
    ``os.fsencode`` gives back their bytes."""
    paths, skipped, seen = [], [], 0
    for directory, _, files in sorted(os.walk(class_dir)):
        for file in sorted(files):
            if not file.lower().endswith(IMAGE_EXTENSIONS):
                continue
            seen += 1
            path = os.path.join(directory, file)
            problem, size = checked_file(path, max_pixels)
            if problem:
                skipped.append((path, problem))
            else:
                paths.append((path, size))
    return paths, skipped, seen


def _scan(layout: FolderLayout, folders: list[str]) -> ImageFolder:
    index = {name: i for i, name in enumerate(layout.class_names)}
    paths, sizes, labels, skipped, empty = [], [], [], [], []
    for folder in folders:
        for name in _subdirs(folder):
            found, bad, seen = _scan_class(os.path.join(folder, name), layout.max_pixels)
            paths += [path for path, _ in found]
            sizes += [size for _, size in found]
            labels += [index[name]] * len(found)
            skipped += bad
            if not found:
                empty.append((os.path.join(folder, name), bad, seen))
    where = folders[0] if len(folders) == 1 else layout.root
    if not paths:
        example = f", e.g. {skipped[0][0]}: {skipped[0][1]}" if skipped else ""
        raise ValueError(f"image folder {where!r} has no readable {_EXTS} image ({len(skipped)} files skipped{example}); "
                         f"put real images in {where}/<class_name>/")
    if empty:
        class_dir, bad, seen = empty[0]
        reason = (f"{len(bad)} of {seen} files skipped, e.g. {os.path.basename(bad[0][0])}: {bad[0][1]}" if bad
                  else f"it holds no {_EXTS} file")
        raise ValueError(f"class folder {class_dir!r} has no readable image ({reason}); add images to it or remove it")
    if skipped:
        examples = ", ".join(f"{p} ({why})" for p, why in skipped[:3])
        log.warning("skipped %d unreadable image file(s) in %s, e.g. %s", len(skipped), where, examples)
    return ImageFolder(tuple(paths), tuple(labels), layout.class_names, tuple(skipped), tuple(sizes))


def _subset(found: ImageFolder, keep: list[int]) -> ImageFolder:
    return ImageFolder(tuple(found.paths[i] for i in keep), tuple(found.labels[i] for i in keep),
                       found.class_names, found.skipped, tuple(found.sizes[i] for i in keep))


def carve_key(class_name: str, relative_path: str) -> str:
    """What the validation carve hashes for one file: ``"<class>/<path relative to its class folder>"``
    with ``/`` separators on every OS (the same file has the same key wherever the folder lies)."""
    return f"{class_name}/{relative_path.replace(os.sep, '/')}"


def held_out(key: str, validation_split: float, seed: int) -> bool:
    """Whether the file with :func:`carve_key` ``key`` belongs to the validation carve.

    The first 8 bytes of ``sha256(f"{seed}:{key}")`` read as a uniform number in [0, 1); the file
    is held out when that number is below ``validation_split``. Each file is decided alone, so
    adding or removing files never moves another file between train and validation.
    """
    digest = hashlib.sha256(f"{seed}:{key}".encode("utf-8", "surrogateescape")).digest()  # latin-1 names: their bytes
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64 < validation_split


def _carve(found: ImageFolder, folder: str, validation_split: float, split: str, seed: int) -> ImageFolder:
    """The "train" or "validation" part of ``found`` (the files of the class folders in ``folder``)."""
    validation = [i for i, (path, label) in enumerate(zip(found.paths, found.labels)) if held_out(
        carve_key(found.class_names[label], os.path.relpath(path, os.path.join(folder, found.class_names[label]))),
        validation_split, seed)]
    where = f"validation_split={validation_split} (seed {seed}) of the {len(found.paths)} images in {folder!r}"
    if split == "validation" and not validation:
        raise ValueError(f"{where} holds out no image (each file is held out with probability {validation_split}); "
                         f"raise validation_split, add images, or add a val/ folder")
    if split == "train" and len(validation) == len(found.paths):
        raise ValueError(f"{where} leaves no training image; lower validation_split or add images")
    chosen = set(validation)
    keep = [i for i in range(len(found.paths)) if (i in chosen) == (split == "validation")]
    return _subset(found, keep)


def select_split(layout: FolderLayout, split: str, validation_split: float | None = None, seed: int = 0) -> ImageFolder:
    """The checked files of one split of ``layout`` (see :func:`folder_splits` for which splits exist).

    A validation carve (class-per-subfolder folders, or a split layout without a validation folder
    when ``validation_split > 0``) holds out each file by a seeded hash of its class and its path
    inside the class folder (:func:`held_out`): same seed, same partition, and adding or removing
    images never moves another image between train and validation (a model evaluated on the
    carve never sees an image it trained on). The validation share is ``validation_split`` on
    average, not exactly; ValueError when the carve leaves one side empty.
    """
    split = canonical_split(split)
    available = folder_splits(layout, validation_split)
    if split not in available:
        hint = ("; pass validation_split=0.1 to carve a validation split from train"
                if split == "validation" and "train" in available else "")
        raise ValueError(f"image folder {layout.root!r} has no {split!r} split; it has {available}{hint}")
    if not layout.split_dirs:
        carve = 0.2 if validation_split is None else validation_split
        found = _scan(layout, [layout.root])
        return found if split == "all" or not carve else _carve(found, layout.root, carve, split, seed)
    if split == "all":
        return _scan(layout, [layout.split_dirs[s] for s in SPLITS[:3] if s in layout.split_dirs])
    if split in ("train", "validation") and "validation" not in layout.split_dirs and validation_split:
        found = _scan(layout, [layout.split_dirs["train"]])
        return _carve(found, layout.split_dirs["train"], validation_split, split, seed)
    return _scan(layout, [layout.split_dirs[split]])


def scan_folder(root: str, split: str = "all") -> ImageFolder:
    """List and check the images of ``root`` (either layout), without any carve.

    ``split`` picks one split folder of a split layout ("all": every split folder); a
    class-per-subfolder folder is read whole for "train" and "all".
    """
    return select_split(folder_layout(root), split, 0.0)


def _check_fraction(validation_split: float | None) -> None:
    if validation_split is not None and (isinstance(validation_split, bool) or not 0.0 <= validation_split < 1.0):
        raise ValueError(f"validation_split must be None or a fraction in [0, 1), got {validation_split!r}")


def split_indices(count: int, validation_split: float, subset: str, seed: int) -> list[int]:
    """Seeded shuffle of ``range(count)``: the last ``validation_split`` fraction is "validation", the rest "train".

    The carve of numpy arrays and digits, whose examples have no names (image folders use
    :func:`held_out`, per file)."""
    _check_fraction(validation_split)
    subset = canonical_split(subset)
    if subset == "all":
        return list(range(count))
    order = list(range(count))
    random.Random(seed).shuffle(order)
    n_val = int(round(count * (validation_split or 0.0)))
    if subset == "validation" and n_val == 0:
        raise ValueError(f"validation_split={validation_split} of {count} examples leaves no validation example; "
                         f"raise validation_split")
    if subset == "train" and n_val == count:
        raise ValueError(f"validation_split={validation_split} of {count} examples leaves no train example; "
                         f"lower validation_split")
    if subset == "test":
        raise ValueError("a validation_split carve has only 'train', 'validation' and 'all' splits, got 'test'")
    return sorted(order[: count - n_val] if subset == "train" else order[count - n_val:])
