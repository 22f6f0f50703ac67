"""A miniature ImageNet in the real TFRecord layout, for tests of the ImageNet recipes.

``write_mini_imagenet(root)`` writes ``train-00000-of-01024`` ... ``train-01023-of-01024`` and
``validation-00000-of-00128`` ... ``validation-00127-of-00128`` as the TPU / Model Garden converters
do: each record holds ``image/encoded`` (a JPEG) and ``image/class/label`` (1-based, label space
1..1000), and nothing else is written (no ``dataset.json``, no labels file: foreign shards, as
downloaded). Only ``num_labels`` distinct labels occur (1..10 by default); each image is a
scikit-learn digit drawn in a colour of its class, so a model can learn something in a few steps.
"""

from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["write_mini_imagenet", "IMAGENET_CLASSES"]

IMAGENET_CLASSES = 1000  #: the label space of the shards (labels 1..1000)
_PALETTE = np.array([(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
                     (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)], np.float32)


def _jpeg(digit: np.ndarray, label: int, size: int) -> bytes:
    """An 8x8 digit (0..16) upscaled to ``size`` px, drawn in the class colour on a dark ground, as JPEG."""
    from PIL import Image

    ink = np.asarray(Image.fromarray((digit * 255 / 16).astype(np.uint8)).resize((size, size), Image.BILINEAR),
                     np.float32)[..., None] / 255.0
    colour = _PALETTE[(label - 1) % len(_PALETTE)]
    image = np.clip(ink * colour + (1.0 - ink) * 20.0, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _example(encoded: bytes, label: int) -> bytes:
    import tensorflow as tf

    feature = {
        "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded])),
        "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_mini_imagenet(root: str | os.PathLike, train_shards: int = 1024, eval_shards: int = 128,
                        per_shard: int | tuple[int, int] = (2, 1), size: int = 32, num_labels: int = 10,
                        seed: int = 0) -> dict:
    """Write a miniature ImageNet into ``root`` and return its patterns and counts.

    Args:
        root: folder of the shards (created).
        train_shards, eval_shards: shard counts (ImageNet: 1024 and 128).
        per_shard: images per shard, ``(train, eval)`` or one number for both.
        size: image height and width in pixels.
        num_labels: distinct labels used, 1..num_labels (at most 10, one per digit); the label
            space stays 1..1000.
        seed: picks the digits.

    Returns:
        ``{"train": "<root>/train-*-of-*", "eval": "<root>/validation-*-of-*", "train_examples",
        "eval_examples", "num_classes": 1000, "labels": (1, ..., num_labels), "train_files",
        "eval_files"}``.
    """
    import tensorflow as tf
    from sklearn.datasets import load_digits

    train_per, eval_per = (per_shard, per_shard) if isinstance(per_shard, int) else per_shard
    if min(train_shards, eval_shards, train_per, eval_per, size) < 1 or not 1 <= num_labels <= 10:
        raise ValueError("shards, per_shard and size must be >= 1 and num_labels in 1..10, got "
                         f"{(train_shards, eval_shards, per_shard, size, num_labels)}")
    root = os.fspath(root)
    os.makedirs(root, exist_ok=True)
    digits = load_digits()
    rng = np.random.RandomState(seed)
    by_label = {d: np.flatnonzero(digits.target == d) for d in range(num_labels)}
    pools = {}  # (label, split) -> JPEGs of distinct digits: eval digits are not training digits
    for d, indices in by_label.items():
        indices = rng.permutation(indices)
        cut = len(indices) * 3 // 4
        for split, chosen in (("train", indices[:cut][:16]), ("eval", indices[cut:][:8])):
            pools[d + 1, split] = [_jpeg(digits.images[i], d + 1, size) for i in chosen]

    def shards(prefix: str, count: int, per: int, split: str) -> list[tuple[str, list[bytes]]]:
        jobs, n = [], 0
        for index in range(count):
            records = []
            for _ in range(per):
                label = n % num_labels + 1
                pool = pools[label, split]
                records.append(_example(pool[(n // num_labels) % len(pool)], label))
                n += 1
            jobs.append((os.path.join(root, f"{prefix}-{index:05d}-of-{count:05d}"), records))
        return jobs

    def write(job: tuple[str, list[bytes]]) -> str:
        path, records = job
        with tf.io.TFRecordWriter(path) as writer:
            for record in records:
                writer.write(record)
        return path

    train_jobs = shards("train", train_shards, train_per, "train")
    eval_jobs = shards("validation", eval_shards, eval_per, "eval")
    with ThreadPoolExecutor(max_workers=8) as pool:
        written = list(pool.map(write, train_jobs + eval_jobs))
    return {
        "train": os.path.join(root, "train-*-of-*"),
        "eval": os.path.join(root, "validation-*-of-*"),
        "train_examples": train_shards * train_per,
        "eval_examples": eval_shards * eval_per,
        "num_classes": IMAGENET_CLASSES,
        "labels": tuple(range(1, num_labels + 1)),
        "train_files": written[:train_shards],
        "eval_files": written[train_shards:],
    }
