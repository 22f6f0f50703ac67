"""Image folders on disk: listing, cheap integrity checks, seeded splits."""

from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass

__all__ = ["IMAGE_EXTENSIONS", "ImageFolder", "scan_folder", "check_image_file"]

log = logging.getLogger("kerasnets.data")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
_MAGIC = {
    ".jpg": (b"\xff\xd8",),
    ".jpeg": (b"\xff\xd8",),
    ".png": (b"\x89PNG\r\n\x1a\n",),
    ".bmp": (b"BM",),
    ".gif": (b"GIF87a", b"GIF89a"),
}


def check_image_file(path: str) -> str | None:
    """Why ``path`` cannot be a readable image (zero bytes, wrong signature, truncated), or None if it looks whole.

    Reads only the first and last bytes: a JPEG must end with the EOI marker, a PNG with its IEND
    chunk, a GIF with its trailer. Files that pass can still be corrupt inside; the pipeline's
    ``ignore_errors`` is the second line of defence.
    """
    try:
        size = os.path.getsize(path)
        if size == 0:
            return "zero bytes"
        with open(path, "rb") as handle:
            head = handle.read(16)
            handle.seek(max(0, size - 16))
            tail = handle.read(16)
    except OSError as error:
        return f"unreadable ({error.strerror})"
    ext = os.path.splitext(path)[1].lower()
    kind = next((k for k, magics in _MAGIC.items() if any(head.startswith(m) for m in magics)), None)
    if kind is None:
        return "not a JPEG/PNG/BMP/GIF file"
    if kind in (".jpg", ".jpeg") and b"\xff\xd9" not in tail:
        return "truncated JPEG (no end-of-image marker)"
    if kind == ".png" and b"IEND" not in tail:
        return "truncated PNG (no IEND chunk)"
    if kind == ".gif" and not tail.endswith(b";"):
        return "truncated GIF (no trailer)"
    del ext
    return None


@dataclass(frozen=True)
class ImageFolder:
    """The readable files of a class-per-subfolder tree, and what was skipped."""

    paths: tuple[str, ...]
    labels: tuple[int, ...]
    class_names: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...]


def scan_folder(root: str) -> ImageFolder:
    """List ``root/<class>/<image>`` files (sorted), check each, warn once about the skipped ones.

    Raises ValueError for a missing or empty folder, a folder without class subfolders, or one
    whose subfolders hold no readable image.
    """
    if not os.path.isdir(root):
        raise ValueError(f"image folder {root!r} does not exist (expected root/<class_name>/<image files>)")
    class_names = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))
    if not class_names:
        loose = [f for f in os.listdir(root) if f.lower().endswith(IMAGE_EXTENSIONS)]
        hint = f" ({len(loose)} images lie directly in it: move them into one subfolder per class)" if loose else ""
        raise ValueError(f"image folder {root!r} has no class subfolders{hint}; expected root/<class_name>/<images>")
    paths, labels, skipped = [], [], []
    for label, name in enumerate(class_names):
        for directory, _, files in sorted(os.walk(os.path.join(root, name))):
            for file in sorted(files):
                if not file.lower().endswith(IMAGE_EXTENSIONS):
                    continue
                path = os.path.join(directory, file)
                problem = check_image_file(path)
                if problem:
                    skipped.append((path, problem))
                else:
                    paths.append(path)
                    labels.append(label)
    if not paths:
        raise ValueError(
            f"image folder {root!r} has class subfolders {class_names[:5]} but no readable "
            f"{'/'.join(e[1:] for e in IMAGE_EXTENSIONS)} files ({len(skipped)} skipped)"
        )
    if skipped:
        examples = ", ".join(f"{p} ({why})" for p, why in skipped[:3])
        log.warning("skipped %d unreadable image file(s) in %s, e.g. %s", len(skipped), root, examples)
    return ImageFolder(tuple(paths), tuple(labels), tuple(class_names), tuple(skipped))


def split_indices(count: int, validation_split: float, subset: str, seed: int) -> list[int]:
    """Seeded shuffle of ``range(count)``: the last ``validation_split`` fraction is "validation"."""
    if not 0.0 <= validation_split < 1.0:
        raise ValueError(f"validation_split must be in [0, 1), got {validation_split}")
    order = list(range(count))
    random.Random(seed).shuffle(order)
    n_val = int(round(count * validation_split))
    if subset == "train":
        return sorted(order[: count - n_val])
    if subset == "validation":
        if n_val == 0:
            raise ValueError("split='validation' needs validation_split > 0")
        return sorted(order[count - n_val:])
    if subset == "all":
        return list(range(count))
    raise ValueError(f"folder split must be 'train', 'validation' or 'all', got {subset!r}")
