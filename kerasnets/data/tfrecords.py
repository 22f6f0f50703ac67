"""ImageNet-layout TFRecords (Model Garden / TPU reference keys): reading, counting and parallel writing.

:func:`write_tfrecords` writes the examples in a seeded random order across classes and records each
split's size and the class names in ``dataset.json`` next to the shards, so that a reader knows the
dataset's size without reading it. :func:`tfrecord_count` tells how many records a set of shards
holds: from an explicit number, that metadata, a cache, or by counting every shard in parallel.
Writing a split again replaces all its shards. :func:`check_label` checks every record's label as
the pipeline streams it, and :func:`label_errors` turns its error into a ValueError.

Every file is read and written through ``tf.io.gfile`` (or TensorFlow's TFRecord ops), so shards,
their labels files, ``dataset.json`` and the count cache may live on any filesystem TensorFlow
serves: a local folder, ``gs://bucket/...``, or the in-memory ``ram://`` that the tests use.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import io
import json
import logging
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import numpy as np
import tensorflow as tf

from kerasnets.storage import absolute, atomic_write_text, is_url
from kerasnets.data.files import folder_layout, scan_folder

__all__ = [
    "FEATURES", "METADATA_FILE", "COUNT_CACHE_FILE", "LABEL_ERROR", "parse_example", "check_label", "label_errors",
    "check_tfrecords", "write_tfrecords",
    "read_metadata", "metadata_entry", "count_records", "tfrecord_count", "store_count", "record_files", "labels_file",
    "read_labels", "is_record_source", "shrink_image",
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


#: How every label error of :func:`check_label` begins and ends (:func:`label_errors` finds it in TF's message).
LABEL_ERROR = "TFRecord label out of range"
_LABEL_FIX = ("1-based shards (labels 1..N, as in ImageNet) need label_offset=-1, 0-based ones label_offset=0; "
              "else pass num_classes (or class_names) covering every label.")


def check_label(label, shard, num_classes: int, label_offset: int):
    """``label`` when ``0 <= label < num_classes``, else InvalidArgumentError naming the problem.

    The message begins with :data:`LABEL_ERROR` and names the label (after ``label_offset``), the
    shard, the valid range and the fix. In a ``tf.data`` map it checks every record as it streams;
    called eagerly it raises at once. :func:`label_errors` makes it a ValueError.
    """
    valid = (label >= 0) & (label < num_classes)

    def message():  # built only for a bad label: joining strings for every record would cost
        return tf.strings.join([
            f"{LABEL_ERROR}: label ", tf.strings.as_string(label), f" (after label_offset={label_offset}) in shard '",
            shard, f"'; the {num_classes} classes are 0..{num_classes - 1}. {_LABEL_FIX}"])

    text = tf.cond(valid, lambda: tf.constant(""), message)
    with tf.control_dependencies([tf.debugging.Assert(valid, [text])]):
        return tf.identity(label)


@contextlib.contextmanager
def label_errors() -> Iterator[None]:
    """Turn the InvalidArgumentError of :func:`check_label`, raised where a TFRecord dataset is
    iterated, into a ValueError carrying its message (other errors pass unchanged)."""
    try:
        yield
    except tf.errors.InvalidArgumentError as error:
        text = str(error.message)
        start = text.find(LABEL_ERROR)
        end = text.find(_LABEL_FIX, max(start, 0))
        if start < 0 or end < 0:
            raise
        escaped = text[start:end + len(_LABEL_FIX)]  # TF prints the message C-escaped (quotes, non-ASCII bytes)
        raise ValueError(codecs.escape_decode(escaped.encode())[0].decode("utf-8", "replace")) from None


def check_tfrecords(files: list[str], num_classes: int, label_offset: int, probe: int = 64) -> None:
    """Read the first records of the first shard; raise ValueError on missing keys or bad labels.

    A quick look before the pipeline is built; :func:`check_label` checks every record as it streams.
    """
    for index, record in enumerate(tf.data.TFRecordDataset(files[:1]).take(probe)):
        example = tf.train.Example.FromString(record.numpy())
        keys = set(example.features.feature)
        missing = sorted(set(FEATURES) - keys)
        if missing:
            raise ValueError(
                f"TFRecord {files[0]!r} record {index} lacks keys {missing} (has {sorted(keys)}); "
                f"kerasnets reads the ImageNet layout {sorted(FEATURES)}; convert with kerasnets.data.write_tfrecords"
            )
        try:
            _, label = parse_example(record, label_offset)
        except tf.errors.InvalidArgumentError as error:  # e.g. a float label
            reason = re.sub(r"{{.*?}} | \[Op:.*", "", error.message.splitlines()[0])  # without TF's node names
            raise ValueError(
                f"TFRecord {files[0]!r} record {index} does not parse as the ImageNet layout (image/encoded: bytes, "
                f"image/class/label: int64): {reason}; convert with kerasnets.data.write_tfrecords") from None
        with label_errors():
            check_label(label, files[0], num_classes, label_offset)


def _example(encoded: bytes, path: str, label: int) -> bytes:
    """One ImageNet-layout record; the file name as the OS's bytes (a latin-1 name is no UTF-8 string)."""
    feature = {
        "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded])),
        "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
        "image/filename": tf.train.Feature(bytes_list=tf.train.BytesList(value=[os.fsencode(os.path.basename(path))])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _decode_error(error: tf.errors.OpError) -> str:
    """The reason in a failed graph call's message (e.g. "Invalid JPEG data, size 623"), without
    TensorFlow's traceback of the graph's Python lines and its node names."""
    lines = [line.strip() for line in error.message.splitlines()]
    lines = [line for line in lines if line and not line.startswith(("File ", "[[", "Graph execution error", "Detected"))]
    return lines[-1] if lines else type(error).__name__


@contextlib.contextmanager
def _locked(folder: str) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (POSIX ``flock`` of the directory; no lock file is left).

    Only a local folder can be locked. For a URL (``gs://``, ``ram://``) this holds no lock: two
    processes that write the same split, or update the same ``dataset.json`` or count cache, on an
    object store at the same time are not serialized, and the last whole write wins (a split's
    shards and its metadata may then come from different writers). Write each split from one process.
    """
    if is_url(folder):  # no flock on an object store (see above)
        yield
        return
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
        with tf.io.gfile.GFile(path, "r") as handle:
            document = json.loads(handle.read())
    except tf.errors.NotFoundError:
        return {}
    except (tf.errors.OpError, OSError, ValueError) as error:  # e.g. a folder of that name, or bad JSON
        log.warning("ignoring unreadable %s (%s)", path, error)
        return {}
    return document if isinstance(document, dict) else {}


def _rewrite_json(path: str, update) -> None:
    """Read-modify-write the JSON object in ``path``, written atomically (the caller holds the folder lock)."""
    document = _read_json(path)
    update(document)
    atomic_write_text(path, json.dumps(document, indent=2, sort_keys=True) + "\n")


def _update_json(path: str, update) -> None:
    """Read-modify-write the JSON object in ``path`` under a folder lock, written atomically."""
    with _locked(os.path.dirname(absolute(path))):
        _rewrite_json(path, update)


def write_tfrecords(
    folder: str,
    out: str,
    shards: int = 8,
    workers: int | None = None,
    progress: bool = True,
    split: str | None = None,
    seed: int = 0,
    max_side: int | None = None,
) -> list[str]:
    """Convert an image folder to ``shards`` TFRecord files, in parallel, in a seeded random order.

    ``folder`` is ``root/<class>/<images>``, or a split layout ``root/train|val|test/<class>/<images>``
    with ``split`` naming the split folder to write ("train", "validation"/"val", "test", or "all").
    Labels index the class list of the whole folder (for a split layout, the union over its split
    folders), so shards written split by split agree on labels.

    The examples are shuffled with ``numpy.random.default_rng(seed)`` before they are dealt to the
    shards, so every shard mixes the classes (same seed, same files: same shards). Shards are named
    ``{out}-00000-of-00008``; ``{out}-labels.txt`` lists the class names, and ``dataset.json`` in the
    shards' folder records ``{"class_names": [...], "splits": {basename(out): {"examples", "shards",
    "files"}}}``, merged with the splits written there before. Returns the shard paths.

    Writing a split again replaces it whole: every shard is written to a ``.tmp`` file first; once
    all are complete, under the folder's lock, they are renamed into place, then the split's other
    shards (same ``basename(out)``, any ``-of-NNNNN`` total, e.g. left by an earlier ``shards=4``) are
    deleted, then the labels file and ``dataset.json`` are rewritten. A reader that globs the split
    meanwhile may see two totals, which :func:`record_files` refuses; other splits are untouched.
    ``out`` may be a URL (``gs://bucket/imagenet/train``, ``ram://x/train``): the files go through
    ``tf.io.gfile``. There a rename is a copy then a delete and the folder has no lock (see
    :func:`_locked`), so the split is replaced shard by shard, not at once, and two writers of one
    split are not serialized; each shard and each metadata file still appears whole.

    Files the folder scan refuses (empty, not an image, truncated, over the pixel budget) are skipped,
    and so is a file that passes those checks but does not decode as the pipeline decodes it
    (:func:`kerasnets.data.pipeline.decode_probe`: its crop, baseline JPEGs at 1/8 scale, so the
    check costs a fraction of a full decode and its memory is within the budget); one warning
    names how many of each were skipped, ``dataset.json`` records the split's ``skipped`` count
    beside its ``examples``, and a folder where no file decodes is a ValueError.

    ``max_side``: store every image whose longer side exceeds it resized once, to that longer side
    (:func:`shrink_image`: antialiased, a JPEG at quality 90), as FFCV stores ImageNet at 400-512 px;
    smaller images keep their bytes. Photos far larger than the training size are then read and
    decoded at a fraction of the cost, every epoch. ``dataset.json`` records the split's ``max_side``.
    Leave it at least ``image_size / 0.875 / (the crop scale you train at)``: the eval crop of a
    224 px model takes 224/256 of the short side, so ``max_side`` 512 keeps it above 224 px for
    aspect ratios up to 2:1 (measured effect on the eval crop: README, Data).
    """
    if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
        raise ValueError(f"shards must be an integer >= 1, got {shards!r}")
    if max_side is not None and (isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < 8):
        raise ValueError(f"max_side must be None (images stored as they are) or an integer >= 8, got {max_side!r}")
    layout = folder_layout(folder)
    if layout.split_dirs and split is None:
        raise ValueError(f"image folder {folder!r} has split folders {sorted(layout.split_dirs)}; pass split='train' "
                         f"(one call per split, same labels) or split='all'")
    if not layout.split_dirs and split not in (None, "all"):
        raise ValueError(f"split={split!r} needs a root/train|val|test/<class>/ folder; {folder!r} is "
                         f"root/<class>/: drop split")
    found = scan_folder(folder, split or "all")
    out = os.fspath(out)
    out_dir = os.path.dirname(absolute(out))
    tf.io.gfile.makedirs(out_dir)
    order = np.random.default_rng(seed).permutation(len(found.paths))
    items = [(found.paths[i], found.labels[i]) for i in order]
    names = [f"{out}-{i:05d}-of-{shards:05d}" for i in range(shards)]
    done, broken = [0], []  # list.append is atomic: the shard threads share them
    from kerasnets.data.pipeline import decode_probe  # (pipeline imports this module)

    probe = tf.function(decode_probe, input_signature=[tf.TensorSpec([], tf.string)]).get_concrete_function()

    def write_shard(index: int) -> str:
        tmp = names[index] + ".tmp"
        with contextlib.suppress(tf.errors.NotFoundError):  # ram:// appends to a file that exists (a crash's leftover)
            tf.io.gfile.remove(tmp)
        with tf.io.TFRecordWriter(tmp) as writer:
            for path, label in items[index::shards]:
                # the image folder is local (scan_folder walks it with os), and its names may not be UTF-8
                # (a latin-1 file name), which tf.io.gfile cannot open: the OS opens them
                with open(path, "rb") as handle:
                    encoded = handle.read()
                try:
                    probe(tf.constant(encoded))
                except tf.errors.OpError as error:
                    broken.append((path, _decode_error(error)))
                    continue
                if max_side is not None:
                    encoded = shrink_image(encoded, max_side)
                writer.write(_example(encoded, path, label))
                done[0] += 1
                if progress and done[0] % 100 == 0:
                    print(f"\rwrite_tfrecords: {done[0]}/{len(items)} images", end="", file=sys.stderr, flush=True)
        return tmp

    try:
        with ThreadPoolExecutor(max_workers=workers or min(shards, os.cpu_count() or 1)) as pool:
            list(pool.map(write_shard, range(shards)))
    except BaseException:  # no half-written split: the old one stays as it was
        _remove_temporaries(names)
        raise
    skipped = len(found.skipped) + len(broken)
    if progress:
        print(f"\rwrite_tfrecords: {done[0]}/{len(items)} images in {shards} shards", file=sys.stderr)
    if skipped:
        example = ", e.g. {} ({})".format(*broken[0]) if broken else ""
        log.warning("write_tfrecords: skipped %d of %d image files in %s: %d unreadable or over the pixel budget (the "
                    "scan), %d that passed its checks but do not decode%s", skipped, len(items) + len(found.skipped),
                    folder, len(found.skipped), len(broken), example)
    if not done[0]:
        _remove_temporaries(names)
        raise ValueError(f"no image of {folder!r} decodes ({len(items)} files passed the header checks, e.g. "
                         f"{broken[0][0]}: {broken[0][1]}); check that they are real images (open one with PIL)")
    base = os.path.basename(out)

    def record(document: dict) -> None:
        if document.get("class_names") not in (None, list(found.class_names)):
            log.warning("%s: class names change from %s to %s (the splits written before keep their labels)",
                        os.path.join(out_dir, METADATA_FILE), document["class_names"], list(found.class_names))
        document["class_names"] = list(found.class_names)
        document.setdefault("splits", {})[base] = {
            "examples": done[0], "skipped": skipped, "shards": shards, "files": f"{base}-*-of-{shards:05d}",
            **({"max_side": max_side} if max_side is not None else {})}

    with _locked(out_dir):
        for name in names:
            tf.io.gfile.rename(name + ".tmp", name, overwrite=True)
        # compared by name: joined paths of a URL are not normalised (gs://b//x, a/../x), and a shard
        # just written must never look stale
        new = {os.path.basename(name) for name in names}
        for entry in tf.io.gfile.listdir(out_dir):
            entry = entry.rstrip("/")  # object stores list a sub-folder as "name/"
            path = os.path.join(out_dir, entry)
            if (_SHARD_SUFFIX.search(entry) and _prefix(entry) == base and entry not in new
                    and not tf.io.gfile.isdir(path)):
                tf.io.gfile.remove(path)  # a shard of this split's previous writing
        atomic_write_text(f"{out}-labels.txt", "\n".join(found.class_names) + "\n")
        _rewrite_json(os.path.join(out_dir, METADATA_FILE), record)
    return names


def shrink_image(encoded: bytes, max_side: int, quality: int = 90) -> bytes:
    """``encoded`` resized so that its longer side is ``max_side`` and stored as a JPEG (``quality``,
    FFCV's default), or ``encoded`` itself when its longer side is no more than that.

    A JPEG is first decoded at the smallest DCT scale that stays at least the target size (PIL's
    ``draft``: a 12-MP photo is not decoded at full resolution), then resampled with an
    antialiasing filter (Lanczos). Pixels keep their stored orientation (the EXIF orientation
    tag is not applied, as TensorFlow's decoders do not apply it) and become RGB: grey, palette,
    CMYK and alpha images as PIL converts them; 16-bit grey as TensorFlow's decoder scales it (the
    high byte; PIL's own conversion would clip it to white); an animation keeps its first frame.
    An image PIL cannot open or resize (one over PIL's own decompression-bomb limit, 179 MP, which
    the package's budget admits for baseline JPEGs counted at 1/8; a format PIL does not read)
    is returned as it is: stored whole, as without ``max_side``."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(encoded)) as image:
            width, height = image.size
            if max(width, height) <= max_side:
                return encoded
            scale = max_side / max(width, height)
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            image.draft("RGB", size)
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey: its high byte, as tf.io.decode_png
                image = Image.fromarray((np.asarray(image, np.int64) >> 8).clip(0, 255).astype(np.uint8), "L")
            resized = image.convert("RGB").resize(size, Image.Resampling.LANCZOS)
    except (Image.DecompressionBombError, OSError, ValueError, SyntaxError):
        return encoded
    out = io.BytesIO()
    resized.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def _remove_temporaries(names: list[str]) -> None:
    """Delete the ``.tmp`` files of the shards ``names`` that exist (a writing that did not complete)."""
    for name in names:
        with contextlib.suppress(tf.errors.NotFoundError):
            tf.io.gfile.remove(name + ".tmp")


def read_metadata(folder: str) -> dict | None:
    """The ``dataset.json`` that :func:`write_tfrecords` wrote in ``folder``, or None if there is none."""
    return _read_json(os.path.join(folder, METADATA_FILE)) or None


def _prefix(path: str) -> str:
    """``/data/train-00001-of-01024`` -> ``train`` (the ``out`` basename given to write_tfrecords)."""
    return _SHARD_SUFFIX.sub("", os.path.basename(path))


def record_files(pattern: str) -> list[str]:
    """The TFRecord shards a glob names, sorted: without what a glob like ``out-*`` also matches
    (labels and metadata files, temporary files being written).

    ValueError when it matches shards of one split (same folder and name) with two totals, e.g.
    ``train-*-of-00002`` beside ``train-*-of-00004``: a copy of another writing of the split, whose
    records would be read twice.
    """
    def is_record(path: str) -> bool:
        name = os.path.basename(path)
        # hidden files too, as glob.glob skips them (e.g. macOS' "._train-00000-of-00004" copies)
        if name.endswith(("-labels.txt", ".json", ".tmp")) or ".tmp-" in name or name.startswith("."):
            return False
        # a folder the glob matched is skipped; on an object store a glob lists objects, and asking about
        # each of 1024 shards would cost 1024 requests before the first record is read
        return is_url(path) or not tf.io.gfile.isdir(path)

    pattern = os.fspath(pattern)
    try:
        matches = tf.io.gfile.glob(pattern)
    except tf.errors.NotFoundError:  # e.g. a bucket or in-memory filesystem that does not exist: nothing matches
        matches = []
    if not is_url(pattern) and not pattern.startswith("./"):  # gfile answers "train-*" with "./train-...": as glob.glob
        matches = [m[2:] if m.startswith("./") else m for m in matches]
    files = sorted(f for f in matches if is_record(f))
    totals: dict[tuple[str, str], set[str]] = {}
    for path in files:
        match = _SHARD_SUFFIX.search(os.path.basename(path))
        if match:
            totals.setdefault((os.path.dirname(absolute(path)), _prefix(path)), set()).add(match.group(1))
    for (folder, prefix), found in totals.items():
        if len(found) > 1:
            kinds = ", ".join(f"{prefix}-*-of-{total}" for total in sorted(found))
            raise ValueError(
                f"TFRecord glob {pattern!r} matches shards of split {prefix!r} in {folder} with "
                f"{len(found)} different totals ({kinds}): two writings of the split, whose records would be read "
                f"twice. Delete the stale shards (write_tfrecords removes them when it rewrites a split), or glob "
                f"one total, e.g. {os.path.join(folder, prefix)}-*-of-{max(found)}")
    return files


def is_record_source(source: str) -> bool:
    """Whether the string ``source`` names TFRecords: a glob (``*?[``), an existing local file, or
    any URL (``gs://bucket/train-00000-of-01024``: one shard on a filesystem TensorFlow reads; image
    folders are local). The one place the kinds "TFRecords" and "a path" are told apart."""
    return any(ch in source for ch in "*?[") or is_url(source) or os.path.isfile(source)


def labels_file(shard: str) -> str:
    """The ``{out}-labels.txt`` that :func:`write_tfrecords` writes beside the shard ``{out}-00000-of-00008``."""
    return re.sub(r"-\d+-of-\d+$", "", shard) + "-labels.txt"


def read_labels(shard: str) -> list[str] | None:
    """The class names in the :func:`labels_file` of ``shard``, one a line; None when there is no such file."""
    path = labels_file(shard)
    try:
        with tf.io.gfile.GFile(path, "r") as handle:
            return [line.strip() for line in handle.read().splitlines() if line.strip()]
    except tf.errors.NotFoundError:
        return None


def metadata_entry(files: list[str]) -> tuple[dict | None, dict | None]:
    """``(dataset.json document, entry of the split that is exactly these files)`` for ``files``.

    The document is that of the files' folder when they all lie in one folder and share a split name
    (the basename before ``-NNNNN-of-NNNNN``) that it records, else None. The entry is given only when
    the split's ``files`` pattern matches exactly ``files`` and its shard count is their number, so a
    glob of part of a split, or a split rewritten with another shard count, is counted instead.
    """
    folders = {os.path.dirname(absolute(f)) for f in files}
    prefixes = {_prefix(f) for f in files}
    if len(folders) != 1 or len(prefixes) != 1:
        return None, None
    folder, prefix = folders.pop(), prefixes.pop()
    document = read_metadata(folder)
    entry = ((document or {}).get("splits") or {}).get(prefix)
    if not isinstance(entry, dict):
        return None, None
    matched = {absolute(f) for f in tf.io.gfile.glob(os.path.join(folder, str(entry.get("files", ""))))}
    exact = matched == {absolute(f) for f in files} and entry.get("shards") == len(files)
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


def _stamp(path: str) -> list:
    """``[path, size in bytes, modification time in ns]`` of one file.

    A URL is asked through ``tf.io.gfile.stat``; a local file through ``os.stat``, whose time has
    nanoseconds where gfile's local answer has whole seconds (a same-size rewrite within a second
    would keep its stamp). ``ram://`` reports a time of 0: there only the size tells a rewrite.
    """
    if is_url(path):
        status = tf.io.gfile.stat(path)
        return [path, status.length, status.mtime_nsec]
    status = os.stat(path)
    return [path, status.st_size, status.st_mtime_ns]


def _cache_key(files: list[str]) -> str:
    """A digest of the files' absolute paths, sizes and modification times (any rewrite changes it).

    The files are asked 16 at a time: on an object store each one is a request.
    """
    with ThreadPoolExecutor(max_workers=16) as pool:
        stamp = list(pool.map(_stamp, sorted(absolute(f) for f in files)))
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
        cache[key] = {"examples": int(count), "files": len(files), "first": absolute(sorted(files)[0])}

    tf.io.gfile.makedirs(count_cache)
    _update_json(os.path.join(count_cache, COUNT_CACHE_FILE), remember)
