"""Inference and train-step throughput of kerasnets against keras.applications, in one run.

    python benchmarks/bench_models.py [--batch 16] [--size 224] [--steps 5]

For each pair (kerasnets EfficientNet(phi=0) vs keras.applications.EfficientNetB0, kerasnets
ResNet(50, "v1") vs keras.applications.ResNet50) it measures images/s of a compiled forward pass
(``predict_on_batch``) and of ``train_on_batch`` (SGD, sparse CE), alternating the two models
round by round so machine noise hits both equally, and prints the ratio (>1 = kerasnets faster).
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import kerasnets  # noqa: E402

PAIRS = {
    "efficientnet_b0": (lambda: kerasnets.EfficientNet(0), lambda: keras.applications.EfficientNetB0(weights=None)),
    "resnet50_v1": (lambda: kerasnets.ResNet(50, "v1"), lambda: keras.applications.ResNet50(weights=None)),
}


def _rate(fn, batch: int, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return batch * steps / (time.perf_counter() - start)


def bench_pair(name: str, batch: int, size: int, steps: int, rounds: int) -> dict:
    """Images/s for inference and training of both twins, best of ``rounds`` alternating rounds."""
    x = np.random.RandomState(0).uniform(0, 255, (batch, size, size, 3)).astype("float32")
    y = np.random.RandomState(1).randint(0, 1000, (batch,))
    models = {}
    for side, make in zip(("kerasnets", "keras.applications"), PAIRS[name]):
        model = make()
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy")
        model.predict_on_batch(x)
        model.train_on_batch(x, y)  # build and trace once
        models[side] = model
    result = {side: {"infer": 0.0, "train": 0.0} for side in models}
    for _ in range(rounds):
        for side, model in models.items():
            result[side]["infer"] = max(result[side]["infer"], _rate(lambda: model.predict_on_batch(x), batch, steps))
            result[side]["train"] = max(result[side]["train"], _rate(lambda: model.train_on_batch(x, y), batch, steps))
    for mode in ("infer", "train"):
        result[f"ratio_{mode}"] = result["kerasnets"][mode] / result["keras.applications"][mode]
    return result


def main() -> None:
    """Run every pair and print a table (and JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    results = {}
    print(f"batch {args.batch}, {args.size}x{args.size}, best of {args.rounds} rounds x {args.steps} steps, images/s")
    print("| model | kerasnets infer | keras.app infer | ratio | kerasnets train | keras.app train | ratio |")
    print("|---|---|---|---|---|---|---|")
    for name in PAIRS:
        r = bench_pair(name, args.batch, args.size, args.steps, args.rounds)
        results[name] = r
        k, a = r["kerasnets"], r["keras.applications"]
        print(f"| {name} | {k['infer']:.1f} | {a['infer']:.1f} | {r['ratio_infer']:.3f} | "
              f"{k['train']:.1f} | {a['train']:.1f} | {r['ratio_train']:.3f} |", flush=True)
        keras.backend.clear_session()
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
