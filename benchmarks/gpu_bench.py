"""GPU training throughput of kerasnets against keras.applications (any Keras backend; JAX on the lent GPUs).

    KERAS_BACKEND=jax python benchmarks/gpu_bench.py [--batch 256] [--steps 30] [--policies mixed_float16]
    bash benchmarks/gpu_train.sh                # TensorFlow: mixed_float16, with and without XLA

Backend-agnostic on purpose: kerasnets' builders import keras only, so the same models run on the
JAX backend (XLA-compiled), which is what the lent GPU machines carry (TensorFlow's 572 MB wheel
cannot be carried there). Both twins of a pair are built, compiled and timed the same way, one after
the other, in one process: same batch, resolution, dtype policy, optimizer (SGD with momentum, as
NVIDIA's ResNet-50 recipe) and synthetic data already on the device (as NVIDIA's synthetic-data
figures), so the ratio is the models' and not the input pipeline's.

On JAX the timed loop is the loop ``model.fit`` runs: ``model.train_function`` stepping the
training state, with no host sync until the round ends (``train_on_batch`` syncs every step).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import keras
import numpy as np

import kerasnets

PAIRS = {
    "efficientnet_b0": (lambda: kerasnets.EfficientNet(0), lambda: keras.applications.EfficientNetB0(weights=None)),
    "resnet50_v1": (lambda: kerasnets.ResNet(50, "v1"), lambda: keras.applications.ResNet50(weights=None)),
    # NVIDIA's ResNet-50 figures are v1.5 (stride on the 3x3); keras.applications has no v1.5 twin.
    "resnet50_v1.5": (lambda: kerasnets.ResNet(50), None),
}


def device_name() -> str:
    """The accelerator the backend runs on, in words."""
    if keras.backend.backend() == "jax":
        import jax

        device = jax.devices()[0]
        return f"{device.platform}: {device.device_kind}"
    if keras.backend.backend() == "torch":
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return platform.processor() or "cpu"


def _jax_rounds(model, x, y, steps: int, rounds: int) -> list[float]:
    """Seconds per round of ``steps`` steps of ``model.fit``'s own loop (JAX), synced at round ends only.

    The first round is a warm-up (allocator, autotuning) and is not returned. The state stays inside
    this function: each step donates the previous state's buffers.
    """
    import jax
    from keras.src.backend.jax.trainer import _distribute_data

    batch = _distribute_data((x, y, None))

    def batches():
        while True:
            yield batch

    iterator = batches()
    state = model._get_jax_state(trainable_variables=True, non_trainable_variables=True, optimizer_variables=True,
                                 metrics_variables=True, purge_model_variables=False)
    seconds = []
    for _ in range(rounds + 1):
        started = time.perf_counter()
        for _ in range(steps):
            logs, state = model.train_function(state, iterator)
        jax.block_until_ready((logs, state))
        seconds.append(time.perf_counter() - started)
        if not np.isfinite(float(np.asarray(logs["loss"]))):
            raise FloatingPointError(f"loss is {logs['loss']} after {steps} steps")
    return seconds[1:]


def _eager_rounds(model, x, y, steps: int, rounds: int) -> list[float]:
    """Seconds per round of ``steps`` ``train_on_batch`` calls (TensorFlow, torch); the first round is a warm-up."""
    seconds = []
    for _ in range(rounds + 1):
        started = time.perf_counter()
        for _ in range(steps):
            loss = model.train_on_batch(x, y)
        seconds.append(time.perf_counter() - started)
        if not np.isfinite(np.asarray(loss)).all():
            raise FloatingPointError(f"loss is {loss} after {steps} steps")
    return seconds[1:]


def bench(make, policy: str, batch: int, steps: int, rounds: int, size: int = 224) -> dict:
    """Training images/s (best round, median round), compile seconds and parameter count of one model."""
    rng = np.random.default_rng(0)
    x = keras.ops.convert_to_tensor(rng.uniform(0, 255, (batch, size, size, 3)).astype("float32"))
    y = keras.ops.convert_to_tensor(rng.integers(0, 1000, (batch,)).astype("int32"))
    keras.config.set_dtype_policy(policy)
    try:
        model = make()
    finally:
        keras.config.set_dtype_policy("float32")
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss="sparse_categorical_crossentropy")
    started = time.perf_counter()
    model.train_on_batch(x, y)  # builds and compiles the step
    compile_s = time.perf_counter() - started
    loop = _jax_rounds if keras.backend.backend() == "jax" else _eager_rounds
    seconds = loop(model, x, y, steps, rounds)
    rates = sorted(batch * steps / s for s in seconds)
    result = {"best": rates[-1], "median": float(np.median(rates)), "compile_s": compile_s,
              "params": model.count_params()}
    del model
    keras.backend.clear_session()
    return result


def main() -> None:
    """Print one row per (model, policy): kerasnets, keras.applications and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--policies", nargs="+", default=["mixed_float16"])
    parser.add_argument("--models", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    device = device_name()
    print(f"device {device}; backend {keras.backend.backend()} {keras.__version__}; batch {args.batch}, 224x224, "
          f"best of {args.rounds} rounds x {args.steps} steps, training images/s", flush=True)
    print("| model | policy | kerasnets | keras.applications | ratio | params (ours / keras) | compile s |")
    print("|---|---|---|---|---|---|---|", flush=True)
    rows = []
    for policy in args.policies:
        for name in args.models:
            ours_make, theirs_make = PAIRS[name]
            ours = bench(ours_make, policy, args.batch, args.steps, args.rounds)
            theirs = bench(theirs_make, policy, args.batch, args.steps, args.rounds) if theirs_make else None
            rows.append({"model": name, "policy": policy, "device": device, "kerasnets": ours,
                         "keras.applications": theirs})
            if theirs:
                print(f"| {name} | {policy} | {ours['best']:.0f} | {theirs['best']:.0f} | "
                      f"{ours['best'] / theirs['best']:.3f} | {ours['params']:,} / {theirs['params']:,} | "
                      f"{ours['compile_s']:.0f} / {theirs['compile_s']:.0f} |", flush=True)
            else:
                print(f"| {name} | {policy} | {ours['best']:.0f} | - | - | {ours['params']:,} | "
                      f"{ours['compile_s']:.0f} |", flush=True)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"batch": args.batch, "steps": args.steps, "rounds": args.rounds, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
