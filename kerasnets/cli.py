"""The ``kerasnets`` command line: ``info``, ``train``, ``evaluate``, ``export``, ``predict``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

__all__ = ["main", "preset_table"]


def _quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def preset_table(names: Sequence[str] | None = None) -> list[dict]:
    """Rows of ``{"preset", "input_size", "params", "flops"}`` for the given (default: all) presets."""
    import keras

    from kerasnets.presets import PRESETS, build
    from kerasnets.profile import profile

    rows = []
    for name in names or list(PRESETS):
        model = build(name)
        stats = profile(model)
        rows.append({"preset": name, "input_size": stats["input_size"][0], **{k: stats[k] for k in ("params", "flops")}})
        del model
        keras.backend.clear_session()
    return rows


def _cmd_info(args: argparse.Namespace) -> int:
    from kerasnets.presets import PRESETS

    names = None
    if args.preset:
        key = args.preset.lower()
        if key not in PRESETS:
            print(f"error: unknown preset {args.preset!r}; allowed: {', '.join(sorted(PRESETS))}", file=sys.stderr)
            return 2
        names = [key]
    print(f"| {'preset':<20} | {'input':>5} | {'params':>12} | {'FLOPs (mult-adds)':>17} |")
    print(f"|{'-' * 22}|{'-' * 7}|{'-' * 14}|{'-' * 19}|")
    for row in preset_table(names):
        print(f"| {row['preset']:<20} | {row['input_size']:>5} | {row['params']:>12,} | {row['flops'] / 1e9:>16.3f}G |")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from kerasnets.training import TrainingDiverged, apply_overrides, load_recipe, train

    try:
        recipe = load_recipe(args.recipe)
        recipe = apply_overrides(
            recipe, smoke=args.smoke, data=args.data, epochs=args.epochs, batch_size=args.batch_size,
            precision=args.precision, strategy=args.strategy, output=args.output, image_size=args.image_size,
            steps_per_epoch=args.steps_per_epoch, backup_every_steps=args.backup_every_steps, export=tuple(args.export) if args.export is not None else None,
        )
        result = train(recipe, resume=args.resume, run_name=args.name)
    except (ValueError, FileNotFoundError, TrainingDiverged) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    s = result.summary
    print("\n== kerasnets train: summary ==")
    print(f"recipe        {s['recipe']} ({s['data']}, {s['epochs']} epochs, {s['steps']} steps, global batch {s['global_batch']})")
    print(f"test accuracy {s['test_accuracy']:.4f} on {s['eval_split']!r}")
    print(f"model         {s['params']:,} params, {s['flops'] / 1e6:.1f}M FLOPs at {s['input_size'][0]}x{s['input_size'][1]}")
    print(f"time          {s['total_seconds']:.0f} s (train + eval + export), {s['strategy']}, {s['precision']}")
    for key, path in s["paths"].items():
        print(f"{key:<13} {path}")
    return 0


def _load_any_model(path: str):
    """A .keras file, a SavedModel folder or a .tflite file, as a callable on float images in 0..255."""
    import numpy as np

    if path.endswith(".tflite"):
        from kerasnets.export import run_tflite

        from ai_edge_litert.interpreter import Interpreter

        shape = Interpreter(model_path=path).get_input_details()[0]["shape"]
        return (lambda images: run_tflite(path, np.asarray(images, np.float32))), tuple(int(d) for d in shape[1:])
    if os.path.isdir(path):
        import tensorflow as tf

        loaded = tf.saved_model.load(path)
        signature = loaded.signatures["serving_default"]
        shape = signature.structured_input_signature[1]
        spec = next(iter(shape.values()))

        def call(images):
            return next(iter(signature(tf.constant(np.asarray(images, np.float32))).values())).numpy()

        return call, tuple(int(d) for d in spec.shape[1:])
    import keras

    import kerasnets  # noqa: F401  (registers the custom layers)

    model = keras.saving.load_model(path)
    return (lambda images: np.asarray(model.predict(np.asarray(images, np.float32), verbose=0))), tuple(model.input_shape[1:])


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import numpy as np

    from kerasnets import data

    try:
        predict, shape = _load_any_model(args.model)
        dataset, info = data.load(args.data, args.split, image_size=shape[0], batch_size=args.batch_size,
                                  training=False, resize_method=args.resize)
    except (ValueError, FileNotFoundError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    correct = total = 0
    for images, labels in dataset:
        scores = predict(images.numpy())
        correct += int(np.sum(scores.argmax(-1) == labels.numpy()))
        total += len(labels)
    print(f"{args.model}: accuracy {correct / total:.4f} on {total} images of {args.data!r} split {args.split!r}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    import json

    import keras

    import kerasnets  # noqa: F401
    from kerasnets import data, export

    try:
        model = keras.saving.load_model(args.model)
        labels_file = os.path.join(os.path.dirname(os.path.abspath(args.model)), "labels.txt")
        names = open(labels_file).read().split() if os.path.exists(labels_file) else None
        if args.format == "saved_model":
            report = export.saved_model(model, args.output, names, overwrite=args.overwrite)
        else:
            calibration = None
            if args.calibration:
                calibration, _ = data.load(args.calibration, args.split, image_size=model.input_shape[1],
                                           batch_size=32, training=False, resize_method=args.resize)
            report = export.tflite(model, args.output, args.quantize, representative=calibration,
                                   calibration_steps=args.steps, io_dtype=args.io_dtype, class_names=names,
                                   overwrite=args.overwrite)
    except (ValueError, FileExistsError, FileNotFoundError, export.ExportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np
    import tensorflow as tf

    from kerasnets.data.transforms import center_crop

    try:
        predict, shape = _load_any_model(args.model)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    folder = args.model if os.path.isdir(args.model) else os.path.dirname(os.path.abspath(args.model))
    labels_file = os.path.join(folder, "labels.txt")
    names = open(labels_file).read().split("\n") if os.path.exists(labels_file) else None
    status = 0
    for path in args.images:
        try:
            image = center_crop(tf.io.read_file(path), shape[0], crop_padding=args.crop_padding).numpy()
        except (tf.errors.OpError, ValueError) as error:
            print(f"{path}: error: cannot read image ({str(error).splitlines()[0]})", file=sys.stderr)
            status = 2
            continue
        scores = predict(image[None])[0]
        top = np.argsort(scores)[::-1][: args.top_k]
        ranked = ", ".join(f"{names[i] if names else i} {scores[i]:.3f}" for i in top)
        print(f"{path}: {ranked}")
    return status


def _cmd_search(args: argparse.Namespace) -> int:
    import dataclasses

    from kerasnets.tuning import load_search_recipe, run_search

    try:
        recipe = load_search_recipe(args.recipe)
        if args.smoke:
            recipe = dataclasses.replace(recipe, **recipe.smoke)
        best = run_search(recipe, output=args.output, oracle=args.oracle, max_trials=args.max_trials, seed=args.seed,
                          verbose=1 if args.verbose else 0)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not best:
        print("worker finished: the chief writes the results")
        return 0
    run_dir = os.path.join(args.output, recipe.name)
    print(open(os.path.join(run_dir, "trials.md")).read())
    print(f"best: alpha {best['alpha']:g}, beta {best['beta']:g}, gamma {best['gamma']:g} "
          f"(val_accuracy {best['val_accuracy']:.4f}, FLOPs x{best['flops_ratio']:.2f} of phi=0)")
    print(f"results: {run_dir}/best.json, trials.csv, trials.md, search.png")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of every sub-command."""
    parser = argparse.ArgumentParser(prog="kerasnets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="print params and FLOPs of every preset (or one)")
    info.add_argument("preset", nargs="?", help="one preset name, e.g. efficientnetb0")
    info.set_defaults(func=_cmd_info)
    from kerasnets.training.distribute import STRATEGIES
    from kerasnets.training.precision import PRECISIONS

    train = sub.add_parser("train", help="train a recipe (recipes/*.py), evaluate and export")
    train.add_argument("recipe", help="recipe file, e.g. recipes/quickstart.py")
    train.add_argument("--data", help="override the data source (digits, tfds:NAME, folder, TFRecord glob)")
    train.add_argument("--epochs", type=int)
    train.add_argument("--batch-size", type=int, help="per-replica batch size")
    train.add_argument("--image-size", type=int)
    train.add_argument("--steps-per-epoch", type=int)
    train.add_argument("--precision", choices=PRECISIONS)
    train.add_argument("--strategy", choices=STRATEGIES)
    train.add_argument("--output", help="output root (default saved_models)")
    train.add_argument("--name", help="run name (default: the recipe's name)")
    train.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                       help="resume from the run's last backup (default) or start over")
    train.add_argument("--backup-every-steps", type=int, help="resumable backup period in steps (0 = each epoch)")
    train.add_argument("--smoke", action="store_true", help="a couple of steps with the recipe's smoke overrides")
    train.add_argument("--export", nargs="*", choices=("keras", "saved_model", "tflite"),
                       help="formats to write after training (default: the recipe's)")
    train.set_defaults(func=_cmd_train)

    evaluate = sub.add_parser("evaluate", help="accuracy of a .keras, SavedModel or .tflite model on a dataset")
    evaluate.add_argument("model")
    evaluate.add_argument("--data", required=True)
    evaluate.add_argument("--split", default="test")
    evaluate.add_argument("--batch-size", type=int, default=64)
    evaluate.add_argument("--resize", default="bicubic", choices=("bilinear", "bicubic"))
    evaluate.set_defaults(func=_cmd_evaluate)

    exporter = sub.add_parser("export", help="export a .keras model to a SavedModel or TFLite file")
    exporter.add_argument("model")
    exporter.add_argument("--format", required=True, choices=("saved_model", "tflite"))
    exporter.add_argument("--output", required=True)
    exporter.add_argument("--quantize", default="none", choices=("none", "float16", "dynamic", "int8"))
    exporter.add_argument("--io-dtype", default="float32", choices=("float32", "int8", "uint8"))
    exporter.add_argument("--calibration", help="data source for int8 calibration and the accuracy report")
    exporter.add_argument("--split", default="test")
    exporter.add_argument("--steps", type=int, default=100, help="calibration images")
    exporter.add_argument("--resize", default="bicubic", choices=("bilinear", "bicubic"))
    exporter.add_argument("--overwrite", action="store_true")
    exporter.set_defaults(func=_cmd_export)

    searcher = sub.add_parser("search", help="keras-tuner search of EfficientNet's alpha, beta, gamma")
    searcher.add_argument("recipe", help="search recipe, e.g. recipes/search_digits.py")
    searcher.add_argument("--max-trials", type=int)
    searcher.add_argument("--oracle", default="grid", choices=("grid", "random", "bayesian"))
    searcher.add_argument("--output", default="search_runs", help="results folder (default ./search_runs)")
    searcher.add_argument("--seed", type=int, default=0)
    searcher.add_argument("--smoke", action="store_true", help="one short epoch per trial")
    searcher.add_argument("--verbose", action="store_true")
    searcher.set_defaults(func=_cmd_search)

    predictor = sub.add_parser("predict", help="top-k classes of image files with a .keras, SavedModel or .tflite model")
    predictor.add_argument("model")
    predictor.add_argument("images", nargs="+")
    predictor.add_argument("--top-k", type=int, default=5)
    predictor.add_argument("--crop-padding", type=int, default=32)
    predictor.set_defaults(func=_cmd_predict)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kerasnets`` console script."""
    _quiet_tensorflow()
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
