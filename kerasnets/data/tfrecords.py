"""ImageNet-layout TFRecords (Model Garden / TPU reference keys): reading and parallel writing."""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor

import tensorflow as tf

from kerasnets.data.files import folder_layout, scan_folder

__all__ = ["FEATURES", "parse_example", "check_tfrecords", "write_tfrecords"]

#: The keys the ImageNet converters of Model Garden and tensorflow/tpu write.
FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/class/label": tf.io.FixedLenFeature([], tf.int64),
}


def parse_example(record: tf.Tensor, label_offset: int = 0):
    """``serialized tf.train.Example -> (encoded image bytes, int64 label + label_offset)``."""
    parsed = tf.io.parse_single_example(record, FEATURES)
    return parsed["image/encoded"], parsed["image/class/label"] + label_offset


def check_tfrecords(files: list[str], num_classes: int | None, label_offset: int, probe: int = 64) -> None:
    """Read the first records of the first shard; raise ValueError on missing keys or bad labels."""
    for index, record in enumerate(tf.data.TFRecordDataset(files[:1]).take(probe)):
        example = tf.train.Example.FromString(record.numpy())
        keys = set(example.features.feature)
        missing = sorted(set(FEATURES) - keys)
        if missing:
            raise ValueError(
                f"TFRecord {files[0]!r} record {index} lacks keys {missing} (has {sorted(keys)}); "
                f"kerasnets reads the ImageNet layout {sorted(FEATURES)}; convert with kerasnets.data.write_tfrecords"
            )
        label = example.features.feature["image/class/label"].int64_list.value[0] + label_offset
        if label < 0 or (num_classes is not None and label >= num_classes):
            raise ValueError(
                f"TFRecord {files[0]!r} record {index} has label {label} (after label_offset={label_offset}) "
                f"outside 0..{(num_classes or 1) - 1}; 1-based ImageNet shards need label_offset=-1"
            )


def _example(path: str, label: int) -> bytes:
    with open(path, "rb") as handle:
        encoded = handle.read()
    feature = {
        "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded])),
        "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
        "image/filename": tf.train.Feature(bytes_list=tf.train.BytesList(value=[os.path.basename(path).encode()])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_tfrecords(
    folder: str, out: str, shards: int = 8, workers: int | None = None, progress: bool = True, split: str | None = None
) -> list[str]:
    """Convert an image folder to ``shards`` TFRecord files, in parallel.

    ``folder`` is ``root/<class>/<images>``, or a split layout ``root/train|val|test/<class>/<images>``
    with ``split`` naming the split folder to write ("train", "validation"/"val", "test", or "all").
    Labels index the class list of the whole folder (for a split layout, the union over its split
    folders), so shards written split by split agree on labels. Shards are named
    ``{out}-00000-of-00008`` and written atomically (a ``.tmp`` file renamed when complete);
    ``{out}-labels.txt`` lists the class names. Unreadable images are skipped (and counted in the
    warning). Returns the shard paths.
    """
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    layout = folder_layout(folder)
    if layout.split_dirs and split is None:
        raise ValueError(f"image folder {folder!r} has split folders {sorted(layout.split_dirs)}; pass split='train' "
                         f"(one call per split, same labels) or split='all'")
    if not layout.split_dirs and split not in (None, "all"):
        raise ValueError(f"split={split!r} needs a root/train|val|test/<class>/ folder; {folder!r} is "
                         f"root/<class>/: drop split")
    found = scan_folder(folder, split or "all")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    items = list(zip(found.paths, found.labels))
    names = [f"{out}-{i:05d}-of-{shards:05d}" for i in range(shards)]
    done = [0]

    def write_shard(index: int) -> str:
        tmp = names[index] + ".tmp"
        with tf.io.TFRecordWriter(tmp) as writer:
            for path, label in items[index::shards]:
                writer.write(_example(path, label))
                done[0] += 1
                if progress and done[0] % 100 == 0:
                    print(f"\rwrite_tfrecords: {done[0]}/{len(items)} images", end="", file=sys.stderr, flush=True)
        os.replace(tmp, names[index])
        return names[index]

    with ThreadPoolExecutor(max_workers=workers or min(shards, os.cpu_count() or 1)) as pool:
        written = list(pool.map(write_shard, range(shards)))
    if progress:
        print(f"\rwrite_tfrecords: {len(items)}/{len(items)} images in {shards} shards", file=sys.stderr)
    with open(f"{out}-labels.txt", "w") as handle:
        handle.write("\n".join(found.class_names) + "\n")
    return written
