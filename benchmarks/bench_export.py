"""Export benchmarks: single-image latency and file size per format, and the int8 accuracy drop.

    python benchmarks/bench_export.py latency [--runs 50] [--models b0 lite0 resnet50]
    python benchmarks/bench_export.py deployment [--models quickstart lite0 b0] [--size 224] [--epochs 4]

``latency``: median of ``--runs`` single-image calls (after warm-up) of the Keras graph call
(a tf.function), the SavedModel signature, and TFLite fp32 / float16 / dynamic / int8 with 1 and 2
threads, for EfficientNet-B0, EfficientNet-Lite0 and ResNet-50 at 224 (random init: latency and size
only; int8 calibrated on 32 random images).
``deployment``: the README's deployment table. Trains the quickstart model (32 px, 20 epochs),
EfficientNet-Lite0 and EfficientNet-B0 (``--size`` px) on digits, exports each as TFLite fp32,
float16, dynamic-range and full int8 (``export.tflite``'s defaults: int8 calibrated on 500 train
images with its automatic choice of ranges) and prints top-1 agreement with Keras, test accuracy
and its drop, size, and 2-thread latency relative to full int8.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import kerasnets  # noqa: E402
from kerasnets import data, export  # noqa: E402

MODELS = {
    "b0": lambda: kerasnets.EfficientNet(0),
    "lite0": lambda: kerasnets.EfficientNetLite0(),
    "resnet50": lambda: kerasnets.ResNet(50, "v1.5", include_preprocessing=True),
}


def _median_ms(fn, runs: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def latency(names, runs: int) -> None:
    """Print the latency/size table."""
    print(f"single image 224x224, median of {runs} runs, {os.cpu_count()} CPU cores")
    print("| model | format | size MB | 1 thread ms | 2 threads ms |")
    print("|---|---|---|---|---|")
    image = np.random.RandomState(0).uniform(0, 255, (1, 224, 224, 3)).astype("float32")
    calibration = np.random.RandomState(1).uniform(0, 255, (32, 224, 224, 3)).astype("float32")
    for name in names:
        model = MODELS[name]()
        graph_call = tf.function(lambda x: model(x, training=False))
        keras_ms = _median_ms(lambda: graph_call(image), runs)
        with tempfile.TemporaryDirectory() as tmp:
            weights = os.path.join(tmp, "m.weights.h5")
            model.save_weights(weights)
            print(f"| {name} | keras graph call | {os.path.getsize(weights) / 1e6:.1f} | | {keras_ms:.1f} |", flush=True)
            sm_dir = os.path.join(tmp, "sm")
            export.saved_model(model, sm_dir)
            signature = tf.saved_model.load(sm_dir).signatures["serving_default"]
            sm_ms = _median_ms(lambda: signature(tf.constant(image)), runs)
            size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(sm_dir) for f in fs)
            print(f"| {name} | SavedModel | {size / 1e6:.1f} | | {sm_ms:.1f} |", flush=True)
            for quantization in ("none", "float16", "dynamic", "int8"):
                path = os.path.join(tmp, f"{quantization}.tflite")
                export.tflite(model, path, quantization, representative=calibration, eval_data=calibration[:8],
                              saved_model_dir=sm_dir)
                row = [_tflite_ms(path, image, runs, threads) for threads in (1, 2)]
                label = "fp32" if quantization == "none" else quantization
                print(f"| {name} | TFLite {label} | {os.path.getsize(path) / 1e6:.1f} | {row[0]:.1f} | {row[1]:.1f} |",
                      flush=True)
        keras.backend.clear_session()


def _tflite_ms(path: str, image: np.ndarray, runs: int, threads: int = 2) -> float:
    """Median single-image latency of a .tflite file (ai_edge_litert, ``threads`` threads)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, num_threads=threads)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    value = image if detail["dtype"] == np.float32 else image.astype(detail["dtype"])

    def invoke():
        interpreter.set_tensor(detail["index"], value)
        interpreter.invoke()

    return _median_ms(invoke, runs)


def _digits_model(name: str, size: int):
    """(label, untrained model) of the deployment table for digits at ``size`` px; the quickstart
    model is built by the recipe's own ``build_model``."""
    if name == "quickstart":
        import runpy
        from types import SimpleNamespace

        recipe_file = runpy.run_path(os.path.join(os.path.dirname(__file__), "..", "recipes", "quickstart.py"))
        context = SimpleNamespace(num_classes=10, synchronized_bn=False)
        return f"quickstart (phi={recipe_file['PHI']})", recipe_file["build_model"](recipe_file["RECIPE"], context)
    common = dict(input_shape=(size, size, 3), classes=10, bn_momentum=0.9, drop_connect_rate=0.0)
    if name == "b0":
        return "EfficientNet-B0", kerasnets.EfficientNet(0, **common)
    return "EfficientNet-Lite0", kerasnets.EfficientNetLite0(**common)


def deployment(names, size: int, epochs: int, seed: int, runs: int) -> None:
    """Train each model on digits at ``size`` px, export it in the four TFLite formats, print the table."""
    from kerasnets.training import adamw_warmup_cosine

    print(f"digits at {size} px, {epochs} epochs from scratch (seed {seed}); int8 calibrated on 500 train images "
          f"(kerasnets export's default), agreement and accuracy on the 360 test images; latency: median of {runs} "
          f"single-image calls, 2 threads, {os.cpu_count()} CPU cores")
    print("| model | format | MB | top-1 agreement | accuracy (Keras) | drop | ms (2 threads) | vs int8 | int8 ranges |")
    print("|---|---|---|---|---|---|---|---|---|")
    common = dict(image_size=size, training=False, resize_method="bilinear")
    test, _ = data.load("digits", "test", batch_size=360, **common)
    images, labels = (t.numpy() for t in next(iter(test)))
    calibration = data.load("digits", "train", batch_size=32, **common)[0].unbatch().shuffle(10_000, seed=0).batch(32)
    train, info = data.load("digits", "train", size, 64, training=True, one_hot=True, crop_scale=(0.85, 1.0),
                            flip=False, seed=seed)
    steps = int(np.ceil(info.num_examples / 64))
    for name in names:
        keras.utils.set_random_seed(seed)
        label, model = _digits_model(name, size)
        model.compile(optimizer=adamw_warmup_cosine(1e-2, steps * epochs, steps),
                      loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1))
        model.fit(train, epochs=epochs, verbose=0)
        rows = {}
        with tempfile.TemporaryDirectory() as tmp:
            for quantization in ("none", "float16", "dynamic", "int8"):
                path = os.path.join(tmp, f"{quantization}.tflite")
                report = export.tflite(model, path, quantization, representative=calibration,
                                       eval_data=(images, labels))
                rows[quantization] = (report, _tflite_ms(path, images[:1].astype(np.float32), runs))
        int8_ms = rows["int8"][1]
        for quantization, (report, ms) in rows.items():
            ranges = report["calibration"]["method"] if "calibration" in report else ""
            print(f"| {label} | {'fp32' if quantization == 'none' else quantization} | {report['bytes'] / 1e6:.2f} | "
                  f"{report['top1_agreement']:.4f} | {report['tflite_accuracy']:.4f} ({report['keras_accuracy']:.4f}) | "
                  f"{report['accuracy_drop'] * 100:+.2f} pt | {ms:.2f} | {ms / int8_ms:.2f}x | {ranges} |", flush=True)
        keras.backend.clear_session()


def main() -> None:
    """Dispatch the two benchmarks."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    lat = sub.add_parser("latency")
    lat.add_argument("--runs", type=int, default=50)
    lat.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    dep = sub.add_parser("deployment")
    dep.add_argument("--models", nargs="+", default=["quickstart", "lite0", "b0"],
                     choices=["quickstart", "lite0", "b0"])
    dep.add_argument("--size", type=int, default=224, help="input size of Lite0 and B0 (the quickstart is 32)")
    dep.add_argument("--epochs", type=int, default=4)
    dep.add_argument("--seed", type=int, default=0)
    dep.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    if args.what == "latency":
        latency(args.models, args.runs)
    else:
        for name in args.models:  # the quickstart model is trained at its own 32 px and 20 epochs
            quick = name == "quickstart"
            deployment([name], 32 if quick else args.size, 20 if quick else args.epochs, args.seed, args.runs)


if __name__ == "__main__":
    main()
