"""Callbacks of the training engine: step-level resumable backups and a NaN stop with a message."""

from __future__ import annotations

import json
import math
import os
import re
import shutil

import keras

from kerasnets.atomic import atomic_write_text

__all__ = ["StepBackup", "NaNGuard", "TrainingDiverged", "atomic_write_text"]


_PHASE_FILE = re.compile(r"phase(\d+)\.weights\.h5|state\.weights\.h5")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; training was stopped."""


class StepBackup(keras.callbacks.Callback):
    """Save the whole training state (weights + optimizer) every ``every_steps`` steps and each epoch.

    Each save is atomic: written to a temporary file, then renamed over ``state.weights.h5``
    (``phase<N>.weights.h5`` for the later phases of a multi-phase run: each phase has its own
    optimizer). The optimizer's
    ``iterations`` inside that file is the phase's step to resume from, so a run killed at any
    moment (even ``kill -9`` mid-write) resumes from its last complete backup and the engine runs
    exactly the remaining steps. ``state.json`` repeats phase and step for people and tools.
    """

    def __init__(self, backup_dir: str, every_steps: int = 0, keep: bool = False):
        super().__init__()
        self.backup_dir = backup_dir
        self.every_steps = every_steps
        self.keep = keep
        self.phase = 0

    @property
    def path(self) -> str:
        """The backup file of the current phase."""
        name = "state.weights.h5" if self.phase == 0 else f"phase{self.phase}.weights.h5"
        return os.path.join(self.backup_dir, name)

    def latest_phase(self) -> int:
        """The highest phase with a complete backup (0 when there is none)."""
        if not os.path.isdir(self.backup_dir):
            return 0
        phases = [int(m.group(1) or 0) for m in map(_PHASE_FILE.fullmatch, os.listdir(self.backup_dir)) if m]
        return max(phases, default=0)

    def restore(self, model: keras.Model) -> int:
        """Load the current phase's backup into ``model`` (building the optimizer first); return its step."""
        if not os.path.exists(self.path):
            return 0
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        model.load_weights(self.path)
        return int(model.optimizer.iterations.numpy())

    def save(self) -> None:
        """Write the backup atomically (fsynced model and optimizer variables, then the step as JSON);
        earlier phases' backups and stale temporary files are removed once it is in place."""
        os.makedirs(self.backup_dir, exist_ok=True)
        tmp = os.path.join(self.backup_dir, f"tmp-{os.getpid()}.weights.h5")
        self.model.save_weights(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        for name in os.listdir(self.backup_dir):
            match = _PHASE_FILE.fullmatch(name)
            if (match and int(match.group(1) or 0) < self.phase) or name.startswith("tmp-"):
                os.remove(os.path.join(self.backup_dir, name))
        step = int(self.model.optimizer.iterations.numpy())
        atomic_write_text(os.path.join(self.backup_dir, "state.json"), json.dumps({"phase": self.phase, "step": step}))

    def on_train_batch_end(self, batch, logs=None):
        """Back up every ``every_steps`` steps of the phase, unless the loss just went bad."""
        if self.every_steps and not self.model.stop_training:
            step = int(self.model.optimizer.iterations.numpy())
            if step % self.every_steps == 0:
                self.save()

    def on_epoch_end(self, epoch, logs=None):
        """Back up at every epoch boundary."""
        if not self.model.stop_training:
            self.save()

    def clear(self) -> None:
        """Remove the backup once training finished (the final model is saved elsewhere)."""
        if not self.keep and os.path.isdir(self.backup_dir):
            shutil.rmtree(self.backup_dir)


class NaNGuard(keras.callbacks.Callback):
    """Stop at the first non-finite loss and remember where, so the engine can explain it."""

    def __init__(self):
        super().__init__()
        self.bad_step: int | None = None
        self.bad_value: float | None = None

    def on_train_batch_end(self, batch, logs=None):
        """Check the batch loss."""
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.bad_step = int(self.model.optimizer.iterations.numpy())
            self.bad_value = float(loss)
            self.model.stop_training = True
