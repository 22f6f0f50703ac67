"""A user's own images, end to end: folder layouts, CLI overrides, fine-tuning, the serving contract,
and bad input that fails with one line and leaves nothing behind."""

import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import ENV, RECIPES, ROOT, digits_folder, kerasnets_cmd
from test_hostile_cli import reference_held_out, write_undecodable_png
from kerasnets import cli, data, serving

QUICKSTART = os.path.join(RECIPES, "quickstart.py")
FINETUNE = os.path.join(RECIPES, "finetune.py")


def _train(*args, timeout=900):
    """``kerasnets train ...`` as a user runs it (a subprocess), returning the process."""
    proc = subprocess.run(kerasnets_cmd("train", *args), env=ENV, capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def photo_run(photo_folder, tmp_path_factory):
    """The quickstart recipe on a photo folder with train/ val/ test/, default flags and exports."""
    output = tmp_path_factory.mktemp("photo_run")
    proc = _train(QUICKSTART, "--data", str(photo_folder), "--output", str(output))
    run = output / "quickstart"
    return {"dir": run, "summary": json.loads((run / "summary.json").read_text()), "stdout": proc.stdout}


def test_split_folder_trains_on_train_and_evaluates_on_test(photo_run):
    summary = photo_run["summary"]
    assert summary["class_names"] == ["china palace", "garden flower"]  # never "test" and "train"
    assert summary["eval_split"] == "test" and summary["eval_examples"] == 20  # 10 test crops per class
    assert summary["steps"] == 20 * summary["steps_per_epoch"]
    assert "20 images of split 'test'" in photo_run["stdout"]


def test_contract_travels_with_every_format(photo_run):
    run = photo_run["dir"]
    expected = {"crop_padding": 5, "resize_method": "bilinear",  # 87.5% at 32 px (folder default), quickstart's resize
                "class_names": ["china palace", "garden flower"], "image_size": [32, 32]}
    stored = [serving.read_contract(str(run / "model.keras")), serving.read_contract(str(run / "saved_model")),
              serving.read_contract(str(run / "model_fp32.tflite"))]
    for contract in stored:
        assert contract is not None
        assert {k: contract.to_dict()[k] for k in expected} == expected
    names = (run / "saved_model" / "labels.txt").read_text().splitlines()
    assert names == expected["class_names"]


def test_serving_uses_the_eval_crop_the_model_was_trained_with(photo_run, photo_folder):
    import keras

    run = photo_run["dir"]
    model = keras.saving.load_model(run / "model.keras")
    files = sorted((photo_folder / "test" / "garden flower").glob("*.jpg"))[:4]
    encoded = [f.read_bytes() for f in files]
    served = tf.saved_model.load(str(run / "saved_model")).signatures["serve_bytes"](tf.constant(encoded))
    _, info = data.load(str(photo_folder), "test", image_size=32, batch_size=64, training=False,
                        resize_method="bilinear")  # the quickstart's eval pipeline on this folder
    assert info.preprocessing["crop_padding"] == 5
    crops = [data.transforms.center_crop(tf.constant(e), 32, crop_padding=5, method="bilinear").numpy()
             for e in encoded]
    expected = np.asarray(model(np.stack(crops)))
    np.testing.assert_allclose(served["probabilities"].numpy()[:, 0], expected.max(-1), atol=1e-5)
    assert [n.decode() for n in served["class_names"].numpy()[:, 0]] == [
        ["china palace", "garden flower"][i] for i in expected.argmax(-1)]


def test_predict_and_evaluate_read_the_contract(photo_run, photo_folder, capsys):
    run = photo_run["dir"]
    files = [str(f) for f in sorted((photo_folder / "test" / "china palace").glob("*.jpg"))[:3]]
    tops = {}
    for model_path in (run / "model.keras", run / "saved_model", run / "model_fp32.tflite"):
        assert cli.main(["predict", str(model_path), *files, "--top-k", "2"]) == 0
        lines = capsys.readouterr().out.strip().splitlines()
        tops[model_path.name] = [line.split(": ", 1)[1].rsplit(" ", 1)[0].split(",")[0].rsplit(" ", 1)[0]
                                 for line in lines]
    assert tops["model.keras"] == tops["saved_model"] == tops["model_fp32.tflite"]
    assert set(tops["model.keras"]) <= {"china palace", "garden flower"}  # names with spaces survive
    assert cli.main(["evaluate", str(run / "model.keras"), "--data", str(photo_folder)]) == 0
    out = capsys.readouterr().out
    assert "split 'test'" in out and "center crop padding 5, bilinear" in out
    accuracy = float(out.split("accuracy ")[1].split()[0])
    assert accuracy == pytest.approx(photo_run["summary"]["test_accuracy"], abs=1e-6)


def test_plain_folder_model_seed_and_eval_data_overrides(photo_folder, tmp_path, capsys, caplog):
    # One epoch and a .keras export only: this checks which data and model a run uses, not accuracy
    # or exports (the photo_run fixture trains with default epochs and exports).
    common = ["--epochs", "1", "--export", "keras", "--output", str(tmp_path)]
    code = cli.main(["train", QUICKSTART, "--data", str(photo_folder / "train"), "--model", "resnet18", "--seed", "3",
                     "--name", "plain", *common])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-2000:]
    summary = json.loads((tmp_path / "plain" / "summary.json").read_text())
    assert summary["model"].startswith("resnet18") and summary["seed"] == 3
    assert summary["eval_split"] == "validation"  # a plain class folder: its seeded 20% is held out
    assert "evaluating on split 'validation'" in caplog.text  # the engine says which split it chose
    # the carve's documented per-file hash (seed 3, 20%) over the 48 crops and the 2 readable extra images
    readable = [p for p in (photo_folder / "train").glob("*/*") if p.name not in ("empty.jpg", "truncated.jpg")]
    assert len(readable) == 50
    assert summary["eval_examples"] == sum(reference_held_out(p.parent.name, p.name, 0.2, 3) for p in readable)
    code = cli.main(["train", QUICKSTART, "--data", str(photo_folder / "train"), "--eval-data",
                     str(photo_folder / "test"), "--name", "separate", *common])
    assert code == 0, capsys.readouterr().err[-2000:]
    summary = json.loads((tmp_path / "separate" / "summary.json").read_text())
    assert summary["eval_split"] == "all" and summary["eval_examples"] == 20
    code = cli.main(["train", QUICKSTART, "--data", str(photo_folder), "--eval-split", "val", "--name", "val",
                     *common])
    assert code == 0, capsys.readouterr().err[-2000:]
    summary = json.loads((tmp_path / "val" / "summary.json").read_text())
    assert summary["eval_split"] == "validation" and summary["eval_examples"] == 12  # val/: 6 crops per class


#: recipes/finetune.py adapted to a small backbone pretrained on 5 digit classes, as a user adapts a
#: recipe to their data (recipes are Python files); the phases, freezing, weight copy and BN handling
#: are the recipe's. Why each change:
#: - phase 2 trains every block (BatchNormalization still frozen) at half the head's rate: the
#:   defaults (last 3 blocks at a hundredth) suit ImageNet features, but a backbone that has seen 5
#:   classes has specialised top blocks (a linear probe of its pooled features scores ~60% on 5-9
#:   against ~80% for its block3 features), so they must be re-learned (measured with the defaults:
#:   ~50%, below the from-scratch arm);
#: - Adam at 2e-2 per 64 images (the default is 1e-2): re-learning, not nudging;
#: - no flip and a mild crop: digits are not mirror-symmetric (the quickstart recipe does the same).
DIGITS_FINETUNE = """
import dataclasses, runpy
base = runpy.run_path({path!r})["RECIPE"]
from kerasnets.training import Phase
RECIPE = dataclasses.replace(
    base, epochs=18, base_learning_rate=2e-2, reference_batch=64,
    phases=(Phase("head", 6, trainable_from=None), Phase("all_blocks", 12, trainable_from="stem", learning_rate_scale=0.5)),
    train_options={{"crop_scale": (0.85, 1.0), "flip": False}})
"""


@pytest.mark.slow
def test_finetuning_digits_0_4_backbone_beats_scratch_on_5_9(tmp_path):
    """Transfer works: a backbone trained on digits 0-4, fine-tuned on 10 images per class of 5-9,
    beats the same architecture trained from scratch for the same number of steps by >= 10 points."""
    pretrain = digits_folder(tmp_path / "digits04", range(5))
    target = digits_folder(tmp_path / "digits59", range(5, 10), per_class_train=10)
    out = tmp_path / "runs"
    recipe = tmp_path / "digits_finetune.py"
    recipe.write_text(DIGITS_FINETUNE.format(path=FINETUNE))
    # 8 epochs instead of 20: the backbone only needs to be decent; exports are covered elsewhere.
    _train(QUICKSTART, "--data", str(pretrain), "--epochs", "8", "--export", "keras", "--output", str(out),
           "--name", "pretrained")
    # --image-size 32: digits are 8x8 images upsampled to 32; --batch-size 16: 50 images make 4 steps.
    tuned = _train(str(recipe), "--data", str(target), "--weights", str(out / "pretrained" / "model.keras"),
                   "--image-size", "32", "--batch-size", "16", "--export", "keras", "--output", str(out))
    finetune = json.loads((out / "finetune" / "summary.json").read_text())
    # the from-scratch arm: the quickstart recipe (the same architecture, all of it trained, the same
    # digit-friendly augmentation) for the same number of steps
    _train(QUICKSTART, "--data", str(target), "--batch-size", "16", "--epochs", str(finetune["epochs"]),
           "--export", "keras", "--output", str(out), "--name", "scratch")
    scratch = json.loads((out / "scratch" / "summary.json").read_text())
    assert finetune["steps"] == scratch["steps"] == 18 * 4
    assert finetune["weights_report"]["head_reinitialized"] is True  # classes 5-9 are not 0-4
    assert [p["name"] for p in finetune["phases"]] == ["head", "all_blocks"]
    assert finetune["phases"][0]["trainable_params"] < finetune["phases"][1]["trainable_params"]
    assert finetune["eval_examples"] == scratch["eval_examples"] > 150
    print(f"fine-tuned {finetune['test_accuracy']:.3f} vs scratch {scratch['test_accuracy']:.3f}")
    assert finetune["test_accuracy"] >= scratch["test_accuracy"] + 0.10, tuned.stdout[-2000:]


def test_finetune_resumes_across_the_phase_boundary(tmp_path):
    target = digits_folder(tmp_path / "digits", range(3), per_class_train=16)
    # 32 px and batch 16 keep this fast; --backup-every-steps 1 so that a kill in phase 2 finds a backup.
    command = kerasnets_cmd("train", FINETUNE, "--data", str(target), "--image-size", "32", "--batch-size", "16",
                            "--epochs", "4", "--backup-every-steps", "1", "--export", "keras", "--output",
                            str(tmp_path))
    saves = tmp_path / "finetune" / "backup" / "task-0" / "saves.json"

    def latest():
        try:
            return json.loads(saves.read_text())[-1]
        except (OSError, ValueError, IndexError):
            return {"phase": 0, "step": 0}

    proc = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None and latest()["phase"] != 1:
        time.sleep(0.02)
    assert proc.poll() is None, "training ended before it could be interrupted in phase 2"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = latest()
    resumed = subprocess.run(command, env=ENV, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads((tmp_path / "finetune" / "summary.json").read_text())
    assert summary["resumed_from_phase"] == 1 and summary["resumed_from_step"] >= killed["step"]
    # no step lost or repeated, counted apart from the summary's plan: 3 classes x 16 images in
    # batches of 16 make 3 steps per epoch; the resumed process ran exactly phase 2's steps after its
    # backup, and history.csv holds one row per epoch, each in its phase
    assert summary["steps_per_epoch"] == 3 and summary["steps_run"] == 3 - summary["resumed_from_step"]
    header, *rows = [line.split(",") for line in (tmp_path / "finetune" / "history.csv").read_text().splitlines()]
    assert [(int(float(row[header.index("epoch")])), int(float(row[header.index("phase")]))) for row in rows] == \
        [(0, 0), (1, 0), (2, 0), (3, 1)]
    assert [p["epochs"] for p in summary["phases"]] == [3, 1]  # --epochs 4 split 12:6 as 3:1
    assert "resumed" in resumed.stdout
    assert not (tmp_path / "finetune" / "backup").exists()


def _undecodable_jpeg() -> bytes:
    """Passes the cheap checks (JPEG start and end markers) but does not decode."""
    return b"\xff\xd8\xff\xe0" + bytes(np.random.RandomState(0).randint(0, 255, 400, dtype=np.uint8)) + b"\xff\xd9"


def _make_bad_source(kind, root):
    if kind == "empty folder":
        root.mkdir()
    elif kind == "nothing decodes":
        for name in ("a", "b"):
            (root / name).mkdir(parents=True)
            for i in range(10):  # damaged PNGs: they pass the header checks at scan time, then fail to decode; 20
                # files so that the 20% validation carve (per-file hash) holds some out
                write_undecodable_png(root / name / f"{i}.png")
    elif kind == "class without images":
        (root / "train" / "cat").mkdir(parents=True)
        (root / "train" / "dog").mkdir(parents=True)
        Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(root / "train" / "cat" / "0.jpg")
        (root / "train" / "dog" / "0.jpg").write_bytes(b"")
    elif kind == "tfrecords nothing decodes":
        root.mkdir()
        for shard in range(2):
            with tf.io.TFRecordWriter(str(root / f"train-{shard:05d}-of-00002")) as writer:
                for label in range(4):
                    feature = {"image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[_undecodable_jpeg()])),
                               "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label % 2]))}
                    writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
        (root / "train-labels.txt").write_text("cat\ndog\n")
        return str(root / "train-*")
    return str(root)


@pytest.mark.parametrize("kind, words", [
    ("empty folder", "empty"),
    ("nothing decodes", "decode"),
    ("class without images", "dog"),
    ("tfrecords nothing decodes", "decode"),
])
def test_bad_sources_fail_with_one_line_and_write_nothing(kind, words, tmp_path, capsys):
    source = _make_bad_source(kind, tmp_path / "data")
    out = tmp_path / "out"
    code = cli.main(["train", QUICKSTART, "--data", source, "--output", str(out)])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err
    assert words in lines[0].lower()
    assert not (out / "quickstart").exists()  # nothing half-written


def test_weights_of_another_architecture_and_empty_evaluation(quickstart, tmp_path, capsys):
    import kerasnets

    other = tmp_path / "resnet.weights.h5"
    kerasnets.ResNet(18, input_shape=(32, 32, 3), classes=10).save_weights(other)
    code = cli.main(["train", QUICKSTART, "--weights", str(other), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("error:") == 1 and "Traceback" not in err
    assert "resnet.weights.h5" in err and "shape" in err
    assert not (tmp_path / "out" / "quickstart").exists()
    broken = tmp_path / "broken"
    for digit in ("0", "1"):  # two of the model's classes, files that pass the cheap checks but never decode
        for i in range(3):
            write_undecodable_png(broken / digit / f"{i}.png")
    code = cli.main(["evaluate", str(quickstart["dir"] / "model.keras"), "--data", str(broken), "--split", "all"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and "nothing to evaluate" in err


def test_int8_export_calibrates_on_train_and_reports_on_held_out_data(quickstart, tmp_path, capsys):
    model = str(quickstart["dir"] / "model.keras")
    target = str(tmp_path / "int8.tflite")
    assert cli.main(["export", model, "--format", "tflite", "--quantize", "int8", "--calibration", "digits",
                     "--output", target]) == 0
    captured = capsys.readouterr()
    assert "calibrating on split 'train' of digits, reporting on split 'test' of digits" in captured.err
    report = json.loads(captured.out[captured.out.index("{"):])
    assert report["examples"] == len(data.digits_arrays("test")[1])  # the held-out split, all of it
    assert (report["evaluated_on"]["source"], report["evaluated_on"]["split"]) == ("digits", "test")
    calibrated = report["calibration"]["calibrated_on"]  # 500 of the 1,437 train images, every digit among them
    assert calibrated["images"] == 500 and sorted(calibrated["per_class"]) == [str(d) for d in range(10)]
    assert min(calibrated["per_class"].values()) >= 30, calibrated
    assert cli.main(["export", model, "--format", "tflite", "--quantize", "int8", "--calibration", "digits",
                     "--eval-split", "train", "--output", str(tmp_path / "x.tflite")]) == 2
    assert "held-out" in capsys.readouterr().err
