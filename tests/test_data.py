"""Input pipelines on real files the tests make: folders, TFRecords, digits, TFDS, transforms."""

import logging
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from kerasnets import data
from kerasnets.data import augment, transforms


def _photo(height=48, width=64, seed=0):
    rng = np.random.RandomState(seed)
    base = np.linspace(0, 255, width, dtype=np.float32)[None, :, None] * np.ones((height, 1, 3), np.float32)
    return np.clip(base + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)


@pytest.fixture
def image_folder(tmp_path):
    """cat/ and dog/ with every supported format and mode, plus three broken files."""
    root = tmp_path / "images"
    (root / "cat").mkdir(parents=True)
    (root / "dog").mkdir()
    Image.fromarray(_photo(seed=1)).save(root / "cat" / "rgb.jpg", quality=90)
    Image.fromarray(_photo(seed=2)[..., 0]).save(root / "cat" / "gray.png")
    rgba = np.concatenate([_photo(seed=3), np.full((48, 64, 1), 128, np.uint8)], -1)
    Image.fromarray(rgba).save(root / "cat" / "rgba.png")
    Image.fromarray(_photo(seed=4)).convert("P").save(root / "dog" / "palette.png")
    deep = (_photo(seed=5)[..., :1].astype(np.uint16) * 257)
    (root / "dog" / "deep16.png").write_bytes(tf.io.encode_png(deep).numpy())
    Image.fromarray(_photo(seed=6)).save(root / "dog" / "bitmap.bmp")
    Image.fromarray(_photo(seed=7)).save(root / "dog" / "anim.gif")
    Image.fromarray(_photo(seed=8)).save(root / "dog" / "photo.JPEG")
    (root / "dog" / "empty.jpg").write_bytes(b"")
    full = (root / "cat" / "rgb.jpg").read_bytes()
    (root / "cat" / "truncated.jpg").write_bytes(full[: len(full) // 2])
    (root / "dog" / "notanimage.png").write_bytes(b"hello, this is text")
    (root / "dog" / "readme.txt").write_text("ignored: not an image extension")
    return root


def test_folder_reads_every_format_as_rgb_and_skips_broken_files(image_folder, caplog):
    with caplog.at_level(logging.WARNING, logger="kerasnets.data"):
        ds, info = data.load(str(image_folder), split="all", image_size=32, batch_size=4, training=False)
    assert info.class_names == ("cat", "dog")
    assert info.num_examples == 8
    assert len(info.extras["skipped"]) == 3
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "skipped 3" in warnings[0] and "empty.jpg" in warnings[0]
    images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    images, labels = np.concatenate(images), np.concatenate(labels)
    assert images.shape == (8, 32, 32, 3) and images.dtype == np.float32
    assert 0 <= images.min() and images.max() <= 255 and images.max() > 100
    assert sorted(labels.tolist()) == [0, 0, 0, 1, 1, 1, 1, 1]


def test_16_bit_png_is_scaled_not_clipped(image_folder):
    encoded = tf.io.read_file(str(image_folder / "dog" / "deep16.png"))
    decoded = transforms.decode_rgb(encoded).numpy()
    expected = _photo(seed=5)[..., 0]
    assert decoded.dtype == np.uint8 and decoded.shape == (48, 64, 3)
    assert np.abs(decoded[..., 0].astype(int) - expected).max() <= 1


def test_folder_validation_split_is_seeded_and_disjoint(image_folder):
    def files(split, seed):
        ds, info = data.load(str(image_folder), split=split, image_size=16, batch_size=8, training=False,
                             validation_split=0.25, seed=seed)
        return info.num_examples, np.concatenate([x.numpy() for x, _ in ds])
    n_train, train = files("train", 0)
    n_val, val = files("validation", 0)
    assert (n_train, n_val) == (6, 2)
    assert np.array_equal(val, files("validation", 0)[1])
    assert not any(np.array_equal(v, t) for v in val for t in train)


@pytest.mark.parametrize("make,message", [
    (lambda root: None, "no such folder or file"),
    (lambda root: root.mkdir(), "no class subfolders"),
    (lambda root: (root.mkdir(), (root / "a.jpg").write_bytes(b"x")), "move them into one subfolder per class"),
    (lambda root: (root.mkdir(), (root / "cls").mkdir()), "no readable"),
])
def test_bad_folders_fail_before_training(tmp_path, make, message):
    root = tmp_path / "bad"
    make(root)
    with pytest.raises(ValueError, match=message):
        data.load(str(root), batch_size=2)


def test_tfrecords_round_trip_in_imagenet_layout(image_folder, tmp_path):
    shards = data.write_tfrecords(str(image_folder), str(tmp_path / "rec" / "train"), shards=3, progress=False)
    assert len(shards) == 3 and all(os.path.exists(s) for s in shards)
    assert not list((tmp_path / "rec").glob("*.tmp"))
    ds, info = data.load(str(tmp_path / "rec" / "train-*-of-*"), image_size=24, batch_size=16, training=False)
    assert info.class_names == ("cat", "dog") and info.num_examples == 8
    record = next(iter(tf.data.TFRecordDataset(shards[0])))
    keys = set(tf.train.Example.FromString(record.numpy()).features.feature)
    assert {"image/encoded", "image/class/label"} <= keys
    x, y = next(iter(ds))
    assert x.shape == (8, 24, 24, 3) and sorted(y.numpy().tolist()) == [0, 0, 0, 1, 1, 1, 1, 1]
    train, _ = data.load(str(tmp_path / "rec" / "train-*"), image_size=24, batch_size=4, training=True,
                         randaugment=True)
    assert next(iter(train))[0].shape == (4, 24, 24, 3)


def _write_records(path, features):
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString())


def test_tfrecord_without_keys_or_with_bad_labels_fails_early(tmp_path):
    image = tf.io.encode_jpeg(_photo()).numpy()
    _write_records(tmp_path / "nokey-00000-of-00001", {
        "image/raw": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image]))})
    with pytest.raises(ValueError, match=r"lacks keys \['image/class/label', 'image/encoded'\]"):
        data.load(str(tmp_path / "nokey-*"), num_classes=2)
    _write_records(tmp_path / "label-00000-of-00001", {
        "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
        "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[1000]))})
    with pytest.raises(ValueError, match="label_offset=-1"):
        data.load(str(tmp_path / "label-*"), num_classes=1000)
    ds, _ = data.load(str(tmp_path / "label-*"), num_classes=1000, label_offset=-1, training=False, image_size=16)
    assert next(iter(ds))[1].numpy().tolist() == [999]
    with pytest.raises(ValueError, match="no TFRecord files match"):
        data.load(str(tmp_path / "missing-*"), num_classes=2)


def test_digits_is_embedded_offline_and_split_is_fixed():
    train, info = data.load("digits", "train", image_size=32, batch_size=2000, training=False)
    test, test_info = data.load("digits", "test", image_size=32, batch_size=2000, training=False)
    assert (info.num_examples, test_info.num_examples, info.num_classes) == (1437, 360, 10)
    x, y = next(iter(test))
    assert x.shape == (360, 32, 32, 3) and np.bincount(y.numpy()).min() >= 35  # stratified
    x_again, _ = next(iter(data.load("digits", "test", image_size=32, batch_size=2000, training=False)[0]))
    assert np.array_equal(x.numpy(), x_again.numpy())


def test_digits_as_a_real_tfds_dataset(tmp_path):
    import tensorflow_datasets as tfds

    ds, info = data.load("digits", "test", image_size=16, batch_size=400, training=False, data_dir=str(tmp_path))
    assert info.num_examples == 360
    via_tfds = tfds.load("kerasnets_digits", split="test", data_dir=str(tmp_path), as_supervised=True)
    images = np.stack([x.numpy() for x, _ in via_tfds])
    reference, _ = data.digits_arrays("test")
    assert sorted(map(bytes, images)) == sorted(map(bytes, reference))


def test_tfds_absent_without_download_names_the_data_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        data.load("tfds:mnist", data_dir=str(tmp_path))


def test_numpy_arrays_and_their_errors():
    images = np.random.RandomState(0).randint(0, 256, (10, 20, 20)).astype(np.uint8)
    ds, info = data.load((images, np.arange(10) % 3), image_size=20, batch_size=5, training=False, crop_padding=0)
    x, y = next(iter(ds))
    assert info.num_classes == 3 and x.shape == (5, 20, 20, 3)
    np.testing.assert_allclose(x.numpy()[0, ..., 1], images[0], atol=1e-3)
    with pytest.raises(ValueError, match="labels must lie in 0..1"):
        data.load((images, np.arange(10)), class_names=["a", "b"])
    with pytest.raises(ValueError, match="uint8 or floats in 0..255"):
        data.load((images / 255.0 - 0.5, np.zeros(10)))
    with pytest.raises(TypeError, match="unknown options"):
        data.load((images, np.zeros(10)), validation_split=0.1)


def test_eval_center_crop_uses_crop_padding_32():
    image = np.arange(100 * 80 * 3, dtype=np.float32).reshape(100, 80, 3) % 256
    out = transforms.center_crop(tf.constant(image.astype(np.uint8)), 32, crop_padding=32, method="bilinear")
    crop = int(32 / 64 * 80)  # 40 px of the 80 px short side
    top, left = (100 - crop + 1) // 2, (80 - crop + 1) // 2
    expected = tf.image.resize(image.astype(np.uint8)[top:top + crop, left:left + crop].astype(np.float32), [32, 32])
    np.testing.assert_allclose(out.numpy(), expected.numpy(), atol=1e-3)


def test_random_resized_crop_on_jpeg_bytes_matches_decoded_crop():
    jpeg = tf.io.encode_jpeg(_photo(96, 128))
    tf.random.set_seed(3)
    from_bytes = transforms.random_resized_crop(jpeg, 32, scale=(0.2, 0.5), seed=7)
    tf.random.set_seed(3)
    from_pixels = transforms.random_resized_crop(tf.io.decode_jpeg(jpeg), 32, scale=(0.2, 0.5), seed=7)
    assert from_bytes.shape == (32, 32, 3)
    diff = np.abs(from_bytes.numpy() - from_pixels.numpy())  # same window; libjpeg chroma edges differ slightly
    assert diff.mean() < 1.0 and diff.max() < 16


def test_randaugment_picks_different_ops_for_different_batches_in_tf_data():
    """keras#21169: op choice must not be frozen when the dataset map is traced."""
    layer = augment.randaugment_layer(True, seed=1)
    layer.build((32, 32, 3))
    image = tf.zeros((32, 32, 3))
    choices = tf.data.Dataset.range(12).map(
        lambda _: layer.get_random_transformation(image, training=True)["layer_idxes"])
    distinct = {tuple(c.numpy().tolist()) for c in choices}
    assert len(distinct) >= 4


def test_autoaugment_policy_v0_ops_change_images_as_specified():
    image = tf.constant(_photo(32, 32).astype(np.float32))
    inverted = augment.AUTOAUGMENT_OPS["Invert"](image, 9)
    np.testing.assert_allclose(inverted.numpy(), 255 - image.numpy())
    solarized = augment.AUTOAUGMENT_OPS["Solarize"](image, 5).numpy()  # threshold 128
    np.testing.assert_allclose(solarized, np.where(image.numpy() < 128, image.numpy(), 255 - image.numpy()))
    posterized = augment.AUTOAUGMENT_OPS["Posterize"](image, 6).numpy()  # 2 bits kept
    assert set(np.unique(posterized)) <= {0, 64, 128, 192}
    equalized = augment.AUTOAUGMENT_OPS["Equalize"](image, 0).numpy()
    assert equalized.min() == 0 and equalized.max() >= 250
    rotated = augment.AUTOAUGMENT_OPS["Rotate"](image, 10).numpy()
    assert (rotated == 128).any() and not np.array_equal(rotated, image.numpy())
    assert len(augment.POLICY_V0) == 25
    outs = tf.data.Dataset.from_tensors(image).repeat(8).map(augment.autoaugment)
    assert len({o.numpy().tobytes() for o in outs}) >= 3


def test_mixup_and_cutmix_give_soft_labels_that_sum_to_one():
    ds, _ = data.load("digits", "train", image_size=32, batch_size=16, mixup_alpha=0.4, cutmix_alpha=1.0)
    _, labels = next(iter(ds))
    assert labels.shape == (16, 10)
    np.testing.assert_allclose(labels.numpy().sum(-1), 1.0, atol=1e-5)
    assert (labels.numpy().max(-1) < 1.0).any()
