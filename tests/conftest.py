"""Shared test setup: quiet TensorFlow, fixed seeds, and small helpers."""

import os

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
