"""The ``kerasnets`` command line: ``info``, ``train``, ``evaluate``, ``export``, ``predict``."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kerasnets.training.recipe import Recipe

__all__ = ["main", "preset_table", "source_kind", "train_overrides"]

log = logging.getLogger("kerasnets.cli")


def _quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _fail(error: BaseException) -> int:
    """Print one line for a user error (no traceback) and return the exit status 2."""
    message = " ".join(str(error).split()) or type(error).__name__
    print(f"error: {message}", file=sys.stderr)
    return 2


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


#: The source-specific ``kerasnets.data.load`` options each kind of source accepts (the rest of a
#: recipe's ``train_options`` / ``eval_options`` applies to every source).
_SOURCE_OPTIONS = {
    "tfrecords": {"class_names", "num_classes", "label_offset"},
    "folder": {"validation_split"},
    "digits": {"data_dir", "validation_split"},
    "tfds": {"data_dir", "download"},
    "arrays": {"class_names", "validation_split"},
}
_ANY_SOURCE_OPTION = set().union(*_SOURCE_OPTIONS.values())


def source_kind(source: object) -> str:
    """The kind of a :func:`kerasnets.data.load` source, without reading it: "digits", "tfds",
    "folder", "tfrecords" (a glob, a file, or the --smoke stand-in), "arrays" or "unknown"
    (a path that does not exist: loading it explains): :func:`kerasnets.data.source_kind`."""
    from kerasnets.data.pipeline import source_kind as kind
    from kerasnets.training import STANDIN_TFRECORDS

    return "tfrecords" if source == STANDIN_TFRECORDS else kind(source)


def _eval_data_for(data: str, recipe: Recipe) -> str | None:
    """The evaluation source of a recipe with its own ``eval_data`` when ``--data`` replaces its data
    (and ``--eval-data`` is not given): the recipe's eval pattern next to ``--data`` when both of the
    recipe's sources are TFRecord globs in one folder and ``--data`` is TFRecords; else None (the
    held-out split of ``--data``). ValueError when that pattern matches no file but ``--data`` does."""
    from kerasnets import storage

    own_train, own_eval = recipe.data, recipe.eval_data
    paired = (isinstance(own_train, str) and isinstance(own_eval, str)
              and source_kind(own_train) == source_kind(own_eval) == "tfrecords"
              and os.path.dirname(own_train) == os.path.dirname(own_eval))
    kind = source_kind(data)
    if not (paired and kind == "tfrecords"):
        log.warning("--data %s is %s: evaluating on its held-out split (the recipe's eval data %s goes with its own "
                    "data); pass --eval-data to choose", data, _KIND_WORDS.get(kind, "a new source"), own_eval)
        return None
    pattern = os.path.join(os.path.dirname(os.fspath(data)), os.path.basename(own_eval))
    if storage.glob(os.fspath(data)) and not storage.glob(pattern):
        raise ValueError(f"recipe {recipe.name!r} evaluates on {os.path.basename(own_eval)!r} next to its training "
                         f"data, but {pattern!r} matches no file: pass --eval-data PATTERN (the validation shards)")
    log.warning("--data %s: evaluating on %s (the recipe's eval pattern next to it); pass --eval-data to choose",
                data, pattern)
    return pattern


_KIND_WORDS = {"folder": "an image folder", "digits": "digits", "tfds": "a TFDS dataset",
               "tfrecords": "TFRecords", "arrays": "arrays"}


def _self_described(pattern: object) -> bool:
    """True for TFRecords written by ``write_tfrecords`` (a ``dataset.json`` or ``-labels.txt``
    beside them): their labels are 0-based indices into their own class names."""
    from kerasnets.data.tfrecords import metadata_entry, read_labels, record_files

    files = record_files(str(pattern))
    if not files:
        return False
    return read_labels(files[0]) is not None or metadata_entry(files)[0] is not None


def _own_options(options: dict, source: object, role: str, recipe_name: str) -> dict:
    """``options`` without the source-specific options another kind of source takes (a folder knows
    its classes: ``label_offset`` / ``num_classes`` / ``class_names`` are TFRecords'), logged."""
    kind = source_kind(source)
    if kind not in _SOURCE_OPTIONS:
        return dict(options)
    dropped = sorted(k for k in options if k in _ANY_SOURCE_OPTION and k not in _SOURCE_OPTIONS[kind])
    if kind == "tfrecords" and _self_described(source):  # write_tfrecords' shards: 0-based labels, named classes
        described = sorted(k for k in ("label_offset", "num_classes") if k in options)
        if described:
            log.warning("recipe %r: %s %s was written by write_tfrecords (0-based labels, its own class names): "
                        "%s_options %s dropped", recipe_name, role, source, role.split()[0], ", ".join(described))
        options = {k: v for k, v in options.items() if k not in described}
    if dropped:
        log.warning("recipe %r: %s %s is %s, which takes none of %s_options %s: dropped", recipe_name, role,
                    source, _KIND_WORDS[kind], role.split()[0], ", ".join(dropped))
    return {k: v for k, v in options.items() if k not in dropped}


def train_overrides(args: argparse.Namespace, recipe: Recipe) -> Recipe:
    """The recipe that ``kerasnets train`` runs: ``recipe`` with ``--smoke`` and the command-line overrides.

    Beyond :func:`kerasnets.training.apply_overrides`:

    - ``--data`` without ``--eval-data`` on a recipe with its own ``eval_data``: when the recipe's
      data and eval data are TFRecord globs in one folder and ``--data`` is TFRecords, evaluation
      follows to the eval pattern's basename in ``--data``'s folder (``--data '/d/train-*'`` ->
      ``/d/validation-*-of-*``; ValueError when that matches no file); otherwise the held-out split
      of ``--data``. ``--eval-data`` always wins.
    - ``train_options`` / ``eval_options`` keep only the source-specific options their source takes:
      a folder, ``digits`` or ``tfds:`` source drops TFRecords' ``label_offset`` / ``num_classes`` /
      ``class_names`` (a folder knows its classes), TFRecords drop ``validation_split`` and so on,
      with a log line, when the source is not the recipe's own.
    - ``train_examples`` / ``eval_examples`` describe the recipe's own sources: they become None
      (the data's own count) when the train / eval source changes, unless ``--train-examples`` /
      ``--eval-examples`` (or the smoke overrides) state them.
    """
    import dataclasses

    from kerasnets.training import apply_overrides

    eval_data = args.eval_data
    if args.data is not None and eval_data is None and recipe.eval_data is not None:
        eval_data = _eval_data_for(args.data, recipe)
    resolved = apply_overrides(
        recipe, smoke=args.smoke, data=args.data, eval_data=eval_data, eval_split=args.eval_split,
        seed=args.seed, model=args.model, weights=args.weights, epochs=args.epochs, batch_size=args.batch_size,
        precision=args.precision, strategy=args.strategy, output=args.output, image_size=args.image_size,
        steps_per_epoch=args.steps_per_epoch, backup_every_steps=args.backup_every_steps,
        backup_every_epochs=args.backup_every_epochs, validation_freq=args.validation_freq,
        steps_per_execution=args.steps_per_execution,
        train_examples=args.train_examples, eval_examples=args.eval_examples,
        export=tuple(args.export) if args.export is not None else None,
    )
    changes: dict = {}
    if args.data is not None and args.eval_data is None and eval_data is None:
        changes["eval_data"] = None  # apply_overrides reads None as "not given"
    train_source = resolved.data
    eval_source = changes.get("eval_data", resolved.eval_data)
    eval_source = train_source if eval_source is None else eval_source
    own_eval = recipe.data if recipe.eval_data is None else recipe.eval_data
    stated = set(recipe.smoke) if args.smoke else set()
    for field, source, own, flag in (("train_examples", train_source, recipe.data, args.train_examples),
                                     ("eval_examples", eval_source, own_eval, args.eval_examples)):
        if source != own and flag is None and field not in stated and getattr(resolved, field) is not None:
            log.warning("recipe %r: %s=%s describes %s, not %s: dropped, the data's own count applies "
                        "(state it with --%s N)",
                        recipe.name, field, f"{getattr(resolved, field):,}", own, source, field.replace("_", "-"))
            changes[field] = None
    if train_source != recipe.data:
        changes["train_options"] = _own_options(resolved.train_options, train_source, "train data", recipe.name)
    if eval_source != own_eval:
        changes["eval_options"] = _own_options(resolved.eval_options, eval_source, "eval data", recipe.name)
    return dataclasses.replace(resolved, **changes) if changes else resolved


def _cmd_train(args: argparse.Namespace) -> int:
    from kerasnets.training import TrainingDiverged, load_recipe, train
    from kerasnets.training.timings import describe, process_start_time

    try:
        recipe = train_overrides(args, load_recipe(args.recipe))
        if args.deterministic:
            import tensorflow as tf

            tf.config.experimental.enable_op_determinism()  # the same seed gives the same weights, bit for bit
        from kerasnets.data.tfrecords import label_errors

        with label_errors():  # a TFRecord label out of range, met mid-training: one line, not a traceback
            result = train(recipe, resume=args.resume, run_name=args.name, started=process_start_time())
    except (ValueError, TypeError, FileNotFoundError, RuntimeError, TrainingDiverged) as error:
        return _fail(error)
    s = result.summary
    if not s:  # a multi-worker run's non-chief worker: the chief evaluates, summarises and exports
        print("kerasnets train: this worker finished; the chief wrote the summary and the exports")
        return 0
    print("\n== kerasnets train: summary ==")
    print(f"recipe        {s['recipe']} ({s['data']}, {s['epochs']} epochs, {s['steps']} steps, global batch {s['global_batch']})")
    for phase in s["phases"]:
        print(f"  phase       {phase['name']}: {phase['epochs']} epochs, {phase['steps']} steps, "
              f"{phase.get('trainable_params', '?'):,} trainable params, from {phase.get('trainable_from', '-')}"
              if "trainable_params" in phase else f"  phase       {phase['name']}: done before the resume")
    for stage in s.get("stages", []):
        print(f"  stage       {stage['name']}: {stage['epochs']} epochs at {stage['image_size']} px, RandAugment "
              f"{stage['randaugment']}, mixup {stage['mixup_alpha']:g}, cutmix {stage['cutmix_alpha']:g}, "
              f"dropout {stage['dropout_rate']}, stochastic depth {stage['drop_connect_rate']}"
              if "image_size" in stage else f"  stage       {stage['name']}: done before the resume")
    if s["weights"]:
        print(f"weights       {s['weights']}")
    if s["resumed_from_step"] or s["resumed_from_phase"]:
        print(f"resumed       phase {s['resumed_from_phase'] + 1}, step {s['resumed_from_step']}")
    if s.get("ema_decay"):
        print(f"weights EMA   decay {s['ema_decay']} (evaluated and exported)")
    expected = s.get("eval_expected_examples")
    of_expected = f" of the {expected}" if expected is not None and expected != s["eval_examples"] else ""
    print(f"test accuracy {s['test_accuracy']:.4f} on {s['eval_examples']}{of_expected} images of split "
          f"{s['eval_split']!r} of {s['eval_data']}")
    if s.get("batch_norm_warning"):  # beside the score it may explain
        print(f"warning       {s['batch_norm_warning']}")
    print(f"model         {s['params']:,} params, {s['flops'] / 1e6:.1f}M FLOPs at {s['input_size'][0]}x{s['input_size'][1]}")
    print(f"run           {s['strategy']}, {s['precision']}")
    print(f"time          {describe(s['timings'])}")
    for key, path in s["paths"].items():
        print(f"{key:<13} {path}")
    return 0


def _load_any_model(path: str):
    """A .keras file, a SavedModel folder or a .tflite file, as a callable on float images in 0..255,
    with its input shape (height, width, channels)."""
    import numpy as np

    if not os.path.exists(path):
        raise ValueError(f"no model at {path!r}: pass a model.keras file, a saved_model folder or a .tflite file")
    if path.endswith(".tflite"):
        from kerasnets.export import run_tflite

        from ai_edge_litert.interpreter import Interpreter

        shape = Interpreter(model_path=path).get_input_details()[0]["shape"]
        return (lambda images: run_tflite(path, np.asarray(images, np.float32))), _fixed_shape(path, shape[1:])
    if os.path.isdir(path):
        import tensorflow as tf

        loaded = tf.saved_model.load(path)
        signature = loaded.signatures["serving_default"]
        shape = signature.structured_input_signature[1]
        spec = next(iter(shape.values()))

        def call(images):
            return next(iter(signature(tf.constant(np.asarray(images, np.float32))).values())).numpy()

        return call, _fixed_shape(path, spec.shape[1:])
    import keras

    import kerasnets  # noqa: F401  (registers the custom layers)

    model = keras.saving.load_model(path)
    return (lambda images: np.asarray(model.predict(np.asarray(images, np.float32), verbose=0))), _fixed_shape(
        path, model.input_shape[1:])


def _fixed_shape(path: str, shape) -> tuple[int, int, int]:
    """``shape`` (height, width, channels) as ints; ValueError when the model takes any size (None or -1)."""
    dims = tuple(None if d is None or int(d) < 1 else int(d) for d in shape)
    if len(dims) != 3 or None in dims:
        raise ValueError(f"the model at {path!r} takes inputs of shape {tuple(shape)}, not one fixed (height, width, "
                         f"channels); predict and evaluate crop to the model's size: save it with a fixed input_shape, "
                         f"e.g. (224, 224, 3)")
    return dims


def _serving_settings(model_path: str, size: int, crop_padding: int | None,
                      resize: str | None) -> tuple[int, str, bool]:
    """The eval crop, resize method and crop order (``resize_first``, timm's) a model was trained with
    (its contract), flags first; models saved without a contract get the default eval (padding 32
    from 224 px up, bicubic, window first)."""
    from kerasnets.data import default_crop_padding
    from kerasnets.serving import read_contract

    contract = read_contract(model_path)
    if crop_padding is None:
        crop_padding = contract.crop_padding if contract else default_crop_padding(size)
    if resize is None:
        resize = contract.resize_method if contract else "bicubic"
    return crop_padding, resize, bool(contract and contract.resize_first)


def _evaluation_split(model_path: str, source: str, split: str | None) -> tuple[str, dict]:
    """The split ``kerasnets evaluate`` scores and the load options that draw it as the run did.

    The data a model was evaluated on when it was trained (its contract) is scored the same way:
    the same split and the same seeded carve, so a plain folder's held-out 20% is never swapped for
    training images; TFRecords' ``num_classes`` / ``label_offset`` come along when the contract
    records them. Other data: ``test``, else the held-out split; a plain folder of class
    subfolders that the model did not train on is scored whole, and so is a TFRecord glob.
    """
    from kerasnets import data
    from kerasnets.data.files import folder_layout

    split = _record_split(source, split)
    evaluation = _run_evaluation(model_path, source)
    options = {k: evaluation[k] for k in ("seed", "validation_split", "num_classes", "label_offset")
               if evaluation.get(k) is not None}
    if split:
        return split, options
    if evaluation:
        return evaluation["split"], options
    if os.path.isdir(source) and not folder_layout(source).split_dirs:
        return "all", options
    return data.held_out_split(source, "test"), options


def _record_split(source: str, split: str | None) -> str | None:
    """``split``, or "all" for a TFRecord glob, which has no splits (its files are the split); ValueError
    when a split is asked of one: it would be a label, not a choice of files."""
    if source_kind(source) != "tfrecords":
        return split
    if split is not None and split != "all":
        raise ValueError(f"{source!r} is a TFRecord glob, which has no splits: split {split!r} would choose no file; "
                         f"drop the split flag and pass the glob of the shards to use, e.g. '.../validation-*'")
    return "all"


def _run_evaluation(model_path: str, source: str) -> dict:
    """The contract's record of where the run measured its accuracy, when that was ``source``; else {}.

    An image folder at another path whose classes are the model's is taken for the run's folder
    moved or copied (the carve hashes each file's path inside its class folder, so it holds out
    the same files there), and said once. A contract without ``carve`` (a model trained before the
    per-file carve) whose held-out split is a carve of the folder is warned about once: its
    held-out files are re-carved by the per-file hash and may include images it trained on."""
    from kerasnets.data.files import folder_layout, folder_splits
    from kerasnets.serving import CARVE, read_contract

    contract = read_contract(model_path)
    evaluation = contract.evaluation if contract else {}
    if not evaluation:
        return {}
    recorded, folder = str(evaluation.get("data")), source_kind(source) == "folder"
    layout = folder_layout(source) if folder else None
    if recorded not in (source, os.path.abspath(source)):
        if not (folder and os.path.isabs(recorded) and set(layout.class_names) == set(contract.class_names)
                and evaluation.get("split") in folder_splits(layout, evaluation.get("validation_split"))):
            return {}
        _say_once(f"{source} is not the data the run evaluated on ({recorded}) but holds the same classes: scored as "
                  f"that folder moved or copied, on the run's split {evaluation['split']!r} (seed "
                  f"{evaluation.get('seed')}, validation_split {evaluation.get('validation_split')}: the same files); "
                  f"pass --split all to score every image")
    if evaluation.get("carve") != CARVE and folder and evaluation.get("split") == "validation" and (
            "validation" not in layout.split_dirs):
        _say_once(f"{model_path} was trained before kerasnets carved held-out images per file (its contract records "
                  f"no carve): its validation split of {source} is re-carved by the per-file hash (seed "
                  f"{evaluation.get('seed')}) and may include images it trained on, so its accuracy may be "
                  f"optimistic; retrain it, or score a folder it never saw (e.g. a test/ folder)")
    return evaluation


_SAID: set = set()


def _say_once(message: str) -> None:
    """Log ``message`` as a warning the first time it comes up in this process."""
    if message not in _SAID:
        _SAID.add(message)
        log.warning("%s", message)


def _load_options(source: str, options: dict, num_classes: int | None, label_offset: int | None) -> dict:
    """The ``kerasnets.data.load`` options of ``source``: those of ``options`` its kind takes, and
    ``--num-classes`` / ``--label-offset``; ValueError when those flags are given for a source that
    is not TFRecords, or when TFRecords name neither their classes nor a count."""
    from kerasnets.data.tfrecords import metadata_entry, read_labels, record_files

    kind = source_kind(source)
    given = {k: v for k, v in (("num_classes", num_classes), ("label_offset", label_offset)) if v is not None}
    if given and kind != "tfrecords":
        flags = " and ".join(f"--{k.replace('_', '-')}" for k in given)
        raise ValueError(f"{flags} apply to TFRecord sources only, and {source!r} is {_KIND_WORDS.get(kind, kind)} "
                         f"(which names its classes): drop {flags}")
    options = {k: v for k, v in {**options, **given}.items() if k == "seed" or k in _SOURCE_OPTIONS.get(kind, ())}
    files = record_files(source) if kind == "tfrecords" else []
    if files and "num_classes" not in options and not (
            read_labels(files[0]) is not None or metadata_entry(files)[0] is not None):
        raise ValueError(f"TFRecords {source!r} have no labels file or dataset.json: pass --num-classes N (the "
                         f"model's outputs), and --label-offset -1 if their labels start at 1 (ImageNet's do)")
    return options


def _label_map(model_names: Sequence[str] | None, outputs: int, info, by_index: bool = False) -> "np.ndarray":
    """The model output index of each class of the data (``info`` of :func:`kerasnets.data.load`).

    Classes are matched by name, so a folder holding a subset of the model's classes is scored
    correctly; ValueError, with both lists, when the data has a class the model does not know.
    ``by_index``: the data's labels are the model's output indices (TFRecords loaded with
    ``--num-classes``, whose classes have no names)."""
    import numpy as np

    data_names = tuple(info.class_names)
    if model_names is None or by_index:
        if len(data_names) != outputs:
            raise ValueError(f"{info.source!r} has {len(data_names)} classes but the model has {outputs} outputs "
                             f"(and no class names to match them by): pass data with the model's classes")
        if model_names is None:
            log.warning("the model has no class names (no contract, no labels.txt): assuming %s's classes %s are its "
                        "outputs in order", info.source, list(data_names)[:10])
        return np.arange(outputs)
    index = {name: i for i, name in enumerate(model_names)}
    unknown = [name for name in data_names if name not in index]
    if unknown:
        raise ValueError(f"{info.source!r} has classes the model does not know: {unknown[:20]}; the data's classes "
                         f"are {list(data_names)[:20]}, the model's {list(model_names)[:20]}: pass data whose "
                         f"class folders are among the model's")
    return np.array([index[name] for name in data_names], np.int64)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import numpy as np

    from kerasnets import data
    from kerasnets.serving import read_class_names

    try:
        predict, shape = _load_any_model(args.model)
        crop_padding, resize, resize_first = _serving_settings(args.model, min(shape[:2]), args.crop_padding,
                                                               args.resize)
        split, options = _evaluation_split(args.model, args.data, args.split)
        options = _load_options(args.data, options, args.num_classes, args.label_offset)
        dataset, info = data.load(args.data, split, image_size=shape[:2], batch_size=args.batch_size,
                                  training=False, resize_method=resize, crop_padding=crop_padding,
                                  resize_first=resize_first, **options)
        names = read_class_names(args.model)
        by_index = "num_classes" in options
        mapping = _label_map(names, len(names), info, by_index) if names else None
        correct = total = 0
        from kerasnets.data.tfrecords import label_errors

        with label_errors():  # a TFRecord label out of range past the first batch: one line, not a traceback
            for images, labels in dataset:
                scores = predict(images.numpy())
                if mapping is None:
                    mapping = _label_map(None, scores.shape[-1], info, by_index)
                correct += int(np.sum(scores.argmax(-1) == mapping[labels.numpy()]))
                total += len(labels)
    except (ValueError, TypeError, FileNotFoundError, OSError) as error:
        return _fail(error)
    if total == 0:
        return _fail(ValueError(f"no image of {args.data!r} split {split!r} could be read: nothing to evaluate "
                                "(check the folder or pass another --split)"))
    from kerasnets.data.pipeline import scored_count

    scored, problem = scored_count(total, info)  # the trainer's rule too: a decode shortfall is exit 2
    print(f"{args.model}: accuracy {correct / total:.4f} on {scored} (center crop padding {crop_padding}, {resize})")
    return _fail(ValueError(problem)) if problem else 0


#: images an export's accuracy report is measured on, drawn evenly over the whole held-out split
_REPORT_IMAGES = 512


def _draw(source: str, split: str, count: int, model_names: Sequence[str], outputs: int, options: dict,
          common: dict) -> tuple[tuple, dict]:
    """``count`` images of ``split`` drawn evenly over all of it, as numpy (uint8 images, labels of
    the model's outputs), and what they are: ``{"source", "split", "split_images"}``.

    Every ``k``-th example is read (``load(shard=(k, 0))``, before any file is read: class-sorted
    folders give every class its share; TFRecords every ``k``-th shard), ``k = split size // count``,
    and a seeded uniform sample of ``count`` of them is kept as it streams (:func:`_reservoir`), in
    uint8 (the eval crop rounded to whole pixel values): memory holds ``count`` uint8 images and a
    batch whatever the split's size (it held up to ``2 * count`` float32 images: 4.4 GB at 600 px)."""
    from kerasnets import data
    from kerasnets.data.tfrecords import record_files

    _, info = data.load(source, split, **common, **options)
    step = max(1, info.num_examples // count)
    if source_kind(source) == "tfrecords":
        step = min(step, len(record_files(source)))
    dataset, info = data.load(source, split, **common, **options, **({"shard": (step, 0)} if step > 1 else {}))
    mapping = _label_map(model_names, outputs, info, by_index="num_classes" in options)
    images, labels = _reservoir(((images.numpy(), mapping[labels.numpy()]) for images, labels in dataset), count)
    if not len(images):
        raise ValueError(f"no image of {source!r} split {split!r} could be decoded; replace the broken files")
    return (images, labels), {"source": source, "split": info.split, "split_images": info.num_examples}


def _reservoir(batches, count: int, seed: int = 0) -> tuple["np.ndarray", "np.ndarray"]:
    """A uniform sample of ``count`` (image, label) pairs of a stream of (images, labels) batches,
    in stream order, images as uint8 (rounded, clipped to 0..255): Algorithm R (Vitter's reservoir)
    with ``numpy.random.RandomState(seed)``: the first ``count`` fill the slots, then item ``i``
    (0-based) replaces slot ``randint(0, i + 1)`` when that is below ``count``. Holds ``count``
    images at most; every item is kept with probability ``count / n`` for a stream of ``n``."""
    import numpy as np

    rng = np.random.RandomState(seed)
    kept_images = kept_labels = None
    position = np.empty(count, np.int64)
    seen = 0
    for images, labels in batches:
        for image, label in zip(images, labels):
            slot = seen if seen < count else rng.randint(0, seen + 1)
            if slot < count:
                if kept_images is None:
                    kept_images, kept_labels = np.empty((count, *image.shape), np.uint8), np.empty(count, np.int64)
                kept_images[slot] = np.clip(np.rint(image), 0, 255)
                kept_labels[slot], position[slot] = label, seen
            seen += 1
    if kept_images is None:
        return np.empty((0,), np.uint8), np.empty((0,), np.int64)
    order = np.argsort(position[:min(seen, count)])
    return kept_images[order], kept_labels[order]


def _check_export_flags(args: argparse.Namespace) -> None:
    """ValueError for every ``kerasnets export`` flag that the chosen format and quantization would ignore."""
    int8 = args.format == "tflite" and args.quantize == "int8"
    given = {"--quantize": args.quantize != "none", "--io-dtype": args.io_dtype is not None,
             "--calibration": args.calibration is not None, "--calibration-split": args.calibration_split is not None,
             "--steps": args.steps is not None, "--eval-split": args.eval_split is not None,
             "--eval-data": args.eval_data is not None, "--num-classes": args.num_classes is not None,
             "--label-offset": args.label_offset is not None}
    if args.format == "saved_model":
        ignored = [flag for flag, on in given.items() if on]
        if ignored:
            raise ValueError(f"--format saved_model writes the float model and takes none of {', '.join(ignored)} "
                             f"(quantization and its calibration are TFLite's): use --format tflite, or drop them")
        return
    if not int8:
        ignored = [flag for flag in ("--calibration-split", "--steps") if given[flag]]
        if args.io_dtype not in (None, "float32"):
            ignored.append(f"--io-dtype {args.io_dtype}")
        if ignored:
            raise ValueError(f"{', '.join(ignored)} apply to --quantize int8 only, not --quantize {args.quantize}; "
                             f"drop them or pass --quantize int8")
        if (args.eval_split is not None or args.num_classes is not None or args.label_offset is not None) and not (
                args.calibration or args.eval_data):
            raise ValueError("--eval-split, --num-classes and --label-offset describe the report's data: pass "
                             "--eval-data SOURCE (or --calibration SOURCE)")
    elif not args.calibration:
        raise ValueError("--quantize int8 needs --calibration SOURCE (the training data, e.g. the folder or "
                         "TFRecords the model was trained on)")
    if args.steps is not None and args.steps < 1:
        raise ValueError(f"--steps must be a positive number of calibration images, got {args.steps}")


def _export_data(args: argparse.Namespace, model_names: Sequence[str], outputs: int, common: dict
                 ) -> tuple[tuple | None, tuple | None, dict]:
    """The calibration and report data of ``kerasnets export`` (numpy (images, labels) each, or
    None) and their description for the report. The report is measured on held-out images: the
    run's own held-out split (its contract: split, seed, carve) when the source is the data the
    model was evaluated on, else the source's held-out split; ValueError when calibration and report
    would share files (the same split, ``all``, or one TFRecord glob, which has no splits)."""
    from kerasnets import data
    from kerasnets.data.tfrecords import record_files

    int8 = args.quantize == "int8"
    calib_source, eval_source = args.calibration if int8 else None, args.eval_data or args.calibration
    calib_split = (_record_split(calib_source, args.calibration_split) if int8 else None) or "train"
    split, options = _evaluation_split(args.model, eval_source, args.eval_split)
    if (eval_source == args.calibration and not args.eval_split and source_kind(eval_source) != "tfrecords"
            and not _run_evaluation(args.model, eval_source)):
        split = data.held_out_split(eval_source, "test", **options)  # never a plain folder's "all"
    options = _load_options(eval_source, options, args.num_classes, args.label_offset)
    if int8 and source_kind(eval_source) == "tfrecords" and source_kind(calib_source) == "tfrecords":
        shared = set(record_files(calib_source)) & set(record_files(eval_source))
        if shared:
            raise ValueError(f"--calibration {calib_source!r} and the report's data {eval_source!r} share "
                             f"{len(shared)} TFRecord files (a glob has no splits: --calibration-split and --eval-split "
                             f"cannot separate them): pass --eval-data with the held-out shards, e.g. 'validation-*'")
    elif int8 and eval_source == calib_source and (split == calib_split or "all" in (split, calib_split)):
        raise ValueError(f"--eval-split {split!r} and --calibration-split {calib_split!r} of {eval_source!r} share "
                         f"images: the report must be measured on held-out data; pass another --eval-split "
                         f"(e.g. test or validation) or --eval-data SOURCE")
    evaluation, described = _draw(eval_source, split, _REPORT_IMAGES, model_names, outputs, options, common)
    sources = {"evaluation": described}
    calibration = None
    if int8:
        calib_options = _load_options(calib_source, _evaluation_split(args.model, calib_source, calib_split)[1],
                                      args.num_classes, args.label_offset)
        calibration, sources["calibration"] = _draw(calib_source, calib_split, args.steps or 500, model_names,
                                                    outputs, calib_options, common)
    print(f"calibrating on split {calib_split!r} of {calib_source}, " if int8 else "", end="", file=sys.stderr)
    print(f"reporting on split {split!r} of {eval_source}", file=sys.stderr)
    return calibration, evaluation, sources


def _cmd_export(args: argparse.Namespace) -> int:
    import json

    import keras

    import kerasnets  # noqa: F401
    from kerasnets import export
    from kerasnets.serving import read_class_names, read_contract

    try:
        _check_export_flags(args)
        if not os.path.isfile(args.model):
            raise ValueError(f"no .keras file at {args.model!r} (export takes the model.keras of a training run)")
        model = keras.saving.load_model(args.model)
        contract = read_contract(args.model)
        names = contract.class_names if contract else read_class_names(args.model)
        size = tuple(model.input_shape[1:3])  # (height, width): the eval crop takes a window of its aspect
        crop_padding, resize, resize_first = _serving_settings(args.model, min(size), None, args.resize)
        if args.format == "saved_model":
            report = export.saved_model(model, args.output, names, contract=contract, resize_method=resize,
                                        overwrite=args.overwrite)
        else:
            calibration = evaluation = sources = None
            if args.calibration or args.eval_data:
                common = dict(image_size=size, batch_size=32, training=False, resize_method=resize,
                              crop_padding=crop_padding, resize_first=resize_first)
                calibration, evaluation, sources = _export_data(args, names, int(model.output_shape[-1]), common)
            report = export.tflite(model, args.output, args.quantize, representative=calibration,
                                   eval_data=evaluation, calibration_steps=args.steps or 500,
                                   eval_examples=_REPORT_IMAGES, io_dtype=args.io_dtype or "float32",
                                   class_names=names, contract=contract, resize_method=resize, sources=sources,
                                   overwrite=args.overwrite)
    except (ValueError, TypeError, FileExistsError, FileNotFoundError, OSError, export.ExportError) as error:
        return _fail(error)
    print(json.dumps(report, indent=2))
    return 0


def _shown(path: str) -> str:
    """``path`` printable on any terminal: bytes that are not UTF-8 (a latin-1 file name) as ``\\xe9`` escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _cmd_predict(args: argparse.Namespace) -> int:
    """Top-k classes of each image file; an unreadable or over-budget file is one ``error:`` line (exit 2),
    the others are still predicted."""
    import numpy as np
    import tensorflow as tf

    from kerasnets.data.transforms import DEFAULT_MAX_PIXELS, center_crop, check_encoded
    from kerasnets.serving import read_class_names

    max_pixels = DEFAULT_MAX_PIXELS if args.max_pixels is None else args.max_pixels
    try:
        predict, shape = _load_any_model(args.model)
        crop_padding, resize, resize_first = _serving_settings(args.model, min(shape[:2]), args.crop_padding,
                                                               args.resize)
        check_encoded(tf.constant(b""), max_pixels)  # validates --max-pixels before any file is read
    except (ValueError, OSError) as error:
        return _fail(error)
    names = read_class_names(args.model)
    status = 0
    for path in args.images:
        try:
            with open(path, "rb") as handle:  # bytes in Python: any file name the OS has, latin-1 included
                encoded = tf.constant(handle.read())
            reason = check_encoded(encoded, max_pixels).numpy().decode()  # refused before decoding
            if reason:
                raise ValueError(reason)
            image = center_crop(encoded, shape[:2], crop_padding=crop_padding, method=resize,
                                max_pixels=max_pixels, checked=True, resize_first=resize_first).numpy()
        except (tf.errors.OpError, ValueError, OSError) as error:
            why = error.strerror if isinstance(error, OSError) and error.strerror else str(error).splitlines()[0]
            why = re.sub(r"\s*\[Op:.*$", "", re.sub(r"^\{\{[^}]*\}\}\s*", "", why))  # TF's op name wrappers
            print(f"{_shown(path)}: error: cannot read image ({why})", file=sys.stderr)
            status = 2
            continue
        if shape[-1] == 1:
            image = np.asarray(tf.image.rgb_to_grayscale(image))
        scores = predict(image[None])[0]
        top = np.argsort(scores)[::-1][: args.top_k]
        ranked = ", ".join(f"{names[i] if names else i} {scores[i]:.3f}" for i in top)
        print(f"{_shown(path)}: {ranked}")
    return status


def _cmd_search(args: argparse.Namespace) -> int:
    from kerasnets.training.recipe import apply_overrides, load_recipe
    from kerasnets.tuning import run_search

    try:
        recipe = apply_overrides(load_recipe(args.recipe), smoke=args.smoke)
        best = run_search(recipe, output=args.output, oracle=args.oracle, max_trials=args.max_trials, seed=args.seed,
                          verbose=1 if args.verbose else 0)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not best:
        print("worker finished: the chief writes the results")
        return 0
    from kerasnets import storage

    run_dir = os.path.join(args.output, recipe.name)
    print(storage.read_text(os.path.join(run_dir, "trials.md")))
    print(f"best: alpha {best['alpha']:g}, beta {best['beta']:g}, gamma {best['effective_gamma']:.4g} as trained "
          f"({best['resolution']:.0f} px; grid gamma {best['gamma']:g}) (val_accuracy {best['val_accuracy']:.4f}, "
          f"FLOPs x{best['flops_ratio']:.2f} of phi=0)")
    print(f"results: {run_dir}/best.json, trials.csv, trials.md, search.png")
    return 0


def _record_flags(parser: argparse.ArgumentParser) -> None:
    """``--num-classes`` and ``--label-offset``: what TFRecords without a labels file need."""
    parser.add_argument("--num-classes", type=int, help="TFRecords without a labels file: the number of classes "
                                                        "(the model's outputs, e.g. 1000)")
    parser.add_argument("--label-offset", type=int, help="TFRecords: added to each label (-1 for ImageNet's "
                                                         "1-based labels)")


def _cmd_data_service(args: argparse.Namespace) -> int:
    """``kerasnets data-service dispatcher|worker``: start the server, print one ``ready`` line, serve
    until the process is stopped."""
    from kerasnets.data import service

    try:
        if args.role == "dispatcher":
            server = service.start_dispatcher(args.port, args.work_dir)
            print(f"ready: tf.data service dispatcher at {server.target}", flush=True)
        else:
            server = service.start_worker(args.dispatcher, args.port, args.worker_address)
            print(f"ready: tf.data service worker registered with {args.dispatcher}", flush=True)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    server.join()
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
    train.add_argument("--eval-data", help="evaluation source (default: the recipe's eval pattern next to --data "
                                           "for TFRecord recipes, else --data's held-out split)")
    train.add_argument("--eval-split", help="evaluation split (default: the recipe's, else the source's held-out split)")
    train.add_argument("--seed", type=int, help="seeds weights, data order and augmentation")
    train.add_argument("--model", help="a preset of `kerasnets info` (e.g. efficientnetb0, efficientnet-lite0, resnet50) "
                                       "instead of the recipe's model")
    train.add_argument("--weights", help="imagenet, a .weights.h5 / .keras file of an earlier run, or "
                                         "timm:<hub name or folder> (a timm checkpoint), copied into the model before "
                                         "training (the classifier is new when the classes differ)")
    train.add_argument("--epochs", type=int)
    train.add_argument("--batch-size", type=int, help="per-replica batch size")
    train.add_argument("--image-size", type=int)
    train.add_argument("--steps-per-epoch", type=int)
    train.add_argument("--train-examples", type=int, help="size of the training data, when known (skips counting "
                                                          "TFRecords; e.g. 1281167 for ImageNet)")
    train.add_argument("--eval-examples", type=int, help="size of the evaluation data, when known (e.g. 50000)")
    train.add_argument("--precision", choices=PRECISIONS)
    train.add_argument("--strategy", choices=STRATEGIES)
    train.add_argument("--output", help="output root (default saved_models)")
    train.add_argument("--name", help="run name (default: the recipe's name)")
    train.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                       help="resume an unfinished run from its last backup (default); a finished run's folder is "
                            "refused: --no-resume replaces it, or pick another --name/--output")
    train.add_argument("--backup-every-steps", type=int,
                       help="also back up every this many steps within epochs (0 = at epoch ends only)")
    train.add_argument("--backup-every-epochs", type=int, help="back up at every N-th epoch end (and each phase's last)")
    train.add_argument("--steps-per-execution", metavar="{auto,N}",  # the recipe checks the value
                       type=lambda v: int(v) if v.lstrip("-").isdigit() else v,
                       help="training steps per compiled call (default auto: recipe.AUTO_STEPS_PER_EXECUTION; calls are cut at backups and epoch ends); "
                            "the weights do not depend on it")
    train.add_argument("--validation-freq", type=int, help="validate every N epochs (and after each phase's last)")
    train.add_argument("--deterministic", action="store_true",
                       help="deterministic ops (slower): the same seed gives the same weights, resumed or not")
    train.add_argument("--smoke", action="store_true", help="a couple of steps with the recipe's smoke overrides")
    train.add_argument("--export", nargs="*", choices=("keras", "saved_model", "tflite"),
                       help="formats to write after training (default: the recipe's)")
    train.set_defaults(func=_cmd_train)

    evaluate = sub.add_parser("evaluate", help="accuracy of a .keras, SavedModel or .tflite model on a dataset")
    evaluate.add_argument("model")
    evaluate.add_argument("--data", required=True)
    evaluate.add_argument("--split", help="default: test, else the source's held-out split")
    evaluate.add_argument("--batch-size", type=int, default=64)
    evaluate.add_argument("--resize", choices=("bilinear", "bicubic"), help="default: the model's own (its contract)")
    evaluate.add_argument("--crop-padding", type=int, help="default: the model's own (its contract)")
    _record_flags(evaluate)
    evaluate.set_defaults(func=_cmd_evaluate)

    exporter = sub.add_parser("export", help="export a .keras model to a SavedModel or TFLite file")
    exporter.add_argument("model")
    exporter.add_argument("--format", required=True, choices=("saved_model", "tflite"))
    exporter.add_argument("--output", required=True)
    exporter.add_argument("--quantize", default="none", choices=("none", "float16", "dynamic", "int8"))
    exporter.add_argument("--io-dtype", choices=("float32", "int8", "uint8"),
                          help="int8 only: the file's input and output type (default float32)")
    exporter.add_argument("--calibration", help="data source for int8 calibration and the accuracy report")
    exporter.add_argument("--calibration-split", help="int8 only: split calibrated on (default train)")
    exporter.add_argument("--eval-data", help="data source of the accuracy report when it is not --calibration's "
                                              "(TFRecord globs: the held-out shards)")
    exporter.add_argument("--eval-split", help="held-out split the report is measured on (default: the run's own "
                                               "held-out split, else test, else the source's held-out split)")
    exporter.add_argument("--steps", type=int,
                          help="int8 only: calibration images, drawn over the whole split (default 500; the last "
                               "fifth choose between min/max and percentile ranges)")
    _record_flags(exporter)
    exporter.add_argument("--resize", choices=("bilinear", "bicubic"), help="default: the model's own (its contract)")
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

    service = sub.add_parser("data-service", help="start a tf.data service dispatcher or worker (TensorFlow's own)")
    roles = service.add_subparsers(dest="role", required=True)
    dispatcher = roles.add_parser("dispatcher", help="the dispatcher: hands out the pipelines' source elements")
    dispatcher.add_argument("--port", type=int, required=True)
    dispatcher.add_argument("--work-dir", help="journal folder (any filesystem, gs:// too): fault-tolerant, a "
                                               "restart on the same port and folder resumes the jobs")
    dispatcher.set_defaults(func=_cmd_data_service)
    worker = roles.add_parser("worker", help="a worker: reads, decodes and transforms examples for the trainers")
    worker.add_argument("--dispatcher", required=True, help="HOST:PORT of the dispatcher")
    worker.add_argument("--port", type=int, default=0, help="port to serve on (default: any free one)")
    worker.add_argument("--worker-address", default="localhost",
                        help="the host name the dispatcher and trainers reach this worker at (default localhost)")
    worker.set_defaults(func=_cmd_data_service)

    predictor = sub.add_parser("predict", help="top-k classes of image files with a .keras, SavedModel or .tflite model")
    predictor.add_argument("model")
    predictor.add_argument("images", nargs="+")
    predictor.add_argument("--top-k", type=int, default=5)
    predictor.add_argument("--crop-padding", type=int, help="default: the model's own eval crop (its contract)")
    predictor.add_argument("--resize", choices=("bilinear", "bicubic"), help="default: the model's own (its contract)")
    predictor.add_argument("--max-pixels", type=int,
                           help="pixel budget per image, checked on its header before decoding (default 89478485, "
                                "PIL's limit; baseline JPEGs count at 1/8 scale)")
    predictor.set_defaults(func=_cmd_predict)
    return parser


def recipe_main(recipe: Recipe, argv: Sequence[str] | None = None) -> int:
    """``python recipes/x.py [options]``: ``kerasnets train recipes/x.py [options]``."""
    return main(["train", recipe.source_file or sys.argv[0], *(sys.argv[1:] if argv is None else argv)])


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kerasnets`` console script."""
    _quiet_tensorflow()
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
