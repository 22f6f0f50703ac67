"""GPU training/inference throughput of kerasnets against keras.applications (any Keras backend).

    KERAS_BACKEND=jax python benchmarks/gpu_bench.py [--batch 128] [--steps 20] [--policies mixed_float16]
    bash benchmarks/gpu_train.sh                # TensorFlow: mixed_float16, with and without XLA

Backend-agnostic on purpose: kerasnets' builders import keras only, so the same models run on the
JAX backend (XLA-compiled), which is what the lent GPU machines carry (TensorFlow's 572 MB wheel
cannot be carried there). Images/s per GPU, same batch, resolution, policy and optimizer (SGD).
"""

from __future__ import annotations

import argparse
import time

import keras
import numpy as np

import kerasnets

PAIRS = {
    "efficientnet_b0": (lambda: kerasnets.EfficientNet(0), lambda: keras.applications.EfficientNetB0(weights=None)),
    "resnet50_v1": (lambda: kerasnets.ResNet(50, "v1"), lambda: keras.applications.ResNet50(weights=None)),
}


def bench(pair: str, policy: str, batch: int, steps: int, jit) -> dict:
    """Best-of-two train and inference images/s of both twins."""
    x = keras.ops.convert_to_tensor(np.random.RandomState(0).uniform(0, 255, (batch, 224, 224, 3)).astype("float32"))
    y = keras.ops.convert_to_tensor(np.random.RandomState(1).randint(0, 1000, (batch,)))
    result = {}
    for side, make in zip(("kerasnets", "keras.applications"), PAIRS[pair]):
        keras.config.set_dtype_policy(policy)
        model = make()
        keras.config.set_dtype_policy("float32")
        model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss="sparse_categorical_crossentropy",
                      jit_compile=jit)
        started = time.perf_counter()
        model.train_on_batch(x, y)
        compile_s = time.perf_counter() - started
        model.predict_on_batch(x)
        rates = {"train": 0.0, "infer": 0.0}
        for _ in range(2):
            start = time.perf_counter()
            for _ in range(steps):
                model.train_on_batch(x, y)
            rates["train"] = max(rates["train"], batch * steps / (time.perf_counter() - start))
            start = time.perf_counter()
            for _ in range(steps):
                np.asarray(model.predict_on_batch(x))
            rates["infer"] = max(rates["infer"], batch * steps / (time.perf_counter() - start))
        result[side] = {**rates, "compile_s": compile_s}
        keras.backend.clear_session()
    return result


def main() -> None:
    """Print one row per (pair, policy)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--policies", nargs="+", default=["mixed_float16", "mixed_bfloat16"])
    parser.add_argument("--jit", default="auto", choices=("auto", "true", "false"))
    args = parser.parse_args()
    jit = {"auto": "auto", "true": True, "false": False}[args.jit]
    print(f"backend {keras.backend.backend()}, batch {args.batch}, 224x224, best of 2 x {args.steps} steps, jit={jit}")
    print("| model | policy | kerasnets train | keras.app train | ratio | kerasnets infer | keras.app infer | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for policy in args.policies:
        for pair in PAIRS:
            r = bench(pair, policy, args.batch, args.steps, jit)
            k, a = r["kerasnets"], r["keras.applications"]
            print(f"| {pair} | {policy} | {k['train']:.0f} | {a['train']:.0f} | {k['train'] / a['train']:.3f} | "
                  f"{k['infer']:.0f} | {a['infer']:.0f} | {k['infer'] / a['infer']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
