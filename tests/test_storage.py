"""TFRecords on a filesystem URL: TensorFlow's in-memory ``ram://`` stands in for ``gs://``.

Both go through the same ``tf.io.gfile`` calls, so a split written to ``ram://`` and read back from
there must behave as the same split on local disk: same shard names, same examples, same metadata.
"""

import glob
import json
import os
import re
import uuid

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from kerasnets import data
from kerasnets.atomic import absolute, atomic_write_text, is_url
from kerasnets.data.tfrecords import read_labels, record_files

CLASSES = ("ant", "bee", "cow")
PER_CLASS = 10


def _ram_folder() -> str:
    """A folder of the in-memory filesystem no other test uses (it lives as long as the process)."""
    return f"ram://kerasnets-test-{uuid.uuid4().hex}"


def _photos(root) -> None:
    """CLASSES x PER_CLASS JPEGs of 64-200 px a side, each different (gradient, class tint and noise)."""
    rng = np.random.default_rng(0)
    for label, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for index in range(PER_CLASS):
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
