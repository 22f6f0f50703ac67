"""Issue #18, "never silently wrong": the held-out carve, ``kerasnets evaluate`` and ``kerasnets export``
on the inputs users have (a growing folder, a folder missing a class, a file that does not decode,
ImageNet-style TFRecords, flags that a format would ignore). Every expected number is computed here,
independently: the carve from its documented hash, accuracies from the model's own predictions with
numpy, TFLite figures by running the written file with LiteRT's interpreter."""

import hashlib
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from kerasnets import cli, serving
from kerasnets.data.files import folder_layout, select_split

#: the tiny model's classes: each is the colour channel that dominates its images
CLASSES = ("red", "green", "blue")
#: every image is this size, the model's input size, and served with no crop: the eval transform is
#: then the identity, so that a reference can read the files with PIL alone
SIZE = 16


def reference_held_out(class_name, relative_path, fraction, seed):
    """The carve's documented rule, written out again: sha256 of "seed:class/path" as a uniform in [0, 1)."""
    digest = hashlib.sha256(f"{seed}:{class_name}/{relative_path}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64 < fraction


def _png(path, rgb, rng):
    """A SIZE x SIZE PNG of colour ``rgb`` with a little noise (real files, as a user's folder holds)."""
    pixels = np.clip(np.asarray(rgb)[None, None] + rng.randint(-8, 9, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def write_undecodable_png(path):
    """A real PNG whose pixel data is damaged: it passes the cheap file and header checks (signature,
    IHDR, IEND) but does not decode, as a file corrupted in transit."""
    _png(path, (200, 0, 0), np.random.RandomState(0))
    damaged = bytearray(path.read_bytes())
    start = damaged.index(b"IDAT") + 20
    damaged[start:start + 10] = bytes(10)
    path.write_bytes(bytes(damaged))


def _colour_folder(root, counts, seed=0):
    """``root/<class>/<i>.png``: each image's own class channel in 90..255, the others in 0..200, so that
    the colour model below is right on most images and wrong on some."""
    rng = np.random.RandomState(seed)
    for name, count in counts.items():
        for i in range(count):
            rgb = rng.randint(0, 201, 3)
            rgb[CLASSES.index(name) if name in CLASSES else 0] = rng.randint(90, 256)
            _png(root / name / f"{i:04d}.png", rgb, rng)
    return root


def _colour_model(path, evaluation=None, resize="bilinear", size=(SIZE, SIZE)):
    """A .keras model of input ``size`` (height, width) that predicts the dominant colour channel,
    saved with a contract naming CLASSES."""
    inputs = keras.Input((*size, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    outputs = keras.layers.Dense(3, activation="softmax", name="predictions")(pooled)
    model = keras.Model(inputs, outputs)
    model.get_layer("predictions").set_weights([np.eye(3, dtype=np.float32) * 20, np.zeros(3, np.float32)])
    model.save(path)
    contract = serving.PreprocessingContract(tuple(size), 3, resize, 0, CLASSES, evaluation=evaluation or {})
    serving.write_keras_contract(str(path), contract)
    return model


def _reference_accuracy(model, files):
    """Accuracy of ``model`` on ``files`` (path, class name) read with PIL, labels by the model's class names."""
    images = np.stack([np.asarray(Image.open(p).convert("RGB"), np.float32) for p, _ in files])
    predicted = np.asarray(model(images)).argmax(-1)
    return float(np.mean(predicted == np.array([CLASSES.index(name) for _, name in files])))


def _files(root, classes=CLASSES):
    return [(p, p.parent.name) for name in classes for p in sorted((root / name).glob("*.png"))]


def _accuracy_line(out):
    line = next(line for line in out.splitlines() if ": accuracy " in line)
    return float(line.split("accuracy ")[1].split()[0]), line


# ------------------------------------------------------------------------------------------ carve

def _carve(root, split, fraction, seed):
    return set(select_split(folder_layout(str(root)), split, fraction, seed).paths)


@pytest.mark.parametrize("layout", ["plain", "split"])
def test_adding_or_removing_a_file_moves_no_other_file_across_the_carve(tmp_path, layout):
    """The carve is the documented per-file hash (an independent reference), so a file added to a folder
    or removed from it never moves another file between train and validation (the old seeded shuffle
    moved 13 of 16 validation images when one image was added)."""
    root = tmp_path / "ds"
    classes = root / "train" if layout == "split" else root
    _colour_folder(classes, {"red": 40, "green": 40})
    if layout == "split":
        _colour_folder(root / "test", {"red": 2, "green": 2})
    fraction, seed = 0.25, 3  # a fraction and seed other than the defaults: both must reach the hash

    def expected(split):
        return {str(p) for p, name in _files(classes, ("red", "green"))
                if reference_held_out(name, p.name, fraction, seed) == (split == "validation")}

    before = {split: _carve(root, split, fraction, seed) for split in ("train", "validation")}
    assert before == {split: expected(split) for split in before}
    assert before["train"] and before["validation"] and not before["train"] & before["validation"]
    _png(classes / "green" / "added.png", (0, 200, 0), np.random.RandomState(1))
    after = {split: _carve(root, split, fraction, seed) for split in ("train", "validation")}
    assert after["train"] | after["validation"] == before["train"] | before["validation"] | {str(classes / "green" / "added.png")}
    assert before["train"] <= after["train"] and before["validation"] <= after["validation"]
    removed = sorted(before["validation"])[0]
    os.remove(removed)
    final = {split: _carve(root, split, fraction, seed) for split in ("train", "validation")}
    assert final["train"] == after["train"] and final["validation"] == after["validation"] - {removed}


def test_carve_holds_out_the_fraction_over_1000_files(tmp_path):
    """0.2 of 1000 files: binomial standard deviation 12.6, so 200 +- 50 (4 sigma) for any seed."""
    _colour_folder(tmp_path / "ds", {"red": 500, "blue": 500})
    for seed in (0, 1):  # two seeds: two different draws, each within the tolerance
        held = _carve(tmp_path / "ds", "validation", 0.2, seed)
        assert 150 <= len(held) <= 250, len(held)
    assert _carve(tmp_path / "ds", "validation", 0.2, 0) != _carve(tmp_path / "ds", "validation", 0.2, 1)


def test_carve_that_holds_out_nothing_is_a_clear_error(tmp_path):
    _colour_folder(tmp_path / "ds", {"red": 2, "green": 2})
    fraction = 0.01  # 4 files at 1%: no file hashes below it for seed 0 (checked by the reference)
    assert not any(reference_held_out(n, p.name, fraction, 0) for p, n in _files(tmp_path / "ds", ("red", "green")))
    with pytest.raises(ValueError, match=r"validation_split=0.01 \(seed 0\) of the 4 images .* holds out no image.*raise "
                                         r"validation_split"):
        select_split(folder_layout(str(tmp_path / "ds")), "validation", fraction, 0)


# --------------------------------------------------------------------------------------- evaluate

def test_evaluate_maps_the_data_classes_to_the_models_by_name(tmp_path, capsys):
    """A folder holding two of the model's three classes: its label 1 is "blue", the model's output 2.
    The accuracy printed equals numpy's on the model's own predictions; a class the model does not
    know is refused with both lists."""
    model = _colour_model(tmp_path / "m.keras")
    root = _colour_folder(tmp_path / "no_green", {"red": 12, "blue": 12})
    assert cli.main(["evaluate", str(tmp_path / "m.keras"), "--data", str(root)]) == 0
    accuracy, line = _accuracy_line(capsys.readouterr().out)
    reference = _reference_accuracy(model, _files(root, ("red", "blue")))
    assert 0.6 < reference < 1.0  # right on most images, not all: a mapping error would show
    assert accuracy == pytest.approx(reference, abs=1e-4) and "on 24 of the 24 images" in line
    _colour_folder(tmp_path / "no_green", {"wolf": 2})
    assert cli.main(["evaluate", str(tmp_path / "m.keras"), "--data", str(root)]) == 2
    err = capsys.readouterr().err
    assert "classes the model does not know: ['wolf']" in err and "'red', 'green', 'blue'" in err


def test_evaluate_scores_the_runs_own_carve(tmp_path, capsys):
    """A model whose contract says it was evaluated on the seed-7, 30% carve of this plain folder is
    scored on exactly those files (the reference hash), not on a default carve or the whole folder."""
    root = _colour_folder(tmp_path / "plain", {"red": 20, "green": 20, "blue": 20})
    evaluation = {"data": str(root), "split": "validation", "seed": 7, "validation_split": 0.3}
    model = _colour_model(tmp_path / "m.keras", evaluation)
    held = [(p, n) for p, n in _files(root) if reference_held_out(n, p.name, 0.3, 7)]
    assert cli.main(["evaluate", str(tmp_path / "m.keras"), "--data", str(root)]) == 0
    accuracy, line = _accuracy_line(capsys.readouterr().out)
    assert f"on {len(held)} of the {len(held)} images" in line and "split 'validation'" in line
    assert accuracy == pytest.approx(_reference_accuracy(model, held), abs=1e-4)


def test_evaluate_of_a_moved_or_copied_folder_scores_the_runs_own_carve(tmp_path, capsys, caplog):
    """The run's plain folder copied elsewhere (or moved: the contract's path no longer matters) holds
    the model's classes: evaluate there scores the same held-out files as at the original path (the
    carve hashes each file's path inside its class folder), and says why. It used to score the whole
    copy, training images included. A folder with other classes is still scored whole."""
    import shutil

    root = _colour_folder(tmp_path / "plain", {"red": 20, "green": 20, "blue": 20})
    evaluation = {"data": str(root), "split": "validation", "seed": 7, "validation_split": 0.3,
                  "carve": serving.CARVE}
    model = _colour_model(tmp_path / "m.keras", evaluation)
    copy = shutil.copytree(root, tmp_path / "elsewhere" / "plain copy")
    # the files the run held out at the original path (test_evaluate_scores_the_runs_own_carve scores them there)
    held = [(copy / n / p.name, n) for p, n in _files(root) if reference_held_out(n, p.name, 0.3, 7)]
    assert cli.main(["evaluate", str(tmp_path / "m.keras"), "--data", str(copy)]) == 0
    accuracy, line = _accuracy_line(capsys.readouterr().out)
    assert accuracy == pytest.approx(_reference_accuracy(model, held), abs=1e-4)
    assert f"on {len(held)} of the {len(held)} images" in line and "split 'validation'" in line
    said = [r.getMessage() for r in caplog.records if "moved or copied" in r.getMessage()]
    assert len(said) == 1 and str(copy) in said[0] and str(root) in said[0]
    two_classes = _colour_folder(tmp_path / "red and blue", {"red": 4, "blue": 4})
    assert cli.main(["evaluate", str(tmp_path / "m.keras"), "--data", str(two_classes)]) == 0
    assert "on 8 of the 8 images" in _accuracy_line(capsys.readouterr().out)[1]  # not the run's data: whole


def test_a_model_from_before_the_per_file_carve_is_warned_about_once(tmp_path, capsys, caplog, monkeypatch):
    """A contract without ``carve`` was written before held-out files were carved per file: evaluate
    and int8 export re-carve its folder by the hash, which may hold out images it trained on; each
    command says so once (export reads the contract for its report and for its calibration draw).
    A contract that records the carve is not warned about."""
    root = _colour_folder(tmp_path / "plain", {"red": 10, "green": 10, "blue": 10})
    evaluation = {"data": str(root), "split": "validation", "seed": 7, "validation_split": 0.3}
    _colour_model(tmp_path / "old.keras", evaluation)
    _colour_model(tmp_path / "new.keras", {**evaluation, "carve": serving.CARVE})

    def warned():
        return [r.getMessage() for r in caplog.records if "before kerasnets carved" in r.getMessage()]

    for command in (["evaluate", str(tmp_path / "old.keras"), "--data", str(root)],
                    ["export", str(tmp_path / "old.keras"), "--format", "tflite", "--quantize", "int8",
                     "--calibration", str(root), "--steps", "6", "--output", str(tmp_path / "m.tflite")]):
        monkeypatch.setattr(cli, "_SAID", set())  # each command runs in its own process: once per process
        caplog.clear()
        assert cli.main(command) == 0
        assert len(warned()) == 1 and str(root) in warned()[0] and "may include images it trained on" in warned()[0]
    caplog.clear()
    assert cli._run_evaluation(str(tmp_path / "new.keras"), str(root))["carve"] == serving.CARVE  # what both read
    assert not warned()
    capsys.readouterr()


def test_evaluate_refuses_an_accuracy_over_fewer_images_than_the_split(tmp_path, capsys):
    """A PNG whose pixel data is damaged passes the cheap file checks but does not decode; the
    pipeline drops it, so the accuracy covers 11 of 12 images: both counts are printed and the
    command fails instead of passing the figure off as the split's."""
    _colour_model(tmp_path / "m.keras")
    root = _colour_folder(tmp_path / "ds", {"red": 6, "blue": 6})
    write_undecodable_png(root / "red" / "0000.png")
    assert cli.main(["evaluate", str(tmp_path / "m.keras"), "--data", str(root)]) == 2
    captured = capsys.readouterr()
    assert "on 11 of the 12 images" in captured.out
    assert captured.err.count("error:") == 1 and "1 could not be decoded" in captured.err


def _imagenet_style_records(path, files, offset):
    """TFRecords in the ImageNet layout, no labels file, labels ``class index + offset`` (1-based at 1)."""
    with tf.io.TFRecordWriter(str(path)) as writer:
        for file, name in files:
            feature = {"image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[file.read_bytes()])),
                       "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(
                           value=[CLASSES.index(name) + offset]))}
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())


def test_evaluate_imagenet_style_tfrecords_with_num_classes_and_label_offset(tmp_path, capsys):
    model = _colour_model(tmp_path / "m.keras")
    files = _files(_colour_folder(tmp_path / "ds", {"red": 5, "green": 5, "blue": 5}))
    _imagenet_style_records(tmp_path / "validation-00000-of-00001", files, offset=1)
    records = str(tmp_path / "validation-*")
    assert cli.main(["evaluate", str(tmp_path / "m.keras"), "--data", records]) == 2
    assert "--num-classes" in capsys.readouterr().err  # no labels file: the flags the user needs are named
    assert cli.main(["evaluate", str(tmp_path / "m.keras"), "--data", records, "--num-classes", "3",
                     "--label-offset", "-1"]) == 0
    accuracy, line = _accuracy_line(capsys.readouterr().out)
    assert accuracy == pytest.approx(_reference_accuracy(model, files), abs=1e-4) and "on 15 of the 15" in line
    assert cli.main(["evaluate", str(tmp_path / "m.keras"), "--data", str(tmp_path / "ds"), "--num-classes", "3"]) == 2
    assert "apply to TFRecord sources only" in capsys.readouterr().err
    assert cli.main(["evaluate", str(tmp_path / "m.keras"), "--data", records, "--num-classes", "3",
                     "--label-offset", "-1", "--split", "validation"]) == 2
    assert "has no splits" in capsys.readouterr().err  # a glob's "split" chose no file: refused, not ignored



def test_evaluate_names_a_bad_label_met_past_the_first_batch_in_one_line(tmp_path, capsys):
    """A label out of range in a later shard is met mid-iteration, after the first-batch check: the
    command still ends with one error line naming the label and the shard (exit 2), not a traceback."""
    _colour_model(tmp_path / "m.keras")
    files = _files(_colour_folder(tmp_path / "ds", {"red": 8, "green": 8, "blue": 8}))
    _imagenet_style_records(tmp_path / "validation-00000-of-00002", files, offset=1)  # 1-based, right
    _imagenet_style_records(tmp_path / "validation-00001-of-00002", files[:2], offset=0)  # 0-based: red is 0
    # --batch-size 4: the first batch holds shard 0's records only, so the bad label is met later
    code = cli.main(["evaluate", str(tmp_path / "m.keras"), "--data", str(tmp_path / "validation-*"),
                     "--num-classes", "3", "--label-offset", "-1", "--batch-size", "4"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("error:") == 1 and "Traceback" not in err
    assert "label -1 (after label_offset=-1) in shard" in err and "validation-00001-of-00002" in err


def test_evaluate_and_int8_export_of_a_non_square_model(tmp_path, capsys):
    """A (16, 24) model (the builders take any input_shape) on a plain folder of 16 x 32 images: its
    eval crop (padding 0) is the central 16 x 24 window of each, unresized, so a numpy slice is the
    reference. Each image's outer 4-column margins hold another class's colour, so a wrong window
    (the whole image, a square one) changes predictions. Both commands failed with a Keras shape
    error (the data was loaded at 16 x 16)."""
    rng = np.random.RandomState(0)
    root = tmp_path / "wide"
    for index in range(36):
        name = CLASSES[index % 3]
        centre = rng.randint(0, 201, 3)
        centre[CLASSES.index(name)] = rng.randint(90, 256)
        pixels = np.zeros((SIZE, 32, 3), np.uint8)
        pixels[:, 4:28] = centre
        pixels[:, :4, (index + 1) % 3] = pixels[:, 28:, (index + 1) % 3] = 255  # the margins: the next class
        (root / name).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(root / name / f"{index:03d}.png")
    model = _colour_model(tmp_path / "m.keras", size=(SIZE, 24))
    files = _files(root)
    images = np.stack([np.asarray(Image.open(p), np.float32) for p, _ in files])
    labels = np.array([CLASSES.index(n) for _, n in files])
    predicted = np.asarray(model(images[:, :, 4:28])).argmax(-1)
    reference = float(np.mean(predicted == labels))
    whole = float(np.mean((images.mean(axis=(1, 2)) * 20 / 255).argmax(-1) == labels))  # the model's rule, whole image
    assert 0.6 < reference < 1.0 and whole < reference - 0.1  # the window matters

    assert cli.main(["evaluate", str(tmp_path / "m.keras"), "--data", str(root)]) == 0
    accuracy, line = _accuracy_line(capsys.readouterr().out)
    assert accuracy == pytest.approx(reference, abs=1e-4) and "on 36 of the 36 images" in line and "'all'" in line

    target = tmp_path / "m_int8.tflite"
    assert cli.main(["export", str(tmp_path / "m.keras"), "--format", "tflite", "--quantize", "int8",
                     "--calibration", str(root), "--steps", "12", "--output", str(target)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(printed[printed.index("\n{\n") + 1:])
    held = np.array([reference_held_out(n, p.name, 0.2, 0) for p, n in files])  # the default carve of a plain folder
    assert report["evaluated_on"]["images"] == held.sum() > 0
    assert report["keras_accuracy"] == pytest.approx(np.mean(predicted[held] == labels[held]))
    outputs = run_file(target, images[held][:, :, 4:28])
    assert report["tflite_accuracy"] == pytest.approx(np.mean(outputs.argmax(-1) == labels[held]))


# ----------------------------------------------------------------------------------------- export

def run_file(path, images):
    """Outputs of a .tflite file by LiteRT's interpreter alone (not kerasnets' run_tflite), one image
    at a time, int8 input and output (de)quantized by their stored scale and zero point."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    outputs = []
    for image in images:
        value = image[None]
        if source["dtype"] != np.float32:
            scale, zero = source["quantization"]
            value = np.clip(np.round(value / scale + zero), -128 if source["dtype"] == np.int8 else 0,
                            127 if source["dtype"] == np.int8 else 255)
        interpreter.set_tensor(source["index"], value.astype(source["dtype"]))
        interpreter.invoke()
        out = interpreter.get_tensor(target["index"])[0].astype(np.float32)
        if target["dtype"] != np.float32:
            scale, zero = target["quantization"]
            out = (out - zero) * scale
        outputs.append(out)
    return np.stack(outputs)


def test_export_tflite_writes_the_resize_flag_into_its_contract(tmp_path, capsys):
    """The sidecar's contract is what serving reads: a model trained bicubic, exported with --resize
    bilinear, must say bilinear (it kept bicubic)."""
    _colour_model(tmp_path / "m.keras", resize="bicubic")
    target = tmp_path / "m.tflite"
    assert cli.main(["export", str(tmp_path / "m.keras"), "--format", "tflite", "--output", str(target),
                     "--resize", "bilinear"]) == 0
    capsys.readouterr()
    assert serving.read_contract(str(target)).resize_method == "bilinear"
    assert json.loads((tmp_path / "m.json").read_text())["preprocessing"]["resize_method"] == "bilinear"


def _algorithm_r(stream, count, seed):
    """Vitter's Algorithm R as published, seeded like the export's draw: the reference the draw must match."""
    rng, reservoir = np.random.RandomState(seed), []
    for i, item in enumerate(stream):
        if i < count:
            reservoir.append(item)
        else:
            j = rng.randint(0, i + 1)
            if j < count:
                reservoir[j] = item
    return sorted(reservoir)


def test_export_draw_is_a_seeded_uniform_sample_held_as_uint8():
    """``kerasnets export`` draws its calibration and report images (cli._draw) as a reservoir of
    ``count`` uint8 images: bounded whatever the split's size (it held up to 2 x count float32 images,
    4.4 GB at 600 px). The draw is every k-th example (k = 300 // 40 = 7) sampled by Algorithm R: the
    images kept are exactly the reference's (each image's pixels encode its index), with their own
    labels, every class, and the same on a second call; inclusion is uniform (count / n) over seeds."""
    index = np.arange(300)
    images = np.zeros((300, 8, 8, 3), np.uint8)  # 8 px, crop 0: the eval transform is the identity
    images[..., 0], images[..., 1] = (index % 256)[:, None, None], (index // 256)[:, None, None]
    labels = index // 100  # sorted by class, as a folder's files are
    common = dict(image_size=8, batch_size=32, training=False, resize_method="bilinear", crop_padding=0)
    drawn, described = cli._draw((images, labels), "all", 40, CLASSES, 3, {"class_names": list(CLASSES)}, common)
    kept = drawn[0][:, 0, 0, 0].astype(int) + 256 * drawn[0][:, 0, 0, 1].astype(int)
    assert drawn[0].dtype == np.uint8 and drawn[0].shape == (40, 8, 8, 3)
    assert list(kept) == _algorithm_r(range(0, 300, 7), 40, seed=0)
    assert list(drawn[1]) == list(kept // 100) and set(drawn[1]) == {0, 1, 2}
    again = cli._draw((images, labels), "all", 40, CLASSES, 3, {"class_names": list(CLASSES)}, common)[0]
    assert np.array_equal(again[0], drawn[0]) and described["split_images"] == 300
    # a long stream in batches (labels carry each item's index): exactly the reference's items, any seed
    stream = [(np.zeros((64, 1)), np.arange(start, start + 64)) for start in range(0, 1024, 64)]
    for seed in (0, 1):
        assert list(cli._reservoir(stream, 25, seed)[1]) == _algorithm_r(range(1024), 25, seed)
    # uniform: over 3000 seeds each of 100 items is kept with probability 10 / 100 (4 sigma: +- 0.022)
    counts = np.zeros(100)
    stream = [(np.arange(100).reshape(100, 1), np.zeros(100))]  # one batch of 100 one-pixel "images"
    for seed in range(3000):
        counts[cli._reservoir(stream, 10, seed)[0][:, 0]] += 1
    assert np.abs(counts / 3000 - 0.1).max() < 0.022, counts.min()


@pytest.mark.parametrize("flags, words", [
    (["--format", "saved_model", "--quantize", "int8", "--calibration", "DATA"],
     ["saved_model", "--quantize", "--calibration", "--format tflite"]),
    (["--format", "tflite", "--quantize", "dynamic", "--steps", "100"], ["--steps", "int8 only"]),
    (["--format", "tflite", "--io-dtype", "int8"], ["--io-dtype int8", "int8 only"]),
    (["--format", "tflite", "--quantize", "int8"], ["needs --calibration"]),
    (["--format", "tflite", "--quantize", "int8", "--calibration", "RECORDS"], ["share", "--eval-data"]),
    (["--format", "tflite", "--quantize", "int8", "--calibration", "DATA", "--eval-split", "train"],
     ["share images", "held-out"]),
    (["--format", "tflite", "--calibration", "DATA", "--num-classes", "3"], ["TFRecord sources only"]),
])
def test_export_refuses_flags_it_would_ignore(tmp_path, capsys, flags, words):
    """Each of these exited 0 having ignored a flag (a float SavedModel for --quantize int8, a report
    measured on the calibration files for a TFRecord glob), or would now: one error line, no file."""
    _colour_model(tmp_path / "m.keras")
    root = _colour_folder(tmp_path / "ds", {"red": 6, "green": 6, "blue": 6})
    _imagenet_style_records(tmp_path / "train-00000-of-00001", _files(root), offset=0)
    (tmp_path / "train-labels.txt").write_text("".join(f"{name}\n" for name in CLASSES))
    flags = [{"DATA": str(root), "RECORDS": str(tmp_path / "train-*")}.get(f, f) for f in flags]
    target = tmp_path / "out" / "m.tflite"
    assert cli.main(["export", str(tmp_path / "m.keras"), "--output", str(target), *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "Traceback" not in err
    for word in words:
        assert word in err, (word, err)
    assert not (tmp_path / "out").exists()


def test_int8_export_reports_on_the_runs_held_out_carve_of_every_class(tmp_path, capsys):
    """``kerasnets export --quantize int8`` on the plain folder the model was trained on: the report is
    measured on the run's own carve (seed 7, 30%: the reference hash), says so with per-class counts,
    and its figures are those of the written file run by LiteRT's interpreter; the 12 calibration
    images (``--steps 12``, small so that an uneven draw would miss a class) cover every class."""
    root = _colour_folder(tmp_path / "plain", {"red": 20, "green": 20, "blue": 20})
    evaluation = {"data": str(root), "split": "validation", "seed": 7, "validation_split": 0.3}
    model = _colour_model(tmp_path / "m.keras", evaluation)
    target = tmp_path / "m_int8.tflite"
    assert cli.main(["export", str(tmp_path / "m.keras"), "--format", "tflite", "--quantize", "int8",
                     "--calibration", str(root), "--steps", "12", "--output", str(target)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(printed[printed.index("\n{\n") + 1:])
    held = [(p, n) for p, n in _files(root) if reference_held_out(n, p.name, 0.3, 7)]
    on = report["evaluated_on"]
    assert (on["source"], on["split"], on["images"]) == (str(root), "validation", len(held))
    assert on["per_class"] == {name: sum(n == name for _, n in held) for name in CLASSES}
    images = np.stack([np.asarray(Image.open(p).convert("RGB"), np.float32) for p, _ in held])
    labels = np.array([CLASSES.index(n) for _, n in held])
    outputs = run_file(target, images)
    assert report["tflite_accuracy"] == pytest.approx(np.mean(outputs.argmax(-1) == labels))
    assert report["keras_accuracy"] == pytest.approx(np.mean(np.asarray(model(images)).argmax(-1) == labels))
    calibrated = report["calibration"]["calibrated_on"]
    assert calibrated["split"] == "train" and calibrated["images"] == 12
    assert all(count > 0 for count in calibrated["per_class"].values()), calibrated


def test_int8_export_of_imagenet_style_tfrecords_reports_on_the_held_out_shards(tmp_path, capsys):
    """The ImageNet recipes' data: 1-based TFRecords without a labels file, train and validation globs.
    Calibrated on train-*, reported on validation-* (--eval-data), labels by --num-classes and
    --label-offset; the report's figures are the written file's, run here by LiteRT's interpreter."""
    model = _colour_model(tmp_path / "m.keras")
    train = _files(_colour_folder(tmp_path / "train_images", {"red": 6, "green": 6, "blue": 6}, seed=1))
    validation = _files(_colour_folder(tmp_path / "val_images", {"red": 5, "green": 5, "blue": 5}, seed=2))
    _imagenet_style_records(tmp_path / "train-00000-of-00001", train, offset=1)
    _imagenet_style_records(tmp_path / "validation-00000-of-00001", validation, offset=1)
    target = tmp_path / "m_int8.tflite"
    assert cli.main(["export", str(tmp_path / "m.keras"), "--format", "tflite", "--quantize", "int8", "--output",
                     str(target), "--calibration", str(tmp_path / "train-*"), "--eval-data",
                     str(tmp_path / "validation-*"), "--num-classes", "3", "--label-offset", "-1"]) == 0
    printed = capsys.readouterr().out
    report = json.loads(printed[printed.index("\n{\n") + 1:])
    on = report["evaluated_on"]
    assert (on["source"], on["images"], on["per_class"]) == (str(tmp_path / "validation-*"), 15,
                                                             {"red": 5, "green": 5, "blue": 5})
    assert report["calibration"]["calibrated_on"]["source"] == str(tmp_path / "train-*")
    images = np.stack([np.asarray(Image.open(p).convert("RGB"), np.float32) for p, _ in validation])
    labels = np.array([CLASSES.index(n) for _, n in validation])
    assert report["tflite_accuracy"] == pytest.approx(np.mean(run_file(target, images).argmax(-1) == labels))
    assert report["keras_accuracy"] == pytest.approx(np.mean(np.asarray(model(images)).argmax(-1) == labels))
