"""TFRecords on a filesystem URL: TensorFlow's in-memory ``ram://`` stands in for ``gs://``.

Both go through the same ``tf.io.gfile`` calls, so a split written to ``ram://`` and read back from
there must behave as the same split on local disk: same shard names, same examples, same metadata.
"""

import glob
import json
import os
import re
import uuid

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from kerasnets import data
from kerasnets.storage import absolute, atomic_write_text, is_url
from kerasnets.data.tfrecords import read_labels, record_files

CLASSES = ("ant", "bee", "cow")
PER_CLASS = 10


def _ram_folder() -> str:
    """A folder of the in-memory filesystem no other test uses (it lives as long as the process)."""
    return f"ram://kerasnets-test-{uuid.uuid4().hex}"


def _photos(root) -> None:
    """CLASSES x PER_CLASS JPEGs of 64-200 px a side, each different (gradient, class tint and noise)."""
    _photos_into(root, PER_CLASS)


def _photos_into(root, count: int, seed: int = 0) -> None:
    """``count`` JPEGs of each of CLASSES in ``root/<class>/`` (see :func:`_photos`)."""
    rng = np.random.default_rng(seed)
    for label, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for index in range(count):
            height, width = rng.integers(64, 201, size=2)
            ramp = np.linspace(0, 200, width, dtype=np.float32)[None, :, None] * np.ones((height, 1, 3), np.float32)
            ramp[..., label] += 50
            pixels = np.clip(ramp + rng.normal(0, 25, (height, width, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{index}.jpg", quality=90)


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    """One image folder written as 3 shards twice: ``(folder, local shard names, ram:// shard names)``."""
    root = tmp_path_factory.mktemp("storage")
    _photos(root / "photos")
    local = data.write_tfrecords(str(root / "photos"), str(root / "rec" / "train"), shards=3, progress=False)
    remote = data.write_tfrecords(str(root / "photos"), f"{_ram_folder()}/shards/train", shards=3, progress=False)
    return root / "photos", local, remote


def _read(pattern: str, **options):
    """Every ``(image, label)`` of a TFRecord glob in the eval pipeline's order, and its DatasetInfo."""
    ds, info = data.load(pattern, image_size=48, batch_size=64, training=False, **options)
    images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(images), np.concatenate(labels), info


def test_url_paths_are_told_from_local_ones():
    assert is_url("gs://bucket/x") and is_url("ram://x/y") and not is_url("rec/train") and not is_url("/data/x")
    assert not is_url("C://data")  # a Windows drive letter is no scheme
    assert absolute("ram://x/../y") == "ram://x/../y"  # a URL is left as it is, not made a local path
    assert absolute("rec") == os.path.join(os.getcwd(), "rec")


def test_atomic_write_text_writes_a_url_whole(tmp_path):
    path = f"{_ram_folder()}/run/summary.json"
    tf.io.gfile.makedirs(os.path.dirname(path))
    atomic_write_text(path, "first\n")
    atomic_write_text(path, "second\n")  # replaces, as a local rewrite does
    with tf.io.gfile.GFile(path) as handle:
        assert handle.read() == "second\n"
    assert tf.io.gfile.listdir(os.path.dirname(path)) == ["summary.json"]  # no temporary file left


def test_shards_written_to_ram_are_named_as_on_local_disk(splits):
    _, local, remote = splits
    assert [os.path.basename(name) for name in remote] == [os.path.basename(name) for name in local]
    folder = os.path.dirname(remote[0])
    assert sorted(tf.io.gfile.listdir(folder)) == sorted(os.listdir(os.path.dirname(local[0])))
    assert not any(name.endswith(".tmp") for name in tf.io.gfile.listdir(folder))
    assert read_labels(remote[0]) == list(CLASSES)
    with tf.io.gfile.GFile(f"{folder}/dataset.json") as handle:
        assert json.load(handle)["splits"]["train"] == {
            "examples": len(CLASSES) * PER_CLASS, "skipped": 0, "shards": 3, "files": "train-*-of-00003"}


def test_a_ram_glob_loads_the_same_examples_as_the_local_glob(splits):
    _, local, remote = splits
    local_images, local_labels, local_info = _read(os.path.join(os.path.dirname(local[0]), "train-*-of-*"))
    remote_images, remote_labels, remote_info = _read(f"{os.path.dirname(remote[0])}/train-*-of-*")
    assert remote_info.num_examples == local_info.num_examples == len(CLASSES) * PER_CLASS
    assert remote_info.extras["count_source"] == local_info.extras["count_source"] == "metadata"
    assert remote_info.class_names == local_info.class_names == CLASSES
    assert sorted(remote_labels.tolist()) == [label for label in range(len(CLASSES)) for _ in range(PER_CLASS)]
    np.testing.assert_array_equal(remote_labels, local_labels)
    np.testing.assert_array_equal(remote_images, local_images)


def test_part_of_a_ram_split_is_counted_once_then_read_from_a_ram_count_cache(splits):
    _, _, remote = splits
    part = f"{os.path.dirname(remote[0])}/train-0000[01]-of-*"  # 2 of 3 shards: dataset.json does not size it
    truth = sum(1 for name in remote[:2] for _ in tf.data.TFRecordDataset(name))
    cache = f"{_ram_folder()}/run"
    assert _read(part, count_cache=cache)[2].extras["count_source"] == "counted"
    with tf.io.gfile.GFile(f"{cache}/tfrecord_counts.json") as handle:
        assert list(json.load(handle).values())[0]["examples"] == truth
    _, labels, info = _read(part, count_cache=cache)
    assert (info.num_examples, info.extras["count_source"]) == (truth, "cache") and len(labels) == truth


def test_rewriting_a_ram_split_with_fewer_shards_removes_the_stale_ones(splits):
    photos, _, _ = splits
    folder = f"{_ram_folder()}/rec"
    for shards in (4, 2):  # as tests/test_data.py does on local disk: the split written again, with fewer shards
        data.write_tfrecords(str(photos), f"{folder}/train", shards=shards, progress=False)
    assert sorted(tf.io.gfile.listdir(folder)) == [
        "dataset.json", "train-00000-of-00002", "train-00001-of-00002", "train-labels.txt"]
    _, labels, info = _read(f"{folder}/train-*")
    # each image once (the 4 old shards left beside the new 2 would be refused as two totals)
    assert info.num_examples == len(labels) == len(CLASSES) * PER_CLASS


def test_a_ram_glob_that_matches_nothing_names_the_pattern():
    for pattern in (f"{_ram_folder()}/rec/train-*",  # a folder never written
                    "ram://kerasnets-test-nowhere/train-*"):
        with pytest.raises(ValueError, match=f"no TFRecord files match {re.escape(repr(pattern))}"):
            data.load(pattern, image_size=48, batch_size=4, training=False)


def test_a_local_glob_names_the_shards_as_glob_does(splits, monkeypatch):
    _, local, _ = splits
    monkeypatch.chdir(os.path.dirname(local[0]))  # a bare "train-*": gfile alone would answer "./train-..."
    assert record_files("train-*") == sorted(glob.glob("train-*-of-*")) == [os.path.basename(n) for n in local]


def test_shards_copied_to_a_url_without_dataset_json_take_their_class_names_from_the_labels_file(splits):
    """A user's ``gsutil cp rec/train-* gs://...``: the shards and train-labels.txt, no dataset.json.
    The class names come from the labels file on the URL's filesystem; a single shard named without
    a glob is a TFRecord source too; a hidden ``._`` copy beside them (macOS) is not read."""
    _, local, _ = splits
    folder = f"{_ram_folder()}/copied"
    tf.io.gfile.makedirs(folder)
    for name in local + [os.path.join(os.path.dirname(local[0]), "train-labels.txt")]:
        tf.io.gfile.copy(name, f"{folder}/{os.path.basename(name)}")
    tf.io.gfile.copy(local[0], f"{folder}/._{os.path.basename(local[0])}")
    _, labels, info = _read(f"{folder}/*-of-*")
    assert info.class_names == CLASSES and len(labels) == len(CLASSES) * PER_CLASS  # the ._ copy not read
    _, labels, info = _read(f"{folder}/{os.path.basename(local[1])}")
    assert info.class_names == CLASSES and len(labels) == sum(1 for _ in tf.data.TFRecordDataset(local[1]))


def test_a_run_folder_on_ram_trains_from_shards_there_resumes_after_a_kill_and_exports(tmp_path, monkeypatch):
    """A whole run on ``ram://`` (TensorFlow's in-memory filesystem: the ``tf.io.gfile`` calls of
    ``gs://``): train and validation shards written there, the quickstart recipe trained from them
    into a run folder there with its default exports, interrupted (as by ``kill -9``) after its
    step-2 backup, then resumed by the same command. The resumed run ends with the weights of an
    uninterrupted run on local disk, and its summary, history, SavedModel and TFLite files are on
    ``ram://``, readable from there; its backups are gone.
    Overrides, each for time: 2 epochs of 3 steps (the resume crosses an epoch boundary); a backup
    every 2 steps (one inside the interrupted epoch); the local run exports only model.keras (only
    its weights are compared); --deterministic: bit-for-bit comparable runs."""
    from kerasnets import cli
    from kerasnets.training import loop
    from tensorflow.python.framework import config as tf_config

    from test_trainer import _interrupted_then_resumed

    photos = tmp_path / "photos"
    for seed, (split, count) in enumerate((("train", 12), ("val", 4))):  # other seeds: other images
        _photos_into(photos / split, count, seed)
    shards = f"{_ram_folder()}/shards"
    for split in ("train", "validation"):
        data.write_tfrecords(str(photos), f"{shards}/{split}", shards=2, split=split, progress=False)
    recipe = os.path.join(os.path.dirname(__file__), "..", "recipes", "quickstart.py")
    common = ["train", recipe, "--data", f"{shards}/train-*", "--eval-data", f"{shards}/validation-*",
              "--epochs", "2", "--steps-per-epoch", "3", "--backup-every-steps", "2", "--deterministic"]
    remote = f"{_ram_folder()}/runs"
    try:
        assert cli.main(common + ["--output", str(tmp_path / "local"), "--name", "whole", "--export", "keras"]) == 0
        _interrupted_then_resumed(common + ["--output", remote, "--name", "run"], monkeypatch, loop, cli, at_call=4)
    finally:  # --deterministic turned op determinism on for this process: not for the tests after this one
        tf_config.disable_op_determinism()
    run = f"{remote}/run"
    summary = json.loads(tf.io.gfile.GFile(f"{run}/summary.json").read())
    assert (summary["resumed_from_step"], summary["steps_run"], summary["eval_examples"]) == (2, 4, 12)
    assert len(tf.io.gfile.GFile(f"{run}/history.csv").read().strip().splitlines()) == 3  # header, 2 epochs
    assert not tf.io.gfile.exists(f"{run}/backup")
    names = {name.rstrip("/") for name in tf.io.gfile.listdir(run)}
    assert {"summary.json", "model.keras", "saved_model", "curves.png", "metadata.json", "logs"} <= names, names
    assert not any(".tmp" in name for name in names), names
    tflite = [name for name in names if name.endswith(".tflite")]
    assert tflite and all(tf.io.gfile.stat(f"{run}/{name}").length > 10_000 for name in tflite)
    served = tf.saved_model.load(f"{run}/saved_model").signatures["serving_default"]
    probabilities = next(iter(served(tf.zeros([1, 32, 32, 3])).values())).numpy()
    assert probabilities.shape == (1, len(CLASSES)) and abs(probabilities.sum() - 1) < 1e-4
    whole = keras.saving.load_model(tmp_path / "local" / "whole" / "model.keras", compile=False)
    local_copy = tmp_path / "resumed.keras"
    tf.io.gfile.copy(f"{run}/model.keras", str(local_copy))
    resumed = keras.saving.load_model(local_copy, compile=False)
    for a, b in zip(whole.weights, resumed.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)


def test_backups_on_ram_are_read_only_once_saves_json_lists_them(monkeypatch):
    """Object stores have no rename, so a backup on a URL is written in place and saves.json, written
    after it, is the pointer: a save killed before its entry is written is never read (the one
    before is resumed), the next save of that step replaces it, and only the last two are kept."""
    from kerasnets.training import backup as backup_module
    from kerasnets.training.backup import RunBackup

    run = f"{_ram_folder()}/run"
    value = tf.Variable(0.0)
    checkpoint = tf.train.Checkpoint(value=value)
    saves = RunBackup(run)
    for step in (1, 2):
        value.assign(float(step))
        saves.save(checkpoint, 0, step)

    class Killed(BaseException):
        pass

    def killed(path, text):
        raise Killed()

    value.assign(3.0)
    with monkeypatch.context() as patch:
        patch.setattr(backup_module, "atomic_write_text", killed)
        with pytest.raises(Killed):
            saves.save(checkpoint, 0, 3)
    assert tf.io.gfile.exists(f"{run}/backup/task-0/phase0-step3/ckpt.index")  # written whole, not listed
    assert saves.latest()["step"] == 2
    value.assign(-1.0)
    saves.restore(checkpoint, saves.latest())
    assert float(value.numpy()) == 2.0
    value.assign(4.0)
    saves.save(checkpoint, 0, 3)
    assert [s["step"] for s in saves.saves()] == [2, 3]
    assert sorted(n.rstrip("/") for n in tf.io.gfile.listdir(f"{run}/backup/task-0")) == [
        "phase0-step2", "phase0-step3", "saves.json"]
    saves.restore(checkpoint, saves.latest())
    assert float(value.numpy()) == 4.0
    saves.clear()
    assert not tf.io.gfile.exists(f"{run}/backup")


def test_clearing_a_run_folder_that_another_worker_clears_at_the_same_time_removes_everything(tmp_path, monkeypatch):
    """Every worker of a multi-worker run clears the earlier run's outputs at once: a file another
    worker removed first (FileNotFoundError inside the tree) is skipped, and the rest still goes."""
    from kerasnets.training.finalize import clear_finished_run

    logs = tmp_path / "run" / "logs"
    logs.mkdir(parents=True)
    for name in "abcdef":
        (logs / name).write_text(name)
    (tmp_path / "run" / "summary.json").write_text("{}")
    real_unlink = os.unlink

    def raced(path, *args, **kwargs):
        real_unlink(path, *args, **kwargs)
        if os.fspath(path).endswith("b"):  # the other worker was first: this one finds it gone
            raise FileNotFoundError(path)

    monkeypatch.setattr(os, "unlink", raced)
    removed = clear_finished_run(str(tmp_path / "run"))
    assert not logs.exists() and not (tmp_path / "run" / "summary.json").exists()
    assert str(logs) in removed
