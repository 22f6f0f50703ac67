"""Export benchmarks: single-image latency and file size per format, and the int8 accuracy drop.

    python benchmarks/bench_export.py latency [--runs 50] [--models b0 lite0 resnet50]
    python benchmarks/bench_export.py int8-digits [--epochs 12]

``latency``: median of ``--runs`` single-image calls (after warm-up) of the Keras graph call
(a tf.function), the SavedModel signature, and TFLite fp32 / float16 / dynamic / int8 with 1 and 2
threads, for EfficientNet-B0, EfficientNet-Lite0 and ResNet-50 at 224 (random init: latency and size
only; int8 calibrated on 32 random images).
``int8-digits``: trains B0 and Lite0 at 32 px on digits with the quickstart settings, then reports
fp32 and full-int8 test accuracy and top-1 agreement: the swish + SE quantization problem vs Lite.
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
    from ai_edge_litert.interpreter import Interpreter

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
                row = []
                for threads in (1, 2):
                    interpreter = Interpreter(model_path=path, num_threads=threads)
                    interpreter.allocate_tensors()
                    detail = interpreter.get_input_details()[0]
                    value = image if detail["dtype"] == np.float32 else image.astype(detail["dtype"])

                    def invoke():
                        interpreter.set_tensor(detail["index"], value)
                        interpreter.invoke()

                    row.append(_median_ms(invoke, runs))
                label = "fp32" if quantization == "none" else quantization
                print(f"| {name} | TFLite {label} | {os.path.getsize(path) / 1e6:.1f} | {row[0]:.1f} | {row[1]:.1f} |",
                      flush=True)
        keras.backend.clear_session()


def int8_digits(epochs: int) -> None:
    """Train B0 and Lite0 on digits at 32 px, then compare fp32 and int8 accuracy."""
    from kerasnets.training import adamw_warmup_cosine

    train, info = data.load("digits", "train", 32, 64, training=True, one_hot=True, crop_scale=(0.85, 1.0), flip=False)
    test, _ = data.load("digits", "test", 32, 360, training=False, resize_method="bilinear")
    images, labels = (t.numpy() for t in next(iter(test)))
    calibration, _ = data.load("digits", "train", 32, 50, training=False, resize_method="bilinear")
    steps = int(np.ceil(info.num_examples / 64))
    print(f"digits, 32x32, {epochs} epochs, full-int8 calibrated on 200 training images, 360 test images")
    print("| model | params | fp32 acc | int8 acc | drop | top-1 agreement | dynamic acc |")
    print("|---|---|---|---|---|---|---|")
    for name, build in (("EfficientNet-B0", lambda: kerasnets.EfficientNet(0, input_shape=(32, 32, 3), classes=10,
                                                                          bn_momentum=0.9, drop_connect_rate=0.0)),
                        ("EfficientNet-Lite0", lambda: kerasnets.EfficientNetLite0(input_shape=(32, 32, 3), classes=10,
                                                                                 bn_momentum=0.9, drop_connect_rate=0.0))):
        keras.utils.set_random_seed(0)
        model = build()
        optimizer = adamw_warmup_cosine(1e-2, steps * epochs, steps, global_clipnorm=None)
        model.compile(optimizer=optimizer, loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1),
                      metrics=["accuracy"])
        model.fit(train, epochs=epochs, verbose=0)
        with tempfile.TemporaryDirectory() as tmp:
            int8 = export.tflite(model, os.path.join(tmp, "i8.tflite"), "int8", representative=calibration,
                                 calibration_steps=200, eval_data=(images, labels))
            dynamic = export.tflite(model, os.path.join(tmp, "dy.tflite"), "dynamic", eval_data=(images, labels))
        print(f"| {name} | {model.count_params():,} | {int8['keras_accuracy']:.4f} | {int8['tflite_accuracy']:.4f} | "
              f"{int8['accuracy_drop']:+.4f} | {int8['top1_agreement']:.4f} | {dynamic['tflite_accuracy']:.4f} |",
              flush=True)
        keras.backend.clear_session()


def main() -> None:
    """Dispatch the two benchmarks."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    lat = sub.add_parser("latency")
    lat.add_argument("--runs", type=int, default=50)
    lat.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    dig = sub.add_parser("int8-digits")
    dig.add_argument("--epochs", type=int, default=12)
    args = parser.parse_args()
    if args.what == "latency":
        latency(args.models, args.runs)
    else:
        int8_digits(args.epochs)


if __name__ == "__main__":
    main()
