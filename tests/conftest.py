"""Shared test setup: quiet TensorFlow, fixed seeds, and small helpers."""

import fcntl
import json
import os
import runpy
import subprocess
import sys
import threading
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
#: the quickstart recipe's phi (the model its tests rebuild)
QUICKSTART_PHI = runpy.run_path(os.path.join(RECIPES, "quickstart.py"))["PHI"]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}


def kerasnets_cmd(*args):
    """The ``kerasnets`` console command, run with this interpreter."""
    return [sys.executable, "-m", "kerasnets.cli", *args]


def _shared_dir(tmp_path_factory):
    """A folder every pytest-xdist worker of this session sees (the session's own base folder when
    there are no workers; never a folder another session could have left behind)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def quickstart(tmp_path_factory):
    """The README's main job, run once for the whole session (the first worker to need it trains;
    the others wait on the lock and read its result): train, evaluate, export."""
    shared = _shared_dir(tmp_path_factory)
    output, result = shared / "quickstart_run", shared / "quickstart_run.json"
    with open(shared / "quickstart_run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not result.exists():  # one attempt per session, whatever its outcome: every worker reads it
            started = time.time()
            # stdout read line by line: the time of its last line (the printed summary, written after
            # the timings stop) is when the run's work ended, apart from the interpreter's exit
            with open(shared / "quickstart_run.stderr", "w+") as stderr:
                proc = subprocess.Popen(kerasnets_cmd("train", os.path.join(RECIPES, "quickstart.py"), "--output",
                                                      str(output)),
                                        env=ENV, stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=ROOT)
                timer = threading.Timer(900, proc.kill)  # a hung run ends (its stdout closes) after 900 s
                timer.start()
                lines, last_output = [], None
                try:
                    for line in proc.stdout:
                        lines.append(line)
                        last_output = time.time() - started
                finally:
                    timer.cancel()
                returncode = proc.wait()
                stderr.seek(0)
                errors = stderr.read() + ("\nkilled after 900 s" if returncode == -9 else "")
            result.write_text(json.dumps({"returncode": returncode, "stdout": "".join(lines), "stderr": errors[-3000:],
                                          "wall": time.time() - started, "last_output": last_output}))
    ran = json.loads(result.read_text())
    assert ran["returncode"] == 0, ran["stderr"]
    summary = json.loads((output / "quickstart" / "summary.json").read_text())
    return {"dir": output / "quickstart", "summary": summary, "stdout": ran["stdout"], "wall": ran["wall"],
            "last_output": ran["last_output"]}


def _save_photo_crops(folder, photo, count, rng, gray_every=0):
    """``count`` random crops (120-300 px, random aspect) of ``photo`` as JPEG files in ``folder``."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    height, width = photo.shape[:2]
    for index in range(count):
        h, w = rng.randint(120, min(300, height)), rng.randint(120, min(300, width))
        y, x = rng.randint(0, height - h), rng.randint(0, width - w)
        image = Image.fromarray(photo[y:y + h, x:x + w])
        if gray_every and index % gray_every == 0:
            image = image.convert("L")  # grayscale photos occur in every real folder
        image.save(folder / f"{index:03d}.jpg", quality=90)


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory):
    """A folder of real photographs laid out as downloaded datasets are: ``train/``, ``val/``, ``test/``
    with class subfolders whose names contain spaces. The classes are crops of scikit-learn's two
    sample photographs ("china palace" and "garden flower"); train also holds a CMYK JPEG, an RGBA
    PNG, an empty file and a truncated JPEG, as real folders do."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    china, flower = load_sample_images().images
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.RandomState(0)
    for split, count in (("train", 24), ("val", 6), ("test", 10)):
        for name, photo in (("china palace", china), ("garden flower", flower)):
            _save_photo_crops(root / split / name, photo, count, rng, gray_every=7)
    Image.fromarray(flower[:200, :200]).convert("CMYK").save(root / "train" / "garden flower" / "cmyk.jpg")
    rgba = np.concatenate([china[:150, :150], np.full((150, 150, 1), 200, np.uint8)], -1)
    Image.fromarray(rgba).save(root / "train" / "china palace" / "rgba.png")
    (root / "train" / "china palace" / "empty.jpg").write_bytes(b"")
    whole = (root / "train" / "garden flower" / "000.jpg").read_bytes()
    (root / "train" / "garden flower" / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    return root


def digits_folder(root, classes, per_class_train=None, seed=0):
    """scikit-learn digits of ``classes`` as 32x32 PNG files in ``root/train/<d>/`` and ``root/test/<d>/``
    (the fixed digits test split); ``per_class_train`` images per class in train (default: all)."""
    from PIL import Image

    from kerasnets.data import digits_arrays

    rng = np.random.RandomState(seed)
    for split in ("train", "test"):
        images, labels = digits_arrays(split)
        for digit in classes:
            picks = np.flatnonzero(labels == digit)
            if split == "train" and per_class_train is not None:
                picks = rng.choice(picks, per_class_train, replace=False)
            folder = root / split / str(digit)
            folder.mkdir(parents=True, exist_ok=True)
            for index in picks:
                big = np.kron(images[index][..., 0], np.ones((4, 4), np.uint8))
                Image.fromarray(big).save(folder / f"{index:04d}.png")
    return root
