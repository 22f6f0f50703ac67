"""Mixed precision: pick the policy for the hardware, and apply it only while a model is built."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import keras
import tensorflow as tf

__all__ = ["PRECISIONS", "FAMILIES", "CPU_BF16_SPEEDUP", "cpu_has_bf16", "resolve_precision", "precision_scope",
           "model_precision", "check_model_precision"]

PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
FAMILIES = ("efficientnet", "resnet")

#: Training images/s of mixed_bfloat16 over float32 on a CPU with native bfloat16 (AVX-512 BF16),
#: per family, measured by ``benchmarks/bench_train.py`` (2 cores, batch 16, 224 px, kerasnets'
#: models; the README has the table). "auto" picks mixed_bfloat16 on such a CPU where this is
#: above 1.05: bfloat16 convolutions pay on ResNet's dense 3x3 and 1x1 convolutions, while
#: EfficientNet's depthwise convolutions and squeeze-excite have no fast bfloat16 kernels and
#: lose to the casts.
CPU_BF16_SPEEDUP = {"resnet": 1.80, "efficientnet": 0.78}


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (``avx512_bf16`` or ``amx_bf16`` in /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo") as handle:
            flags = set(handle.read().split())
    except OSError:
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def resolve_precision(precision: str = "auto", strategy: tf.distribute.Strategy | None = None,
                      family: str | None = None) -> str:
    """The dtype policy name for ``precision``.

    "auto": mixed_bfloat16 on TPU; on NVIDIA GPUs mixed_float16 from compute capability 7.0 (tensor
    cores; float16 with loss scaling is the fastest there and is what NVIDIA's reference numbers
    use), float32 below 7.0; on CPU, mixed_bfloat16 for a ``family`` ("resnet", "efficientnet")
    that :data:`CPU_BF16_SPEEDUP` measured faster in bfloat16 when the CPU has native bfloat16,
    float32 otherwise (an unknown family too).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if family is not None and family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES} or None, got {family!r}")
    if precision != "auto":
        return precision
    if strategy is not None and isinstance(strategy, tf.distribute.TPUStrategy):
        return "mixed_bfloat16"
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        major, _ = details.get("compute_capability", (0, 0))
        return "mixed_float16" if major >= 7 else "float32"
    if family is not None and CPU_BF16_SPEEDUP[family] > 1.05 and cpu_has_bf16():
        return "mixed_bfloat16"
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


def model_precision(model: keras.Model) -> str:
    """The dtype policy ``model`` really computes in: the policy of its weighted layers, layers kept
    float32 aside when the others are mixed (mixed-precision models keep the classifier float32).
    Layers of several 16-bit policies give a description such as ``"mixed_float16+float16"``."""
    from kerasnets.models.weights import leaf_layers

    names = {layer.dtype_policy.name for layer in leaf_layers(model)
             if layer.weights and getattr(layer, "dtype_policy", None) is not None}
    mixed = names - {"float32"}
    if not mixed:
        return "float32"
    return "+".join(sorted(mixed))


def check_model_precision(model: keras.Model, policy: str) -> None:
    """Raise ValueError unless ``model`` computes in ``policy`` (:func:`model_precision`).

    A model whose layers keep another policy (a ``.keras`` file saved under mixed_float16 rebuilt
    from its config on a float32 CPU run) would train in 16 bits without the loss scaling that
    mixed_float16 needs, while the run reports ``policy``."""
    computed = model_precision(model)
    if computed != policy:
        raise ValueError(f"the model {model.name!r} computes in {computed} but the run's precision is {policy}: build "
                         "it inside the run's precision (the engine builds recipes' models under "
                         f"precision_scope(policy); do not set dtype on layers), or pass --precision {computed} if "
                         f"that is one of {PRECISIONS[1:]}")
