"""Distribution strategies, chosen automatically, and the global batch / learning-rate arithmetic."""

from __future__ import annotations

import json
import logging
import os

import tensorflow as tf

__all__ = ["STRATEGIES", "resolve_strategy", "global_batch_size", "tf_config_workers", "is_chief"]

log = logging.getLogger("kerasnets.training")
STRATEGIES = ("auto", "default", "mirrored", "multiworker", "tpu")


def tf_config_workers() -> int:
    """Number of workers listed in ``TF_CONFIG`` (0 when unset)."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return 0
    try:
        cluster = json.loads(raw).get("cluster", {})
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON: {error}") from None
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def is_chief() -> bool:
    """True on the single worker that writes checkpoints, logs and exports."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return True
    task = json.loads(raw).get("task", {})
    cluster = json.loads(raw).get("cluster", {})
    if "chief" in cluster:
        return task.get("type") == "chief"
    return task.get("type") == "worker" and int(task.get("index", 0)) == 0


def _find_tpu():
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return resolver
    except (ValueError, tf.errors.NotFoundError, RuntimeError):
        return None


def resolve_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """A ``tf.distribute`` strategy by name.

    "auto": TPUStrategy when a TPU is found; MultiWorkerMirroredStrategy when TF_CONFIG lists more
    than one worker; MirroredStrategy with more than one GPU; else the default strategy.
    """
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {name!r}")
    if name == "auto":
        if os.environ.get("TPU_NAME") or os.path.exists("/dev/accel0"):
            resolver = _find_tpu()
            if resolver is not None:
                return tf.distribute.TPUStrategy(resolver)
        if tf_config_workers() > 1:
            return tf.distribute.MultiWorkerMirroredStrategy()
        if len(tf.config.list_logical_devices("GPU")) > 1:
            return tf.distribute.MirroredStrategy()
        return tf.distribute.get_strategy()
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    resolver = _find_tpu()
    if resolver is None:
        raise ValueError("strategy='tpu' but no TPU was found (set TPU_NAME or run on a TPU VM)")
    return tf.distribute.TPUStrategy(resolver)


def global_batch_size(per_replica: int, strategy: tf.distribute.Strategy) -> int:
    """Per-replica batch x replicas in sync (the batch the dataset must yield)."""
    if per_replica < 1:
        raise ValueError(f"batch size must be >= 1, got {per_replica}")
    return per_replica * strategy.num_replicas_in_sync


def check_divisible(global_batch: int, strategy: tf.distribute.Strategy) -> None:
    """A global batch must split evenly over the replicas."""
    replicas = strategy.num_replicas_in_sync
    if global_batch % replicas:
        raise ValueError(
            f"global batch {global_batch} is not divisible by the {replicas} replicas; "
            f"use a multiple of {replicas} (recipes give the per-replica batch)"
        )
