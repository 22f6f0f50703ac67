"""SavedModel and TFLite exports of the trained quickstart model, each checked against Keras."""

import io
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import kerasnets
import kerasnets.serving
from kerasnets import cli, data, export

from conftest import QUICKSTART_PHI  # noqa: E402


@pytest.fixture(scope="module")
def trained(quickstart):
    """The quickstart's trained B0 (softmax), a logits twin with the same weights, and digits test data."""
    model = keras.saving.load_model(quickstart["dir"] / "model.keras")
    logits = kerasnets.EfficientNet(QUICKSTART_PHI, coefficients=kerasnets.PAPER_COEFFICIENTS, input_shape=(32, 32, 3), classes=10,
                                    classifier_activation=None, bn_momentum=0.9, drop_connect_rate=0.0)
    logits.set_weights(model.get_weights())
    test, _ = data.load("digits", "test", image_size=32, batch_size=360, training=False, resize_method="bilinear")
    images, labels = next(iter(test))
    return {"model": model, "logits": logits, "images": images.numpy(), "labels": labels.numpy(),
            "names": [str(i) for i in range(10)], "summary_accuracy": quickstart["summary"]["test_accuracy"]}


def test_saved_model_signatures_match_keras(trained, tmp_path):
    model, images = trained["model"], trained["images"][:16]
    path = str(tmp_path / "sm")
    export.saved_model(model, path, trained["names"], top_k=3)  # its own parity check raises; checked here anew
    loaded = tf.saved_model.load(path)
    expected = np.asarray(model(images))
    served = next(iter(loaded.signatures["serving_default"](tf.constant(images)).values())).numpy()
    np.testing.assert_allclose(served, expected, atol=1e-5)
    served_u8 = next(iter(loaded.signatures["serve_uint8"](tf.constant(images.round().astype(np.uint8))).values()))
    np.testing.assert_allclose(served_u8.numpy(), np.asarray(model(images.round())), atol=1e-5)
    assert [n.decode() for n in loaded.class_names[0].numpy()] == trained["names"]
    assert (tmp_path / "sm" / "labels.txt").read_text().splitlines() == trained["names"]


def test_engine_saved_model_serves_encoded_images_with_the_eval_crop(trained, quickstart):
    """The quickstart trains on digits, whose eval pipeline resizes the whole image (no crop): its
    serve_bytes must do the same, not the reference's 32-px padding (the central 50% at 32 px)."""
    model = trained["model"]
    _, info = data.load("digits", "test", image_size=32, batch_size=8, training=False)
    assert info.preprocessing["crop_padding"] == 0
    # the run records its carve rule, which evaluate and export look for (a contract without it is older)
    assert kerasnets.serving.read_contract(str(quickstart["dir"] / "model.keras")).evaluation["carve"] == "sha256-per-file"
    raw, _ = data.digits_arrays("test")
    pngs, whole = [], []
    for digit in raw[:24]:
        big = np.repeat(np.kron(digit, np.ones((4, 4, 1), np.uint8)), 3, -1)
        buffer = io.BytesIO()
        Image.fromarray(big).save(buffer, format="PNG")
        pngs.append(buffer.getvalue())
        whole.append(big.astype(np.float32))  # 32x32: the eval transform's crop 0 + resize is the identity
    result = tf.saved_model.load(str(quickstart["dir"] / "saved_model")).signatures["serve_bytes"](tf.constant(pngs))
    expected = np.asarray(model(np.stack(whole)))
    np.testing.assert_array_equal(result["class_ids"].numpy()[:, 0], expected.argmax(-1))
    np.testing.assert_allclose(result["probabilities"].numpy()[:, 0], expected.max(-1), atol=1e-5)
    assert [n.decode() for n in result["class_names"].numpy()[:, 0]] == [str(i) for i in expected.argmax(-1)]
    cropped = [data.transforms.center_crop(tf.constant(w.astype(np.uint8)), 32, crop_padding=32).numpy() for w in whole]
    assert not np.allclose(np.asarray(model(np.stack(cropped))), expected, atol=1e-3)  # the crop would matter


def test_class_names_with_spaces_survive_every_format(trained, tmp_path, capsys):
    names = [f"class {i} with spaces" for i in range(10)]
    model_path = tmp_path / "m.keras"
    trained["model"].save(model_path)
    contract = kerasnets.serving.PreprocessingContract((32, 32), 3, "bilinear", 0, tuple(names))
    kerasnets.serving.write_keras_contract(str(model_path), contract)
    assert cli.main(["export", str(model_path), "--format", "saved_model", "--output", str(tmp_path / "sm")]) == 0
    assert cli.main(["export", str(model_path), "--format", "tflite", "--output", str(tmp_path / "m.tflite")]) == 0
    capsys.readouterr()
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    assert [n.decode() for n in loaded.class_names[0].numpy()] == names
    digit = np.repeat(np.kron(data.digits_arrays("test")[0][0], np.ones((4, 4, 1), np.uint8)), 3, -1)
    Image.fromarray(digit).save(tmp_path / "d.png")
    for path in (model_path, tmp_path / "sm", tmp_path / "m.tflite"):
        assert tuple(kerasnets.serving.read_class_names(str(path))) == tuple(names)
        assert cli.main(["predict", str(path), str(tmp_path / "d.png"), "--top-k", "1"]) == 0
        line = capsys.readouterr().out.strip()
        assert line.split(": ", 1)[1].rsplit(" ", 1)[0] in names


def test_saved_model_refuses_to_overwrite_unless_asked(trained, tmp_path):
    path = tmp_path / "sm"
    path.mkdir()
    (path / "keep.txt").write_text("old")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export.saved_model(trained["model"], str(path))
    assert (path / "keep.txt").exists()
    export.saved_model(trained["model"], str(path), overwrite=True)
    assert not (path / "keep.txt").exists() and (path / "saved_model.pb").exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".saved_model-")]  # no temporary left


def test_tflite_fp32_logits_and_probabilities_match_keras(trained, quickstart, tmp_path):
    images = trained["images"][:32]
    report = export.tflite(trained["logits"], str(tmp_path / "logits.tflite"), eval_data=(images, trained["labels"][:32]))
    logits = export.run_tflite(str(tmp_path / "logits.tflite"), images)
    expected = np.asarray(trained["logits"](images))
    # float32 kernels differ between TFLite (XNNPack) and TF in summation order: about 1e-5 of the
    # logit scale (seen: 1.2e-3 at logits of 40 on CI's CPU); a wrong op or weight is off by >> 1e-2
    np.testing.assert_allclose(logits, expected, atol=1e-4 * max(1.0, float(np.abs(expected).max())), rtol=0)
    assert report["top1_agreement"] == 1.0
    # the softmax model: the file the main job exported by default (the user's path, and one
    # conversion fewer for the suite), run here, not its report
    probabilities = export.run_tflite(str(quickstart["dir"] / "model_fp32.tflite"), images)
    assert np.abs(probabilities - np.asarray(trained["model"](images))).max() <= 1e-4
    sidecar = json.loads((quickstart["dir"] / "model_fp32.json").read_text())
    assert sidecar["recipe"] == "quickstart" and sidecar["input"]["range"] == [0, 255]
    assert (quickstart["dir"] / "labels.txt").read_text().split() == trained["names"]


def test_tflite_float16_and_dynamic_range(trained, quickstart, tmp_path):
    labelled = (trained["images"][:64], trained["labels"][:64])
    fp16 = export.tflite(trained["model"], str(tmp_path / "fp16.tflite"), "float16", eval_data=labelled)
    halved = export.run_tflite(str(tmp_path / "fp16.tflite"), labelled[0])  # the file, not its report
    assert np.abs(halved - np.asarray(trained["model"](labelled[0]))).max() <= 1e-2
    fp32_size = os.path.getsize(quickstart["dir"] / "model_fp32.tflite")  # the main job's float32 export of this model
    assert fp16["bytes"] < 0.6 * fp32_size
    dynamic = export.tflite(trained["model"], str(tmp_path / "dyn.tflite"), "dynamic", eval_data=labelled)
    assert dynamic["bytes"] < 0.35 * fp32_size
    assert {"top1_agreement", "keras_accuracy", "tflite_accuracy", "accuracy_drop"} <= set(dynamic)


def test_centering_the_softmax_classifier_keeps_probabilities_and_removes_the_common_logit(trained):
    model = trained["model"]
    centered = export.center_softmax_classifier(model)
    images = trained["images"][:64]
    np.testing.assert_allclose(np.asarray(centered(images)), np.asarray(model(images)), atol=2e-6)
    kernel, bias = centered.get_layer("predictions").get_weights()
    np.testing.assert_allclose(kernel.mean(axis=1), 0, atol=1e-6)
    assert abs(float(bias.mean())) < 1e-6
    features = keras.Model(model.input, model.get_layer("avg_pool").output)(images)
    logits = np.asarray(features) @ kernel + bias
    np.testing.assert_allclose(logits.mean(axis=1), 0, atol=1e-3)  # no common component left for int8 to waste range on
    assert model.get_layer("predictions").get_weights()[0].mean(axis=1).std() > 0  # the original is untouched
    assert export.center_softmax_classifier(trained["logits"]) is None  # logits are not shift invariant


@pytest.fixture(scope="module")
def lite0_digits():
    """EfficientNet-Lite0 (the recommended int8 model: ReLU6, no SE) trained 8 epochs on digits at 32 px
    (94-96% over seeds 0-2 here; 5 epochs at 1e-2 ranged 59-93% across seeds and CPUs)."""
    from kerasnets.training.optimizers import adamw_warmup_cosine

    keras.utils.set_random_seed(0)
    train, info = data.load("digits", "train", 32, 64, training=True, one_hot=True, crop_scale=(0.85, 1.0), flip=False)
    steps = int(np.ceil(info.num_examples / 64))
    model = kerasnets.EfficientNetLite0(input_shape=(32, 32, 3), classes=10, bn_momentum=0.9, drop_connect_rate=0.0)
    model.compile(optimizer=adamw_warmup_cosine(3e-3, steps * 8, steps),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1))
    model.fit(train, epochs=8, verbose=0)
    return model


def _calibration():
    return data.load("digits", "train", image_size=32, batch_size=50, training=False, resize_method="bilinear")[0]


@pytest.mark.parametrize("io_dtype", ["float32", "int8"])
def test_tflite_int8_report_is_measured_on_the_eval_set(trained, tmp_path, io_dtype):
    """The int8 report is measured on the eval set, with either I/O type (the agreement it must reach is tested
    in test_int8.py on a model trained for it); the report must be the truth: every figure is recomputed
    from the written file run by LiteRT's interpreter here (not kerasnets' run_tflite, which the report
    uses) and from Keras' predictions."""
    from test_hostile_cli import run_file

    path = str(tmp_path / "int8.tflite")
    report = export.tflite(trained["model"], path, "int8", representative=_calibration(), calibration_steps=200,
                           io_dtype=io_dtype, eval_data=(trained["images"], trained["labels"]))
    assert report["examples"] == 360 and report["centered_classifier"] is True
    got = run_file(path, trained["images"])
    expected = np.asarray(trained["model"].predict(trained["images"], verbose=0))
    tflite_accuracy = np.mean(got.argmax(-1) == trained["labels"])
    keras_accuracy = np.mean(expected.argmax(-1) == trained["labels"])
    assert report["top1_agreement"] == pytest.approx(np.mean(got.argmax(-1) == expected.argmax(-1)))
    assert report["tflite_accuracy"] == pytest.approx(tflite_accuracy)
    assert report["keras_accuracy"] == pytest.approx(keras_accuracy)
    assert report["keras_accuracy"] == pytest.approx(trained["summary_accuracy"], abs=1e-6)
    assert report["accuracy_drop"] == pytest.approx(keras_accuracy - tflite_accuracy)
    assert report["max_abs_diff"] == pytest.approx(float(np.abs(got - expected).max()), abs=1e-6)
    assert json.loads((tmp_path / "int8.json").read_text())["report"]["top1_agreement"] == report["top1_agreement"]
    assert report["evaluated_on"]["per_class"] == {str(d): int(np.sum(trained["labels"] == d)) for d in range(10)}
    from ai_edge_litert.interpreter import Interpreter

    detail = Interpreter(model_path=path).get_input_details()[0]
    assert detail["dtype"] == (np.int8 if io_dtype == "int8" else np.float32)
    if io_dtype == "int8":  # calibrated on 0..255 pixels: 256 levels, one per pixel value
        scale, zero_point = detail["quantization"]
        assert scale == pytest.approx(1.0, rel=0.02) and zero_point == -128


def test_tflite_int8_of_efficientnet_lite0_keeps_its_accuracy(lite0_digits, trained, tmp_path):
    report = export.tflite(lite0_digits, str(tmp_path / "lite0.tflite"), "int8", representative=_calibration(),
                           calibration_steps=200, eval_data=(trained["images"], trained["labels"]))
    assert report["keras_accuracy"] >= 0.7  # a trained model (chance is 0.1), or agreement would mean nothing
    assert report["top1_agreement"] >= 0.9
    assert report["accuracy_drop"] <= 0.03


def test_export_bad_inputs(trained, tmp_path):
    model = trained["model"]
    with pytest.raises(ValueError, match=r"quantization must be one of \('none', 'float16', 'dynamic', 'int8'\)"):
        export.tflite(model, str(tmp_path / "a.tflite"), "int4")
    with pytest.raises(ValueError, match="needs representative data"):
        export.tflite(model, str(tmp_path / "a.tflite"), "int8")
    with pytest.raises(ValueError, match="io_dtype='int8' needs quantization='int8'"):
        export.tflite(model, str(tmp_path / "a.tflite"), io_dtype="int8")
    (tmp_path / "exists.tflite").write_bytes(b"x")
    with pytest.raises(FileExistsError, match="already exists"):
        export.tflite(model, str(tmp_path / "exists.tflite"))
    with pytest.raises(ValueError, match="fixed"):
        export.tflite(kerasnets.ResNet(18, input_shape=(None, None, 3)), str(tmp_path / "b.tflite"))


def test_export_and_predict_commands_on_real_files(quickstart, tmp_path, capsys):
    run = quickstart["dir"]
    out = tmp_path / "cli.tflite"
    assert cli.main(["export", str(run / "model.keras"), "--format", "tflite", "--output", str(out),
                     "--quantize", "dynamic", "--calibration", "digits"]) == 0
    printed = capsys.readouterr().out
    assert json.loads(printed[printed.index("{"):])["quantization"] == "dynamic"
    assert cli.main(["export", str(run / "model.keras"), "--format", "tflite", "--output", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    raw, labels = data.digits_arrays("test")
    files = []
    for i in range(3):
        path = tmp_path / f"digit{i}.png"
        Image.fromarray(np.repeat(np.kron(raw[i], np.ones((4, 4, 1), np.uint8)), 3, -1)).save(path)
        files.append(str(path))
    (tmp_path / "broken.png").write_bytes(b"not a png")
    tops = {}
    for model_path in (run / "model.keras", run / "saved_model", run / "model_fp32.tflite"):
        code = cli.main(["predict", str(model_path), *files, str(tmp_path / "broken.png")])  # the model's own crop
        captured = capsys.readouterr()
        assert code == 2 and "broken.png: error: cannot read image" in captured.err
        tops[model_path.name] = [line.split(": ")[1].split()[0] for line in captured.out.strip().splitlines()]
    assert tops["model.keras"] == tops["saved_model"] == tops["model_fp32.tflite"]
    whole = np.stack([np.repeat(np.kron(raw[i], np.ones((4, 4, 1), np.uint8)), 3, -1) for i in range(3)])
    expected = np.asarray(keras.saving.load_model(run / "model.keras")(whole.astype(np.float32))).argmax(-1)
    assert tops["model.keras"] == [str(d) for d in expected]  # served with the model's eval crop (none)


def test_float32_copy_of_a_mixed_precision_model_computes_its_weights_in_float32():
    """Exports of a model trained under mixed_bfloat16 are of its float32 computation: the copy
    equals a float32 build of the same architecture holding the same weights (EfficientNet's
    Normalization included, whose mean and variance a plain clone would leave at 0 and 1)."""
    from kerasnets.training import precision_scope

    def build():
        return kerasnets.EfficientNet(-3, coefficients=kerasnets.PAPER_COEFFICIENTS, input_shape=(32, 32, 3),
                                      classes=10, classifier_activation=None)  # logits: a random model's softmax is flat

    reference = build()
    with precision_scope("mixed_bfloat16"):
        mixed = build()
    mixed.set_weights(reference.get_weights())
    copy = export.float32_model(mixed)
    assert all(layer.dtype_policy.compute_dtype == "float32" for layer in copy._flatten_layers(include_self=False))
    images = np.random.RandomState(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    expected = np.asarray(reference(images, training=False))
    scale = np.abs(expected).max()  # a fresh classifier's logits are ~1e-5: compare relative to them
    assert np.abs(np.asarray(copy(images, training=False)) - expected).max() <= 1e-4 * scale
    assert np.abs(np.asarray(mixed(images, training=False), np.float32) - expected).max() > 1e-3 * scale  # bf16
    assert export.float32_model(reference) is reference


def _tiny_conv_model():
    """A 3-class 32 x 32 softmax model whose output depends on where each pixel is (Flatten): a wrong
    crop or decode changes it."""
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(keras.layers.Rescaling(1 / 255)(inputs))
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(x)))


def test_serve_bytes_and_predict_refuse_files_cut_short_alone_and_check_each_once(tmp_path, monkeypatch, capsys):
    """A JPEG cut in half and a PNG without its IEND chunk pass the header checks; each failed the whole
    serve_bytes request (InvalidArgumentError). Now each gets its status, class id -1 and probability 0,
    and the others are served: a JPEG, and the same JPEG followed by 3 KB of other data (a motion
    photo's video: valid), give the model's output on the pixels TensorFlow decodes from the JPEG.
    The bytes are checked once per image (``check_encoded``), never again inside the crop (``_checked``)."""
    from kerasnets.data import transforms

    rng = np.random.RandomState(0)
    photo = rng.randint(0, 256, (32, 32, 3)).astype(np.uint8)  # the model's size: crop 0 + resize is the identity
    jpeg, png = io.BytesIO(), io.BytesIO()
    Image.fromarray(photo).save(jpeg, format="JPEG", quality=90)
    Image.fromarray(photo).save(png, format="PNG")
    jpeg, png = jpeg.getvalue(), png.getvalue()
    batch = [jpeg, jpeg[:len(jpeg) // 2], png[:-12], jpeg + rng.bytes(3000)]  # png[:-12]: its IEND chunk cut off
    model = _tiny_conv_model()
    contract = kerasnets.serving.PreprocessingContract((32, 32), 3, "bilinear", 0, ("a", "b", "c"))
    crops_checked = []
    real_checked = transforms._checked
    monkeypatch.setattr(transforms, "_checked", lambda *a, **k: crops_checked.append(1) or real_checked(*a, **k))
    export.saved_model(model, str(tmp_path / "sm"), contract=contract)
    assert not crops_checked  # serve_bytes' crop does not check the bytes check_encoded passed
    served = tf.saved_model.load(str(tmp_path / "sm")).signatures["serve_bytes"](tf.constant(batch))
    status = [s.decode() for s in served["status"].numpy()]
    assert status == ["ok", "truncated JPEG (no end-of-image marker after its scan data)",
                      "truncated PNG (no IEND chunk)", "ok"]
    expected = np.asarray(model(tf.io.decode_jpeg(jpeg)[None].numpy().astype(np.float32)))[0]
    for row in (0, 3):
        np.testing.assert_allclose(served["probabilities"].numpy()[row], np.sort(expected)[::-1], atol=1e-5)
        assert served["class_ids"].numpy()[row, 0] == expected.argmax()
    for row in (1, 2):
        assert (served["class_ids"].numpy()[row] == -1).all() and (served["probabilities"].numpy()[row] == 0).all()

    # kerasnets predict: the same files, one error line for each cut one, each file checked once
    model.save(tmp_path / "m.keras")
    kerasnets.serving.write_keras_contract(str(tmp_path / "m.keras"), contract)
    for name, encoded in zip(("good.jpg", "cut.jpg", "cut.png", "trailing.jpg"), batch):
        (tmp_path / name).write_bytes(encoded)
    checks = []
    real_check = transforms.check_encoded
    monkeypatch.setattr(transforms, "check_encoded", lambda *a, **k: checks.append(1) or real_check(*a, **k))
    code = cli.main(["predict", str(tmp_path / "m.keras"), *(str(tmp_path / n) for n in ("good.jpg", "cut.jpg",
                                                                                         "cut.png", "trailing.jpg"))])
    out, err = capsys.readouterr()
    assert code == 2 and "cut.jpg: error: cannot read image (truncated JPEG" in err and "cut.png: error" in err
    assert [line.split(": ")[0] for line in out.splitlines()] == [str(tmp_path / "good.jpg"),
                                                                  str(tmp_path / "trailing.jpg")]
    assert len(checks) == 1 + 4 and not crops_checked  # --max-pixels validated once, then one check per file
