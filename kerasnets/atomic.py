"""Whole-file writes: a reader sees the old file or the whole new one, never half of it.

Paths are local paths or filesystem URLs (``gs://bucket/run``, ``ram://x``: any ``scheme://`` that
TensorFlow's ``tf.io.gfile`` serves). :func:`is_url` tells them apart, :func:`absolute` makes a local
path absolute and leaves a URL as it is. The module imports TensorFlow only when it writes a URL, so
that pure-Python modules (:mod:`kerasnets.serving`) can import it.
"""

from __future__ import annotations

import contextlib
import os
import re

__all__ = ["atomic_write_text", "is_url", "absolute"]

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")  # two letters at least: "C://x" stays a Windows path


def is_url(path: str | os.PathLike) -> bool:
    """True when ``path`` is a filesystem URL (``gs://...``, ``ram://...``), False for a local path."""
    return bool(_SCHEME.match(os.fspath(path)))


def absolute(path: str | os.PathLike) -> str:
    """``path`` made absolute when it is local; a URL unchanged (``os.path.abspath`` would mangle it)."""
    path = os.fspath(path)
    return path if is_url(path) else os.path.abspath(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader sees the old file or the whole new one.

    Both kinds of path are written to a temporary file ``{path}.tmp-{pid}`` that is then moved over
    ``path``. A local path: a fsynced file and ``os.replace`` (atomic on POSIX and Windows). A URL:
    ``tf.io.gfile`` and ``tf.io.gfile.rename(overwrite=True)``. On an object store (``gs://``,
    ``s3://``) that rename is a server-side copy then a delete: the copy publishes ``path`` whole,
    never part of it, though not at the same instant as other files (no multi-file atomicity). The
    temporary is needed for ``ram://`` too: its ``GFile(path, "w")`` appends to an existing file
    instead of replacing it.
    """
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    if is_url(path):
        import tensorflow as tf  # here, not at the top: serving imports this module without TensorFlow

        try:
            with contextlib.suppress(tf.errors.NotFoundError):  # a crashed writer's leftover would be appended to
                tf.io.gfile.remove(tmp)
            with tf.io.gfile.GFile(tmp, "w") as handle:
                handle.write(text)
            tf.io.gfile.rename(tmp, path, overwrite=True)
        finally:
            with contextlib.suppress(tf.errors.NotFoundError):
                tf.io.gfile.remove(tmp)
        return
    try:
        with open(tmp, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
