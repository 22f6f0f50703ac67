"""tf.data input pipelines: digits (embedded), TFDS, image folders, TFRecords, numpy arrays.

``kerasnets.data.load(source, split, image_size, batch_size, training)`` returns a batched dataset of
``(float32 RGB images in 0..255, labels)`` and a :class:`DatasetInfo`.
"""

from kerasnets.data.digits import KerasnetsDigits, digits_arrays
from kerasnets.data.pipeline import DatasetInfo, load
from kerasnets.data.tfrecords import write_tfrecords

__all__ = ["load", "DatasetInfo", "write_tfrecords", "KerasnetsDigits", "digits_arrays"]
