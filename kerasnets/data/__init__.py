"""tf.data input pipelines: digits (embedded), TFDS, image folders, TFRecords, numpy arrays.

``kerasnets.data.load(source, split, image_size, batch_size, training)`` returns a batched dataset of
``(float32 RGB images in 0..255, labels)`` and a :class:`DatasetInfo`. Image folders are either
``root/<class>/<images>`` or ``root/train|val|test/<class>/<images>`` (as datasets are downloaded);
:func:`available_splits` and :func:`held_out_split` tell which splits a source has.
:func:`write_tfrecords` converts a folder to shuffled ImageNet-layout shards plus a ``dataset.json``
of their sizes; :func:`tfrecord_count` sizes any set of shards (metadata, cache, or a parallel count).
"""

from kerasnets.data.digits import KerasnetsDigits, digits_arrays
from kerasnets.data.pipeline import (
    DatasetInfo,
    available_splits,
    check_not_empty,
    default_crop_padding,
    held_out_split,
    load,
    source_kind,
)
from kerasnets.data.tfrecords import read_metadata, tfrecord_count, write_tfrecords

__all__ = [
    "load", "DatasetInfo", "available_splits", "held_out_split", "check_not_empty", "default_crop_padding", "write_tfrecords",
    "tfrecord_count", "read_metadata", "source_kind",
    "KerasnetsDigits", "digits_arrays",
]
