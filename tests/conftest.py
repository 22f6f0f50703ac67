"""Shared test setup: quiet TensorFlow, fixed seeds, and small helpers."""

import json
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Each test starts with a clean Keras session and float32 policy."""
    keras.backend.clear_session()
    keras.config.set_dtype_policy("float32")
    keras.utils.set_random_seed(0)
    yield
    keras.config.set_dtype_policy("float32")


@pytest.fixture
def images():
    """Two random RGB images in 0..255 at 224x224."""
    return np.random.RandomState(0).uniform(0, 255, (2, 224, 224, 3)).astype("float32")


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = os.path.join(ROOT, "recipes")
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}


def kerasnets_cmd(*args):
    """The ``kerasnets`` console command, run with this interpreter."""
    return [sys.executable, "-m", "kerasnets.cli", *args]


@pytest.fixture(scope="session")
def quickstart(tmp_path_factory):
    """The README's main job, run once for the whole session: train, evaluate, export."""
    output = tmp_path_factory.mktemp("quickstart")
    started = time.time()
    proc = subprocess.run(kerasnets_cmd("train", os.path.join(RECIPES, "quickstart.py"), "--output", str(output)),
                          env=ENV, capture_output=True, text=True, cwd=ROOT, timeout=900)
    wall = time.time() - started
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((output / "quickstart" / "summary.json").read_text())
    return {"dir": output / "quickstart", "summary": summary, "stdout": proc.stdout, "wall": wall}
