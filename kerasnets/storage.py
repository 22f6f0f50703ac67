"""Files and folders on any filesystem TensorFlow serves: local paths and URLs (``gs://bucket/run``,
``s3://``, ``ram://x``). Every file of a run folder (history, summary, backups, exports) and every
data file the package writes goes through here, so that a run can live on an object store.

Local paths use ``os`` (fsynced files, ``os.replace``); URLs use ``tf.io.gfile``. :func:`is_url`
tells them apart; this module imports TensorFlow only when it touches a URL, so that pure-Python
modules (:mod:`kerasnets.serving`) can import it.

What stays atomic. A reader sees the old file or the whole new one, never half of it: files are
written elsewhere and then published (:func:`atomic_write_text`, :func:`staged`). Locally that is a
rename. An object store has no rename: ``tf.io.gfile`` copies server-side and deletes, which still
publishes each file whole, but a folder of several files appears file by file. So a folder is valid
only once the one file written LAST says so: a SavedModel's ``saved_model.pb``
(:func:`publish_tree`), a backup's entry in ``saves.json`` (:mod:`kerasnets.training.backup`).
"""

from __future__ import annotations

import contextlib
import glob as local_glob
import os
import re
import shutil
import tempfile
from typing import Iterator

__all__ = ["is_url", "absolute", "exists", "isdir", "makedirs", "listdir", "glob", "remove", "read_text",
           "atomic_write_text", "staged", "publish_tree"]

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")  # two letters at least: "C://x" stays a Windows path


def is_url(path: str | os.PathLike) -> bool:
    """True when ``path`` is a filesystem URL (``gs://...``, ``ram://...``), False for a local path."""
    return bool(_SCHEME.match(os.fspath(path)))


def _gfile():
    import tensorflow as tf  # here, not at the top: serving imports this module without TensorFlow

    return tf.io.gfile


def absolute(path: str | os.PathLike) -> str:
    """``path`` made absolute when it is local; a URL unchanged (``os.path.abspath`` would mangle it)."""
    path = os.fspath(path)
    return path if is_url(path) else os.path.abspath(path)


def exists(path: str | os.PathLike) -> bool:
    """Whether a file or folder is at ``path``."""
    path = os.fspath(path)
    return _gfile().exists(path) if is_url(path) else os.path.exists(path)


def isdir(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder (on an object store: a prefix that holds files)."""
    path = os.fspath(path)
    return _gfile().isdir(path) if is_url(path) else os.path.isdir(path)


def makedirs(path: str | os.PathLike) -> None:
    """Create the folder ``path`` and its parents (nothing when it exists)."""
    path = os.fspath(path)
    if is_url(path):
        _gfile().makedirs(path)
    else:
        os.makedirs(path, exist_ok=True)


def listdir(path: str | os.PathLike) -> list[str]:
    """The names in the folder ``path`` (folders without a trailing slash), sorted."""
    path = os.fspath(path)
    names = _gfile().listdir(path) if is_url(path) else os.listdir(path)
    return sorted(name.rstrip("/") for name in names)


def glob(pattern: str | os.PathLike) -> list[str]:
    """The paths that match ``pattern`` (``*``, ``?``, ``[...]``), sorted."""
    pattern = os.fspath(pattern)
    return sorted(_gfile().glob(pattern) if is_url(pattern) else local_glob.glob(pattern))


def remove(path: str | os.PathLike, ignore_errors: bool = False) -> bool:
    """Remove the file or folder (with its contents) at ``path``; False when there was none. Parts
    that vanish meanwhile (another worker removing the same folder) are skipped, the rest still
    removed; ``ignore_errors``: any other error too (best-effort clean-ups)."""
    path = os.fspath(path)
    if is_url(path):
        gfile = _gfile()
        import tensorflow as tf

        try:
            if not gfile.exists(path):
                return False
            try:
                gfile.rmtree(path) if gfile.isdir(path) else gfile.remove(path)
            except tf.errors.NotFoundError:  # part of it removed by another worker meanwhile: once more
                if gfile.exists(path):
                    gfile.rmtree(path) if gfile.isdir(path) else gfile.remove(path)
        except tf.errors.OpError:
            if not ignore_errors:
                raise
        return True

    def skip_vanished(function, name, error):
        if not (ignore_errors or isinstance(error[1], FileNotFoundError)):
            raise error[1]

    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, onerror=skip_vanished)
        else:
            os.remove(path)
    except FileNotFoundError:
        return False
    except OSError:
        if not ignore_errors:
            raise
    return True


def read_text(path: str | os.PathLike) -> str:
    """The text of the file at ``path`` (FileNotFoundError when there is none)."""
    path = os.fspath(path)
    if not is_url(path):
        with open(path) as handle:
            return handle.read()
    import tensorflow as tf

    try:
        with _gfile().GFile(path) as handle:
            return handle.read()
    except tf.errors.NotFoundError:
        raise FileNotFoundError(path) from None


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
        import tensorflow as tf

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


@contextlib.contextmanager
def staged(path: str | os.PathLike, suffix: str = "") -> Iterator[str]:
    """A local file path to write the file bound for ``path`` into; published to ``path`` when the
    block ends without an error, removed otherwise. For writers that need a local file (``.keras``
    archives, matplotlib, TFLite bytes). ``suffix``: the temporary's ending (``.keras``, ``.png``:
    some writers choose the format by it).

    A local ``path``: the temporary sits beside it and is fsynced and renamed over it. A URL: it sits
    in the system's temporary folder and is copied to ``path`` in one ``tf.io.gfile.copy`` (whole).
    """
    path = os.fspath(path)
    if is_url(path):
        handle, tmp = tempfile.mkstemp(prefix="kerasnets-", suffix=suffix)
        os.close(handle)
    else:
        tmp = f"{path}.tmp-{os.getpid()}{suffix}"
    try:
        yield tmp
        if is_url(path):
            _gfile().copy(tmp, path, overwrite=True)
        else:
            with open(tmp, "r+b") as handle:  # writable: Windows refuses to fsync a read-only handle
                os.fsync(handle.fileno())
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def publish_tree(folder: str, path: str | os.PathLike, last: tuple[str, ...] = ()) -> None:
    """Move the finished local ``folder`` to ``path``, replacing what is there.

    Locally: a rename (an old ``path`` is moved aside first and removed after, so a reader sees the
    old folder or the new one). A URL: the old one is removed, then every file is copied, the files
    named in ``last`` (paths relative to ``folder``) after all the others: a reader that checks them
    sees a whole folder or none; ``folder`` is removed after."""
    path = os.fspath(path)
    if not is_url(path):
        old = None
        if os.path.exists(path):
            old = f"{path}.old-{os.getpid()}"
            os.replace(path, old)
        os.replace(folder, path)
        if old:
            shutil.rmtree(old, ignore_errors=True)
        return
    gfile = _gfile()
    for name in last:  # first: a reader must not take the old marker for the new folder's
        remove(f"{path}/{name}")
    remove(path)
    files = []
    for root, _, names in os.walk(folder):
        files += [os.path.relpath(os.path.join(root, name), folder) for name in names]
    for relative in sorted(files, key=lambda name: name in last):
        target = f"{path}/{relative.replace(os.sep, '/')}"
        gfile.makedirs(target.rsplit("/", 1)[0])
        gfile.copy(os.path.join(folder, relative), target, overwrite=True)
    shutil.rmtree(folder, ignore_errors=True)
