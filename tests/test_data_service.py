"""The tf.data service on 127.0.0.1: ``kerasnets data-service`` dispatcher and 2 workers (processes
started by the CLI, as a user starts them), a kerasnets pipeline run on them."""

import os
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from kerasnets import data
from kerasnets.data import service

from conftest import ENV  # noqa: E402

CLI = [sys.executable, "-c", "import sys; from kerasnets.cli import main; sys.exit(main())", "data-service"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start(args):
    """A server process of the CLI, once it printed its ready line (it serves from then on)."""
    process = subprocess.Popen(CLI + args, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               start_new_session=True)
    line = process.stdout.readline()
    assert line.startswith("ready:"), (args, line, process.poll())
    return process


@pytest.fixture(scope="module")
def servers():
    """A dispatcher and 2 workers on 127.0.0.1; ``HOST:PORT`` of the dispatcher."""
    port = _free_port()
    started = []
    try:
        started.append(_start(["dispatcher", "--port", str(port)]))
        for _ in range(2):
            started.append(_start(["worker", "--dispatcher", f"127.0.0.1:{port}", "--worker-address", "127.0.0.1"]))
        yield f"127.0.0.1:{port}"
    finally:
        for process in started:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_one_pass_of_a_folder_through_two_workers_delivers_every_image_once(servers, tmp_path):
    """Each of 3 x 20 PNGs is one flat colour that encodes its index (the eval crop keeps a flat
    colour exactly); one pass of the eval pipeline through the service yields every index once,
    with its own label."""
    root = tmp_path / "images"
    labels = {}
    for index in range(60):
        name = f"class{index % 3}"
        (root / name).mkdir(parents=True, exist_ok=True)
        colour = np.array([index % 256, index // 256, 7], np.uint8)
        Image.fromarray(np.tile(colour, (40, 50, 1))).save(root / name / f"{index:03d}.png")
        labels[index] = index % 3
    ds, info = data.load(str(root), "all", 16, 4, training=False)
    seen = []
    for images, batch_labels in service.distribute(ds, servers).as_numpy_iterator():
        for image, label in zip(images, batch_labels):
            index = int(round(image[0, 0, 0])) + 256 * int(round(image[0, 0, 1]))
            assert label == labels[index], index
            seen.append(index)
    assert sorted(seen) == list(range(60))


def test_an_address_where_no_dispatcher_listens_is_refused_at_once():
    port = _free_port()  # nothing listens there now
    with pytest.raises(ValueError, match=f"no tf.data service dispatcher answers at 127.0.0.1:{port}.*kerasnets "
                                         f"data-service dispatcher --port {port}"):
        service.check_dispatcher(f"127.0.0.1:{port}", timeout=2)
    for bad in ("nowhere", "grpc://host", "http://host:80"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            service.check_dispatcher(bad)
