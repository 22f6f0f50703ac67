"""``kerasnets.data.load``: one entry point for every source, returning (tf.data.Dataset, DatasetInfo)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np
import tensorflow as tf

from kerasnets.data.digits import DIGITS_CLASS_NAMES, KerasnetsDigits, digits_arrays
from kerasnets.data.files import canonical_split, folder_layout, folder_splits, select_split, split_indices
from kerasnets.data.tfrecords import (check_label, check_tfrecords, is_record_source, label_errors, metadata_entry,
                                      parse_example, read_labels, record_files, tfrecord_count)
from kerasnets.data.headers import DEFAULT_MAX_PIXELS, check_max_pixels
from kerasnets.data.transforms import RESIZE_METHODS, center_crop, eval_transform, output_size, train_transform

__all__ = ["DatasetInfo", "load", "available_splits", "held_out_split", "check_not_empty", "scored_count",
           "decode_probe", "default_crop_padding", "SOURCE_KINDS", "source_kind"]

log = logging.getLogger("kerasnets.data")
AUTOTUNE = tf.data.AUTOTUNE
#: the image dtypes ``load`` can deliver (``dtype=``)
OUTPUT_DTYPES = ("float32", "uint8")
SOURCE_KINDS = ("digits", "tfds:NAME", "an image folder", "a TFRecord glob", "(images, labels) numpy arrays")


@dataclass(frozen=True)
class DatasetInfo:
    """What a training script needs to know about a loaded dataset.

    ``preprocessing`` is what this ``load`` call applied after defaults were resolved:
    ``{"image_size", "crop_padding", "resize_method", "flip", "training"}`` (an eval one is the
    serving contract). ``splits`` lists the splits the source offers, None when unknown.
    ``extras`` holds ``kind`` ("folder", "tfrecords", "digits", "tfds", "arrays"), ``batch_size``,
    ``drop_remainder``, ``count_source`` (where ``num_examples`` came from: for TFRecords "option",
    "metadata", "cache" or "counted", see :func:`kerasnets.data.tfrecords.tfrecord_count`; "source"
    for the others, which know their size), ``checkpointable`` (whether ``tf.train.Checkpoint(
    iterator=iter(dataset))`` can save the iterator: True for every pipeline :func:`load` builds,
    augmentation included) and, for folders, the
    ``skipped`` file paths.
    """

    source: str
    split: str
    class_names: tuple[str, ...]
    num_examples: int
    image_size: int | tuple[int, int]  # (height, width) when loaded for a non-square model
    extras: dict = field(default_factory=dict)
    preprocessing: dict = field(default_factory=dict)
    splits: tuple[str, ...] | None = None

    @property
    def num_classes(self) -> int:
        """Number of classes (length of ``class_names``)."""
        return len(self.class_names)


@dataclass(frozen=True)
class _Raw:
    dataset: tf.data.Dataset  # of (image uint8 HxWxC or encoded bytes, int64 label), or (path, label) with read
    class_names: tuple[str, ...]
    num_examples: int
    kind: str
    split: str
    splits: tuple[str, ...] | None = None
    encoded: bool = False  # elements are encoded files that may still fail to decode
    read: Callable | None = None  # (path, label) -> (bytes, label), mapped after the shuffle
    checked: bool = False  # read's bytes passed the transforms' header check already (folders: the scan)
    sharded: bool = False  # the source applied the load(shard=...) itself (TFRecords: a share of the files)
    epoch_dataset: Callable | None = None  # int64 epoch tensor -> one pass, its file order seeded by the epoch
    epoch_permutes: bool = False  # epoch_dataset already yields every example in a random order (no buffer needed)
    check: Callable | None = None  # (image, label) -> (image, label), mapped after ignore_errors (which drops errors)
    defaults: dict = field(default_factory=dict)
    extras: dict = field(default_factory=dict)


def _array_images(images: Any) -> np.ndarray:
    """Numpy images as uint8 [N, H, W, 1|3|4]: pixels in 0..255 (the models normalize inside), any
    integer or float dtype; ValueError/TypeError naming the shape, dtype or range and the fix."""
    images = np.asarray(images)
    if images.dtype == bool or not (np.issubdtype(images.dtype, np.integer) or np.issubdtype(images.dtype, np.floating)):
        raise TypeError(f"numpy images must be integers or floats with pixels in 0..255, got dtype {images.dtype}")
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
        raise ValueError(f"numpy images must be [N, H, W] or [N, H, W, C] with C in (1, 3, 4) (gray, RGB, RGBA), "
                         f"got shape {images.shape}; put the images on the first axis and the channels last")
    if len(images) == 0:
        raise ValueError(f"numpy source has 0 images (shape {images.shape}); pass at least one image and its label")
    if images.dtype == np.uint8:
        return images
    low, high = images.min(), images.max()
    if not (np.isfinite(low) and np.isfinite(high)):
        raise ValueError("numpy images hold NaN or infinite values; pass pixels in 0..255")
    if low < 0 or high > 255:
        raise ValueError(f"numpy images must be uint8 or floats in 0..255 (the models normalize inside), got {low}..{high} "
                         f"({images.dtype}); rescale them to 0..255 (16-bit images: images // 257)")
    if np.issubdtype(images.dtype, np.floating) and 0 < high <= 1.0:
        raise ValueError(f"numpy float images lie in {low}..{high}, which looks like 0..1 pixels, but kerasnets takes "
                         f"0..255 (the models normalize inside); pass images * 255")
    return np.round(images).astype(np.uint8)


def _array_labels(labels: Any) -> np.ndarray:
    """Numpy labels as int64 class indices [N]; ValueError/TypeError for one-hot, fractional or non-numeric labels."""
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] > 1:
        raise ValueError(f"labels must be class indices of shape [N], got shape {labels.shape} (one-hot? pass "
                         f"labels.argmax(-1))")
    labels = labels.reshape(-1)
    if labels.dtype == bool or not (np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.floating)):
        raise TypeError(f"labels must be integer class indices, got dtype {labels.dtype}")
    if np.issubdtype(labels.dtype, np.floating) and not np.array_equal(labels, np.round(labels)):
        raise ValueError("labels must be integer class indices, got fractional values; pass labels.astype(int) "
                         "only if they are indices")
    return labels.astype(np.int64)


def _from_arrays(images: np.ndarray, labels: np.ndarray, class_names=None, split: str = "all",
                 validation_split: float | None = None, seed: int = 0) -> _Raw:
    images, labels = _array_images(images), _array_labels(labels)
    if len(images) != len(labels):
        raise ValueError(f"numpy source has {len(images)} images but {len(labels)} labels")
    num_classes = len(class_names) if class_names else int(labels.max()) + 1
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must lie in 0..{num_classes - 1}, got {labels.min()}..{labels.max()}")
    names = tuple(class_names) if class_names else tuple(str(i) for i in range(num_classes))
    splits = None
    if validation_split:  # seeded carve; without one, the arrays are every split
        splits, split = ("train", "validation", "all"), canonical_split(split)
        if split not in splits:
            raise ValueError(f"numpy source with validation_split has splits {splits}, got {split!r}")
        keep = split_indices(len(images), validation_split, split, seed)
        images, labels = images[keep], labels[keep]
    images, labels = tf.constant(images), tf.constant(labels)  # one copy, shared by every epoch

    def epoch_examples(epoch: tf.Tensor) -> tf.data.Dataset:
        """Every example once, in an order seeded by (seed, epoch), gathered one at a time: no
        shuffle buffer, so an iterator checkpoint holds positions and prefetched batches only."""
        order = tf.random.experimental.stateless_shuffle(tf.range(tf.shape(labels, out_type=tf.int64)[0]),
                                                         seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
        return tf.data.Dataset.from_tensor_slices(order).map(lambda i: (tf.gather(images, i), tf.gather(labels, i)))

    return _Raw(tf.data.Dataset.from_tensor_slices((images, labels)), names, int(labels.shape[0]), "arrays", split,
                splits, epoch_dataset=epoch_examples, epoch_permutes=True)


def _digits(split: str, data_dir: str | None, validation_split: float | None, seed: int) -> _Raw:
    split = canonical_split(split)
    splits = ("train", "validation", "test", "all") if validation_split else ("train", "test", "all")
    if data_dir and validation_split:
        raise ValueError("digits with data_dir (the TFDS build) has fixed train/test splits; drop validation_split, "
                         "or drop data_dir to carve validation from the embedded copy")
    if split not in splits:
        hint = "; pass validation_split=0.1 to carve one from train" if split == "validation" else ""
        raise ValueError(f"digits has no {split!r} split; it has {splits}{hint}")
    defaults = {"crop_padding": 0, "flip": False}
    if data_dir:  # the real TFDS dataset (prepared offline from scikit-learn's copy)
        builder = KerasnetsDigits(data_dir=data_dir)
        builder.download_and_prepare()
        tfds_split = "train+test" if split == "all" else split
        ds = builder.as_dataset(split=tfds_split, as_supervised=True, read_config=_tfds_read_config())
        n = sum(builder.info.splits[s].num_examples for s in tfds_split.split("+"))
        return _Raw(ds, DIGITS_CLASS_NAMES, n, "digits", split, splits, defaults=defaults)
    if split == "all":
        parts = [digits_arrays("train"), digits_arrays("test")]
        images, labels = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    else:
        images, labels = digits_arrays("test" if split == "test" else "train")
    carve = validation_split if split in ("train", "validation") else None
    raw = _from_arrays(images, labels, DIGITS_CLASS_NAMES, split, carve, seed)
    return replace(raw, kind="digits", split=split, splits=splits, defaults=defaults)


def _tfds(name: str, split: str, data_dir: str | None, download: bool) -> _Raw:
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as error:  # DatasetNotFoundError and friends
        raise ValueError(f"unknown TFDS dataset {name!r}: {error}") from error
    if not builder.is_prepared():
        if not download:
            manual = getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None)
            raise FileNotFoundError(
                f"TFDS dataset {name!r} is not prepared in {builder.data_dir!r} and download=False. "
                + (f"It needs a manual download: place the files in {os.path.join(builder.data_dir_root, 'downloads', 'manual')} "
                   f"({' '.join(str(manual).split())[:300]}) then run again with download=True. " if manual else
                   "Run once with download=True on a machine with network access, or copy a prepared "
                   f"{name}/ folder into {builder.data_dir_root}. ")
            )
        builder.download_and_prepare()
    names, sixteen_bit = _tfds_features(name, builder)
    ds = builder.as_dataset(split=split, as_supervised=True, shuffle_files=False, read_config=_tfds_read_config())
    if sixteen_bit:  # to 8 bits as decode_image reads a 16-bit PNG file (the high byte), not clipped at 255
        ds = ds.map(lambda image, label: (tf.cast(tf.bitwise.right_shift(image, 8), tf.uint8), label),
                    num_parallel_calls=AUTOTUNE)
    n = builder.info.splits[split].num_examples
    return _Raw(ds, names, n, "tfds", split, tuple(builder.info.splits.keys()))


def _tfds_read_config():
    """How TFDS sources are read: without TFDS' automatic in-memory cache of small datasets. A
    ``cache()`` in the pipeline cannot be checkpointed symbolically (the trainer's backups of a
    TFDS stream would fail with "CacheDatasetV2 does not support symbolic checkpointing");
    ``data.load(cache=True)`` is the explicit way to cache, outside the trainer."""
    import tensorflow_datasets as tfds

    return tfds.ReadConfig(try_autocache=False)


def _tfds_features(name: str, builder) -> tuple[tuple[str, ...], bool]:
    """``(class names, whether the images are 16-bit)`` of a TFDS dataset's supervised features,
    read from its metadata before any example; ValueError naming the feature and the fix when
    they are not what the pipeline takes: a ClassLabel, and an image of 1, 3 or 4 channels of
    uint8 (0..255) or uint16 pixels (a float image has no range the pipeline could trust)."""
    import tensorflow_datasets as tfds

    image_key, label_key = builder.info.supervised_keys or ("image", "label")
    features = builder.info.features
    label, image = features[label_key], features[image_key]
    if not isinstance(label, tfds.features.ClassLabel):
        raise ValueError(f"TFDS dataset {name!r}: its label {label_key!r} is a {type(label).__name__}, not a "
                         f"tfds.features.ClassLabel, so it names no classes; use a classification dataset, or load it "
                         f"with tfds and pass (images, labels) numpy arrays")
    channels = image.shape[-1] if image.shape else None
    dtype = np.dtype(getattr(image, "np_dtype", None) or image.dtype.as_numpy_dtype)
    if len(image.shape or ()) != 3 or channels not in (1, 3, 4) or dtype not in (np.uint8, np.uint16):
        raise ValueError(f"TFDS dataset {name!r}: its image {image_key!r} is {dtype.name} of shape {image.shape}, but "
                         f"the pipeline takes [height, width, C] images with C in (1, 3, 4) of uint8 pixels in "
                         f"0..255 (or uint16); load it with tfds, convert to uint8 0..255 and pass (images, labels) "
                         f"numpy arrays")
    return tuple(label.names), dtype == np.uint16


def _folder(root: str, split: str, validation_split: float | None, seed: int,
            max_pixels: int = DEFAULT_MAX_PIXELS) -> _Raw:
    layout = replace(folder_layout(root), max_pixels=check_max_pixels(max_pixels))
    found = select_split(layout, split, validation_split, seed)
    # file names as the OS's bytes: a latin-1 name is no UTF-8 string, and tf.constant would refuse it
    paths = tf.constant([os.fsencode(p) for p in found.paths], tf.string)
    labels = tf.constant(np.array(found.labels, np.int64))
    # the scan checked every file (files.check_image_file: the header, the pixel budget, the end,
    # by the rule of transforms.check_encoded), so the graph does not check them again: that check
    # took half of an ImageNet-size JPEG's time in the pipeline (346 against 715 images/s for the
    # eval crop at 224 px, 2 cores). A file whose size differs from the one the scan read was
    # rewritten since: it is refused, never decoded (memory stays bounded whatever it holds now), as
    # a file that fails to decode is: skipped with a warning naming it, and evaluation's count check
    # says so. A rewrite to the very same size is not noticed (it is decoded unchecked, within the
    # crop's DCT-scaled decode). (Checking a changed file again in a tf.cond cost as much as the check
    # itself: control flow in a tf.data map is dear.)
    sizes = tf.constant(np.array(found.sizes, np.int64))

    def read(path: tf.Tensor, label: tf.Tensor, size: tf.Tensor):
        encoded = tf.io.read_file(path)
        unchanged = tf.equal(tf.cast(tf.strings.length(encoded), tf.int64), size)
        with tf.control_dependencies([tf.debugging.Assert(unchanged, [
                "image file changed since the folder was listed (its size differs); it is skipped, and the "
                "next run lists it again:", path])]):
            return tf.identity(encoded), label

    def epoch_paths(epoch: tf.Tensor) -> tf.data.Dataset:
        """Every path once, in an order seeded by (seed, epoch): classes mixed before any byte is read."""
        order = tf.random.experimental.stateless_shuffle(tf.range(tf.shape(paths)[0]),
                                                         seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
        return tf.data.Dataset.from_tensor_slices((tf.gather(paths, order), tf.gather(labels, order),
                                                   tf.gather(sizes, order)))

    return _Raw(tf.data.Dataset.from_tensor_slices((paths, labels, sizes)), found.class_names, len(found.paths),
                "folder", canonical_split(split), folder_splits(layout, validation_split), encoded=True, read=read,
                checked=True, epoch_dataset=epoch_paths, epoch_permutes=True,
                extras={"skipped": [p for p, _ in found.skipped]})


def _tfrecords(pattern: str, split: str, options: dict, training: bool, seed: int, deterministic: bool,
               num_examples: int | None, count_cache: str | None, shard: tuple[int, int] | None,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> _Raw:
    class_names, num_classes = options.pop("class_names", None), options.pop("num_classes", None)
    label_offset = options.pop("label_offset", 0)
    files = record_files(pattern)
    if not files:
        raise ValueError(f"no TFRecord files match {pattern!r}")
    if class_names is None:
        class_names = read_labels(files[0])  # written by write_tfrecords, on any filesystem
    if class_names is None:
        document, _ = metadata_entry(files)  # dataset.json of write_tfrecords, shards copied without labels file
        class_names = (document or {}).get("class_names") or None
    if class_names is None and num_classes is None:
        raise ValueError(f"TFRecord source {pattern!r}: pass class_names=[...] or num_classes=N (no labels file "
                         f"or dataset.json found)")
    names = tuple(class_names) if class_names else tuple(str(i) for i in range(num_classes))
    check_tfrecords(files, len(names), label_offset)
    count, count_source = tfrecord_count(files, num_examples, count_cache)
    if shard is not None and len(files) < shard[0]:
        raise ValueError(f"shard={shard} splits the files of {pattern!r} between {shard[0]} pipelines, but "
                         f"there are {len(files)} files; write at least {shard[0]} shards, or drop shard")

    def records(epoch=None) -> tf.data.Dataset:
        if epoch is None:
            ds = tf.data.Dataset.from_tensor_slices(files)
        else:  # epoch's file order: a stateless permutation seeded by (seed, epoch)
            ds = tf.data.Dataset.from_tensor_slices(tf.random.experimental.stateless_shuffle(
                tf.constant(files), seed=tf.stack([tf.constant(seed, tf.int64), epoch])))
        if shard is not None:
            ds = ds.shard(*shard)
        if training and epoch is None:  # file names shuffled before the records are read
            ds = ds.shuffle(len(files), seed=seed)
        ds = ds.interleave(
            lambda f: tf.data.TFRecordDataset(f, buffer_size=8 << 20).map(lambda r: (r, f)),
            cycle_length=min(len(files), 16),
            num_parallel_calls=AUTOTUNE,
            deterministic=deterministic or not training,
        )
        return ds.map(parse, num_parallel_calls=AUTOTUNE)

    def parse(record, shard):  # the label travels with its shard's name to the check
        encoded, label = parse_example(record, label_offset)
        return encoded, (label, shard)

    def check(image, tagged):
        """Every record's label checked as it streams, after ignore_errors (which would drop the error)."""
        label, shard = tagged
        return image, check_label(label, shard, len(names), label_offset)

    # shards that write_tfrecords wrote (dataset.json describes exactly these files, with the
    # "skipped" count of the writers that probe) hold only images that passed the pipeline's own
    # check and decode at the default pixel budget when written: not checked again unless the
    # budget is lower now. Other shards (ImageNet's own, a part of a split) are checked in the graph.
    _, entry = metadata_entry(files)
    written_checked = entry is not None and "skipped" in entry and max_pixels >= DEFAULT_MAX_PIXELS
    return _Raw(records(), names, count, "tfrecords", split, encoded=True, sharded=shard is not None,
                checked=written_checked, epoch_dataset=records, check=check,
                extras={"count_source": count_source})


def source_kind(source: Any) -> str:
    """The kind of a :func:`load` source, without reading it: "arrays" (an ``(images, labels)``
    pair), "digits", "tfds", "folder" (a local folder), "tfrecords" (a glob, a file or a URL:
    :func:`~kerasnets.data.tfrecords.is_record_source`), or "unknown" (another type, or a path that
    does not exist). The one place a source's kind is decided."""
    if isinstance(source, tuple) and len(source) == 2:
        return "arrays"
    if not isinstance(source, (str, os.PathLike)):
        return "unknown"
    source = os.fspath(source)
    if source == "digits":
        return "digits"
    if source.startswith("tfds:"):
        return "tfds"
    if os.path.isdir(source):
        return "folder"
    return "tfrecords" if is_record_source(source) else "unknown"


def _resolve(source, split, training, seed, options, deterministic=True, num_examples=None, count_cache=None,
             shard=None, max_pixels=DEFAULT_MAX_PIXELS) -> _Raw:
    kind = source_kind(source)
    if kind == "arrays":
        return _from_arrays(*source, class_names=options.pop("class_names", None), split=split,
                            validation_split=options.pop("validation_split", None), seed=seed)
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"source must be one of {SOURCE_KINDS}, got {type(source).__name__}")
    source = os.fspath(source)
    if kind == "digits":
        return _digits(split, options.pop("data_dir", None), options.pop("validation_split", None), seed)
    if kind == "tfds":
        return _tfds(source[5:], split, options.pop("data_dir", None), options.pop("download", False))
    if kind == "folder":
        return _folder(source, split, options.pop("validation_split", None), seed, max_pixels)
    if kind == "tfrecords":
        return _tfrecords(source, split, options, training, seed, deterministic, num_examples, count_cache, shard,
                          max_pixels)
    raise ValueError(f"source {source!r} is none of {SOURCE_KINDS} (no such folder or file)")


def available_splits(source: Any, **options: Any) -> tuple[str, ...] | None:
    """The splits ``load(source, split, **options)`` accepts, or None when unknown without reading the data.

    Cheap: a folder listing, no image is opened. Folders, digits and arrays with a
    ``validation_split`` list "train"/"validation"/"test" as present, then "all"; a prepared TFDS
    dataset lists its splits; TFRecord globs, unprepared TFDS datasets and plain arrays give None.
    Only ``validation_split`` and ``data_dir`` are read from ``options``; other load options are ignored.
    """
    validation_split, data_dir = options.get("validation_split"), options.get("data_dir")
    if isinstance(source, tuple):
        return ("train", "validation", "all") if validation_split else None
    if not isinstance(source, (str, os.PathLike)):
        return None
    source = os.fspath(source)
    if source == "digits":
        if data_dir and validation_split:
            _digits("train", data_dir, validation_split, 0)  # raises the explanation
        return ("train", "validation", "test", "all") if validation_split else ("train", "test", "all")
    if source.startswith("tfds:"):
        try:
            import tensorflow_datasets as tfds

            builder = tfds.builder(source[5:], data_dir=data_dir)
            return tuple(builder.info.splits.keys()) if builder.is_prepared() else None
        except Exception:  # unknown name, no metadata: load() explains
            return None
    if os.path.isdir(source):
        return folder_splits(folder_layout(source), validation_split)
    return None


def held_out_split(source: Any, preferred: str, **options: Any) -> str:
    """``preferred`` when ``source`` has that split, else the split held out from training.

    Split-layout folder: "test" if present, else "validation" (a folder or a ``validation_split``
    carve); class-per-subfolder folder: "validation"; digits: "test". TFDS, TFRecord globs and
    arrays: ``preferred`` unchanged. ValueError when a folder has no held-out split at all.
    """
    if not isinstance(source, (str, os.PathLike)):
        return preferred
    source = os.fspath(source)
    splits = None if source.startswith("tfds:") else available_splits(source, **options)
    if splits is None or _canonical_or_none(preferred) in splits:
        return preferred
    held_out = "test" if source == "digits" else next((s for s in ("test", "validation") if s in splits), None)
    if held_out is None:
        raise ValueError(f"{source!r} has no held-out split (it has {splits}); add a test/ or val/ folder, "
                         f"or pass validation_split=0.1 to carve one from train")
    log.info("%s has no %r split: using %r", source, preferred, held_out)
    return held_out


def _canonical_or_none(split: str) -> str | None:
    try:
        return canonical_split(split)
    except ValueError:
        return None


def check_not_empty(dataset: tf.data.Dataset, info: DatasetInfo) -> None:
    """Pull the first batch of ``dataset`` (from :func:`load`); ValueError when there is none, or
    when a TFRecord label in it lies outside the classes (see :func:`~kerasnets.data.tfrecords.check_label`).

    A folder or TFRecord set whose every image fails to decode is an empty dataset (the broken
    files are dropped), also when repeated: call this before training or evaluating on it.
    """
    with label_errors():  # a TFRecord label outside the classes: ValueError
        for _ in dataset.take(1):
            return
    n, batch = info.num_examples, info.extras.get("batch_size", 0)
    if info.extras.get("drop_remainder") and 0 < n < batch:
        raise ValueError(f"{info.source!r} split {info.split!r} has {n} examples, fewer than batch_size={batch} "
                         f"with drop_remainder=True; lower batch_size")
    unit = {"folder": "files", "tfrecords": "records"}.get(info.extras.get("kind"), "examples")
    count = f"{n} {unit}" if n >= 0 else f"unknown number of {unit}"
    raise ValueError(f"no image of {info.source!r} split {info.split!r} could be decoded ({count}); "
                     f"check that they are real JPEG/PNG/BMP/GIF images (open one with PIL) and replace the broken ones")


def _image_size(image_size: Any, training: bool) -> int | tuple[int, int]:
    """``load``'s ``image_size``: an int >= 8, or a (height, width) pair of them when not training
    (a square pair as its int); ValueError naming the allowed values otherwise."""
    try:
        height, width = output_size(image_size)
    except ValueError:
        height = width = 0
    if min(height, width) < 8:
        raise ValueError(f"image_size must be an integer >= 8 or a (height, width) pair of them, got {image_size!r}")
    if height == width:
        return height
    if training:
        raise ValueError(f"image_size={image_size!r} is not square, but training crops are square "
                         f"(random_resized_crop): pass an int, or training=False to evaluate a (height, width) model")
    return height, width


def scored_count(scored: int, info: DatasetInfo, expected: int | None = None) -> tuple[str, str | None]:
    """``(what an accuracy on `scored` images is of, why it is not the split's or None)``: the one
    rule for the trainer's final evaluation and ``kerasnets evaluate``.

    ``expected`` is the number of images the evaluation should have scored: ``info.num_examples``
    by default (files that passed the folder scan, records, examples); None or negative: unknown,
    nothing to check. Files the scan skipped (empty, not an image, truncated, over the pixel
    budget: ``info.extras["skipped"]``) are not in that count: they are reported, not fatal, since
    the scan named each one before anything ran. A shortfall beyond them is images that passed
    every check but failed to decode and were dropped by the pipeline: the accuracy is then of a
    part of the split, which the caller refuses (ValueError, exit status 2) with the reason given.
    """
    expected = info.num_examples if expected is None else expected
    skipped = len(info.extras.get("skipped") or ())
    known = expected is not None and expected >= 0
    of = expected if known else "unknown number of"
    text = f"{scored} of the {of} images of {info.source!r} split {info.split!r}"
    if skipped:
        text += f" ({skipped} more files skipped by the scan: unreadable or over the pixel budget)"
    if not known or scored == expected:
        return text, None
    return text, (f"scored {scored} of the {expected} images of {info.source!r} split {info.split!r}: "
                  f"{expected - scored} could not be decoded (they passed the file checks and were dropped), so the "
                  "accuracy is not the split's; replace the broken files (open each with PIL) or remove them")


def default_crop_padding(image_size: int) -> int:
    """The eval center-crop padding for ``image_size``: the EfficientNet reference's 32 from 224 px up;
    below 224, the same fraction as at 224 (87.5%, torchvision's and timm's ``crop_pct``), since 32 px
    of padding at 32 px would keep only the central half of every image."""
    return min(32, round(image_size * 32 / 224))


def load(
    source: Any,
    split: str = "train",
    image_size: int = 224,
    batch_size: int = 32,
    training: bool | None = None,
    *,
    seed: int = 0,
    deterministic: bool = True,
    shuffle_buffer: int = 10_000,
    cache: bool = False,
    repeat: bool = False,
    drop_remainder: bool = False,
    crop_scale: tuple[float, float] = (0.08, 1.0),
    crop_padding: int | None = None,
    flip: bool | None = None,
    resize_first: bool = False,
    resize_method: str | None = None,
    randaugment: bool | dict = False,
    autoaugment: bool = False,
    mixup_alpha: float = 0.0,
    cutmix_alpha: float = 0.0,
    one_hot: bool | None = None,
    num_examples: int | None = None,
    count_cache: str | os.PathLike | None = None,
    shard: tuple[int, int] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    dtype: str = "float32",
    first_epoch: int = 0,
    **options: Any,
) -> tuple[tf.data.Dataset, DatasetInfo]:
    """Load ``source`` as a batched ``tf.data.Dataset`` of ``(images, labels)`` plus a :class:`DatasetInfo`.

    Args:
        source: "digits" (embedded, offline), "tfds:NAME", an image folder (``root/<class>/`` or
            ``root/train|val|test/<class>/``), a TFRecord glob (ImageNet layout), or a
            ``(images, labels)`` tuple of numpy arrays.
        split: folders, digits, arrays: "train", "validation" (alias "val"), "test", "all", any
            casing (see :func:`available_splits`); TFDS: any TFDS split; TFRecord globs: ignored.
        image_size: output height and width: an int, or a (height, width) pair for evaluation
            (``training=False``: the center crop takes the largest window of that aspect ratio;
            training crops are square). A square pair is the int.
        training: random crop/flip/augment and shuffle (default: ``split == "train"``).
        seed: seeds the shuffles and every random crop, flip, AutoAugment, RandAugment, MixUp and
            CutMix draw (same seed, same stream). deterministic: keep the element order of parallel maps (the default: the stream
            is reproducible and an iterator checkpoint replays it exactly); False lets them yield out
            of order (faster on slow storage, not reproducible).
        shuffle_buffer: bounded shuffle buffer in examples, ``min(shuffle_buffer, num_examples)``
            (folders shuffle file paths and read the files after; TFRecord shard names are
            shuffled before their records are read too).
        cache: cache the read examples (encoded bytes of files and records) in memory.
        repeat, drop_remainder: repeat forever (each epoch reshuffled, with new crops) / fixed batch
            shapes (TPU).
        crop_scale: area range of the random-resized crop. crop_padding: eval center-crop padding
            (default :func:`default_crop_padding`: 32 = the EfficientNet reference from 224 px up,
            87.5% of the short side below; digits default 0). flip: random horizontal flip.
            resize_first: the eval crop resizes the whole image first, then cuts the center (timm's
            eval; :func:`~kerasnets.data.transforms.center_crop`).
        resize_method: "bilinear" (train default) or "bicubic" (eval default).
        randaugment: True or ``dict(num_ops=2, factor=0.5)``: Keras RandAugment on each batch.
        autoaugment: AutoAugment policy v0 (tensorflow/tpu) per image.
        mixup_alpha, cutmix_alpha: Keras MixUp / CutMix on batches (labels become one-hot).
        one_hot: one-hot float labels (default: only when mixing).
        num_examples: the number of examples the source holds, when known (ImageNet: 1,281,167
            train / 50,000 validation). TFRecord globs take it as their count; other sources know
            theirs (a different number is logged and ignored). Without it, TFRecords written by
            :func:`~kerasnets.data.write_tfrecords` are sized by their ``dataset.json``, others are
            counted once, every shard read in parallel (``info.extras["count_source"]``).
        count_cache: a folder (e.g. the run folder) where the record count of counted TFRecords is
            kept, so that the next load does not read them again. Other sources ignore it.
        shard: ``(count, index)``: keep only this pipeline's share, for input pipelines that run
            one per worker (``tf.distribute.InputContext.num_input_pipelines`` and
            ``input_pipeline_id``): TFRecords split their files (there must be at least ``count``),
            other sources their examples, before the shuffle; tf.distribute's auto-sharding is
            then off. ``num_examples`` stays the whole source's. Without it the dataset is
            auto-sharded by examples (DATA policy).
        max_pixels: pixel budget of each encoded image (folders, TFRecords, TFDS bytes), checked
            on its header before decoding (:mod:`kerasnets.data.headers`; default PIL's 89,478,485;
            baseline JPEGs count at 1/8 scale, since the crops decode them DCT-downscaled). A
            folder's files over it are skipped and counted like unreadable ones.
        dtype: of the images leaving the pipeline, one of :data:`OUTPUT_DTYPES`: "float32" (the
            default), or "uint8": the same pixels rounded to the nearest level (at most half a level,
            0.2% of the range, from the float ones), a quarter of the bytes to hold in the prefetch
            buffer, the backups and copy to an accelerator (the Trainer's training batches are
            uint8, cast to float32 on the device inside its compiled step).
        first_epoch: training with ``repeat``: the endless stream starts at this epoch (its
            permutation or shard order), with per-image and per-batch seeds of their own
            (from ``(seed, first_epoch)``): a progressive run's later stage continues the epochs
            instead of replaying the first stage's images and crops. 0: the stream as always.
        **options: per-source: ``data_dir``, ``download`` (tfds, digits), ``class_names``,
            ``num_classes``, ``label_offset`` (TFRecords), ``validation_split`` (folders, digits,
            arrays): a seeded carve of the train data into "train" (the rest) and "validation"
            (same seed, same partition). Plain folders default to 0.2; a split-layout folder with
            a validation folder rejects it; digits with ``data_dir`` rejects it.

    Images leave the pipeline as float32 (or ``dtype``) RGB in 0..255; the models normalize inside. Files that
    fail to decode are dropped (before ``repeat``): see :func:`check_not_empty`.

    Checkpointing: every random choice of a training pipeline is a stateless op. Crop, flip and
    AutoAugment are keyed by a per-example seed, RandAugment, MixUp and CutMix (Keras' layers, which
    draw from the batch's seed instead of their SeedGenerator:
    :func:`kerasnets.data.augment.stateless_call`) by a per-batch seed, both drawn from
    ``tf.data.Dataset.random`` streams of ``seed``. So ``tf.train.Checkpoint(iterator=it)`` saves
    the iterator, and a restored one (of a dataset loaded with the same arguments) yields exactly
    the batches the saved one would have yielded next (``info.extras["checkpointable"]`` is True).
    The checkpoint holds the prefetched batches and, for TFRecords, the shuffle buffer's contents
    (up to ``shuffle_buffer`` encoded images); a stream that shuffles decoded examples (TFDS) is
    checkpointed symbolically (positions; the buffer is recomputed on restore). ``cache=True`` puts
    the whole dataset into such a checkpoint: the trainer refuses it.
    """
    training = (str(split).lower() == "train") if training is None else training
    image_size = _image_size(image_size, training)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(shuffle_buffer, bool) or not isinstance(shuffle_buffer, int) or shuffle_buffer < 1:
        raise ValueError(f"shuffle_buffer must be a positive integer (examples), got {shuffle_buffer!r}")
    shard = _check_shard(shard)
    count_cache = os.fspath(count_cache) if count_cache is not None else None
    max_pixels = check_max_pixels(max_pixels)
    if dtype not in OUTPUT_DTYPES:
        raise ValueError(f"dtype must be one of {OUTPUT_DTYPES}, got {dtype!r}")
    if isinstance(first_epoch, bool) or not isinstance(first_epoch, int) or first_epoch < 0 or (
            first_epoch and not (training and repeat)):
        raise ValueError(f"first_epoch must be an integer >= 0, and 0 unless training with repeat=True, got {first_epoch!r}")
    # the seed of the stream's shuffles, per-image seeds and Keras layers (not of the carve or the epoch permutations)
    stream_seed = seed if not first_epoch else int(np.random.SeedSequence([seed, first_epoch]).generate_state(1)[0])
    raw = _resolve(source, split, training, seed, options, deterministic, num_examples, count_cache, shard, max_pixels)
    if options:
        raise TypeError(f"unknown options for source {source if isinstance(source, str) else 'arrays'!r}: {sorted(options)}")
    if num_examples is not None and raw.kind != "tfrecords" and num_examples != raw.num_examples:
        log.warning("num_examples=%s given, but %s split %r has %d examples: using %d", num_examples,
                    source if isinstance(source, str) else "arrays", raw.split, raw.num_examples, raw.num_examples)
    settings = {"crop_padding": default_crop_padding(min(output_size(image_size))), "flip": True, **raw.defaults}
    crop_padding = settings["crop_padding"] if crop_padding is None else crop_padding
    flip = settings["flip"] if flip is None else flip
    resize_method = resize_method or ("bilinear" if training else "bicubic")
    if resize_method not in RESIZE_METHODS:
        raise ValueError(f"resize_method must be one of {RESIZE_METHODS}, got {resize_method!r}")
    ordered = deterministic or not training
    # the seed of the augmentation draws (per example, per batch): each worker its own
    augment_seed = stream_seed if shard is None else stream_seed + 1_000_003 * (shard[1] + 1)

    base = raw.dataset
    if shard is not None and not raw.sharded:
        base = base.shard(*shard)
    if cache:
        base = (base.map(raw.read, num_parallel_calls=AUTOTUNE) if raw.read else base).cache()
    buffer = shuffle_buffer if raw.num_examples < 0 else min(shuffle_buffer, max(raw.num_examples, 1))

    def examples(ds: tf.data.Dataset, shuffle_seed, reshuffle: bool, shuffle: bool = True) -> tf.data.Dataset:
        """Shuffle, read, transform: one pass over the source."""
        if training and shuffle:
            ds = ds.shuffle(buffer, seed=shuffle_seed, reshuffle_each_iteration=reshuffle)
        if raw.read and not cache:  # the shuffle buffer held paths; read the files now
            ds = ds.map(raw.read, num_parallel_calls=AUTOTUNE, deterministic=ordered)
        if training:
            ds = _train_map(ds, train_transform(image_size, crop_scale, flip, resize_method, seed, crop_padding,
                                                max_pixels, checked=raw.checked),
                            autoaugment, augment_seed, ordered, rerandomize=reshuffle)
        else:
            # timm's resize_first decodes every pixel, which the scan's budget (crops: baseline JPEGs at 1/8) does not bound
            ds = ds.map(eval_transform(image_size, crop_padding, resize_method, max_pixels, resize_first,
                                       checked=raw.checked and not resize_first),
                        num_parallel_calls=AUTOTUNE,
                        deterministic=True)
        if raw.encoded:  # a file that passed the cheap checks but fails to decode; before repeat, so that
            ds = ds.ignore_errors(log_warning=True)  # a set where nothing decodes is empty, not endless
        if raw.check:
            ds = ds.map(raw.check, num_parallel_calls=AUTOTUNE, deterministic=ordered)
        return ds

    if training and repeat:
        # one endless stream, never re-iterated, so no hidden per-iteration reshuffle state, which a
        # restored iterator checkpoint does not reproduce past the next epoch boundary
        # (tensorflow#48178). Folders: epoch e is a permutation of every path seeded by (seed, e),
        # each file once per epoch. TFRecords: epoch e's shard order is seeded by (seed, e) and one
        # record buffer shuffles the stream (spanning epoch boundaries, as the TPU reference's
        # shuffle after repeat); arrays and the embedded digits: epoch e is a permutation of the
        # indices seeded by (seed, e), no buffer; TFDS (digits from a data_dir too): that buffer alone.
        def epoch(index):
            if not raw.epoch_dataset or cache:
                return base
            source = raw.epoch_dataset(index)
            return source.shard(*shard) if shard is not None and not raw.sharded else source

        if raw.encoded and not _decodes_any(raw, base, max_pixels):  # endless retries of files that never decode
            ds = examples(base, stream_seed, reshuffle=False)  # one empty pass instead: check_not_empty says why
        else:
            ds = examples(tf.data.Dataset.counter(first_epoch).flat_map(epoch), stream_seed, reshuffle=False,
                          shuffle=not (raw.epoch_permutes and not cache))
    else:
        ds = examples(base, seed, reshuffle=True)
        if repeat:
            ds = ds.repeat()
    mixing = training and (mixup_alpha > 0 or cutmix_alpha > 0)
    if one_hot or mixing:
        depth = len(raw.class_names)
        ds = ds.map(lambda x, y: (x, tf.one_hot(tf.cast(y, tf.int32), depth)), num_parallel_calls=AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=AUTOTUNE, deterministic=True)
    if training and (randaugment or mixing):
        ds = _batch_map(ds, randaugment, mixup_alpha, cutmix_alpha, augment_seed, rerandomize=not repeat)
    if dtype == "uint8":  # every transform above keeps 0..255 (RandAugment is clipped): round to the levels
        ds = ds.map(lambda x, y: (tf.cast(tf.round(tf.clip_by_value(x, 0.0, 255.0)), tf.uint8), y),
                    num_parallel_calls=AUTOTUNE)
    opts = tf.data.Options()
    opts.deterministic = ordered
    # ignore_errors() stops tf.distribute's FILE auto-sharding (it cannot walk past it): shard by
    # examples, or not at all when the pipeline was given its share (shard=...).
    opts.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.OFF if shard is not None else tf.data.experimental.AutoShardPolicy.DATA
    )
    # A training stream that shuffles decoded examples in a buffer (TFDS, digits from a data_dir) is
    # checkpointed symbolically: its checkpoint holds positions and recomputes the buffer on restore
    # (kept, it would hold up to shuffle_buffer decoded images). Every other stream has no such
    # buffer (arrays, digits, folders: a stateless per-epoch permutation) or cannot be (TFRecords,
    # folders: ignore_errors): its checkpoint holds the in-flight batches. The symbolic mode is not
    # used where it is not needed: it made the digits pipeline use 38% more CPU per batch (6.5
    # against 4.7 ms at batch 64) and the trainer's steps 6% slower on 2 cores (issue #21).
    symbolic = training and not cache and not raw.encoded and not raw.epoch_permutes
    opts.experimental_symbolic_checkpoint = symbolic
    ds = ds.with_options(opts).prefetch(AUTOTUNE)
    info = DatasetInfo(
        source=str(source) if isinstance(source, (str, os.PathLike)) else "arrays",
        split=raw.split,
        class_names=raw.class_names,
        num_examples=raw.num_examples,
        image_size=image_size,
        extras={"count_source": "source", **raw.extras, "kind": raw.kind, "batch_size": batch_size,
                "drop_remainder": drop_remainder, "checkpointable": True, "symbolic_checkpoint": symbolic},
        preprocessing={"image_size": image_size, "crop_padding": crop_padding, "resize_method": resize_method,
                       "flip": flip, "training": training, "resize_first": resize_first},
        splits=raw.splits,
    )
    return ds, info


def decode_probe(encoded: tf.Tensor, max_pixels: int = DEFAULT_MAX_PIXELS) -> tf.Tensor:
    """The encoded image ``encoded`` decoded as the pipeline decodes it, at 8 x 8 pixels, or an
    InvalidArgumentError naming why it does not decode: what tells a readable file from one that
    passes every header check but is corrupt inside (the load probe, ``write_tfrecords``).

    It runs the pipeline's own crop (``center_crop``, whose header check is the pipeline's pixel
    budget: a baseline JPEG counts at 1/8 and decodes DCT-downscaled) at 8 px, the cheapest decode.
    A full-resolution decode here called a folder of baseline JPEGs over 89 MP unreadable, which
    the pipeline reads, and ended the endless training stream after one pass. The pixels themselves
    are returned: their shape alone is static, and graph optimization then pruned the decode.
    """
    return center_crop(encoded, 8, crop_padding=0, max_pixels=max_pixels)


def _decodes_any(raw: _Raw, base: tf.data.Dataset, max_pixels: int) -> bool:
    """Whether any example of an encoded source decodes (:func:`decode_probe`; reads in order until
    the first one does, a full pass only when none does)."""
    ds = base.map(raw.read, num_parallel_calls=AUTOTUNE) if raw.read else base
    ds = ds.map(lambda encoded, label: decode_probe(encoded, max_pixels))
    return bool(list(ds.ignore_errors().take(1).as_numpy_iterator()))


def _check_shard(shard: Any) -> tuple[int, int] | None:
    """``shard`` as ``(count, index)`` with ``0 <= index < count``; ValueError naming the fix otherwise."""
    if shard is None:
        return None
    try:
        count, index = (int(v) for v in shard)
    except (TypeError, ValueError):
        raise ValueError(f"shard must be (count, index), e.g. (num_workers, task_index), got {shard!r}") from None
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard=(count, index) needs count >= 1 and 0 <= index < count, got {shard!r}")
    return count, index


def _train_map(ds: tf.data.Dataset, transform: Callable, autoaugment: bool, seed: Any,
               ordered: bool, rerandomize: bool = True) -> tf.data.Dataset:
    """Crop, flip and (optionally) AutoAugment each example with stateless ops keyed by its own seed.

    The seeds come from ``tf.data.Dataset.random(seed)`` zipped after the shuffle: a checkpointable
    source that draws new seeds every epoch under ``repeat()`` (new crops each epoch, same stream
    for the same ``seed``).
    """
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=rerandomize).batch(2)

    def per_example(example, element_seed):
        crop_seed, augment_seed = tf.unstack(tf.random.experimental.stateless_split(element_seed, 2))
        image, label = transform(*example, crop_seed)
        if autoaugment:
            from kerasnets.data.augment import autoaugment as auto_augment

            image = auto_augment(image, seed=augment_seed)
        return image, label

    return tf.data.Dataset.zip((ds, seeds)).map(per_example, num_parallel_calls=AUTOTUNE, deterministic=ordered)


def _batch_map(ds: tf.data.Dataset, randaugment: bool | dict, mixup_alpha: float, cutmix_alpha: float, seed: int,
               rerandomize: bool) -> tf.data.Dataset:
    """RandAugment, then MixUp or CutMix, on each batch (Keras layers: :mod:`kerasnets.data.augment`),
    every draw keyed by the batch's own seed (:func:`~kerasnets.data.augment.stateless_call`).

    As :func:`_train_map`'s per-example seeds, the batch seeds come from ``tf.data.Dataset.random``
    zipped with the batches: no stateful op, so the iterator can be checkpointed and a restored one
    draws what the saved one would have drawn. Their stream is its own (seeded from ``seed``, not
    ``seed`` itself: that is the per-example stream).
    """
    from kerasnets.data.augment import batch_mixer, randaugment_layer, stateless_call

    layer = randaugment_layer(randaugment) if randaugment else None
    mix = batch_mixer(mixup_alpha, cutmix_alpha) if mixup_alpha > 0 or cutmix_alpha > 0 else None
    batch_seed = int(np.random.SeedSequence([seed % 2 ** 64, 1]).generate_state(1)[0])
    seeds = tf.data.Dataset.random(seed=batch_seed, rerandomize_each_iteration=rerandomize).batch(2)

    def per_batch(batch, element_seed):
        images, labels = batch
        augment_seed, mix_seed = tf.unstack(tf.random.experimental.stateless_split(element_seed, 2))
        if layer is not None:  # clipped to 0..255, the range every later step takes
            images = tf.clip_by_value(tf.cast(stateless_call(layer, images, augment_seed), tf.float32), 0.0, 255.0)
        if mix is not None:
            images, labels = mix(images, labels, mix_seed)
        return images, labels

    return tf.data.Dataset.zip((ds, seeds)).map(per_batch, num_parallel_calls=AUTOTUNE)
