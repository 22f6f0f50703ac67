"""Input on TensorFlow's tf.data service: its dispatcher and worker servers, and a pipeline run on them.

``kerasnets data-service dispatcher --port P [--work-dir DIR]`` and ``kerasnets data-service worker
--dispatcher HOST:P`` start TensorFlow's own servers (``tf.data.experimental.service``); nothing here
reimplements them. :func:`distribute` runs a ``kerasnets.data.load`` pipeline's read, decode and
transforms on the workers with dynamic sharding (``ShardingPolicy.DYNAMIC``): the dispatcher hands
out the pipeline's source elements (a folder's file paths, a TFRecord split's files) one at a time,
so one pass of a finite pipeline (``repeat=False``) delivers each example exactly once however
many workers serve it (tested on 127.0.0.1 with 2 worker processes).

Measured on TF 2.21 (2 shared cores, 127.0.0.1): a server starts in about 5 s (TensorFlow's
import; the constructor itself takes milliseconds); a worker's constructor returns once it has
registered with its dispatcher; a client pointed at an address where nothing listens waits
forever without an error, so :func:`distribute` first checks that the dispatcher answers. A
worker killed mid-pass loses the examples it had taken (visitation is at most once): an endless
stream goes on with the other workers; one finite pass waits for it to come back. A dispatcher
with a ``work_dir`` (fault-tolerant mode) restarted on the same port and folder resumes its jobs.

Not yet done (issue #22): the trainer's endless training stream on the service. It needs a source
whose splits are chunks of each epoch and per-example random seeds keyed by the example, not by
the worker's position, and backups without the data iterator (a service iterator cannot be saved:
``UnimplementedError`` from ``SerializeIterator``).
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import tensorflow as tf

__all__ = ["start_dispatcher", "start_worker", "check_dispatcher", "distribute"]


def _host_port(address: str) -> tuple[str, int]:
    """``("host", port)`` of ``HOST:PORT`` or ``grpc://HOST:PORT``; ValueError naming the form otherwise."""
    parts = urlsplit(address if "://" in address else f"grpc://{address}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "grpc" or not parts.hostname or port is None:
        raise ValueError(f"a tf.data service address is HOST:PORT (or grpc://HOST:PORT), got {address!r}")
    return parts.hostname, port


def start_dispatcher(port: int, work_dir: str | None = None) -> tf.data.experimental.service.DispatchServer:
    """TensorFlow's dispatcher, serving on ``port`` once this returns. With ``work_dir`` (any
    filesystem TensorFlow writes, gs:// too) it is fault-tolerant: restarted on the same port and
    folder it resumes its jobs."""
    config = tf.data.experimental.service.DispatcherConfig(port=port, work_dir=work_dir,
                                                           fault_tolerant_mode=work_dir is not None)
    return tf.data.experimental.service.DispatchServer(config)


def start_worker(dispatcher: str, port: int = 0, host: str = "localhost") -> tf.data.experimental.service.WorkerServer:
    """TensorFlow's worker, registered with ``dispatcher`` (HOST:PORT) once this returns; it serves
    on ``port`` (0: any free one) and tells the dispatcher to reach it at ``host`` (the name other
    machines use for this one, when the dispatcher and the trainers run elsewhere)."""
    host_name, dispatcher_port = _host_port(dispatcher)
    config = tf.data.experimental.service.WorkerConfig(dispatcher_address=f"{host_name}:{dispatcher_port}",
                                                       worker_address=f"{host}:%port%", port=port)
    return tf.data.experimental.service.WorkerServer(config)


def check_dispatcher(address: str, timeout: float = 10.0) -> str:
    """``grpc://HOST:PORT`` of ``address`` once something accepts connections there; ValueError
    naming the address and how to start a dispatcher otherwise (a tf.data service client would
    wait for it forever, without a word)."""
    host, port = _host_port(address)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as error:
        raise ValueError(f"no tf.data service dispatcher answers at {host}:{port} ({error}); start one with "
                         f"`kerasnets data-service dispatcher --port {port}` and workers with `kerasnets "
                         f"data-service worker --dispatcher {host}:{port}`") from None
    return f"grpc://{host}:{port}"


def distribute(dataset: tf.data.Dataset, address: str, job_name: str | None = None) -> tf.data.Dataset:
    """``dataset`` produced by the tf.data service at ``address`` (HOST:PORT), dynamically sharded:
    each source element (file path, TFRecord file) goes to one worker, so one pass of a finite
    ``dataset`` yields each example once; its order is the workers' (not deterministic).
    ``job_name``: consumers that give the same name share one job (each example to one of them)."""
    return dataset.apply(tf.data.experimental.service.distribute(
        processing_mode=tf.data.experimental.service.ShardingPolicy.DYNAMIC, service=check_dispatcher(address),
        job_name=job_name))
