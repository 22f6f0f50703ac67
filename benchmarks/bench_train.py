"""Training throughput (images/s) of kerasnets against the keras.applications twins, in one run.

    python benchmarks/bench_train.py [--steps 4] [--batch 16] [--quickstart]

Rows: EfficientNet-B0 and ResNet-50 (v1) at 224 in float32 and mixed_bfloat16, each against its
keras.applications twin under the same policy, batch and optimizer (SGD), alternating the two
models so machine noise hits both. ``--quickstart`` adds the quickstart model (phi = -2 at 32 px).
On a GPU the same script measures mixed_float16 (see benchmarks/gpu_train.sh).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import kerasnets  # noqa: E402
from kerasnets.training import precision_scope  # noqa: E402

PAIRS = {
    "efficientnet_b0": (lambda: kerasnets.EfficientNet(0), lambda: keras.applications.EfficientNetB0(weights=None)),
    "resnet50_v1": (lambda: kerasnets.ResNet(50, "v1"), lambda: keras.applications.ResNet50(weights=None)),
}


def _compiled(make, policy: str, jit: bool):
    with precision_scope(policy):
        model = make()
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss="sparse_categorical_crossentropy",
                  jit_compile=jit)
    return model


def measure(pair: str, policy: str, batch: int, size: int, steps: int, rounds: int, jit: bool) -> dict:
    """Best-of-rounds train images/s for both twins."""
    x = np.random.RandomState(0).uniform(0, 255, (batch, size, size, 3)).astype("float32")
    y = np.random.RandomState(1).randint(0, 1000, (batch,))
    models = {side: _compiled(make, policy, jit) for side, make in zip(("kerasnets", "keras.applications"), PAIRS[pair])}
    for model in models.values():
        model.train_on_batch(x, y)
        model.train_on_batch(x, y)
    best = {side: 0.0 for side in models}
    for _ in range(rounds):
        for side, model in models.items():
            start = time.perf_counter()
            for _ in range(steps):
                model.train_on_batch(x, y)
            best[side] = max(best[side], batch * steps / (time.perf_counter() - start))
    keras.backend.clear_session()
    return {**best, "ratio": best["kerasnets"] / best["keras.applications"]}


def quickstart_rate(steps: int) -> float:
    """Train images/s of the quickstart recipe's model at its batch (64) and resolution (32)."""
    import runpy

    phi = runpy.run_path(os.path.join(os.path.dirname(__file__), "..", "recipes", "quickstart.py"))["PHI"]
    model = kerasnets.EfficientNet(phi, coefficients=kerasnets.PAPER_COEFFICIENTS, input_shape=(32, 32, 3), classes=10,
                                   bn_momentum=0.9, drop_connect_rate=0.0)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss="sparse_categorical_crossentropy")
    x = np.random.RandomState(0).uniform(0, 255, (64, 32, 32, 3)).astype("float32")
    y = np.random.RandomState(1).randint(0, 10, (64,))
    model.train_on_batch(x, y)
    start = time.perf_counter()
    for _ in range(steps * 5):
        model.train_on_batch(x, y)
    return 64 * steps * 5 / (time.perf_counter() - start)


def main() -> None:
    """Print the throughput table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--policies", nargs="+", default=["float32", "mixed_bfloat16"])
    parser.add_argument("--jit", action="store_true", help="XLA (jit_compile=True)")
    parser.add_argument("--quickstart", action="store_true")
    args = parser.parse_args()
    print(f"train step images/s, batch {args.batch}, {args.size}x{args.size}, best of {args.rounds} x {args.steps} steps, "
          f"jit={args.jit}")
    print("| model | policy | kerasnets | keras.applications | ratio |")
    print("|---|---|---|---|---|")
    rates: dict = {}
    for pair in PAIRS:
        for policy in args.policies:
            r = measure(pair, policy, args.batch, args.size, args.steps, args.rounds, args.jit)
            rates[pair, policy] = r["kerasnets"]
            print(f"| {pair} | {policy} | {r['kerasnets']:.1f} | {r['keras.applications']:.1f} | {r['ratio']:.3f} |",
                  flush=True)
    if {"float32", "mixed_bfloat16"} <= set(args.policies):
        print("\nprecision='auto' table (kerasnets.training.precision.CPU_BF16_SPEEDUP): mixed_bfloat16 / float32")
        for pair, family in (("efficientnet_b0", "efficientnet"), ("resnet50_v1", "resnet")):
            print(f"  {family}: {rates[pair, 'mixed_bfloat16'] / rates[pair, 'float32']:.2f}")
    if args.quickstart:
        print(f"| quickstart (its PHI, 32 px, batch 64) | float32 | {quickstart_rate(args.steps):.0f} | | |")


if __name__ == "__main__":
    main()
