"""Compound-scaling search with keras-tuner: constraint, oracles, outputs, resume, distributed, memory."""

import json
import os
import socket
import subprocess
import sys

import keras_tuner as kt
import pytest

import kerasnets
from kerasnets import tuning

from conftest import ENV, RECIPES, ROOT, kerasnets_cmd  # noqa: E402

TINY = tuning.SearchRecipe(
    name="tiny", data="digits", base_resolution=32, epochs=1, steps_per_epoch=2, batch_size=32,
    model_options={"bn_momentum": 0.9, "drop_connect_rate": 0.0},
    eval_options={"resize_method": "bilinear"},
    space=tuning.SearchSpace(alphas=(1.0, 1.2), betas=(1.0, 1.1), gammas=(1.0, 1.15, 1.2), tolerance=0.12),
)


def test_grid_is_filtered_by_the_constraint_before_any_build():
    points = tuning.SearchSpace().points()
    assert points and all(abs(a * b * b * g * g - 2.0) <= 0.1 and min(a, b, g) >= 1 for a, b, g in points)
    assert (1.2, 1.1, 1.15) in points  # the paper's answer is on the grid
    with pytest.raises(ValueError, match="no grid point satisfies"):
        tuning.SearchSpace(alphas=(1.0,), betas=(1.0,), gammas=(1.0,)).points()
    with pytest.raises(ValueError, match=">= 1"):
        tuning.SearchSpace(alphas=(0.9, 1.2)).points()


def test_flops_budget_below_baseline_and_objective_errors():
    with pytest.raises(ValueError, match="below the phi = 0 baseline"):
        tuning.CompoundScalingHyperModel(tuning.SearchRecipe(name="x", flops_budget=1000), 10, 100)
    with pytest.raises(ValueError, match="objective must be"):
        tuning.CompoundScalingHyperModel(tuning.SearchRecipe(name="x", objective="loss"), 10, 100)
    hypermodel = tuning.CompoundScalingHyperModel(tuning.SearchRecipe(name="x"), 10, 100)
    budget = int(2.3 * hypermodel.baseline_flops)
    tight = tuning.CompoundScalingHyperModel(tuning.SearchRecipe(name="x", flops_budget=budget), 10, 100)
    assert 0 < len(tight.points) < len(hypermodel.points)


def test_build_at_minimum_hyperparameters_does_not_raise():
    hypermodel = tuning.CompoundScalingHyperModel(TINY, 10, 64)
    model = hypermodel.build(kt.HyperParameters())
    assert model.output_shape == (None, 10)


@pytest.mark.parametrize("oracle", ["grid", "random", "bayesian"])
def test_each_oracle_completes_trials_and_writes_results(tmp_path, oracle):
    best = tuning.run_search(TINY, output=str(tmp_path), oracle=oracle, max_trials=2)
    run = tmp_path / "tiny"
    document = json.loads((run / "best.json").read_text())
    assert document["trials_completed"] == 2  # a silently failing tuner would complete none
    assert abs(document["product"] - 2.0) <= 0.12
    for name in ("trials.csv", "trials.md", "search.png"):
        assert (run / name).exists()
    coefficients = tuning.load_coefficients(str(run / "best.json"))
    assert coefficients == (best["alpha"], best["beta"], best["gamma"])
    # STEP 2: the found coefficients scale straight into the builder; the recorded FLOPs are the profiler's
    model = kerasnets.EfficientNet(1, coefficients=coefficients, base_resolution=32, classes=10,
                                   input_shape=(int(best["resolution"]),) * 2 + (3,))
    assert kerasnets.profile(model)["flops"] == best["flops"]
    baseline = kerasnets.profile(kerasnets.EfficientNet(0, coefficients=coefficients, base_resolution=32,
                                                        classes=10, input_shape=(32, 32, 3)))["flops"]
    assert best["flops_ratio"] == pytest.approx(best["flops"] / baseline)


def test_search_resumes_from_its_project_directory(tmp_path):
    tuning.run_search(TINY, output=str(tmp_path), max_trials=1)
    first = json.loads((tmp_path / "tiny" / "best.json").read_text())
    tuning.run_search(TINY, output=str(tmp_path), max_trials=2)
    again = json.loads((tmp_path / "tiny" / "best.json").read_text())
    assert (first["trials_completed"], again["trials_completed"]) == (1, 2)
    trial_dirs = [d for d in os.listdir(tmp_path / "tiny" / "tuner") if d.startswith("trial_")]
    assert len(trial_dirs) == 2  # the first trial was not run again


_MEMORY = r"""
import json, os, sys
sys.path.insert(0, os.path.join(sys.argv[1], "tests"))
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
from test_tuning import TINY
from kerasnets import tuning
import keras_tuner as kt

def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) / 1024

hypermodel = tuning.CompoundScalingHyperModel(TINY, 10, 64)
samples = []
for trial in range(6):
    hp = kt.HyperParameters()
    hp.Choice("coefficients", [tuning._key(p) for p in hypermodel.points])
    hp.values["coefficients"] = tuning._key(hypermodel.points[trial % len(hypermodel.points)])
    model = hypermodel.build(hp)
    hypermodel.fit(hp, model)
    samples.append(rss_mb())
print(json.dumps(samples))
"""


def test_memory_does_not_grow_across_trials():
    """RSS after trial 6 stays within 150 MB of RSS after trial 2 (the session is cleared per trial)."""
    proc = subprocess.run([sys.executable, "-c", _MEMORY, ROOT], env=ENV, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    samples = json.loads(proc.stdout.strip().splitlines()[-1])
    assert samples[-1] - samples[1] < 150, samples


def test_distributed_chief_and_worker_on_localhost(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = {**ENV, "KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(port)}
    command = kerasnets_cmd("search", os.path.join(RECIPES, "search_digits.py"), "--smoke", "--max-trials", "2",
                            "--output", str(tmp_path))
    chief = subprocess.Popen(command, env={**base, "KERASTUNER_TUNER_ID": "chief"}, cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    worker = subprocess.Popen(command, env={**base, "KERASTUNER_TUNER_ID": "tuner0"}, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    worker_out, worker_err = worker.communicate(timeout=900)
    chief_out, chief_err = chief.communicate(timeout=300)
    assert worker.returncode == 0, worker_err[-3000:]
    assert chief.returncode == 0, chief_err[-3000:]
    document = json.loads((tmp_path / "search_digits" / "best.json").read_text())
    assert document["trials_completed"] == 2
    assert "worker finished" in worker_out
