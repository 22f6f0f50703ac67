"""The embedded default dataset: scikit-learn's handwritten digits as an offline TFDS builder.

1,797 real 8x8 grayscale scans ship inside scikit-learn, so ``tfds.load("kerasnets_digits")``
works with no network. The train/test split is fixed and stratified (seed 0, 20% test).
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

__all__ = ["KerasnetsDigits", "digits_arrays", "DIGITS_CLASS_NAMES"]

DIGITS_CLASS_NAMES = tuple(str(i) for i in range(10))
TEST_FRACTION = 0.2
SPLIT_SEED = 0


def digits_arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 [N, 8, 8, 1] in 0..255, labels int64 [N])`` of the fixed "train" or "test" split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if split not in ("train", "test"):
        raise ValueError(f"digits split must be 'train' or 'test', got {split!r}")
    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=digits.target
    )
    return (x_train, y_train.astype(np.int64)) if split == "train" else (x_test, y_test.astype(np.int64))


class KerasnetsDigits(tfds.core.GeneratorBasedBuilder):
    """scikit-learn digits (8x8 grayscale, 10 classes) with kerasnets' fixed train/test split."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "scikit-learn load_digits, stratified 80/20 split with seed 0."}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="Handwritten digits shipped with scikit-learn (UCI optdigits test set), 8x8 grayscale.",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(8, 8, 1)),
                    "label": tfds.features.ClassLabel(names=list(DIGITS_CLASS_NAMES)),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://scikit-learn.org/stable/datasets/toy_dataset.html#digits-dataset",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download: the data ships with scikit-learn
        return {split: self._generate_examples(split) for split in ("train", "test")}

    def _generate_examples(self, split: str):
        images, labels = digits_arrays(split)
        for index, (image, label) in enumerate(zip(images, labels)):
            yield index, {"image": image, "label": int(label)}
