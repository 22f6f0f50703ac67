"""Mixed precision: pick the policy for the hardware, and apply it only while a model is built."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import keras
import tensorflow as tf

__all__ = ["PRECISIONS", "resolve_precision", "precision_scope"]

PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")


def resolve_precision(precision: str = "auto", strategy: tf.distribute.Strategy | None = None) -> str:
    """The dtype policy name for ``precision``.

    "auto": mixed_bfloat16 on TPU; on NVIDIA GPUs mixed_float16 from compute capability 7.0 (tensor
    cores; float16 with loss scaling is the fastest there and is what NVIDIA's reference numbers
    use), float32 below 7.0; float32 on CPU (bfloat16 slows EfficientNet-B0 training on CPU).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    if strategy is not None and isinstance(strategy, tf.distribute.TPUStrategy):
        return "mixed_bfloat16"
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        major, _ = details.get("compute_capability", (0, 0))
        return "mixed_float16" if major >= 7 else "float32"
    return "float32"


@contextlib.contextmanager
def precision_scope(policy: str) -> Iterator[None]:
    """Set Keras' dtype policy while building a model, then restore the previous one.

    Layers keep the policy they were built with, so the model is mixed precision without leaving
    global state behind. The classifier is built float32 by kerasnets' head; Keras wraps the
    optimizer in a LossScaleOptimizer for mixed_float16 when the model is compiled.
    """
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
