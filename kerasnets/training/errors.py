"""Errors of the training loop."""

from __future__ import annotations

__all__ = ["TrainingDiverged"]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; training was stopped."""
