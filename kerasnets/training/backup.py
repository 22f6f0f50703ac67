"""Resumable backups: the whole training state in one ``tf.train.Checkpoint`` per save.

A save holds the model, the optimizer (with its loss scale under mixed_float16), the weight EMA,
the training data iterator (so a resumed run reads exactly the batches an uninterrupted run
would) and the step counter. Each worker writes its own folder ``backup/task-<index>/`` (workers
read different data, so their iterators differ). A save is recorded in ``saves.json`` (written
atomically) only once it is complete, and only the saves it lists are read; the last ``keep``
saves stay, older ones and stale temporaries are removed. A ``kill -9`` at any moment leaves the
previous complete save usable.

On a local disk a save is written into a temporary folder, fsynced and renamed into place. A run
folder on a URL (``gs://``: object stores have no rename, see :mod:`kerasnets.storage`) writes the
checkpoint straight into its folder, and ``saves.json`` is the pointer written last: a save it
does not list is never read, whatever of it exists.
"""

from __future__ import annotations

import json
import os
import re
import shutil

import tensorflow as tf

from kerasnets import storage
from kerasnets.storage import atomic_write_text

__all__ = ["RunBackup", "Save"]

Save = dict  # {"phase": int, "step": int, "dir": str}


def _fsync_tree(folder: str) -> None:
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class RunBackup:
    """The backups of one worker of one run.

    Args:
        root: the run folder (backups go to ``root/backup/task-<task>``).
        task: this worker's index (0 on one machine).
        keep: complete saves kept (2, so that workers killed mid-save still share one).
    """

    def __init__(self, root: str, task: int = 0, keep: int = 2):
        self.root = os.path.join(root, "backup")
        self.dir = os.path.join(self.root, f"task-{task}")
        self.keep = keep

    @property
    def index_path(self) -> str:
        """``saves.json``: the complete saves, oldest first."""
        return os.path.join(self.dir, "saves.json")

    def saves(self) -> list[Save]:
        """The complete saves of this worker, oldest first (empty when there is none)."""
        try:
            saves = json.loads(storage.read_text(self.index_path))
        except FileNotFoundError:
            return []
        return [s for s in saves if storage.exists(os.path.join(self.dir, s["dir"], "ckpt.index"))]

    def latest(self) -> Save | None:
        """The newest complete save, or None."""
        saves = self.saves()
        return saves[-1] if saves else None

    def find(self, phase: int, step: int) -> Save | None:
        """The save at ``(phase, step)``, or None."""
        return next((s for s in self.saves() if (s["phase"], s["step"]) == (phase, step)), None)

    def save(self, checkpoint: tf.train.Checkpoint, phase: int, step: int) -> Save:
        """Write ``checkpoint`` as the save of ``(phase, step)`` and list it in ``saves.json`` once it
        is whole (on a local disk the save folder also appears at once, by a rename); prune older saves."""
        storage.makedirs(self.dir)
        name = f"phase{phase}-step{step}"
        final = os.path.join(self.dir, name)
        listed = self.saves()
        saves = [s for s in listed if s["dir"] != name]
        if storage.is_url(self.dir):  # no rename: the folder is written in place, listed only once whole
            if len(saves) < len(listed):  # an older save of this step: unlisted before it is overwritten
                atomic_write_text(self.index_path, json.dumps(saves))
            storage.remove(final)
            checkpoint.write(os.path.join(final, "ckpt"))
        else:
            tmp = os.path.join(self.dir, f"tmp-{os.getpid()}-{name}")
            shutil.rmtree(tmp, ignore_errors=True)
            checkpoint.write(os.path.join(tmp, "ckpt"))
            _fsync_tree(tmp)
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
        entry = {"phase": phase, "step": step, "dir": name}
        saves = saves + [entry]
        saves = saves[-self.keep:]
        atomic_write_text(self.index_path, json.dumps(saves))
        self._prune({s["dir"] for s in saves})
        return entry

    def restore(self, checkpoint: tf.train.Checkpoint, save: Save) -> None:
        """Read ``save`` into ``checkpoint`` (every object it names must exist). A backup that
        TensorFlow cannot read into this run (a data-iterator state written by another input
        pipeline: another kerasnets version, or changed data options) is a ValueError that names
        the backup and how to start over, not TensorFlow's own error."""
        path = os.path.join(self.dir, save["dir"])
        try:
            checkpoint.read(os.path.join(path, "ckpt")).assert_existing_objects_matched()
        except tf.errors.OpError as error:
            lines = (error.message or str(error)).strip().splitlines() or [type(error).__name__]
            # TensorFlow's message less its op decorations ("{{function_node ...}}", "[Op:...]")
            reason = re.sub(r"\{\{.*?\}\}\s*|\s*\[Op:.*$", "", lines[0]).rstrip(". ")
            cause = (" It was written by another input pipeline (another kerasnets version, or other data "
                     "options); resume it with the version and options that wrote it, or" if "iterator" in reason.lower()
                     else " Check the backup's files, or")
            raise ValueError(f"cannot resume from the backup {path}: {reason}.{cause} start over with --no-resume "
                             "(which replaces the backups)") from error

    def _prune(self, kept: set[str]) -> None:
        for name in storage.listdir(self.dir):
            path = os.path.join(self.dir, name)
            if name not in kept and storage.isdir(path):
                storage.remove(path, ignore_errors=True)

    def clear(self) -> None:
        """Remove every backup of the run (training finished; the model is saved elsewhere)."""
        storage.remove(self.dir, ignore_errors=True)
        if storage.is_url(self.root):  # a prefix with no files left is gone by itself on object stores
            if storage.exists(self.root) and not storage.listdir(self.root):
                storage.remove(self.root, ignore_errors=True)
            return
        try:  # other workers clear their folders at the same time
            os.rmdir(self.root)  # only when empty
        except OSError:
            pass
