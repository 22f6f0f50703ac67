"""tf.data input pipelines: digits (embedded), TFDS, image folders, TFRecords, numpy arrays.

``kerasnets.data.load(source, split, image_size, batch_size, training)`` returns a batched dataset of
``(float32 RGB images in 0..255, labels)`` and a :class:`DatasetInfo`. Image folders are either
``root/<class>/<images>`` or ``root/train|val|test/<class>/<images>`` (as datasets are downloaded);
:func:`available_splits` and :func:`held_out_split` tell which splits a source has.
"""

from kerasnets.data.digits import KerasnetsDigits, digits_arrays
from kerasnets.data.pipeline import (
    DatasetInfo,
    available_splits,
    check_not_empty,
    default_crop_padding,
    held_out_split,
    load,
)
from kerasnets.data.tfrecords import write_tfrecords

__all__ = [
    "load", "DatasetInfo", "available_splits", "held_out_split", "check_not_empty", "default_crop_padding", "write_tfrecords",
    "KerasnetsDigits", "digits_arrays",
]
