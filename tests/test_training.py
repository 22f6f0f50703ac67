"""Training engine: the main job, recipes' real code paths (--smoke), precision, strategies, resume."""

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

import kerasnets
from kerasnets import cli
from kerasnets.training import (
    Recipe,
    TrainingDiverged,
    apply_overrides,
    load_recipe,
    precision_scope,
    resolve_precision,
    resolve_strategy,
    train,
)

from conftest import ENV, QUICKSTART_PHI, RECIPES, ROOT, kerasnets_cmd  # noqa: E402


def test_main_job_reaches_97_percent_and_exports(quickstart):
    summary, run = quickstart["summary"], quickstart["dir"]
    assert summary["test_accuracy"] >= 0.97
    assert summary["batch_norm_warning"] is None  # its 460 steps at the recipe's bn_momentum 0.9 settle
    # the steps executed (each timed as it ran) against the recipe's epochs over the digits train
    # split in batches of 64 (not summary["steps"], which is the plan)
    from kerasnets import data

    recipe = load_recipe(os.path.join(RECIPES, "quickstart.py"))
    planned = math.ceil(len(data.digits_arrays("train")[1]) / recipe.batch_size) * recipe.epochs
    counts = summary["timings"]["counts"]
    assert counts["first_step"] + counts["train_steps"] == summary["steps"] == planned
    assert summary["params"] == kerasnets.EfficientNet(QUICKSTART_PHI, coefficients=kerasnets.PAPER_COEFFICIENTS,
                                                       input_shape=(32, 32, 3), classes=10).count_params()
    for name in ("model.keras", "saved_model/saved_model.pb", "model_fp32.tflite", "labels.txt", "metadata.json",
                 "curves.png", "summary.json"):
        assert (run / name).exists(), name
    assert list((run / "logs").rglob("events.out.tfevents.*"))
    assert not (run / "backup").exists()  # cleared once the run finished
    assert "test accuracy" in quickstart["stdout"] and "saved_model" in quickstart["stdout"]
    metadata = json.loads((run / "metadata.json").read_text())
    assert metadata["input"]["range"] == [0, 255]
    # the exported TFLite file itself, run here on test digits, against the saved Keras model (the
    # export's own parity report is not evidence: it raises on a mismatch before writing)
    from kerasnets.export import run_tflite

    images, _ = next(iter(data.load("digits", "test", 32, 64, training=False, resize_method="bilinear")[0]))
    keras_model = keras.saving.load_model(run / "model.keras")
    expected = np.asarray(keras_model(images, training=False))
    got = run_tflite(str(run / "model_fp32.tflite"), images.numpy())
    assert np.abs(got - expected).max() <= 1e-4 and (got.argmax(-1) == expected.argmax(-1)).all()


def test_main_job_timings_add_up_to_its_wall_time(quickstart):
    """summary.json breaks the run's wall time into named parts: they add up to the total, the total
    is the wall time this test measured from starting the process to its last printed line (the
    summary, printed after the timings stop: the interpreter's exit is not the run's, and took 5 s
    under the other xdist worker's load), and the counted parts match the recipe (one first step,
    every other step, validation every validation_freq epochs and the last, a backup every
    backup_every_epochs)."""
    summary = quickstart["summary"]
    timings, recipe = summary["timings"], load_recipe(os.path.join(RECIPES, "quickstart.py"))
    spans, counts = timings["spans"], timings["counts"]
    assert sum(spans.values()) <= timings["total"] + 0.2  # no part counted twice ("other" is the rest)
    # start-up is counted (a start read from /proc/stat's btime was off by 1-55 s), and nothing after
    # the timings stop but printing them
    assert abs(quickstart["last_output"] - timings["total"]) <= 2.0, (quickstart["last_output"], timings["total"])
    # "other" (time no span covers) is 0.1 s on a quiet machine but was 19 s of 98 s in one full
    # suite run (not yet explained, issue #11): its size is reported, not asserted
    assert timings["other"] >= -0.5
    assert counts["first_step"] == 1 and counts["train_steps"] == summary["steps"] - 1
    epochs = range(1, recipe.epochs + 1)
    validated = [e for e in epochs if e % recipe.validation_freq == 0 or e == recipe.epochs]
    assert counts["validation"] == len(validated) < recipe.epochs
    assert counts["backup"] == len([e for e in epochs if e % recipe.backup_every_epochs == 0 or e == recipe.epochs])
    for part in ("startup", "setup", "final_evaluation", "export_keras", "export_saved_model", "verify_saved_model",
                 "export_tflite_fp32", "verify_tflite_fp32"):
        assert spans[part] > 0, part
    history = (quickstart["dir"] / "history.csv").read_text().splitlines()
    header = history[0].split(",")
    rows = [dict(zip(header, line.split(","))) for line in history[1:]]
    assert [int(r["epoch"]) + 1 for r in rows if r["val_accuracy"]] == validated
    assert f"{summary['steps'] - 1} steps" in quickstart["stdout"]  # the printed breakdown


@pytest.mark.skipif(not os.path.exists("/proc/uptime"), reason="process_start_time reads Linux /proc")
def test_process_start_time_is_the_moment_the_process_began():
    """The summary's start-up is counted from ``process_start_time``: in a fresh interpreter that
    reads the clock first, the start lies just before that reading (the interpreter's own start-up,
    tens of ms), not a second or a minute away (``/proc/stat``'s whole-second ``btime`` is off by
    up to 1 s, and by however long a paused virtual machine slept)."""
    code = ("import time; now = time.time()\n"
            "from kerasnets.training.timings import process_start_time\n"
            "print(now - process_start_time())")
    lag = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                               cwd=ROOT).stdout.split()[-1])
    assert 0.0 <= lag < 0.5, f"the process began {lag:.3f} s before its first statement"


def test_evaluate_command_agrees_with_the_summary(quickstart, capsys):
    run = quickstart["dir"]
    assert cli.main(["evaluate", str(run / "model.keras"), "--data", "digits", "--resize", "bilinear"]) == 0
    out = capsys.readouterr().out
    accuracy = float(out.split("accuracy ")[1].split()[0])
    assert accuracy == pytest.approx(quickstart["summary"]["test_accuracy"], abs=1e-3)


@pytest.mark.parametrize("recipe", ["efficientnet_imagenet.py", "efficientnetv2_imagenet.py", "resnet50_imagenet.py",
                                    "cifar10.py"])
def test_recipes_run_their_real_code_path_on_a_stand_in(recipe, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    code = cli.main(["train", os.path.join(RECIPES, recipe), "--smoke", "--output", str(tmp_path)])
    out = capsys.readouterr()
    assert code == 0, out.err[-2000:]
    name = load_recipe(os.path.join(RECIPES, recipe)).name
    summary = json.loads((tmp_path / name / "summary.json").read_text())
    assert summary["steps"] == 2 and math.isfinite(summary["test_loss"])


def test_imagenet_recipe_is_the_tpu_reference():
    recipe = load_recipe(os.path.join(RECIPES, "efficientnet_imagenet.py"))
    assert (recipe.base_learning_rate, recipe.reference_batch, recipe.epochs, recipe.label_smoothing) == (0.016, 256, 350, 0.1)
    assert recipe.train_options["autoaugment"] and recipe.image_size == 224
    from kerasnets.training import TrainContext

    context = TrainContext(1000, 100, 4096, 32, 0.016 * 4096 / 256, True)
    optimizer = recipe.build_optimizer(recipe, context)
    from kerasnets.training.optimizers import TF1RMSprop

    assert isinstance(optimizer, TF1RMSprop)
    assert (optimizer.rho, optimizer.momentum, optimizer.epsilon, optimizer.initial_accumulator_value,
            optimizer.use_ema) == (0.9, 0.9, 1e-3, 1.0, False)
    assert (recipe.l2_regularization, recipe.ema_decay) == (1e-5, 0.9999)  # L2 in the loss, EMA kept by the trainer
    schedule = optimizer.learning_rate if callable(optimizer.learning_rate) else optimizer._learning_rate
    assert float(schedule(250)) == pytest.approx(0.128)            # linear warmup over 5 epochs (500 steps)
    # then, as the reference (exponential decay counted from step 0, warmup overriding it): x0.97 every 2.4 epochs
    assert float(schedule(500)) == pytest.approx(0.256 * 0.97 ** 2)
    assert float(schedule(720)) == pytest.approx(0.256 * 0.97 ** 3)
    model = recipe.build_model(recipe, context)
    assert model.get_layer("top_dropout").rate == 0.2 and model.get_layer("block7a_project_bn").synchronized


def test_precision_auto_follows_the_measured_cpu_table_and_bad_names_fail(monkeypatch):
    from kerasnets.training import precision

    assert resolve_precision("auto") == "float32"  # family unknown
    assert resolve_precision("float32", family="resnet") == "float32"  # asked for: kept
    for has_bf16 in (True, False):
        monkeypatch.setattr(precision, "cpu_has_bf16", lambda: has_bf16)
        for family, speedup in precision.CPU_BF16_SPEEDUP.items():
            expected = "mixed_bfloat16" if has_bf16 and speedup > 1.05 else "float32"
            assert resolve_precision("auto", family=family) == expected, (family, has_bf16)
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    monkeypatch.undo()
    assert precision.cpu_has_bf16() == ("avx512_bf16" in flags or "amx_bf16" in flags)
    with pytest.raises(ValueError, match="family must be one of"):
        resolve_precision("auto", family="vgg")
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp8")
    with pytest.raises(ValueError, match="strategy must be one of"):
        resolve_strategy("horovod")


def test_mixed_bfloat16_fit_on_cpu_keeps_float32_output_and_bn_variables():
    from kerasnets import data

    images, labels = data.digits_arrays("train")
    x = np.repeat(np.kron(images[:64], np.ones((1, 4, 4, 1), np.uint8)), 3, -1).astype("float32")
    y = keras.utils.to_categorical(labels[:64], 10)
    with precision_scope("mixed_bfloat16"):
        model = kerasnets.EfficientNet(0, input_shape=(32, 32, 3), classes=10)
    assert keras.config.dtype_policy().name == "float32"  # scoped, not leaked
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy")
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert math.isfinite(history.history["loss"][-1])
    assert model.get_layer("block2a_expand_conv").compute_dtype == "bfloat16"
    assert model(x[:2]).dtype == "float32"
    bn = model.get_layer("stem_bn")
    assert all(v.dtype == "float32" for v in bn.weights)


def test_nan_loss_stops_with_a_clear_message(tmp_path):
    recipe = Recipe(
        name="diverge",
        build_model=lambda r, c: kerasnets.ResNet(18, input_shape=(32, 32, 3), classes=c.num_classes),
        build_optimizer=lambda r, c: keras.optimizers.SGD(1e30),
        # 6 steps at lr 1e30 are enough to diverge; no export: the run must stop before one
        image_size=32, batch_size=16, epochs=1, steps_per_epoch=6, output=str(tmp_path), export=(),
    )
    with pytest.raises(TrainingDiverged, match=r"loss became (nan|inf).*Lower the learning rate"):
        train(recipe, verbose=0)


def test_bad_recipe_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_recipe(str(tmp_path / "missing.py"))
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    with pytest.raises(ValueError, match="must define RECIPE"):
        load_recipe(str(empty))
    recipe = load_recipe(os.path.join(RECIPES, "quickstart.py"))
    with pytest.raises(ValueError, match="unknown recipe fields"):
        apply_overrides(recipe, learning_rat=0.1)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        apply_overrides(recipe, batch_size=0)
    assert cli.main(["train", str(tmp_path / "missing.py")]) == 2


def _tiny_recipe(output, **fields):
    """A recipe whose run takes seconds: a one-conv model on 16 px digits, 2 steps, model.keras only
    (for tests of the run folder's rules, which do not depend on the model)."""
    def build_model(recipe, context):
        return keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Rescaling(1 / 255),
                                 keras.layers.Conv2D(4, 3), keras.layers.GlobalAveragePooling2D(),
                                 keras.layers.Dense(context.num_classes, activation="softmax")])

    # a tiny run (16 px, 2 steps, .keras only): these tests check counts and folders, not accuracy; the
    # default path (quickstart recipe, default flags and exports) is the session's `quickstart` fixture
    return Recipe(name="tiny", build_model=build_model, build_optimizer=lambda r, c: keras.optimizers.SGD(0.01),
                  image_size=16, batch_size=16, epochs=1, steps_per_epoch=2, output=str(output), export=("keras",),
                  **fields)


def test_rerun_into_a_finished_run_is_refused_and_no_resume_replaces_it(tmp_path):
    """The same run twice: the second used to train from scratch over the finished run (its
    summary, history and model) and return normally. It is refused before anything is written,
    naming the folder and the ways out; resume=False (--no-resume) then starts over and writes a
    summary of its own (another run id)."""
    recipe = _tiny_recipe(tmp_path)
    train(recipe, verbose=0)
    run = tmp_path / "tiny"
    files = ("summary.json", "history.csv", "model.keras")
    finished = {name: (run / name).read_bytes() for name in files}
    with pytest.raises(ValueError, match="finished run") as refused:
        train(recipe, verbose=0)
    for needed in (str(run), "--output", "--name", "--no-resume"):
        assert needed in str(refused.value), needed
    assert {name: (run / name).read_bytes() for name in files} == finished
    train(recipe, resume=False, verbose=0)
    replaced = json.loads((run / "summary.json").read_text())
    assert replaced["run_id"] != json.loads(finished["summary.json"])["run_id"]
    assert len((run / "history.csv").read_text().splitlines()) == 2  # header and this run's one epoch


def test_final_evaluation_refuses_an_accuracy_of_fewer_images_than_the_split_holds(tmp_path):
    """A test folder with a file that passes the header checks but does not decode (a 12-bit JPEG,
    as some scientific cameras write: TF's decoder refuses it): the pipeline drops it, and the
    summary used to present the accuracy of the rest as the split's (then a warning, exit 0, while
    kerasnets evaluate exits 2 on the same folder). Now the rule of kerasnets evaluate
    (data.pipeline.scored_count): an error naming both counts, no summary, the backups kept; once
    the file is removed the same call evaluates the whole split from the last step, training
    nothing again. A tiny model: the counts are what is tested."""
    import io

    from PIL import Image

    from conftest import digits_folder

    data = digits_folder(tmp_path / "digits", (0, 1), per_class_train=8)  # 2 classes, 8 per class: fast
    test_images = len(list((data / "test").rglob("*.png")))
    encoded = io.BytesIO()
    Image.open(next((data / "test" / "0").glob("*.png"))).convert("RGB").save(encoded, "JPEG", quality=90)
    jpeg = bytearray(encoded.getvalue())
    jpeg[jpeg.index(b"\xff\xc0") + 4] = 12  # the frame header's sample precision: 8 -> 12 bits
    (data / "test" / "0" / "twelve_bit.jpg").write_bytes(bytes(jpeg))
    recipe = _tiny_recipe(tmp_path, data=str(data))
    with pytest.raises(ValueError, match=rf"scored {test_images} of the {test_images + 1} images of .* split 'test': "
                                         r"1 could not be decoded.*backups are kept"):
        train(recipe, verbose=0)
    assert not (tmp_path / "tiny" / "summary.json").exists()
    (data / "test" / "0" / "twelve_bit.jpg").unlink()
    result = train(recipe, verbose=0)
    assert result.summary["eval_examples"] == result.summary["eval_expected_examples"] == test_images
    assert result.summary["steps_run"] == 0 and result.summary["resumed_from_step"] == 2  # 2 steps, trained once


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _start_workers(*commands):
    """Two workers on 127.0.0.1, worker 0 (the chief) running ``commands[0]``, worker 1 the last command."""
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for index in range(2):
        env = {**ENV, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        procs.append(subprocess.Popen(commands[min(index, len(commands) - 1)], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, cwd=ROOT))
    return procs


#: the multi-worker runs' flags: 2 epochs of 6 steps, batch 16 per worker (two processes share 2
#: cores); --deterministic: runs comparable bit for bit; the killed run and the uninterrupted one alike
MULTIWORKER = ("--epochs", "2", "--steps-per-epoch", "6", "--batch-size", "16", "--deterministic",
               "--backup-every-steps", "2")  # a backup mid-epoch, to be killed after
#: ``kerasnets train`` whose exports fail (as on a full disk), after model.keras is written
FAILING_EXPORT = """import sys
import kerasnets.export


def failing(*args, **kwargs):
    raise RuntimeError("simulated export failure (disk full)")


kerasnets.export.export_run = failing
from kerasnets.cli import main

sys.exit(main(sys.argv[1:]))
"""


def _multiworker_train(output, *extra):
    return ["train", os.path.join(RECIPES, "quickstart.py"), *MULTIWORKER, "--output", str(output), *extra]


@pytest.fixture(scope="module")
def multiworker_run(tmp_path_factory):
    """A two-worker run into a folder holding an earlier run's summary.json (--no-resume: replace it)
    whose chief fails to export; then the same command without --no-resume, which finishes it."""
    output = tmp_path_factory.mktemp("multiworker")
    run = output / "quickstart"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps({"run_id": "0123456789abcdef", "recipe": "quickstart",
                                                  "test_accuracy": 0.99}))  # an earlier run's
    args = _multiworker_train(output, "--no-resume")
    procs = _start_workers([sys.executable, "-c", FAILING_EXPORT, *args], kerasnets_cmd(*args))
    failed = [(p.returncode, err) for p, (_, err) in ((p, p.communicate(timeout=1500)) for p in procs)]
    after_failure = {"saved_steps": [_saved_step(run, task) for task in range(2)],
                     "summary": (run / "summary.json").exists()}
    procs = _start_workers(kerasnets_cmd(*_multiworker_train(output)))
    finished = [(p.returncode, err) for p, (_, err) in ((p, p.communicate(timeout=1500)) for p in procs)]
    return {"run": run, "failed": failed, "after_failure": after_failure, "finished": finished}


def _saved_step(run, task):
    try:
        return max((s["step"] for s in json.loads((run / "backup" / f"task-{task}" / "saves.json").read_text())),
                   default=0)
    except (OSError, ValueError):
        return 0


@pytest.mark.slow
def test_multiworker_failed_export_keeps_backups_and_the_same_command_finishes(multiworker_run):
    """The earlier run's summary.json used to tell the workers that this run was done: they deleted
    their backups although the chief had failed, and exited 0. Now both workers fail loudly, the
    backups stay, and the same command resumes at the last step and writes this run's summary."""
    (chief_code, chief_err), (worker_code, worker_err) = multiworker_run["failed"]
    assert chief_code == 2 and "simulated export failure" in chief_err, chief_err[-3000:]
    assert worker_code != 0 and "the chief wrote no summary of this run" in worker_err, worker_err[-3000:]
    assert multiworker_run["after_failure"] == {"saved_steps": [12, 12], "summary": False}
    for code, err in multiworker_run["finished"]:
        assert code == 0, err[-3000:]
    run = multiworker_run["run"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["run_id"] != "0123456789abcdef" and summary["test_accuracy"] != 0.99
    assert (summary["resumed_from_step"], summary["steps_run"], summary["steps"]) == (12, 0, 12)
    assert not (run / "backup").exists()


@pytest.mark.slow
def test_multiworker_chief_reports_and_exports_the_model_it_saved(multiworker_run, capsys):
    """The chief evaluated and exported a copy of the model without its ImageNet normalization: it
    reported 0.1 where `kerasnets evaluate model.keras` gave 0.278, and its SavedModel differed from
    model.keras by 0.977. Now the reported accuracy is evaluate's, and the SavedModel and TFLite
    outputs are model.keras' within the export tolerance (1e-4 on probabilities)."""
    import tensorflow as tf

    from kerasnets import data
    from kerasnets.export import run_tflite

    run = multiworker_run["run"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["strategy"] == "MultiWorkerMirroredStrategy" and summary["eval_examples"] == 360
    assert cli.main(["evaluate", str(run / "model.keras"), "--data", "digits", "--resize", "bilinear"]) == 0
    accuracy = float(capsys.readouterr().out.split("accuracy ")[1].split()[0])
    assert accuracy == pytest.approx(summary["test_accuracy"], abs=1e-4)
    images, _ = next(iter(data.load("digits", "test", 32, 64, training=False, resize_method="bilinear")[0]))
    expected = np.asarray(keras.saving.load_model(run / "model.keras")(images, training=False))
    served = tf.saved_model.load(str(run / "saved_model")).signatures["serving_default"](tf.constant(images))
    for name, got in (("saved_model", next(iter(served.values()))),
                      ("tflite_fp32", run_tflite(str(run / "model_fp32.tflite"), images.numpy()))):
        assert np.abs(np.asarray(got) - expected).max() <= 1e-4, name


@pytest.mark.slow
def test_multiworker_killed_then_restarted_resumes_finishes_and_exports(tmp_path, multiworker_run):
    """Two workers on 127.0.0.1 with the default exports; worker 1 is killed mid-run (worker 0 then
    waits on its dead peer and is killed too); the same command restarts both: they resume from
    the last backup both have, both exit 0, the chief exports, and both workers' final weights are
    those of the uninterrupted run (multiworker_run: the same command and seed, never killed)."""
    command = kerasnets_cmd(*_multiworker_train(tmp_path))
    run = tmp_path / "quickstart"
    procs = _start_workers(command)
    deadline = time.time() + 1500
    while time.time() < deadline and all(p.poll() is None for p in procs) and \
            min(_saved_step(run, 0), _saved_step(run, 1)) < 4:
        time.sleep(0.05)
    assert all(p.poll() is None for p in procs), "training ended before it could be interrupted"
    procs[1].send_signal(signal.SIGKILL)
    procs[1].wait()
    time.sleep(1)
    procs[0].send_signal(signal.SIGKILL)
    procs[0].communicate()
    killed_at = min(_saved_step(run, 0), _saved_step(run, 1))
    assert 4 <= killed_at < 12
    procs = _start_workers(command)
    outputs = [p.communicate(timeout=1500) for p in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["strategy"] == "MultiWorkerMirroredStrategy" and summary["replicas"] == summary["workers"] == 2
    assert summary["global_batch"] == 32 and summary["steps"] == 12
    assert summary["resumed_from_step"] == killed_at and summary["steps_run"] == 12 - killed_at
    assert summary["eval_examples"] == 360  # the chief scored every test image
    for key in ("keras", "saved_model", "tflite_fp32"):
        assert os.path.exists(summary["paths"][key]), key

    def final_weights(folder, index):
        model = kerasnets.EfficientNet(QUICKSTART_PHI, coefficients=kerasnets.PAPER_COEFFICIENTS, input_shape=(32, 32, 3),
                                       classes=10, bn_momentum=0.9, drop_connect_rate=0.0, synchronized_bn=True)
        model.load_weights(folder / f"final-worker-{index}.weights.h5")
        return model.weights

    uninterrupted = final_weights(multiworker_run["run"], 0)
    for index in range(2):
        for a, b in zip(final_weights(run, index), uninterrupted):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=f"worker {index}: {a.path}")
    assert not (run / "backup").exists()
