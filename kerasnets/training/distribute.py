"""Distribution strategies, chosen automatically, and the global batch / learning-rate arithmetic."""

from __future__ import annotations

import json
import logging
import os

import tensorflow as tf

__all__ = ["STRATEGIES", "resolve_strategy", "global_batch_size", "tf_config_workers", "is_chief", "per_host_stream"]

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


def per_host_stream(strategy: tf.distribute.Strategy, load: dict, global_batch: int, skip_steps: int = 0):
    """An iterator over a training stream as ``tf.distribute`` feeds replicas from per-host input
    pipelines (``strategy.distribute_datasets_from_function``): each pipeline, one per host (its
    ``InputContext``), runs ``kerasnets.data.load(**load)`` in per-replica batches, on its share of
    the data when there are several, and starts ``skip_steps`` steps in (a step takes one batch per
    local replica). The strategy places each batch on its replica's device (prefetched there).

    TensorFlow 2.21's distributed iterator cannot be saved (``tf.train.Checkpoint`` refuses it with
    "expecting it to be a trackable object"), so a resumed run replays to its step: the TPU path.
    The trainer's other runs keep a host iterator, which their backups hold, and split its batches
    over the local replicas in the step (``StepFunctions``)."""
    from kerasnets import data as kdata

    def per_host(context: tf.distribute.InputContext) -> tf.data.Dataset:
        args = {key: value for key, value in load.items() if key != "shard"}
        args["batch_size"] = context.get_per_replica_batch_size(global_batch)
        if context.num_input_pipelines > 1:
            args["shard"] = (context.num_input_pipelines, context.input_pipeline_id)
        local_replicas = context.num_replicas_in_sync // context.num_input_pipelines
        return kdata.load(**args)[0].skip(skip_steps * local_replicas)

    return iter(strategy.distribute_datasets_from_function(per_host))
