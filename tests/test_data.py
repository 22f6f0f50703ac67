"""Input pipelines on real files the tests make: folders, TFRecords, digits, TFDS, transforms."""

import json
import logging
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from kerasnets import data
from kerasnets.data import augment, transforms
from kerasnets.data.tfrecords import label_errors


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
    (lambda root: root.mkdir(), "is empty"),
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
    _write_records(tmp_path / "float-00000-of-00001", {
        "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
        "image/class/label": tf.train.Feature(float_list=tf.train.FloatList(value=[1.0]))})
    with pytest.raises(ValueError, match=r"record 0 does not parse .* image/class/label: int64"):
        data.load(str(tmp_path / "float-*"), num_classes=2)
    with pytest.raises(ValueError, match="no TFRecord files match"):
        data.load(str(tmp_path / "missing-*"), num_classes=2)


def _class_sorted_shards(folder, labels, per_shard=80):
    """Foreign shards sorted by class, as many converters write them: shard i holds ``per_shard``
    records of label ``labels[i]`` (so the first shard's first records show one class only)."""
    folder.mkdir(parents=True, exist_ok=True)
    for shard, label in enumerate(labels):
        with tf.io.TFRecordWriter(str(folder / f"r-{shard:05d}-of-{len(labels):05d}")) as writer:
            for value in range(per_shard):
                writer.write(_tiny_record(value, label))


@pytest.mark.parametrize("labels, wrong_offset, right_offset, bad", [
    ((1, 2, 3, 4), 0, -1, 4),  # 1-based shards read as 0-based: class 4 is past num_classes=4
    ((3, 2, 1, 0), -1, 0, -1),  # 0-based shards given ImageNet's label_offset=-1: class 0 becomes -1
])
def test_tfrecord_labels_are_checked_on_every_record_not_only_the_first(tmp_path, labels, wrong_offset,
                                                                           right_offset, bad):
    _class_sorted_shards(tmp_path, labels)
    glob_ = str(tmp_path / "r-*")
    message = (rf"label {bad} \(after label_offset={wrong_offset}\) in shard '.*r-00003-of-00004'; "
               r"the 4 classes are 0\.\.3\. 1-based shards .* need label_offset=-1, 0-based ones label_offset=0")
    # batch_size=320: one batch holds every record, so the first-batch check reaches the last shard
    ds, info = data.load(glob_, image_size=8, batch_size=320, training=False, num_classes=4,
                         label_offset=wrong_offset)  # the first 64 records of the first shard are fine
    with pytest.raises(ValueError, match=message):
        data.check_not_empty(ds, info)
    # a training pass with the default shuffle: the bad records are not dropped as undecodable
    train, _ = data.load(glob_, image_size=8, batch_size=32, num_classes=4, label_offset=wrong_offset)
    with pytest.raises(ValueError, match=message), label_errors():
        for _ in train:
            pass
    right, _ = data.load(glob_, image_size=8, batch_size=32, num_classes=4, label_offset=right_offset)
    seen = np.concatenate([y.numpy() for _, y in right])
    assert np.bincount(seen, minlength=4).tolist() == [80] * 4


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
        data.load((images, np.zeros(10)), label_offset=1)
    with pytest.raises(ValueError, match="0 images"):
        data.load((np.zeros((0, 8, 8, 3), np.uint8), np.zeros(0)))


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


def test_large_jpeg_windows_decode_downscaled_in_the_dct_domain():
    """A phone-sized photo (2400x1800) center-cropped to 224: the 1575 px window is at least 4x but
    under 8x the output, so libjpeg decodes it at 1/4 (the inverse DCT of the dropped resolution
    never runs). Equal to decode_jpeg(ratio=4) cropped at the scaled window; close to the full
    decode's crop."""
    from sklearn.datasets import load_sample_images

    photo = Image.fromarray(load_sample_images().images[1]).resize((2400, 1800), Image.BILINEAR)
    jpeg = tf.io.encode_jpeg(np.asarray(photo), quality=90)
    out = transforms.center_crop(jpeg, 224, crop_padding=32, method="bicubic").numpy()
    crop = int(224 / 256 * 1800)  # 1575
    top, left = (1800 - crop + 1) // 2, (2400 - crop + 1) // 2
    quarter = tf.io.decode_jpeg(jpeg, ratio=4).numpy()
    assert quarter.shape[:2] == (450, 600)
    window = quarter[top // 4:top // 4 + crop // 4, left // 4:left // 4 + crop // 4].astype(np.float32)
    expected = np.clip(tf.image.resize(window, [224, 224], method="bicubic").numpy(), 0, 255)
    np.testing.assert_allclose(out, expected, atol=1e-3)
    full = tf.io.decode_jpeg(jpeg).numpy()[top:top + crop, left:left + crop].astype(np.float32)
    reference = np.clip(tf.image.resize(full, [224, 224], method="bicubic", antialias=True).numpy(), 0, 255)
    # against the full-resolution decode with an antialiased resize: 3.5 of 255 on average here
    # (resizing the full decode without DCT scaling: 1.4); a misplaced window is tens off
    assert np.abs(out - reference).mean() < 4.0
    ratios = transforms.dct_ratio(tf.constant([447, 448, 1791, 1792, 5000]), tf.constant(10_000), 224).numpy()
    assert [transforms.DCT_RATIOS[i] for i in ratios] == [1, 2, 4, 8, 8]


def test_randaugment_picks_different_ops_for_different_batches_in_tf_data(monkeypatch):
    """keras#21169: op choice must not be frozen when the dataset map is traced. Through the
    pipeline's own call (data.load(randaugment=...)), with every candidate op replaced by one that
    paints its own number, so each batch shows which op was chosen."""
    build = augment.randaugment_layer

    def marked(options):
        layer = build(options)
        for number, name in enumerate(layer._AUGMENT_LAYERS, start=1):
            sublayer = getattr(layer, name)
            sublayer.transform_images = (lambda images, transformation=None, training=True, mark=number:
                                         images * 0.0 + float(mark))
        return layer

    monkeypatch.setattr(augment, "randaugment_layer", marked)
    images = np.full((48, 32, 32, 3), 128, np.uint8)
    ds, _ = data.load((images, np.zeros(48, np.int64)), "train", 32, 4, training=True,
                      randaugment={"num_ops": 1}, crop_scale=(1.0, 1.0), flip=False)
    chosen = [set(np.unique(batch.numpy()).tolist()) for batch, _ in ds]
    assert all(len(c) == 1 for c in chosen)  # one op per batch (num_ops=1), shared by its images
    assert len(set().union(*chosen)) >= 4  # and not the same op for every batch


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


def test_uint8_output_is_the_float_pipeline_rounded_to_pixel_levels():
    """``dtype="uint8"`` (the Trainer's training batches) delivers the float32 pipeline's pixels,
    same seed and crops, rounded to the nearest level; any other dtype is refused by name."""
    images = np.random.RandomState(0).randint(0, 256, (24, 24, 24, 3), np.uint8)

    def batches(dtype):
        ds, _ = data.load((images, np.arange(24) % 3), "train", 20, 8, training=True, crop_scale=(0.5, 1.0),
                          seed=5, dtype=dtype)
        return [x.numpy() for x, _ in ds]

    floats, levels = batches("float32"), batches("uint8")
    assert all(b.dtype == np.uint8 for b in levels) and len(levels) == len(floats) == 3
    assert any(not np.array_equal(f, np.rint(f)) for f in floats)  # resized crops: not whole levels before
    for f, u in zip(floats, levels):
        np.testing.assert_array_equal(u, np.rint(f))
    with pytest.raises(ValueError, match=r"dtype must be one of \('float32', 'uint8'\)"):
        data.load("digits", "train", 32, 8, dtype="float16")


# --- folders laid out as downloaded datasets: root/train|val|test/<class>/ ---------------------------------

TILE = 24


def _tiles(count=48):
    """Distinct real-photo crops (scikit-learn's sample photos), TILE x TILE RGB uint8."""
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    tiles = np.stack([photos[i % 2][20 + 8 * i: 20 + 8 * i + TILE, 30 + 12 * i: 30 + 12 * i + TILE]
                      for i in range(count)])
    assert len({t.tobytes() for t in tiles}) == count
    return tiles


def _make_tree(root, spec):
    """Write ``spec = {split_folder: {class: count}}`` as real PNG/JPEG files; returns (tiles, tile index -> class)."""
    tiles, truth, index = _tiles(), {}, 0
    for split_folder, classes in spec.items():
        for name, count in classes.items():
            folder = root / split_folder / name if split_folder else root / name
            folder.mkdir(parents=True, exist_ok=True)
            for _ in range(count):
                ext = "jpg" if index % 3 == 2 else "png"
                Image.fromarray(tiles[index]).save(folder / f"{index:03d}.{ext}", quality=95)
                truth[index] = name
                index += 1
    return tiles, truth


def _identified(ds, tiles):
    """[(tile index, label)] for every image of an eval dataset of untouched tiles."""
    found = []
    for x, y in ds:
        for image, label in zip(x.numpy(), y.numpy()):
            distance = np.abs(tiles.astype(np.float32) - image).mean(axis=(1, 2, 3))
            assert distance.min() < 12, "an image that was never written came out of the pipeline"
            found.append((int(distance.argmin()), int(label)))
    return found


def _load(root, split, **options):
    return data.load(str(root), split, image_size=TILE, batch_size=64, training=False, crop_padding=0, **options)


SPEC = {"train": {"bird": 3, "cat": 4, "dog": 4}, "val": {"cat": 2, "dog": 2}, "test": {"cat": 3, "dog": 2}}


def test_split_layout_classes_are_the_union_with_one_label_per_class_in_every_split(tmp_path):
    tiles, truth = _make_tree(tmp_path / "photos", SPEC)
    seen = set()
    for split, count in (("train", 11), ("validation", 4), ("test", 5)):
        ds, info = _load(tmp_path / "photos", split)
        assert info.class_names == ("bird", "cat", "dog"), "split folders must not become classes"
        assert info.num_examples == count and info.splits == ("train", "validation", "test", "all")
        pairs = _identified(ds, tiles)
        assert len(pairs) == count
        for tile, label in pairs:  # "dog" is index 2 in test too, though test has no "bird"
            assert info.class_names[label] == truth[tile]
        seen |= {tile for tile, _ in pairs}
    assert seen == set(truth)  # each file in exactly the split of its folder
    _, everything = _load(tmp_path / "photos", "all")
    assert everything.num_examples == 20


def test_split_folder_names_match_in_any_casing_and_val_is_an_alias(tmp_path):
    _make_tree(tmp_path / "ds", {"Train": {"a": 3, "b": 3}, "VALIDATION": {"a": 1, "b": 1}, "Test": {"a": 2, "b": 1}})
    counts = {split: _load(tmp_path / "ds", split)[1].num_examples for split in ("train", "val", "Validation", "TEST")}
    assert counts == {"train": 6, "val": 2, "Validation": 2, "TEST": 3}
    assert _load(tmp_path / "ds", "val")[1].class_names == ("a", "b")
    with pytest.raises(ValueError, match=r"split must be one of .*'validation'.*got 'dev'"):
        _load(tmp_path / "ds", "dev")


def test_train_folder_without_val_folder_carves_validation_seeded_and_disjoint(tmp_path):
    tiles, _ = _make_tree(tmp_path / "ds", {"train": {"a": 6, "b": 6}, "test": {"a": 2, "b": 2}})

    def tiles_of(split, seed=0):
        ds, info = _load(tmp_path / "ds", split, validation_split=0.25, seed=seed)
        return {tile for tile, _ in _identified(ds, tiles)}, info

    train, info = tiles_of("train")
    val, val_info = tiles_of("validation")
    assert (len(train), len(val)) == (9, 3) and not train & val and train | val == set(range(12))
    assert info.splits == ("train", "validation", "test", "all")
    assert tiles_of("validation")[0] == val  # same seed, same partition
    assert any(tiles_of("validation", seed)[0] != val for seed in (1, 2, 3))
    assert tiles_of("test")[0] == set(range(12, 16))  # the test folder is untouched by the carve
    with pytest.raises(ValueError, match=r"has no 'validation' split; it has \('train', 'test', 'all'\).*validation_split"):
        _load(tmp_path / "ds", "validation")
    assert _load(tmp_path / "ds", "train")[1].num_examples == 12  # no carve: the whole train folder


def test_validation_split_with_a_val_folder_is_ambiguous(tmp_path):
    _make_tree(tmp_path / "ds", {"train": {"a": 2}, "val": {"a": 1}})
    with pytest.raises(ValueError, match="ambiguous"):
        _load(tmp_path / "ds", "train", validation_split=0.2)
    with pytest.raises(ValueError, match=r"no 'test' split; it has \('train', 'validation', 'all'\)"):
        _load(tmp_path / "ds", "test")


def test_class_per_subfolder_folder_still_carves_and_has_no_test_split(tmp_path):
    _make_tree(tmp_path / "ds", {"": {"a": 5, "b": 5}})
    train, validation = _load(tmp_path / "ds", "train")[1], _load(tmp_path / "ds", "validation")[1]
    assert (train.num_examples, validation.num_examples) == (8, 2) and train.class_names == ("a", "b")
    with pytest.raises(ValueError, match=r"no 'test' split; it has \('train', 'validation', 'all'\)"):
        _load(tmp_path / "ds", "test")


def _mixed(root):
    _make_tree(root, {"train": {"a": 1}, "test": {"a": 1}, "cats": {"x": 1}})


def _loose(root):
    _make_tree(root, {"train": {"a": 1}})
    (root / "test").mkdir()
    Image.fromarray(_tiles()[5]).save(root / "test" / "loose.png")


def _nested(root):
    _make_tree(root / "data", {"train": {"a": 1}, "test": {"a": 1}})
    _make_tree(root, {"": {"other": 1}})


@pytest.mark.parametrize("make,words", [
    (_mixed, ["mixes split folders", "'cats'", "'train'"]),
    (_loose, ["split folder", "test", "no class subfolders", "1 images lie directly"]),
    (_nested, ["data", "fits neither layout"]),
    (lambda root: root.mkdir(), ["is empty", "<class_name>"]),
])
def test_folders_that_fit_neither_layout_name_the_folder(tmp_path, make, words):
    root = tmp_path / "photos"
    make(root)
    with pytest.raises(ValueError) as error:
        _load(root, "train")
    message = str(error.value)
    assert "\n" not in message and all(word in message for word in words), message


def _random_jpeg_bytes(seed, size=600):
    """Passes the cheap header/trailer checks (a 16x16 start-of-frame, the end marker), but is no image."""
    frame = b"\xff\xc0\x00\x11\x08\x00\x10\x00\x10\x03" + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    return b"\xff\xd8" + frame + np.random.RandomState(seed).bytes(size) + b"\xff\xd9"


def test_unreadable_folders_and_classes_fail_with_one_line(tmp_path):
    junk = tmp_path / "junk"
    for name in ("a", "b"):
        (junk / name).mkdir(parents=True)
        for i in range(2):
            (junk / name / f"{i}.jpg").write_bytes(np.random.RandomState(i).bytes(300))
    with pytest.raises(ValueError, match=r"no readable .* image \(4 files skipped, e.g. .*not a JPEG"):
        _load(junk, "all")

    _make_tree(tmp_path / "ds", {"train": {"cat": 2}, "test": {"cat": 1}})
    (tmp_path / "ds" / "train" / "dog").mkdir()
    for i in range(3):
        (tmp_path / "ds" / "train" / "dog" / f"{i}.png").write_bytes(b"")
    with pytest.raises(ValueError) as error:
        _load(tmp_path / "ds", "train")
    message = str(error.value)
    assert "class folder" in message and os.path.join("train", "dog") in message, message
    assert "3 of 3 files skipped" in message and "zero bytes" in message, message
    assert _load(tmp_path / "ds", "test")[1].class_names == ("cat", "dog")  # test lacks dog: fine


def _drain(dataset, timeout=30.0):
    """Every element of ``dataset``, or a test failure if iterating it does not end within ``timeout``."""
    import threading

    out, done = [], threading.Event()

    def run():
        out.extend(dataset)
        done.set()

    threading.Thread(target=run, daemon=True).start()
    assert done.wait(timeout), "the pipeline never ended: repeat() over a dataset where nothing decodes"
    return out


def test_training_pipeline_where_nothing_decodes_is_empty_not_endless(tmp_path):
    root = tmp_path / "fake"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(2):
            (root / name / f"{i}.jpg").write_bytes(_random_jpeg_bytes(i))
    ds, info = data.load(str(root), "train", image_size=16, batch_size=2, training=True, repeat=True,
                         validation_split=0.0)
    assert _drain(ds.take(3)) == []
    with pytest.raises(ValueError, match=r"no image of .*fake.* split 'train' could be decoded \(4 files\)"):
        data.check_not_empty(ds, info)
    with pytest.raises(ValueError, match=r"no image of .*fake.* decodes \(4 files .*Invalid JPEG data"):
        data.write_tfrecords(str(root), str(tmp_path / "rec" / "train"), shards=2, progress=False)
    (tmp_path / "rec").mkdir(exist_ok=True)  # shards written by another converter, which copied the bytes unchecked
    for shard in range(2):
        with tf.io.TFRecordWriter(str(tmp_path / "rec" / f"train-{shard:05d}-of-00002")) as writer:
            for i in range(2):
                writer.write(tf.train.Example(features=tf.train.Features(feature={
                    "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[_random_jpeg_bytes(i)])),
                    "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[shard])),
                })).SerializeToString())
    records, record_info = data.load(str(tmp_path / "rec" / "train-*"), image_size=16, batch_size=2,
                                     training=True, repeat=True, num_classes=2)
    assert _drain(records.take(3)) == []
    with pytest.raises(ValueError, match=r"could be decoded \(4 records\)"):
        data.check_not_empty(records, record_info)


def test_repeated_training_folder_reshuffles_every_epoch_and_check_not_empty_passes(tmp_path):
    _make_tree(tmp_path / "ds", {"train": {"a": 6, "b": 6}})
    ds, info = data.load(str(tmp_path / "ds"), "train", image_size=TILE, batch_size=12, training=True,
                         repeat=True, seed=3)
    data.check_not_empty(ds, info)
    epochs = [y.numpy().tolist() for _, y in _drain(ds.take(4))]
    assert all(sorted(epoch) == [0] * 6 + [1] * 6 for epoch in epochs)  # each file once per epoch
    assert len({tuple(epoch) for epoch in epochs}) > 1


def _tiny_record(value, label=0):
    """A serialized ImageNet-layout example of an 8 x 8 gray PNG whose every pixel is ``value``."""
    png = tf.io.encode_png(np.full((8, 8, 1), value, np.uint8)).numpy()
    return tf.train.Example(features=tf.train.Features(feature={
        "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[png])),
        "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
    })).SerializeToString()


def _write_shards(folder, prefix, per_shard):
    """Foreign shards (no labels file, no dataset.json): shard i holds ``per_shard[i]`` records."""
    folder.mkdir(parents=True, exist_ok=True)
    records = [_tiny_record(v) for v in range(256)]
    total = len(per_shard)
    for shard, count in enumerate(per_shard):
        with tf.io.TFRecordWriter(str(folder / f"{prefix}-{shard:05d}-of-{total:05d}")) as writer:
            for record in range(count):
                writer.write(records[(2 * shard + record) % 256])


def test_shuffle_buffer_spans_the_shards_of_a_counted_glob(tmp_path):
    # 65 foreign shards of two records: counted (no more -1 over 64 shards), and with a buffer of all
    # 130 records the two records of a shard come out in either order
    _write_shards(tmp_path, "r", [2] * 65)
    ds, info = data.load(str(tmp_path / "r-*"), image_size=8, batch_size=130, training=True, num_classes=1, seed=1)
    assert info.num_examples == 130 and info.extras["count_source"] == "counted"
    order = [int(round(v)) for v in next(iter(ds))[0].numpy().mean(axis=(1, 2, 3))]
    assert sorted(order) == list(range(130))
    position = {value: index for index, value in enumerate(order)}
    reversed_pairs = sum(position[2 * s + 1] < position[2 * s] for s in range(65))
    assert reversed_pairs >= 10


def test_arrays_and_digits_carve_a_seeded_disjoint_validation_split():
    images = np.arange(20, dtype=np.uint8)[:, None, None, None] * np.ones((1, 8, 8, 3), np.uint8)

    def values(split, seed=0):
        ds, info = data.load((images, np.arange(20) % 2), split, image_size=8, batch_size=32, training=False,
                             crop_padding=0, validation_split=0.25, seed=seed)
        return {int(round(v)) for v in next(iter(ds))[0].numpy().mean(axis=(1, 2, 3))}, info

    (train, info), (val, _) = values("train"), values("val")
    assert (len(train), len(val)) == (15, 5) and train | val == set(range(20)) and info.num_classes == 2
    assert values("validation")[0] == val and values("validation", seed=7)[0] != val

    def digits(split, **options):
        ds, info = data.load("digits", split, image_size=8, batch_size=2000, training=False, **options)
        return {bytes(x) for x in next(iter(ds))[0].numpy().astype(np.uint8)}, info

    (d_train, t_info), (d_val, v_info) = digits("train", validation_split=0.1), digits("validation", validation_split=0.1)
    assert (t_info.num_examples, v_info.num_examples) == (1293, 144)
    assert not d_train & d_val and digits("test", validation_split=0.1)[1].num_examples == 360
    with pytest.raises(ValueError, match=r"digits has no 'validation' split; it has \('train', 'test', 'all'\)"):
        data.load("digits", "validation")
    with pytest.raises(ValueError, match="data_dir.*validation_split"):
        data.load("digits", "train", validation_split=0.1, data_dir="/nonexistent")


def test_held_out_split_and_available_splits(tmp_path):
    _make_tree(tmp_path / "tvt", SPEC)
    _make_tree(tmp_path / "tv", {"train": {"a": 2}, "val": {"a": 1}})
    _make_tree(tmp_path / "t", {"train": {"a": 4}})
    _make_tree(tmp_path / "plain", {"": {"a": 2, "b": 2}})
    assert data.held_out_split(str(tmp_path / "tvt"), "validation") == "validation"
    assert data.held_out_split(str(tmp_path / "tvt"), "eval") == "test"
    assert data.held_out_split(str(tmp_path / "tv"), "test") == "validation"
    assert data.held_out_split(str(tmp_path / "t"), "test", validation_split=0.25) == "validation"
    with pytest.raises(ValueError, match="no held-out split.*validation_split"):
        data.held_out_split(str(tmp_path / "t"), "test")
    assert data.held_out_split(str(tmp_path / "plain"), "test") == "validation"
    assert data.held_out_split("digits", "validation") == "test"
    assert data.held_out_split("digits", "validation", validation_split=0.1) == "validation"
    assert data.held_out_split("digits", "train") == "train"
    assert data.held_out_split("tfds:mnist", "validation", data_dir=str(tmp_path / "none")) == "validation"
    assert data.held_out_split(str(tmp_path / "rec-*"), "validation") == "validation"
    assert data.held_out_split((np.zeros((4, 8, 8)), np.zeros(4)), "test") == "test"
    assert data.available_splits(str(tmp_path / "tv")) == ("train", "validation", "all")
    assert data.available_splits(str(tmp_path / "plain"), validation_split=0.0) == ("train", "all")
    assert data.available_splits(str(tmp_path / "rec-*")) is None
    assert data.available_splits("tfds:mnist", data_dir=str(tmp_path / "none")) is None


def test_write_tfrecords_per_split_keeps_the_union_labels(tmp_path):
    tiles, truth = _make_tree(tmp_path / "photos", SPEC)
    with pytest.raises(ValueError, match="split='train'"):
        data.write_tfrecords(str(tmp_path / "photos"), str(tmp_path / "rec" / "x"), shards=1, progress=False)
    data.write_tfrecords(str(tmp_path / "photos"), str(tmp_path / "rec" / "test"), shards=2, progress=False,
                         split="test")
    ds, info = data.load(str(tmp_path / "rec" / "test-*"), image_size=TILE, batch_size=64, training=False,
                         crop_padding=0)
    assert info.class_names == ("bird", "cat", "dog") and info.num_examples == 5
    assert all(info.class_names[label] == truth[tile] for tile, label in _identified(ds, tiles))


def test_dataset_info_preprocessing_is_what_the_eval_transform_used(tmp_path):
    _make_tree(tmp_path / "ds", {"": {"a": 2, "b": 2}})
    _, digits = data.load("digits", "test", image_size=32, batch_size=8, training=False)
    _, folder = data.load(str(tmp_path / "ds"), "all", image_size=32, batch_size=8, training=False)
    _, explicit = data.load(str(tmp_path / "ds"), "all", image_size=32, batch_size=8, training=False,
                            crop_padding=8, resize_method="bilinear")
    _, train = data.load("digits", "train", image_size=16, batch_size=8)
    assert digits.preprocessing == {"image_size": 32, "crop_padding": 0, "resize_method": "bicubic", "flip": False,
                                    "training": False, "resize_first": False}  # window-first crop (timm's is resize-first)
    # 32 px: 87.5% of the short side (32 / (32 + 5) = 0.865), not the reference's 32 px (which keeps half)
    assert folder.preprocessing["crop_padding"] == 5 and folder.preprocessing["flip"] is True
    assert (explicit.preprocessing["crop_padding"], explicit.preprocessing["resize_method"]) == (8, "bilinear")
    assert train.preprocessing["training"] is True and train.preprocessing["resize_method"] == "bilinear"
    # the recorded contract reproduces the pipeline's eval images exactly
    ds, info = data.load(str(tmp_path / "ds"), "all", image_size=20, batch_size=8, training=False, crop_padding=8)
    x, _ = next(iter(ds))
    first = sorted(p for p in (tmp_path / "ds").rglob("*.*"))[0]
    pre = info.preprocessing
    again = transforms.center_crop(tf.io.read_file(str(first)), pre["image_size"], pre["crop_padding"],
                                   pre["resize_method"])
    np.testing.assert_allclose(x.numpy()[0], again.numpy(), atol=1e-3)


@pytest.mark.parametrize("size, padding", [(224, 32), (300, 32), (600, 32), (128, 18), (64, 9), (32, 5)])
def test_default_eval_crop_is_the_reference_from_224_and_87_5_percent_below(size, padding):
    # the TPU reference pads 32 px at every B0-B7 resolution; below 224 px the crop keeps the fraction it
    # keeps at 224 (224 / 256 = 0.875): padding = round(size / 7)
    assert data.default_crop_padding(size) == padding
    assert size >= 224 or abs(size / (size + padding) - 0.875) < 0.015


# --- dataset size, shard order, exact iterator checkpoints (issue 10) --------------------------------------


def _shard_labels(path):
    """Labels of a shard's records, in file order."""
    return [tf.train.Example.FromString(r.numpy()).features.feature["image/class/label"].int64_list.value[0]
            for r in tf.data.TFRecordDataset(str(path))]


def test_write_tfrecords_mixes_classes_in_a_seeded_order(tmp_path):
    _make_tree(tmp_path / "photos", {"": {"a": 8, "b": 8, "c": 8}})

    def write(name, seed):
        shards = data.write_tfrecords(str(tmp_path / "photos"), str(tmp_path / name / "train"), shards=2,
                                      progress=False, seed=seed)
        return [_shard_labels(shard) for shard in shards], [open(s, "rb").read() for s in shards]

    (labels, files), (_, again), (other_labels, _) = write("one", 0), write("two", 0), write("three", 1)
    first = labels[0]
    assert sorted(first + labels[1]) == [0] * 8 + [1] * 8 + [2] * 8
    assert set(first) == {0, 1, 2}, "the first shard must hold every class"
    runs = sum(a != b for a, b in zip(first, first[1:]))
    assert runs >= 4, f"class-ordered shard: {first}"  # 12 records of 3 classes in folder order change twice
    assert files == again, "same seed, same shards"
    assert other_labels != labels, "another seed, another order"


def test_dataset_json_records_each_split_and_merges(tmp_path):
    _make_tree(tmp_path / "photos", SPEC)
    records = tmp_path / "rec"
    data.write_tfrecords(str(tmp_path / "photos"), str(records / "train"), shards=2, progress=False, split="train")
    data.write_tfrecords(str(tmp_path / "photos"), str(records / "test"), shards=1, progress=False, split="test")
    document = json.loads((records / "dataset.json").read_text())
    assert document == {
        "class_names": ["bird", "cat", "dog"],
        "splits": {"train": {"examples": 11, "skipped": 0, "shards": 2, "files": "train-*-of-00002"},
                   "test": {"examples": 5, "skipped": 0, "shards": 1, "files": "test-*-of-00001"}},
    }
    assert data.read_metadata(str(records)) == document
    assert not [p.name for p in records.iterdir() if ".tmp" in p.name]
    (records / "train-labels.txt").unlink()  # shards copied without it: dataset.json names the classes
    _, info = data.load(str(records / "train-*"), image_size=16, batch_size=4, training=False)
    assert (info.num_examples, info.extras["count_source"]) == (11, "metadata")
    assert info.class_names == ("bird", "cat", "dog")
    assert json.loads((records / "dataset.json").read_text())["splits"]["test"]["examples"] == 5  # merged


def test_rewriting_a_split_with_fewer_shards_replaces_it_and_mixed_totals_are_refused(tmp_path):
    tiles, truth = _make_tree(tmp_path / "photos", SPEC)
    records = tmp_path / "rec"
    for split, shards in (("train", 4), ("test", 2), ("train", 2)):  # train written again, with fewer shards
        data.write_tfrecords(str(tmp_path / "photos"), str(records / split), shards=shards, progress=False,
                             split=split)
    assert sorted(p.name for p in records.iterdir()) == [
        "dataset.json", "test-00000-of-00002", "test-00001-of-00002", "test-labels.txt",
        "train-00000-of-00002", "train-00001-of-00002", "train-labels.txt"]
    ds, info = data.load(str(records / "train-*"), image_size=TILE, batch_size=64, training=False, crop_padding=0)
    found = _identified(ds, tiles)
    # the 11 images of photos/train, each once (the old 4 shards would have given each twice: 22)
    assert sorted(tile for tile, _ in found) == list(range(11)) and info.num_examples == 11
    assert all(info.class_names[label] == truth[tile] for tile, label in found)
    _, splits = data.load(str(records / "*"), image_size=TILE, batch_size=64, training=False)
    assert splits.num_examples == 11 + 5  # two splits of one total each: not refused
    # a user copies the old 4-shard writing back beside the new one: refused, not read twice
    data.write_tfrecords(str(tmp_path / "photos"), str(tmp_path / "old" / "train"), shards=4, progress=False,
                         split="train")
    for shard in (tmp_path / "old").glob("train-*-of-00004"):
        (records / shard.name).write_bytes(shard.read_bytes())
    with pytest.raises(ValueError, match=r"split 'train' .* 2 different totals \(train-\*-of-00002, "
                                         r"train-\*-of-00004\).* read twice"):
        data.load(str(records / "train-*"), image_size=TILE, batch_size=64, training=False)
    _, one = data.load(str(records / "train-*-of-00002"), image_size=TILE, batch_size=64, training=False)
    assert one.num_examples == 11


def test_tfrecord_count_of_1024_foreign_shards_is_counted_once_then_cached(tmp_path):
    per_shard = [1 + (i % 3) for i in range(1024)]
    _write_shards(tmp_path / "imagenet", "train", per_shard)
    glob_, run = str(tmp_path / "imagenet" / "train-*"), tmp_path / "run"

    def count(**options):
        _, info = data.load(glob_, image_size=8, batch_size=8, num_classes=1, count_cache=str(run), **options)
        return info.num_examples, info.extras["count_source"]

    assert count() == (sum(per_shard), "counted")
    assert json.loads((run / "tfrecord_counts.json").read_text()).popitem()[1]["examples"] == sum(per_shard)
    assert count() == (sum(per_shard), "cache")
    assert count(num_examples=1_281_167) == (1_281_167, "option")
    with tf.io.TFRecordWriter(str(tmp_path / "imagenet" / "train-01023-of-01024")) as writer:  # rewritten
        for value in range(5):
            writer.write(_tiny_record(value))
    assert count() == (sum(per_shard) - per_shard[-1] + 5, "counted")
    with pytest.raises(ValueError, match="num_examples must be a positive integer"):
        count(num_examples=0)


def test_tfrecord_info_counts_every_record_also_those_that_fail_to_decode(tmp_path):
    # the pipeline drops a record that does not decode; evaluate compares the images it scored with
    # info.num_examples, which must therefore be the records in the shards, counted or from dataset.json
    broken = tf.train.Example(features=tf.train.Features(feature={
        "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[_random_jpeg_bytes(0)])),
        "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[0])),
    })).SerializeToString()
    for shard, records in enumerate(([_tiny_record(v) for v in range(5)], [_tiny_record(v) for v in range(5, 9)]
                                     + [broken])):
        with tf.io.TFRecordWriter(str(tmp_path / f"r-{shard:05d}-of-00002")) as writer:
            for record in records:
                writer.write(record)
    ds, info = data.load(str(tmp_path / "r-*"), image_size=8, batch_size=4, training=False, crop_padding=0,
                         num_classes=1)
    values = sorted(int(round(v)) for x, _ in ds for v in x.numpy().mean(axis=(1, 2, 3)))
    assert values == list(range(9)) and (info.num_examples, info.extras["count_source"]) == (10, "counted")
    _make_tree(tmp_path / "photos", {"": {"a": 2, "b": 2}})
    (tmp_path / "photos" / "b" / "broken.jpg").write_bytes(_random_jpeg_bytes(1))
    data.write_tfrecords(str(tmp_path / "photos"), str(tmp_path / "rec" / "test"), shards=2, progress=False)
    ds, info = data.load(str(tmp_path / "rec" / "test-*"), image_size=8, batch_size=4, training=False)
    # write_tfrecords writes only files that decode: the metadata's count is the 4 records the shards hold
    assert sum(len(y) for _, y in ds) == 4 and (info.num_examples, info.extras["count_source"]) == (4, "metadata")
    assert json.loads((tmp_path / "rec" / "dataset.json").read_text())["splits"]["test"]["skipped"] == 1


def test_shard_splits_the_files_or_the_examples(tmp_path):
    _write_shards(tmp_path, "r", [3] * 4)

    def values(source, shard, **options):
        ds, _ = data.load(source, image_size=8, batch_size=64, training=False, crop_padding=0, shard=shard, **options)
        return sorted(int(round(v)) for x, _ in ds for v in x.numpy().mean(axis=(1, 2, 3)))

    halves = [values(str(tmp_path / "r-*"), (2, i), num_classes=1) for i in (0, 1)]
    assert len(halves[0]) == len(halves[1]) == 6
    assert sorted(halves[0] + halves[1]) == values(str(tmp_path / "r-*"), None, num_classes=1)
    images = np.arange(10, dtype=np.uint8)[:, None, None, None] * np.ones((1, 8, 8, 3), np.uint8)
    parts = [values((images, np.zeros(10)), (3, i)) for i in range(3)]
    assert sorted(sum(parts, [])) == list(range(10)) and [len(p) for p in parts] == [4, 3, 3]
    with pytest.raises(ValueError, match="at least 8 shards"):
        data.load(str(tmp_path / "r-*"), num_classes=1, shard=(8, 0))
    with pytest.raises(ValueError, match="0 <= index < count"):
        data.load(str(tmp_path / "r-*"), num_classes=1, shard=(2, 2))


def _sources(tmp_path):
    """An image folder of 10 tiles (two classes) and the same as 3 TFRecord shards."""
    _make_tree(tmp_path / "ds", {"": {"a": 5, "b": 5}})
    data.write_tfrecords(str(tmp_path / "ds"), str(tmp_path / "rec" / "train"), shards=3, progress=False)
    return {"folder": (str(tmp_path / "ds"), {"validation_split": 0.0}),
            "tfrecords": (str(tmp_path / "rec" / "train-*"), {})}


@pytest.mark.parametrize("kind", ["folder", "tfrecords"])
def test_training_iterator_checkpoint_resumes_exactly(tmp_path, kind):
    source, options = _sources(tmp_path)[kind]

    def make():
        return data.load(source, "train", image_size=16, batch_size=3, training=True, repeat=True, autoaugment=True,
                         seed=5, **options)

    ds, info = make()
    assert info.extras["checkpointable"] is True
    iterator = iter(ds)
    for _ in range(7):  # 21 examples: into the third epoch of 10
        next(iterator)
    path = tf.train.Checkpoint(iterator=iterator).write(str(tmp_path / "ckpt" / "it"))
    expected = [next(iterator) for _ in range(5)]
    restored = iter(make()[0])
    tf.train.Checkpoint(iterator=restored).read(path).assert_consumed()
    for (x, y), (x_want, y_want) in zip([next(restored) for _ in range(5)], expected):
        assert np.array_equal(x.numpy(), x_want.numpy()) and np.array_equal(y.numpy(), y_want.numpy())


def test_repeated_training_epochs_differ_and_the_same_seed_gives_the_same_stream(tmp_path):
    source, options = _sources(tmp_path)["folder"]

    def stream(seed, batches=3):
        ds, _ = data.load(source, "train", image_size=16, batch_size=10, training=True, repeat=True, seed=seed,
                          **options)
        return [(x.numpy(), y.numpy()) for x, y in ds.take(batches)]

    first = stream(5)
    assert all(sorted(y.tolist()) == [0] * 5 + [1] * 5 for _, y in first)  # one epoch per batch
    epoch_one, epoch_two = ({x.tobytes() for x in images} for images, _ in first[:2])
    assert len(epoch_one) == 10 and not epoch_one & epoch_two, "an example got the same crop in two epochs"
    again = stream(5)
    assert all(np.array_equal(a, b) for (a, _), (b, _) in zip(first, again))
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(first, again))
    assert not np.array_equal(stream(6, 1)[0][0], first[0][0])


@pytest.mark.parametrize("options", [{"randaugment": True, "mixup_alpha": 0.2}, {"cutmix_alpha": 1.0}],
                         ids=["randaugment+mixup", "cutmix"])
def test_keras_augmentation_pipeline_iterator_checkpoint_resumes_exactly(tmp_path, options):
    """RandAugment, MixUp and CutMix draw from per-batch seeds (stateless ops): the training
    iterator saves (it used to raise FailedPreconditionError: stateful) and a restored one yields
    the saved one's next batches, their augmentation draws included, into the next epoch."""
    images = np.random.RandomState(0).randint(0, 256, (8, 16, 16, 3)).astype(np.uint8)

    def make():
        return data.load((images, np.arange(8) % 2), image_size=16, batch_size=4, training=True, repeat=True, seed=5,
                         **options)

    ds, info = make()
    assert info.extras["checkpointable"] is True
    iterator = iter(ds)
    next(iterator)
    path = tf.train.Checkpoint(iterator=iterator).write(str(tmp_path / "ckpt" / "it"))
    expected = [next(iterator) for _ in range(3)]
    restored = iter(make()[0])
    tf.train.Checkpoint(iterator=restored).read(path).assert_consumed()
    for (x, y), (x_want, y_want) in zip([next(restored) for _ in range(3)], expected):
        np.testing.assert_array_equal(x.numpy(), x_want.numpy())
        np.testing.assert_array_equal(y.numpy(), y_want.numpy())
    assert not np.array_equal(expected[0][0].numpy(), expected[2][0].numpy())  # same images, other draws


def _keras_layers():
    """(a maker of a fresh Keras layer, its input): RandAugment on images, MixUp / CutMix on a batch."""
    images = tf.constant(np.random.RandomState(0).randint(0, 256, (6, 16, 16, 3)).astype(np.float32))
    batch = {"images": images, "labels": tf.one_hot(tf.range(6), 6)}
    return [pytest.param(lambda: augment.randaugment_layer({"factor": 0.8}), images, id="RandAugment"),
            pytest.param(lambda: keras.layers.MixUp(alpha=0.4), batch, id="MixUp"),
            pytest.param(lambda: keras.layers.CutMix(factor=(1.0, 1.0)), batch, id="CutMix")]


@pytest.mark.parametrize("make, inputs", _keras_layers())
def test_stateless_call_is_the_keras_layer_drawing_from_the_given_seed(make, inputs):
    """``stateless_call(layer, x, seed)`` outputs what the Keras layer itself outputs when its
    SeedGenerator's state is ``seed`` (a layer built with ``seed=7``, first call: ``[7, 0]``), so
    the draws are the layer's own distribution; the same seed gives the same output (eager and
    traced), another seed another output. RandAugment: its sub-layers draw from that seed too."""
    def images(out):
        return (out["images"] if isinstance(out, dict) else out).numpy()

    reference = make()
    reference.generator = keras.random.SeedGenerator(7)
    reference.build(inputs["images"].shape if isinstance(inputs, dict) else inputs.shape)
    want = tf.function(lambda x: reference(x, training=True))(inputs)
    layer = make()
    traced = tf.function(lambda x, seed: augment.stateless_call(layer, x, seed))
    got = traced(inputs, tf.constant([7, 0], tf.int64))
    np.testing.assert_array_equal(images(got), images(want))
    if isinstance(want, dict):
        np.testing.assert_array_equal(got["labels"].numpy(), want["labels"].numpy())
    np.testing.assert_array_equal(images(augment.stateless_call(layer, inputs, tf.constant([7, 0]))), images(got))
    others = {images(traced(inputs, tf.constant([7, i], tf.int64))).tobytes() for i in range(1, 6)}
    assert images(got).tobytes() not in others and len(others) >= 4
    with pytest.raises(TypeError, match="Keras random preprocessing layer"):
        augment.stateless_call(keras.layers.Rescaling(1.0), inputs, tf.constant([7, 0]))


@pytest.mark.parametrize("options", [{"mixup_alpha": 0.4}, {"cutmix_alpha": 1.0}], ids=["mixup", "cutmix"])
def test_mixed_labels_are_the_shares_of_the_images_mixed_within_the_batch(options):
    """``data.load``'s MixUp / CutMix run after batching: each image is mixed with another image of
    its batch, and its label holds each class at that image's share of the mix. 16 flat images,
    image i of value 10 i + 5 and class i: a MixUp pixel is sum_j label_j * value_j; a CutMix image
    holds the values of its label's classes, each on its label share of the pixels (Keras' label is
    the area of the continuous box: up to a pixel row and column off at 48 px)."""
    values = 10 * np.arange(16) + 5
    images = np.broadcast_to(values[:, None, None, None], (16, 48, 48, 3)).astype(np.uint8)
    ds, _ = data.load((images, np.arange(16)), image_size=48, batch_size=8, training=True, seed=3, flip=False,
                      crop_scale=(1.0, 1.0), **options)
    mixed = 0
    for x, y in ds:
        x, y = x.numpy(), y.numpy()
        np.testing.assert_allclose(y.sum(-1), 1.0, atol=1e-5)
        for image, label in zip(x, y):
            if "mixup_alpha" in options:
                np.testing.assert_allclose(image, np.broadcast_to(label @ values, image.shape), atol=1e-2)
            else:
                shares = np.array([(image == v).mean() for v in values])
                assert (shares > 0).tolist() == (label > 1e-6).tolist()
                np.testing.assert_allclose(shares, label, atol=2 / 48)
            mixed += (label > 1e-6).sum() > 1
    assert mixed >= 4


def test_stateless_crop_flip_and_autoaugment_depend_only_on_the_seed():
    jpeg = tf.io.encode_jpeg(_photo(48, 64))
    seed = tf.constant([3, 4], tf.int64)
    crops = [transforms.random_resized_crop(jpeg, 16, scale=(0.1, 0.3), seed=seed) for _ in range(2)]
    assert np.array_equal(crops[0].numpy(), crops[1].numpy())
    other = transforms.random_resized_crop(jpeg, 16, scale=(0.1, 0.3), seed=tf.constant([3, 5], tf.int64))
    assert not np.array_equal(crops[0].numpy(), other.numpy())
    transform = transforms.train_transform(16, scale=(0.1, 0.3))
    assert np.array_equal(transform(jpeg, 0, seed)[0].numpy(), transform(jpeg, 0, seed)[0].numpy())
    image = tf.constant(_photo(24, 24).astype(np.float32))
    outputs = [augment.autoaugment(image, seed=tf.constant([i, 0], tf.int64)).numpy() for i in range(12)]
    assert all(np.array_equal(augment.autoaugment(image, seed=tf.constant([i, 0], tf.int64)).numpy(), out)
               for i, out in enumerate(outputs[:3]))
    assert len({o.tobytes() for o in outputs}) >= 4
    with pytest.raises(TypeError, match="shape-\\[2\\] integer tensor"):
        augment.autoaugment(image, seed=tf.constant([0.5, 1.0]))


@pytest.mark.parametrize("level, pixels", [(10, 250), (4, 100), (1, 25)])
def test_autoaugment_translate_constant_is_250(level, pixels):
    # tensorflow/tpu distort_image_with_autoaugment: translate_const=250 (100 is RandAugment's); level/10 * 250 px
    assert augment.TRANSLATE_CONST == 250
    image = np.tile(np.arange(300, dtype=np.float32)[:, None, None] % 251, (1, 4, 3))
    for seed in (tf.constant([0, 0], tf.int64), tf.constant([0, 1], tf.int64), tf.constant([1, 7], tf.int64)):
        out = augment.AUTOAUGMENT_OPS["TranslateY"](tf.constant(image), level, seed).numpy()
        up = np.array_equal(out[: 300 - pixels], image[pixels:])
        down = np.array_equal(out[pixels:], image[: 300 - pixels])
        assert up or down, f"TranslateY level {level} is not a {pixels} px shift"
        filled = out[300 - pixels:] if up else out[:pixels]
        assert (filled == augment.FILL_VALUE).all()


def test_cutmix_alpha_is_the_beta_parameter_of_the_mixing_weight():
    """cutmix_alpha=1.0 means lambda ~ Beta(1, 1) = uniform, as in timm and the CutMix paper: the
    share of each image's own pixels has variance 1/12. (Keras' CutMix(factor=1.0) would draw
    the Beta parameter itself from U(0, 1): U-shaped weights, variance ~0.15.)"""
    mix = tf.function(augment.batch_mixer(0.0, 1.0))
    images = tf.reshape(tf.repeat(tf.range(8, dtype=tf.float32), 16 * 16 * 3), (8, 16, 16, 3))
    labels = tf.one_hot(tf.range(8), 8)
    own = []
    for draw in range(150):
        mixed, soft = mix(images, labels, tf.constant([3, draw], tf.int64))
        soft = soft.numpy()
        partner = soft.copy()
        partner[np.arange(8), np.arange(8)] = 0
        keep = partner.sum(axis=1) > 0  # a sample paired with itself carries no information
        own.extend(soft[np.arange(8), np.arange(8)][keep])
    own = np.array(own)
    assert len(own) > 600
    assert abs(own.mean() - 0.5) < 0.05 and abs(own.var() - 1 / 12) < 0.02, (own.mean(), own.var())


@pytest.mark.parametrize("op", ["ShearX", "ShearY"])
def test_autoaugment_shear_magnitude_is_level_over_10_times_0_3(op):
    """tensorflow/tpu: shear = level / 10 * 0.3, random sign. A line through the middle of a
    100 x 100 image leans by 0.3 px per px at level 10: 27 px at 90 px from the axis."""
    image = np.zeros((100, 100, 3), np.float32)
    if op == "ShearX":
        image[:, 50] = 200.0  # a vertical line: row y moves by shear * y
    else:
        image[50, :] = 200.0  # a horizontal line: column x moves by shear * x
    for seed in (tf.constant([0, 0], tf.int64), tf.constant([0, 1], tf.int64), tf.constant([3, 5], tf.int64)):
        out = augment.AUTOAUGMENT_OPS[op](tf.constant(image), 10, seed).numpy()[..., 0]
        if op == "ShearY":
            out = out.T
        assert np.flatnonzero(out[0] == 200.0).tolist() == [50]
        assert np.flatnonzero(out[90] == 200.0).tolist() in ([23], [77])


def test_write_tfrecords_max_side_stores_large_photos_shrunk_once_and_small_ones_as_they_are(tmp_path):
    """``max_side``: a 1600x1200 photo and a 900x1200 (portrait) PNG with alpha are stored with their
    longer side at 256 px, as JPEGs, aspect ratio kept; a 200x150 photo keeps its very bytes;
    dataset.json says so. What it does to the eval crop at 64 px, against the same images stored
    whole: under 2 grey levels on average, no bias."""
    rng = np.random.default_rng(0)

    def photo(height, width):  # smooth gradients and noise: a photo-like picture, not flat colour
        y, x = np.mgrid[0:height, 0:width]
        base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], -1)
        return np.clip(base + rng.normal(0, 8, (height, width, 3)), 0, 255).astype(np.uint8)

    root = tmp_path / "photos"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
    Image.fromarray(photo(1200, 1600)).save(root / "a" / "large.jpg", quality=92)
    Image.fromarray(photo(150, 200)).save(root / "a" / "small.jpg", quality=92)
    rgba = np.concatenate([photo(1200, 900), np.full((1200, 900, 1), 200, np.uint8)], -1)
    Image.fromarray(rgba, "RGBA").save(root / "b" / "portrait.png")
    whole = data.write_tfrecords(str(root), str(tmp_path / "whole" / "train"), shards=1, progress=False)
    shrunk = data.write_tfrecords(str(root), str(tmp_path / "shrunk" / "train"), shards=1, progress=False,
                                  max_side=256)

    def records(files):
        found = {}
        for record in tf.data.TFRecordDataset(files):
            example = tf.train.Example.FromString(record.numpy()).features.feature
            found[example["image/filename"].bytes_list.value[0].decode()] = example["image/encoded"].bytes_list.value[0]
        return found

    stored = records(shrunk)
    assert stored["small.jpg"] == (root / "a" / "small.jpg").read_bytes()
    for name, shape in (("large.jpg", (192, 256)), ("portrait.png", (256, 192))):
        assert stored[name][:2] == b"\xff\xd8"  # a JPEG now
        assert tf.io.decode_jpeg(stored[name]).shape == (*shape, 3)
    assert data.read_metadata(str(tmp_path / "shrunk"))["splits"]["train"]["max_side"] == 256

    def eval_images(files):
        ds, _ = data.load(files[0], image_size=64, batch_size=8, training=False)
        return np.concatenate([x.numpy() for x, _ in ds])

    # the same order: one shard, written in the same seeded order. Compared as 4x4 block means: the
    # picture, not its pixel noise, which the whole PNG's path aliases (bicubic from 1,050 px, no
    # antialiasing; per pixel the two differ by 5 levels there, per block by 1.3)
    def blocks(images):
        return images.reshape(len(images), 16, 4, 16, 4, 3).mean(axis=(2, 4))

    difference = blocks(eval_images(shrunk)) - blocks(eval_images(whole))
    assert np.abs(difference).mean() < 2.0 and abs(difference.mean()) < 0.5, difference.mean(axis=(1, 2, 3))
    with pytest.raises(ValueError, match="max_side must be None"):
        data.write_tfrecords(str(root), str(tmp_path / "bad" / "train"), shards=1, progress=False, max_side=0)


def test_a_folder_image_rewritten_after_the_scan_is_skipped_not_decoded(tmp_path):
    """Folder files are checked once, by the scan (header, pixel budget, end), not again in the graph
    (it halved the pipeline's speed); a file rewritten after the scan, here into a 20,000 x 20,000
    PNG (400 MP, over the budget), is refused by its changed size before any pixel is decoded:
    skipped with a warning naming it, the other images read, in training and evaluation alike."""
    root = tmp_path / "images"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for index in range(3):
            Image.fromarray(_photo(seed=index)).save(root / name / f"{index}.jpg", quality=90)
    train, _ = data.load(str(root), "all", 32, 8, training=True)
    evaluation, _ = data.load(str(root), "all", 32, 8, training=False)
    bomb = tmp_path / "bomb.png"
    Image.new("1", (20000, 20000)).save(bomb)  # 1-bit, a few kB on disk; 1.2 GB as RGB pixels
    os.replace(bomb, root / "a" / "1.jpg")
    # (its warning goes to TensorFlow's C++ log, which the tests' TF_CPP_MIN_LOG_LEVEL silences)
    assert sum(int(x.shape[0]) for x, _ in evaluation) == 5
    assert sum(int(x.shape[0]) for x, _ in train) == 5


def test_shards_of_write_tfrecords_are_checked_again_only_under_a_lower_pixel_budget(tmp_path):
    """write_tfrecords stores only images that passed the pipeline's check at the default budget,
    so its shards are not checked again in the graph (as folder files, checked by the scan); a
    lower ``max_pixels`` at load time still refuses the images over it (a 640x480 baseline JPEG
    counts 4,800 pixels at 1/8 scale: over 1,000, under the default)."""
    root = tmp_path / "images"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for index in range(3):
            Image.fromarray(_photo(480, 640, seed=index)).save(root / name / f"{index}.jpg", quality=90)
    data.write_tfrecords(str(root), str(tmp_path / "rec" / "train"), shards=2, progress=False)
    pattern = str(tmp_path / "rec" / "train-*")
    for budget, expected in ((None, 6), (1000, 0)):
        ds, _ = data.load(pattern, image_size=32, batch_size=4, training=False,
                          **({} if budget is None else {"max_pixels": budget}))
        assert sum(int(x.shape[0]) for x, _ in ds) == expected, budget


def test_shrink_image_keeps_16_bit_grey_as_tensorflow_decodes_it_and_bytes_pil_cannot_open(tmp_path):
    """``write_tfrecords(max_side=...)``'s resize of images PIL converts badly: a 16-bit grey PNG
    keeps TensorFlow's grey levels (its high byte; PIL's RGB conversion would make it white), and a
    400-MP PNG, over PIL's decompression-bomb limit, is stored as it is instead of failing the write."""
    from kerasnets.data.tfrecords import shrink_image
    import io

    ramp = np.tile(np.linspace(0, 65535, 800).astype(np.uint16), (600, 1))
    buffer = io.BytesIO()
    Image.fromarray(ramp).save(buffer, format="PNG")
    encoded = buffer.getvalue()
    shrunk = tf.io.decode_jpeg(shrink_image(encoded, 256)).numpy()
    assert shrunk.shape == (192, 256, 3)
    assert abs(shrunk.mean() - tf.io.decode_image(encoded, channels=3).numpy().mean()) < 2.0
    bomb = tmp_path / "bomb.png"
    Image.new("1", (20000, 20000)).save(bomb)
    assert shrink_image(bomb.read_bytes(), 256) == bomb.read_bytes()
