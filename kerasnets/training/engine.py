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
import tensorflow as tf

from kerasnets import data as kdata
from kerasnets.profile import profile
from kerasnets.training.callbacks import NaNGuard, StepBackup, TrainingDiverged, atomic_write_text
from kerasnets.training.distribute import check_divisible, global_batch_size, is_chief, resolve_strategy
from kerasnets.training.precision import precision_scope, resolve_precision
from kerasnets.training.recipe import Recipe, TrainContext

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


def _datasets(recipe: Recipe, global_batch: int, drop_remainder: bool, run_dir: str):
    common = dict(image_size=recipe.image_size, batch_size=global_batch, seed=recipe.seed, one_hot=True)
    train_ds, info = kdata.load(_source(recipe.data, run_dir), recipe.train_split, training=True, repeat=True,
                                drop_remainder=drop_remainder, **common, **recipe.train_options)
    eval_source = _source(recipe.eval_data if recipe.eval_data is not None else recipe.data, run_dir)
    eval_ds, eval_info = kdata.load(eval_source, recipe.eval_split, training=False, drop_remainder=drop_remainder,
                                    **common, **recipe.eval_options)
    if eval_info.num_classes != info.num_classes:
        raise ValueError(f"training data has {info.num_classes} classes but evaluation data {eval_info.num_classes}")
    return train_ds, eval_ds, info, eval_info


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


def _save_keras_atomically(model: keras.Model, path: str) -> None:
    tmp = os.path.join(os.path.dirname(path), f"tmp-{os.getpid()}.keras")
    model.save(tmp)
    os.replace(tmp, path)


def _fit(model, train_ds, eval_ds, recipe, steps_per_epoch, start_step, callbacks, verbose):
    """``model.fit`` over the remaining steps: a partial first epoch when resuming mid-epoch."""
    epoch, offset = divmod(start_step, steps_per_epoch)
    if offset:
        log.warning("resuming mid-epoch: %d of %d steps of epoch %d remain", steps_per_epoch - offset,
                    steps_per_epoch, epoch + 1)
        model.fit(train_ds, initial_epoch=epoch, epochs=epoch + 1, steps_per_epoch=steps_per_epoch - offset,
                  validation_data=eval_ds, validation_steps=recipe.eval_steps, callbacks=callbacks, verbose=verbose)
        epoch += 1
        if model.stop_training:
            return
    if epoch < recipe.epochs:
        model.fit(train_ds, initial_epoch=epoch, epochs=recipe.epochs, steps_per_epoch=steps_per_epoch,
                  validation_data=eval_ds, validation_steps=recipe.eval_steps, callbacks=callbacks, verbose=verbose)


def train(recipe: Recipe, resume: bool = True, verbose: int | str = "auto", run_name: str | None = None) -> RunResult:
    """Train ``recipe`` with ``model.fit`` (a ``strategy.run`` loop under MultiWorkerMirroredStrategy),
    evaluate, save ``model.keras``, export, and write ``summary.json`` / ``curves.png`` / TensorBoard logs
    into ``recipe.output/run_name``. Resumes from the run's last backup unless ``resume=False``.
    """
    started = time.time()
    warnings.filterwarnings("ignore", message=".*shuffle=True.*was passed")  # datasets come shuffled
    keras.utils.set_random_seed(recipe.seed)
    strategy = resolve_strategy(recipe.strategy)
    policy = resolve_precision(recipe.precision, strategy)
    replicas = strategy.num_replicas_in_sync
    global_batch = global_batch_size(recipe.batch_size, strategy)
    check_divisible(global_batch, strategy)
    tpu = isinstance(strategy, tf.distribute.TPUStrategy)
    multiworker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    chief = is_chief()
    run_dir = os.path.join(recipe.output, run_name or recipe.name)
    os.makedirs(run_dir, exist_ok=True)
    backup = StepBackup(os.path.join(run_dir, "backup") if chief else os.path.join(run_dir, f"backup-worker-{os.getpid()}"),
                        recipe.backup_every_steps)
    if not resume:
        backup.clear()

    train_ds, eval_ds, info, eval_info = _datasets(recipe, global_batch, tpu or multiworker, run_dir)
    steps_per_epoch = recipe.steps_per_epoch or math.ceil(info.num_examples / global_batch)
    learning_rate = recipe.base_learning_rate * global_batch / recipe.reference_batch
    log.warning("strategy %s with %d replica(s); per-replica batch %d -> global batch %d; learning rate %.5g "
                "(%.5g per %d images, scaled linearly); precision %s",
                "MultiWorkerMirroredStrategy" if multiworker else type(strategy).__name__, replicas,
                recipe.batch_size, global_batch, learning_rate, recipe.base_learning_rate, recipe.reference_batch,
                policy)
    context = TrainContext(info.num_classes, steps_per_epoch, global_batch, replicas, learning_rate,
                           synchronized_bn=replicas > 1, class_names=info.class_names)
    with strategy.scope(), precision_scope(policy):
        model = recipe.build_model(recipe, context)
        optimizer = recipe.build_optimizer(recipe, context)
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=recipe.label_smoothing)
        # compiled under every strategy (the optimizer belongs to the model, for backups); under
        # MultiWorkerMirroredStrategy the custom loop trains it instead of fit
        model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"], run_eagerly=recipe.run_eagerly,
                      jit_compile=accelerator_present() and not recipe.run_eagerly)
    total_steps = steps_per_epoch * recipe.epochs
    guard = NaNGuard()
    if multiworker:
        from kerasnets.training.custom_loop import fit_multiworker

        fit_multiworker(model, optimizer, loss, strategy, train_ds, recipe.epochs, steps_per_epoch, backup, guard,
                        verbose=verbose)
        start_step = 0
    else:
        start_step = backup.restore(model) if resume else 0
        if start_step:
            log.warning("resumed from %s at step %d of %d", backup.path, start_step, total_steps)
        callbacks = [guard, backup, keras.callbacks.CSVLogger(os.path.join(run_dir, "history.csv"), append=start_step > 0)]
        if chief:
            callbacks.append(keras.callbacks.TensorBoard(os.path.join(run_dir, "logs"), update_freq="epoch"))
        if getattr(optimizer, "use_ema", False):
            callbacks.append(keras.callbacks.SwapEMAWeights(swap_on_epoch=True))
        if start_step < total_steps:
            _fit(model, train_ds, eval_ds, recipe, steps_per_epoch, start_step, callbacks, verbose)
    if guard.bad_step is not None:
        raise TrainingDiverged(
            f"loss became {guard.bad_value} at step {guard.bad_step} (epoch {guard.bad_step // steps_per_epoch + 1}); "
            f"training stopped. The last good backup is {backup.path}. Lower the learning rate "
            f"(now {learning_rate:.4g}), check the data (images must be 0..255), or use precision='float32'"
        )
    steps_done = int(model.optimizer.iterations.numpy())
    if multiworker:  # Keras' evaluate shares fit's MultiWorkerMirroredStrategy problem: evaluate locally
        results = _evaluate_locally(model, loss, eval_ds, recipe.eval_steps)
    else:
        results = model.evaluate(eval_ds, steps=recipe.eval_steps, verbose=0, return_dict=True)
    stats = profile(model)
    summary: dict[str, Any] = {
        "recipe": recipe.name,
        "recipe_file": recipe.source_file,
        "data": str(recipe.data),
        "eval_split": recipe.eval_split,
        "test_accuracy": float(results["accuracy"]),
        "test_loss": float(results["loss"]),
        "params": stats["params"],
        "flops": stats["flops"],
        "input_size": stats["input_size"],
        "class_names": list(info.class_names),
        "epochs": recipe.epochs,
        "steps": steps_done,
        "steps_per_epoch": steps_per_epoch,
        "global_batch": global_batch,
        "learning_rate": learning_rate,
        "replicas": replicas,
        "strategy": "MultiWorkerMirroredStrategy" if multiworker else type(strategy).__name__,
        "precision": policy,
        "resumed_from_step": start_step,
        "train_seconds": round(time.time() - started, 1),
        "paths": {},
    }
    history = _history_from_csv(os.path.join(run_dir, "history.csv"))
    if chief:
        summary["paths"] = _write_outputs(model, recipe, run_dir, history, summary, eval_ds)
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


def _write_outputs(model, recipe: Recipe, run_dir: str, history, summary, eval_ds) -> dict[str, str]:
    paths = {"run_dir": run_dir, "summary": os.path.join(run_dir, "summary.json"),
             "tensorboard": os.path.join(run_dir, "logs")}
    if history:
        paths["curves"] = os.path.join(run_dir, "curves.png")
        _plot_curves(history, paths["curves"])
    if "keras" in recipe.export:
        paths["keras"] = os.path.join(run_dir, "model.keras")
        _save_keras_atomically(model, paths["keras"])
    formats = [f for f in recipe.export if f in ("saved_model", "tflite")]
    if formats:
        from kerasnets import export

        metadata = {k: summary[k] for k in ("recipe", "recipe_file", "data", "test_accuracy", "params", "flops")}
        written = export.export_run(model, run_dir, formats, summary["class_names"], metadata,
                                    calibration=eval_ds)
        paths.update(written)
    return paths
