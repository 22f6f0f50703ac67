"""The training engine behind every recipe: strategy, precision, data, ``model.fit``, resume,
evaluation, export and the run summary."""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import os
import time
import warnings
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from kerasnets import data as kdata
from kerasnets.models.freeze import check_trainable_from, freeze
from kerasnets.models.pretrained import load_pretrained
from kerasnets.profile import profile
from kerasnets.serving import PreprocessingContract, write_keras_contract
from kerasnets.training.callbacks import NaNGuard, StepBackup, TrainingDiverged, atomic_write_text
from kerasnets.training.finetune import build_preset
from kerasnets.training.distribute import check_divisible, global_batch_size, is_chief, resolve_strategy
from kerasnets.training.precision import precision_scope, resolve_precision
from kerasnets.training.recipe import TRAIN_ALL, Phase, Recipe, TrainContext

__all__ = ["train", "RunResult", "accelerator_present", "STANDIN_TFRECORDS"]

log = logging.getLogger("kerasnets.training")
#: ``Recipe.data`` value (used by --smoke) that writes digits as ImageNet-layout TFRecords first.
STANDIN_TFRECORDS = "standin:tfrecords"


@dataclasses.dataclass
class RunResult:
    """What a finished run reports (also written as ``summary.json``)."""

    summary: dict[str, Any]
    model: keras.Model
    history: dict[str, list]


def accelerator_present() -> bool:
    """True when a GPU or TPU is visible (XLA is then worth it; on CPU it slows EfficientNet 6-10x)."""
    return bool(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))


def _standin_tfrecords(run_dir: str) -> str:
    """Digits written as JPEG files, then as TFRecord shards: exercises the ImageNet input path offline."""
    import numpy as np
    from PIL import Image

    root = os.path.join(run_dir, "standin")
    pattern = os.path.join(root, "records", "train-*-of-*")
    if tf.io.gfile.glob(pattern):
        return pattern
    images, labels = kdata.digits_arrays("train")
    for index, (image, label) in enumerate(zip(images[:256], labels[:256])):
        folder = os.path.join(root, "images", f"class_{label}")
        os.makedirs(folder, exist_ok=True)
        big = np.kron(image[..., 0], np.ones((8, 8), np.uint8))
        Image.fromarray(np.stack([big] * 3, -1)).save(os.path.join(folder, f"{index:04d}.jpg"), quality=95)
    kdata.write_tfrecords(os.path.join(root, "images"), os.path.join(root, "records", "train"), shards=4, progress=False)
    return pattern


def _source(data: Any, run_dir: str) -> Any:
    return _standin_tfrecords(run_dir) if data == STANDIN_TFRECORDS else data


def _plain_folder(source: Any) -> bool:
    """True for a folder of class subfolders (no train/ val/ test/ split folders)."""
    from kerasnets.data.files import folder_layout

    return isinstance(source, (str, os.PathLike)) and os.path.isdir(source) and not folder_layout(source).split_dirs


def _eval_split(recipe: Recipe, eval_source: Any, eval_options: dict) -> str:
    """The split to evaluate on: the recipe's, else the source's held-out split (printed)."""
    options = {k: v for k, v in eval_options.items() if k == "validation_split"}
    if isinstance(eval_source, (tuple, list)) or eval_source == STANDIN_TFRECORDS:
        return recipe.eval_split
    separate = recipe.eval_data is not None
    splits = kdata.available_splits(eval_source, **options)
    if splits is None or recipe.eval_split in splits:
        return recipe.eval_split
    if separate and _plain_folder(eval_source):
        chosen = "all"  # a separate folder of class subfolders: all of it is held out
    else:
        chosen = kdata.held_out_split(eval_source, recipe.eval_split, **options)
    if chosen != recipe.eval_split:
        log.warning("evaluating on split %r of %s: it has no %r split (it has %s)", chosen, eval_source,
                    recipe.eval_split, ", ".join(splits))
    return chosen


def _datasets(recipe: Recipe, global_batch: int, drop_remainder: bool, run_dir: str):
    if recipe.data is None:
        raise ValueError(f"recipe {recipe.name!r} has no data source: pass --data DIR (a folder of class subfolders, "
                         "or of train/ val/ test/ folders with class subfolders)")
    common = dict(image_size=recipe.image_size, batch_size=global_batch, seed=recipe.seed, one_hot=True)
    train_options, eval_options = dict(recipe.train_options), dict(recipe.eval_options)
    if recipe.eval_data is None:  # one source: train and its held-out split must be carved alike
        carve = {train_options.get("validation_split"), eval_options.get("validation_split")} - {None}
        if len(carve) > 1:
            raise ValueError(f"recipe {recipe.name!r} carves validation_split {sorted(carve)} differently for training "
                             "and evaluation: set one value (in train_options and eval_options alike)")
        if carve:
            train_options["validation_split"] = eval_options["validation_split"] = carve.pop()
    train_source = _source(recipe.data, run_dir)
    train_ds, info = kdata.load(train_source, recipe.train_split, training=True, repeat=True,
                                drop_remainder=drop_remainder, **common, **train_options)
    eval_source = _source(recipe.eval_data if recipe.eval_data is not None else recipe.data, run_dir)
    eval_split = _eval_split(recipe, eval_source, eval_options)
    eval_ds, eval_info = kdata.load(eval_source, eval_split, training=False, drop_remainder=drop_remainder,
                                    **common, **eval_options)
    numbered = tuple(str(i) for i in range(info.num_classes))  # sources without names (TFRecords without labels)
    if eval_info.num_classes != info.num_classes or numbered not in (info.class_names, eval_info.class_names) and \
            eval_info.class_names != info.class_names:
        raise ValueError(f"training data has classes {list(info.class_names)[:10]} but evaluation data "
                         f"{list(eval_info.class_names)[:10]}: pass --eval-data with the same classes")
    kdata.check_not_empty(train_ds, info)
    kdata.check_not_empty(eval_ds, eval_info)
    return train_ds, eval_ds, info, eval_info, eval_options.get("validation_split")


def _build_model(recipe: Recipe, context: TrainContext) -> tuple[keras.Model, Any]:
    """The recipe's model (or ``--model``'s preset) with ``--weights`` copied in; and the copy report."""
    if recipe.model:
        model = build_preset(recipe.model, recipe.image_size, context.num_classes, context.synchronized_bn,
                             **recipe.model_options)
    else:
        model = recipe.build_model(recipe, context)
    if int(model.output_shape[-1]) != context.num_classes:
        raise ValueError(f"the recipe's model has {model.output_shape[-1]} outputs but the data has "
                         f"{context.num_classes} classes: build it with classes=context.num_classes")
    report = load_pretrained(model, recipe.weights, class_names=context.class_names) if recipe.weights else None
    if report is not None:
        log.warning("weights: %s", report)
    return model, report


def _evaluate_locally(model, loss, dataset, steps: int | None) -> dict[str, float]:
    """Loss and accuracy of ``model`` over ``dataset`` on this worker, without the strategy."""
    total_loss = correct = count = 0.0
    for index, (images, labels) in enumerate(dataset):
        if steps is not None and index >= steps:
            break
        predictions = model(images, training=False)
        n = float(images.shape[0])
        total_loss += float(loss(labels, predictions)) * n
        correct += float(tf.reduce_sum(tf.cast(tf.argmax(predictions, -1) == tf.argmax(labels, -1), tf.float32)))
        count += n
    return {"loss": total_loss / max(count, 1.0), "accuracy": correct / max(count, 1.0)}


def _history_from_csv(path: str) -> dict[str, list]:
    if not os.path.exists(path):
        return {}
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    history: dict[str, list] = {}
    for row in rows:
        for key, value in row.items():
            history.setdefault(key, []).append(float(value))
    return history


def _plot_curves(history: dict[str, list], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [int(e) + 1 for e in history.get("epoch", [])]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, metric in zip(axes, ("loss", "accuracy")):
        for prefix, style in (("", "-"), ("val_", "--")):
            if prefix + metric in history:
                axis.plot(epochs, history[prefix + metric], style, marker="o", label=prefix + metric)
        axis.set_xlabel("epoch")
        axis.set_title(metric)
        axis.grid(alpha=0.3)
        axis.legend()
    fig.tight_layout()
    tmp = f"{path}.tmp-{os.getpid()}.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


def _save_keras_atomically(model: keras.Model, path: str, contract: PreprocessingContract) -> None:
    """``model.keras`` with its preprocessing contract inside, renamed into place when complete."""
    tmp = os.path.join(os.path.dirname(path), f"tmp-{os.getpid()}.keras")
    try:
        model.save(tmp)
        write_keras_contract(tmp, contract)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _fit(model, train_ds, eval_ds, recipe, steps_per_epoch, first_epoch, epochs, start_step, callbacks, verbose):
    """``model.fit`` over a phase's remaining steps (epochs ``first_epoch`` .. ``first_epoch + epochs``
    of the whole run): a partial first epoch when resuming mid-epoch."""
    done, offset = divmod(start_step, steps_per_epoch)
    epoch, last = first_epoch + done, first_epoch + epochs
    if offset:
        log.warning("resuming mid-epoch: %d of %d steps of epoch %d remain", steps_per_epoch - offset,
                    steps_per_epoch, epoch + 1)
        model.fit(train_ds, initial_epoch=epoch, epochs=epoch + 1, steps_per_epoch=steps_per_epoch - offset,
                  validation_data=eval_ds, validation_steps=recipe.eval_steps, callbacks=callbacks, verbose=verbose)
        epoch += 1
        if model.stop_training:
            return
    if epoch < last:
        model.fit(train_ds, initial_epoch=epoch, epochs=last, steps_per_epoch=steps_per_epoch,
                  validation_data=eval_ds, validation_steps=recipe.eval_steps, callbacks=callbacks, verbose=verbose)


def _set_trainable(model: keras.Model, phase: Phase, phased: bool) -> dict[str, Any]:
    """Freeze what ``phase`` keeps fixed (kerasnets.freeze: whole blocks, BN in inference mode)."""
    if phase.trainable_from == TRAIN_ALL:
        if phased:  # an earlier phase may have frozen layers
            freeze(model, TRAIN_ALL)
        return {"trainable_from": TRAIN_ALL, "frozen_blocks": []}
    frozen = freeze(model, phase.trainable_from)
    return {"trainable_from": phase.trainable_from, "frozen_blocks": list(frozen.frozen_blocks),
            "trainable_blocks": list(frozen.trainable_blocks)}


def _compile(model, recipe: Recipe, context: TrainContext, strategy, policy: str, loss) -> keras.optimizers.Optimizer:
    with strategy.scope(), precision_scope(policy):
        optimizer = recipe.build_optimizer(recipe, context)
        # compiled under every strategy (the optimizer belongs to the model, for backups); under
        # MultiWorkerMirroredStrategy the custom loop trains it instead of fit
        model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"], run_eagerly=recipe.run_eagerly,
                      jit_compile=accelerator_present() and not recipe.run_eagerly)
    return optimizer


def _announce(strategy, multiworker: bool, recipe: Recipe, context: TrainContext, policy: str) -> str:
    name = "MultiWorkerMirroredStrategy" if multiworker else type(strategy).__name__
    log.warning("strategy %s with %d replica(s); per-replica batch %d -> global batch %d; learning rate %.5g "
                "(%.5g per %d images, scaled linearly); precision %s", name, context.num_replicas,
                recipe.batch_size, context.global_batch, context.learning_rate, recipe.base_learning_rate,
                recipe.reference_batch, policy)
    return name


def train(recipe: Recipe, resume: bool = True, verbose: int | str = "auto", run_name: str | None = None) -> RunResult:
    """Train ``recipe`` with ``model.fit`` (a ``strategy.run`` loop under MultiWorkerMirroredStrategy),
    phase by phase (fine-tuning recipes freeze and unfreeze blocks between phases), evaluate, save
    ``model.keras`` with its preprocessing contract, export, and write ``summary.json`` /
    ``curves.png`` / TensorBoard logs into ``recipe.output/run_name``. Resumes from the run's last
    backup unless ``resume=False``, across phase boundaries too.

    Data, model and weights are checked before anything is written: a bad source, an empty
    dataset or weights of another architecture raise ValueError and leave no run folder behind.
    """
    started = time.time()
    warnings.filterwarnings("ignore", message=".*shuffle=True.*was passed")  # datasets come shuffled
    # evaluation sets of unknown length (folders, TFRecords: ignore_errors) end by running out;
    # training sets repeat and are checked non-empty, so this warning says nothing about them
    warnings.filterwarnings("ignore", message="Your input ran out of data")
    keras.utils.set_random_seed(recipe.seed)
    strategy = resolve_strategy(recipe.strategy)
    policy = resolve_precision(recipe.precision, strategy)
    replicas = strategy.num_replicas_in_sync
    global_batch = global_batch_size(recipe.batch_size, strategy)
    check_divisible(global_batch, strategy)
    tpu = isinstance(strategy, tf.distribute.TPUStrategy)
    multiworker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    phases = recipe.schedule()
    if multiworker and len(phases) > 1:
        raise ValueError("multi-phase recipes (fine-tuning) do not run under MultiWorkerMirroredStrategy yet; "
                         "use --strategy default or mirrored")
    chief = is_chief()
    run_dir = os.path.join(recipe.output, run_name or recipe.name)

    train_ds, eval_ds, info, eval_info, carve = _datasets(recipe, global_batch, tpu or multiworker, run_dir)
    steps_per_epoch = recipe.steps_per_epoch or math.ceil(info.num_examples / global_batch)
    learning_rate = recipe.base_learning_rate * global_batch / recipe.reference_batch
    context = TrainContext(info.num_classes, steps_per_epoch, global_batch, replicas, learning_rate,
                           synchronized_bn=replicas > 1, class_names=info.class_names, epochs=recipe.epochs)
    strategy_name = _announce(strategy, multiworker, recipe, context, policy)
    with strategy.scope(), precision_scope(policy):
        model, weights_report = _build_model(recipe, context)
    for phase in phases:  # a bad phase fails now, not after the phases before it have trained
        if phase.trainable_from != TRAIN_ALL:
            check_trainable_from(model, phase.trainable_from)
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=recipe.label_smoothing)

    os.makedirs(run_dir, exist_ok=True)  # everything above can fail on bad input without writing
    backup = StepBackup(os.path.join(run_dir, "backup") if chief else os.path.join(run_dir, f"backup-worker-{os.getpid()}"),
                        recipe.backup_every_steps)
    if not resume:
        backup.clear()
    guard = NaNGuard()
    start_phase = backup.latest_phase() if resume and not multiworker else 0
    resumed_from: dict[str, int] = {"phase": 0, "step": 0}
    phase_reports, first_epoch, steps_done = [], 0, 0
    for index, phase in enumerate(phases):
        phase_context = dataclasses.replace(context, learning_rate=learning_rate * phase.learning_rate_scale,
                                            epochs=phase.epochs, phase=phase if recipe.phases else None)
        phase_steps = steps_per_epoch * phase.epochs
        if index < start_phase:  # finished before the interruption: its weights are in the later backup
            phase_reports.append({"name": phase.name, "epochs": phase.epochs, "steps": phase_steps, "resumed": "done"})
            first_epoch += phase.epochs
            steps_done += phase_steps
            continue
        frozen = _set_trainable(model, phase, bool(recipe.phases))
        optimizer = _compile(model, recipe, phase_context, strategy, policy, loss)
        backup.phase = index
        if recipe.phases:
            log.warning("phase %d/%d %r: %d epochs, learning rate %.3g, trainable from %s", index + 1, len(phases),
                        phase.name, phase.epochs, phase_context.learning_rate, phase.trainable_from)
        if multiworker:
            from kerasnets.training.custom_loop import fit_multiworker

            fit_multiworker(model, optimizer, loss, strategy, train_ds, phase.epochs, steps_per_epoch, backup, guard,
                            verbose=verbose)
            start_step = 0
        else:
            start_step = backup.restore(model) if resume and index == start_phase else 0
            if start_step or (resume and index == start_phase and index > 0):
                resumed_from = {"phase": index, "step": start_step}
                log.warning("resumed from %s at step %d of %d (phase %d)", backup.path, start_step, phase_steps,
                            index + 1)
            callbacks = [guard, backup, keras.callbacks.CSVLogger(os.path.join(run_dir, "history.csv"),
                                                                  append=first_epoch > 0 or start_step > 0)]
            if chief:
                callbacks.append(keras.callbacks.TensorBoard(os.path.join(run_dir, "logs"), update_freq="epoch"))
            if getattr(optimizer, "use_ema", False):
                callbacks.append(keras.callbacks.SwapEMAWeights(swap_on_epoch=True))
            if start_step < phase_steps:
                _fit(model, train_ds, eval_ds, recipe, steps_per_epoch, first_epoch, phase.epochs, start_step,
                     callbacks, verbose)
        if guard.bad_step is not None:
            raise TrainingDiverged(
                f"loss became {guard.bad_value} at step {guard.bad_step} of phase {phase.name!r} "
                f"(epoch {first_epoch + guard.bad_step // steps_per_epoch + 1}); training stopped. The last good "
                f"backup is {backup.path}. Lower the learning rate (now {phase_context.learning_rate:.4g}), check the "
                "data (images must be 0..255), or use precision='float32'"
            )
        phase_done = int(model.optimizer.iterations.numpy())
        phase_reports.append({"name": phase.name, "epochs": phase.epochs, "steps": phase_done,
                              "learning_rate": phase_context.learning_rate,
                              "trainable_params": int(sum(int(np.prod(w.shape)) for w in model.trainable_weights)),
                              **frozen})
        first_epoch += phase.epochs
        steps_done += phase_done
    if multiworker:  # Keras' evaluate shares fit's MultiWorkerMirroredStrategy problem: evaluate locally
        results = _evaluate_locally(model, loss, eval_ds, recipe.eval_steps)
    else:
        results = model.evaluate(eval_ds, steps=recipe.eval_steps, verbose=0, return_dict=True)
    stats = profile(model)
    contract = PreprocessingContract.for_model(model, eval_info.preprocessing, info.class_names, evaluation={
        "data": os.path.abspath(str(eval_info.source)) if os.path.exists(str(eval_info.source)) else eval_info.source,
        "split": eval_info.split, "seed": recipe.seed,
        "validation_split": carve})
    summary: dict[str, Any] = {
        "recipe": recipe.name,
        "recipe_file": recipe.source_file,
        "data": str(recipe.data),
        "eval_data": str(recipe.eval_data if recipe.eval_data is not None else recipe.data),
        "eval_split": eval_info.split,
        "eval_examples": eval_info.num_examples,
        "test_accuracy": float(results["accuracy"]),
        "test_loss": float(results["loss"]),
        "model": model.name,
        "weights": recipe.weights,
        "weights_report": _jsonable(weights_report),
        "params": stats["params"],
        "flops": stats["flops"],
        "input_size": stats["input_size"],
        "class_names": list(info.class_names),
        "preprocessing": contract.to_dict(),
        "epochs": recipe.epochs,
        "phases": phase_reports if recipe.phases else [],
        "steps": steps_done,
        "steps_per_epoch": steps_per_epoch,
        "global_batch": global_batch,
        "learning_rate": learning_rate,
        "replicas": replicas,
        "strategy": strategy_name,
        "precision": policy,
        "seed": recipe.seed,
        "resumed_from_step": resumed_from["step"],
        "resumed_from_phase": resumed_from["phase"],
        "train_seconds": round(time.time() - started, 1),
        "paths": {},
    }
    history = _history_from_csv(os.path.join(run_dir, "history.csv"))
    if chief:
        summary["paths"] = _write_outputs(model, recipe, run_dir, history, summary, eval_ds, contract)
        backup.clear()
    summary["total_seconds"] = round(time.time() - started, 1)
    if chief:
        atomic_write_text(os.path.join(run_dir, "summary.json"), json.dumps(summary, indent=2))
    else:
        backup.clear()
    if multiworker:  # every worker leaves its final weights, so that their equality can be checked
        task = json.loads(os.environ["TF_CONFIG"]).get("task", {})
        model.save_weights(os.path.join(run_dir, f"final-{task.get('type', 'worker')}-{task.get('index', 0)}.weights.h5"))
    return RunResult(summary, model, history)


def _jsonable(report: Any) -> Any:
    if report is None or isinstance(report, (dict, list, str, int, float, bool)):
        return report
    if dataclasses.is_dataclass(report):
        return dataclasses.asdict(report)
    return str(report)


def _write_outputs(model, recipe: Recipe, run_dir: str, history, summary, eval_ds, contract) -> dict[str, str]:
    paths = {"run_dir": run_dir, "summary": os.path.join(run_dir, "summary.json"),
             "tensorboard": os.path.join(run_dir, "logs")}
    if history:
        paths["curves"] = os.path.join(run_dir, "curves.png")
        _plot_curves(history, paths["curves"])
    if "keras" in recipe.export:
        paths["keras"] = os.path.join(run_dir, "model.keras")
        _save_keras_atomically(model, paths["keras"], contract)
    formats = [f for f in recipe.export if f in ("saved_model", "tflite")]
    if formats:
        from kerasnets import export

        metadata = {k: summary[k] for k in ("recipe", "recipe_file", "data", "test_accuracy", "params", "flops")}
        written = export.export_run(model, run_dir, formats, contract, metadata, calibration=eval_ds)
        paths.update(written)
    return paths
