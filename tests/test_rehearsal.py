"""The rehearsal: both ImageNet recipes end to end on a miniature ImageNet in the real layout
(1,024 train shards, 128 validation shards, 1-based labels over 1,000 classes, no metadata), then
kill -9 mid-epoch with the EMA recipe and resume to the uninterrupted run's exact weights.

Overrides: only --image-size 32 (2 CPU cores), --batch-size and --epochs; no --steps-per-epoch,
no --smoke. --deterministic (op determinism) makes two runs comparable bit for bit.

recipes/efficientnetv2_imagenet.py is not rehearsed here: the same layout with --image-size 32
--batch-size 64 --epochs 4 (its four stages at 14, 18, 21 and 25 px) ran to the end by hand on
2026-12-05 in 420 s on 2 cores (176 s of it tracing V2-S's step once per stage), past this suite's
budget for one test.
"""

import json
import math
import os
import signal
import subprocess
import time

import keras
import numpy as np
import pytest

from conftest import ENV, RECIPES, ROOT, kerasnets_cmd  # noqa: E402
from imagenet_layout import write_mini_imagenet  # noqa: E402

BATCH = 64


@pytest.fixture(scope="module")
def mini_imagenet(tmp_path_factory):
    """2,048 train images in 1,024 shards and 128 validation images in 128 shards."""
    return write_mini_imagenet(tmp_path_factory.mktemp("imagenet"))


def _train(recipe, data, output, *extra, epochs=2):
    return kerasnets_cmd("train", os.path.join(RECIPES, recipe), "--data", data, "--image-size", "32",
                         "--batch-size", str(BATCH), "--epochs", str(epochs), "--output", str(output), *extra)


@pytest.fixture(scope="module")
def efficientnet_run(mini_imagenet, tmp_path_factory):
    """The EfficientNet (TPU reference) recipe, uninterrupted, default exports."""
    output = tmp_path_factory.mktemp("efficientnet")
    proc = subprocess.run(_train("efficientnet_imagenet.py", mini_imagenet["train"], output, "--deterministic"),
                          env=ENV, capture_output=True, text=True, cwd=ROOT, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = output / "efficientnet_b0_imagenet"
    return {"dir": run, "summary": json.loads((run / "summary.json").read_text()), "stdout": proc.stdout}


def _check_rehearsal(summary, run, mini, epochs):
    steps = math.ceil(mini["train_examples"] / BATCH)
    assert summary["steps_per_epoch"] == steps == 32  # ceil(2048 / 64): counted, not -1 or 0
    assert summary["steps"] == summary["steps_run"] == epochs * steps  # every step ran
    assert summary["train_examples"] == mini["train_examples"] and summary["examples_source"] in ("counted", "cache")
    assert summary["eval_examples"] == mini["eval_examples"] == 128  # every validation image, none dropped
    assert summary["eval_data"].endswith("validation-*-of-*")  # --data's folder, the recipe's eval pattern
    for key in ("keras", "saved_model", "tflite_fp32"):
        assert os.path.exists(summary["paths"][key]), key
    assert not (run / "backup").exists()


def test_efficientnet_recipe_on_imagenet_layout(efficientnet_run, mini_imagenet):
    summary = efficientnet_run["summary"]
    _check_rehearsal(summary, efficientnet_run["dir"], mini_imagenet, 2)
    assert summary["ema_decay"] == 0.9999 and summary["l2_regularization"] == 1e-5
    # 64 steps at the paper's BN momentum 0.99: the run says its evaluation rests on unsettled statistics
    assert "this run trains them for 64:" in summary["batch_norm_warning"]
    assert summary["test_accuracy"] > 0.0 and math.isfinite(summary["test_loss"])
    assert "128 images of split" in efficientnet_run["stdout"]


def test_evaluate_reads_the_runs_imagenet_shards_as_the_run_did(efficientnet_run, capsys):
    """kerasnets evaluate of the run's model.keras on its 1-based validation shards needs no flags:
    the run's label_offset and num_classes travel in the model's contract, and its score is the
    summary's (the same 128 images, the same model)."""
    from kerasnets import cli

    summary = efficientnet_run["summary"]
    assert cli.main(["evaluate", summary["paths"]["keras"], "--data", summary["eval_data"]]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if ": accuracy " in line)
    assert float(line.split("accuracy ")[1].split()[0]) == pytest.approx(summary["test_accuracy"], abs=1e-4)
    assert "128 of the 128" in line


def test_resnet_recipe_on_imagenet_layout(mini_imagenet, tmp_path):
    proc = subprocess.run(_train("resnet50_imagenet.py", mini_imagenet["train"], tmp_path, epochs=1), env=ENV,
                          capture_output=True, text=True, cwd=ROOT, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "resnet50_imagenet"
    _check_rehearsal(json.loads((run / "summary.json").read_text()), run, mini_imagenet, 1)


def _latest_step(run):
    index = run / "backup" / "task-0" / "saves.json"
    try:
        saves = json.loads(index.read_text())
    except (OSError, ValueError):
        return 0
    return max((s["step"] for s in saves), default=0)


def test_kill_9_mid_epoch_then_resume_gives_the_uninterrupted_weights_with_ema(efficientnet_run, mini_imagenet,
                                                                              tmp_path):
    """Same command, killed mid-epoch after a backup, run again: it resumes from that backup (model,
    optimizer, EMA, dropout state, data iterator) and ends with the uninterrupted run's final (EMA)
    weights, across the epoch boundary too. --backup-every-steps 5: a backup mid-epoch to be killed
    after (the recipe backs up every 1,000 steps); --export keras: only the weights are compared
    (the exports are checked on the uninterrupted rehearsal run)."""
    command = _train("efficientnet_imagenet.py", mini_imagenet["train"], tmp_path, "--deterministic",
                     "--backup-every-steps", "5", "--export", "keras")
    run = tmp_path / "efficientnet_b0_imagenet"
    proc = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    deadline = time.time() + 900
    while time.time() < deadline and proc.poll() is None and _latest_step(run) < 10:
        time.sleep(0.05)
    assert proc.poll() is None, "training ended before it could be interrupted"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = _latest_step(run)
    assert 10 <= killed_at < 32  # mid first epoch
    resumed = subprocess.run(command, env=ENV, capture_output=True, text=True, cwd=ROOT, timeout=1200)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["resumed_from_step"] == killed_at and summary["steps_run"] == 64 - killed_at
    assert f"resumed       phase 1, step {killed_at}" in resumed.stdout
    history = (run / "history.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in history[1:]] == ["0", "1"]  # each epoch once
    assert not (run / "backup").exists()
    ours = keras.saving.load_model(run / "model.keras", compile=False)
    reference = keras.saving.load_model(efficientnet_run["dir"] / "model.keras", compile=False)
    for a, b in zip(ours.weights, reference.weights):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, err_msg=a.path)
