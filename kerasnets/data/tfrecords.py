"""ImageNet-layout TFRecords (Model Garden / TPU reference keys): reading, counting and parallel writing.

:func:`write_tfrecords` writes the examples in a seeded random order across classes and records each
split's size and the class names in ``dataset.json`` next to the shards, so that a reader knows the
dataset's size without reading it. :func:`tfrecord_count` tells how many records a set of shards
holds: from an explicit number, that metadata, a cache, or by counting every shard in parallel.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import logging
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import numpy as np
import tensorflow as tf

from kerasnets.atomic import atomic_write_text
from kerasnets.data.files import folder_layout, scan_folder

__all__ = [
    "FEATURES", "METADATA_FILE", "COUNT_CACHE_FILE", "parse_example", "check_tfrecords", "write_tfrecords",
    "read_metadata", "metadata_entry", "count_records", "tfrecord_count", "store_count", "record_files", "labels_file",
]

log = logging.getLogger("kerasnets.data")

#: The keys the ImageNet converters of Model Garden and tensorflow/tpu write.
FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/class/label": tf.io.FixedLenFeature([], tf.int64),
}
#: Written by :func:`write_tfrecords` next to the shards: class names and, per split, its size.
METADATA_FILE = "dataset.json"
#: Written in ``count_cache`` folders: record counts of shard sets that had to be counted.
COUNT_CACHE_FILE = "tfrecord_counts.json"
_SHARD_SUFFIX = re.compile(r"-\d+-of-(\d+)$")


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


@contextlib.contextmanager
def _locked(folder: str) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (POSIX ``flock`` of the directory; no lock file is left)."""
    try:
        import fcntl
    except ImportError:  # Windows: read-modify-write without a lock
        yield
        return
    handle = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        os.close(handle)


def _read_json(path: str) -> dict:
    """The JSON object in ``path``; {} when the file is absent or not a JSON object (it is rewritten)."""
    try:
        with open(path) as handle:
            document = json.load(handle)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        log.warning("ignoring unreadable %s (%s)", path, error)
        return {}
    return document if isinstance(document, dict) else {}


def _update_json(path: str, update) -> None:
    """Read-modify-write the JSON object in ``path`` under a folder lock, written atomically."""
    folder = os.path.dirname(os.path.abspath(path))
    with _locked(folder):
        document = _read_json(path)
        update(document)
        atomic_write_text(path, json.dumps(document, indent=2, sort_keys=True) + "\n")


def write_tfrecords(
    folder: str,
    out: str,
    shards: int = 8,
    workers: int | None = None,
    progress: bool = True,
    split: str | None = None,
    seed: int = 0,
) -> list[str]:
    """Convert an image folder to ``shards`` TFRecord files, in parallel, in a seeded random order.

    ``folder`` is ``root/<class>/<images>``, or a split layout ``root/train|val|test/<class>/<images>``
    with ``split`` naming the split folder to write ("train", "validation"/"val", "test", or "all").
    Labels index the class list of the whole folder (for a split layout, the union over its split
    folders), so shards written split by split agree on labels.

    The examples are shuffled with ``numpy.random.default_rng(seed)`` before they are dealt to the
    shards, so every shard mixes the classes (same seed, same files: same shards). Shards are named
    ``{out}-00000-of-00008`` and written atomically (a ``.tmp`` file renamed when complete);
    ``{out}-labels.txt`` lists the class names, and ``dataset.json`` in the shards' folder records
    ``{"class_names": [...], "splits": {basename(out): {"examples", "shards", "files"}}}``, merged with
    the splits written there before. Unreadable images are skipped (and counted in the warning).
    Returns the shard paths.
    """
    if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
        raise ValueError(f"shards must be an integer >= 1, got {shards!r}")
    layout = folder_layout(folder)
    if layout.split_dirs and split is None:
        raise ValueError(f"image folder {folder!r} has split folders {sorted(layout.split_dirs)}; pass split='train' "
                         f"(one call per split, same labels) or split='all'")
    if not layout.split_dirs and split not in (None, "all"):
        raise ValueError(f"split={split!r} needs a root/train|val|test/<class>/ folder; {folder!r} is "
                         f"root/<class>/: drop split")
    found = scan_folder(folder, split or "all")
    out_dir = os.path.dirname(os.path.abspath(out))
    os.makedirs(out_dir, exist_ok=True)
    order = np.random.default_rng(seed).permutation(len(found.paths))
    items = [(found.paths[i], found.labels[i]) for i in order]
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
    atomic_write_text(f"{out}-labels.txt", "\n".join(found.class_names) + "\n")
    base = os.path.basename(out)

    def record(document: dict) -> None:
        if document.get("class_names") not in (None, list(found.class_names)):
            log.warning("%s: class names change from %s to %s (the splits written before keep their labels)",
                        os.path.join(out_dir, METADATA_FILE), document["class_names"], list(found.class_names))
        document["class_names"] = list(found.class_names)
        document.setdefault("splits", {})[base] = {
            "examples": len(items), "shards": shards, "files": f"{base}-*-of-{shards:05d}"}

    _update_json(os.path.join(out_dir, METADATA_FILE), record)
    return written


def read_metadata(folder: str) -> dict | None:
    """The ``dataset.json`` that :func:`write_tfrecords` wrote in ``folder``, or None if there is none."""
    path = os.path.join(folder, METADATA_FILE)
    document = _read_json(path) if os.path.isfile(path) else {}
    return document or None


def _prefix(path: str) -> str:
    """``/data/train-00001-of-01024`` -> ``train`` (the ``out`` basename given to write_tfrecords)."""
    return _SHARD_SUFFIX.sub("", os.path.basename(path))


def record_files(pattern: str) -> list[str]:
    """The TFRecord shards a glob names, sorted: without what a glob like ``out-*`` also matches
    (labels and metadata files, temporary files being written)."""
    def is_record(path: str) -> bool:
        name = os.path.basename(path)
        return not name.endswith(("-labels.txt", ".json", ".tmp")) and ".tmp-" not in name and os.path.isfile(path)

    return sorted(f for f in glob.glob(os.fspath(pattern)) if is_record(f))


def labels_file(shard: str) -> str:
    """The ``{out}-labels.txt`` that :func:`write_tfrecords` writes beside the shard ``{out}-00000-of-00008``."""
    return re.sub(r"-\d+-of-\d+$", "", shard) + "-labels.txt"


def metadata_entry(files: list[str]) -> tuple[dict | None, dict | None]:
    """``(dataset.json document, entry of the split that is exactly these files)`` for ``files``.

    The document is that of the files' folder when they all lie in one folder and share a split name
    (the basename before ``-NNNNN-of-NNNNN``) that it records, else None. The entry is given only when
    the split's ``files`` pattern matches exactly ``files`` and its shard count is their number, so a
    glob of part of a split, or a split rewritten with another shard count, is counted instead.
    """
    folders = {os.path.dirname(os.path.abspath(f)) for f in files}
    prefixes = {_prefix(f) for f in files}
    if len(folders) != 1 or len(prefixes) != 1:
        return None, None
    folder, prefix = folders.pop(), prefixes.pop()
    document = read_metadata(folder)
    entry = ((document or {}).get("splits") or {}).get(prefix)
    if not isinstance(entry, dict):
        return None, None
    matched = {os.path.abspath(f) for f in glob.glob(os.path.join(folder, str(entry.get("files", ""))))}
    exact = matched == {os.path.abspath(f) for f in files} and entry.get("shards") == len(files)
    valid = isinstance(entry.get("examples"), int) and entry["examples"] >= 0
    return document, (entry if exact and valid else None)


def count_records(files: list[str], parallel: int = 16) -> int:
    """Count the records of every file in ``files``, reading up to ``parallel`` files at once.

    Reads every byte once (CRC-checked framing, no parsing). ValueError names the problem when a
    shard is truncated or corrupt.
    """
    if not files:
        return 0
    ds = tf.data.Dataset.from_tensor_slices(list(files)).interleave(
        lambda f: tf.data.TFRecordDataset(f, buffer_size=1 << 20),
        cycle_length=max(1, min(len(files), parallel)),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=False,
    )
    try:
        return int(ds.reduce(np.int64(0), lambda count, _: count + 1).numpy())
    except (tf.errors.DataLossError, tf.errors.OutOfRangeError, tf.errors.NotFoundError) as error:
        raise ValueError(f"counting the records of {len(files)} TFRecord files (e.g. {files[0]!r}) failed: "
                         f"{error.message.splitlines()[0]}; re-write the broken shard, or pass num_examples=N"
                         ) from error


def _cache_key(files: list[str]) -> str:
    """A digest of the files' absolute paths, sizes and modification times (any rewrite changes it)."""
    stamp = []
    for path in sorted(os.path.abspath(f) for f in files):
        status = os.stat(path)
        stamp.append([path, status.st_size, status.st_mtime_ns])
    return hashlib.sha256(json.dumps(stamp).encode()).hexdigest()


def tfrecord_count(files: list[str], num_examples: int | None = None,
                   count_cache: str | None = None) -> tuple[int, str]:
    """``(number of records in files, where it came from)``; the source is one of

    * ``"option"``: ``num_examples`` as given (a recipe that states the dataset's size);
    * ``"metadata"``: the ``dataset.json`` of :func:`write_tfrecords` records exactly these files;
    * ``"cache"``: counted before, read from ``count_cache/tfrecord_counts.json`` (keyed by the
      files' paths, sizes and modification times, so a rewritten shard is counted again);
    * ``"counted"``: every record of every file read now, in parallel (stored in ``count_cache``
      when one is given).
    """
    document, entry = metadata_entry(files)
    if num_examples is not None:
        if isinstance(num_examples, bool) or not isinstance(num_examples, (int, np.integer)) or num_examples < 1:
            raise ValueError(f"num_examples must be a positive integer (the records in the files), "
                             f"got {num_examples!r}")
        if entry is not None and entry["examples"] != num_examples:
            log.warning("num_examples=%d, but %s records %d examples for these %d files; using %d",
                        num_examples, METADATA_FILE, entry["examples"], len(files), num_examples)
        return int(num_examples), "option"
    if entry is not None:
        return int(entry["examples"]), "metadata"
    cache_path = os.path.join(count_cache, COUNT_CACHE_FILE) if count_cache else None
    key = _cache_key(files) if cache_path else ""
    if cache_path:
        cached = _read_json(cache_path).get(key)
        if isinstance(cached, dict) and isinstance(cached.get("examples"), int):
            return cached["examples"], "cache"
    log.info("counting the records of %d TFRecord files (%s) once%s", len(files), files[0],
             f"; cached in {cache_path}" if cache_path else "; pass count_cache=DIR to keep the count")
    count = count_records(files)
    if cache_path:
        store_count(files, count, count_cache)
    return count, "counted"


def store_count(files: list[str], count: int, count_cache: str) -> None:
    """Remember ``count`` records for ``files`` in ``count_cache/tfrecord_counts.json`` (what
    :func:`tfrecord_count` reads back while the files are unchanged)."""
    key = _cache_key(files)

    def remember(cache: dict) -> None:
        cache[key] = {"examples": int(count), "files": len(files), "first": os.path.abspath(sorted(files)[0])}

    os.makedirs(count_cache, exist_ok=True)
    _update_json(os.path.join(count_cache, COUNT_CACHE_FILE), remember)
