"""The trainer's last phase: evaluate the final (EMA) weights on every held-out image, profile,
write ``summary.json``, ``curves.png``, ``model.keras`` and the exports.

Under MultiWorkerMirroredStrategy the chief does this alone, on a single-device copy of the model
(no collective op can then wait for a worker that has finished); the workers meet at a barrier
afterwards, so that every one exits 0 together.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from typing import Any

import keras
import tensorflow as tf

from kerasnets import storage
from kerasnets.storage import atomic_write_text
from kerasnets.data.pipeline import scored_count
from kerasnets.models.weights import leaf_layers, refresh_cached_state
from kerasnets.profile import profile
from kerasnets.training.progressive import fixed_input_copy
from kerasnets.serving import CARVE, PreprocessingContract, save_keras
from kerasnets.training.loop import StepFunctions
from kerasnets.training.precision import model_precision
from kerasnets.training.finetune import weights_pretrained_cfg
from kerasnets.training.setup import describe_source

__all__ = ["finalize", "RunResult", "single_device_copy", "RUN_OUTPUTS", "clear_finished_run"]

log = logging.getLogger("kerasnets.training")

#: What a run writes into its folder once it has trained (globs; ``summary.json`` first: it marks the
#: run finished): the summary, history, curves and TensorBoard logs, ``model.keras``, the exports of
#: :func:`kerasnets.export.export_run` (``saved_model/``, ``model_<quant>.tflite`` with its
#: ``.json``, ``labels.txt``, ``metadata.json``) and, multi-worker, each worker's final weights.
#: Not listed: ``backup/`` (:class:`~kerasnets.training.backup.RunBackup` clears it) and the
#: TFRecord count cache (a count of the data, valid for any run).
RUN_OUTPUTS = ("summary.json", "model.keras", "saved_model", "model_*.tflite", "model_*.json", "labels.txt",
               "metadata.json", "final-worker-*.weights.h5", "curves.png", "logs", "history.csv")


@dataclasses.dataclass
class RunResult:
    """What a finished run reports (also written as ``summary.json``)."""

    summary: dict[str, Any]
    model: keras.Model
    history: dict[str, list]


def single_device_copy(model: keras.Model, weights: list) -> keras.Model:
    """``model``'s architecture outside any strategy (plain variables on this worker), holding
    ``weights`` (in ``model.get_weights()`` order) and computing exactly as ``model`` would with them
    (Normalization's cached statistics refreshed: ``set_weights`` alone leaves them at 0 / 1)."""
    if tf.distribute.has_strategy():
        raise RuntimeError("single_device_copy must be called outside strategy.scope()")
    copy = keras.models.clone_model(model)
    copy.set_weights(weights)
    refresh_cached_state(leaf_layers(copy))
    return copy


def _barrier(strategy, value: float = 1.0) -> float:
    """Every worker waits here until all have arrived (one tiny all-reduce); returns the sum of each
    worker's ``value``, so that the chief can tell the others whether it finished (no shared file
    system needed)."""
    return float(strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.constant(value)), axis=None))


def _final_weights(trainer) -> list:
    return trainer.ema.averaged(trainer.run.model) if trainer.ema is not None else trainer.run.model.get_weights()


def finalize(trainer) -> RunResult:
    """Evaluate, profile, summarise and export a fitted :class:`~kerasnets.training.trainer.Trainer`."""
    run = trainer.run
    weights = _final_weights(trainer)
    if run.multiworker:  # every worker leaves its final weights, so that their equality can be checked
        with storage.staged(os.path.join(run.run_dir, f"final-worker-{run.task}.weights.h5"), ".weights.h5") as tmp:
            run.model.save_weights(tmp)
        if not run.chief:
            # the chief has evaluated, exported and written the summary; it says so through the barrier
            if _barrier(run.strategy, 0.0) < 0.5:
                raise RuntimeError(f"worker {run.task}: the chief wrote no summary of this run in {run.run_dir} (its "
                                   "evaluation or export failed: see its log); the backups are kept, so the same "
                                   "command on every worker retries from the last step")
            trainer.backup.clear()
            return RunResult({}, run.model, trainer.history_dict())
        try:
            return _finalize_chief(trainer, weights)
        finally:  # the workers leave together; backups go only once this run's summary is written
            finished = _summary_of(run.run_dir, trainer.run_id)
            _barrier(run.strategy, 1.0 if finished else 0.0)
            if finished:
                trainer.backup.clear()
    return _finalize_chief(trainer, weights)


def clear_finished_run(run_dir: str) -> list[str]:
    """Remove every :data:`RUN_OUTPUTS` file or folder of an earlier run from ``run_dir``; the paths removed.

    ``summary.json`` goes first, so that a folder whose clearing is interrupted is an unfinished run
    (resumed or replaced), never a finished one with another run's exports; then the exports, so
    that none survives to look like the new run's. Every worker of a multi-worker run may call this
    at once: a path another one removed first is skipped.
    """
    removed = []
    for pattern in RUN_OUTPUTS:
        for path in storage.glob(os.path.join(_glob_escape(run_dir), pattern)):
            if storage.remove(path):
                removed.append(path)
    return removed


def _glob_escape(path: str) -> str:
    """``glob.escape`` that leaves a URL's scheme alone (it escapes nothing there: no ``*?[``)."""
    import glob

    if storage.is_url(path):
        scheme, rest = path.split("://", 1)
        return f"{scheme}://{glob.escape(rest)}"
    return glob.escape(path)


def _summary_of(run_dir: str, run_id: str | None) -> bool:
    """Whether ``run_dir/summary.json`` is the one this run (``run_id``) wrote, not an earlier run's."""
    try:
        return run_id is not None and json.loads(storage.read_text(os.path.join(run_dir, "summary.json"))).get(
            "run_id") == run_id
    except (OSError, ValueError):
        return False


def _finalize_chief(trainer, weights: list) -> RunResult:
    run, recipe, timings = trainer.run, trainer.recipe, trainer.timings
    with timings.span("final_evaluation"):
        if run.multiworker:
            model = single_device_copy(run.model, weights)
            functions = StepFunctions(model, None, recipe.label_smoothing, tf.distribute.get_strategy())
            results = functions.evaluate(run.eval_ds, run.global_batch, recipe.eval_steps)
        else:
            if trainer.ema is not None:
                trainer.ema.swap()  # training is over: the model keeps the averaged weights
            model = run.model
            results = trainer.functions.evaluate(run.eval_ds, run.global_batch, recipe.eval_steps)
    # a model that takes any size (a progressive run's, or a recipe's own (None, None, 3) model):
    # the contract, profile and exports are of it at the evaluation size; a fixed model is itself
    model = fixed_input_copy(model, recipe.image_size)
    summary_began = time.perf_counter()
    stats = profile(model)
    info, eval_info = run.info, run.eval_info
    expected = _expected_eval_examples(eval_info.num_examples, recipe.eval_steps, run.global_batch)
    scored, problem = scored_count(results["examples"], eval_info, -1 if expected is None else expected)
    if problem:  # kerasnets evaluate's rule (one function): no summary, the backups stay for a rerun
        raise ValueError(f"{problem}; the run's backups are kept, so the same command then evaluates again from its "
                         "last step")
    log.info("test accuracy on %s", scored)
    contract = PreprocessingContract.for_model(model, eval_info.preprocessing, info.class_names, evaluation={
        "data": storage.absolute(str(eval_info.source)) if storage.exists(str(eval_info.source)) else eval_info.source,
        "split": eval_info.split, "seed": recipe.seed, "validation_split": run.carve, "carve": CARVE,
        # TFRecords' label reading, so that kerasnets evaluate / export read the shards as this run did
        **{k: recipe.eval_options[k] for k in ("num_classes", "label_offset") if k in recipe.eval_options}},
        pretrained_cfg=weights_pretrained_cfg(recipe.weights))
    summary: dict[str, Any] = {
        "recipe": recipe.name,
        "run_id": trainer.run_id,
        "recipe_file": recipe.source_file,
        "data": describe_source(recipe.data),
        "eval_data": describe_source(recipe.eval_data if recipe.eval_data is not None else recipe.data),
        "eval_split": eval_info.split,
        "eval_examples": results["examples"],  # images scored
        "eval_expected_examples": expected,  # images the split holds (at most eval_steps batches; None: unknown)
        "eval_skipped_files": len(eval_info.extras.get("skipped") or ()),  # refused by the folder scan, not scored
        "train_skipped_files": len(info.extras.get("skipped") or ()),
        "train_examples": info.num_examples,
        "examples_source": info.extras.get("count_source"),
        "test_accuracy": float(results["accuracy"]),
        "test_loss": float(results["loss"]),
        "model": model.name,
        "weights": recipe.weights,
        "weights_report": _jsonable(run.weights_report),
        "ema_decay": recipe.ema_decay,
        "batch_norm_warning": run.batch_norm_warning,
        "l2_regularization": recipe.l2_regularization,
        "params": stats["params"],
        "flops": stats["flops"],
        "input_size": stats["input_size"],
        "class_names": list(info.class_names),
        "preprocessing": contract.to_dict(),
        "epochs": recipe.epochs,
        "phases": trainer.phase_reports if recipe.phases else [],
        "stages": trainer.phase_reports if recipe.stages else [],
        "steps": trainer.steps_done,
        "steps_run": trainer.steps_run,
        "steps_per_epoch": run.steps_per_epoch,
        "global_batch": run.global_batch,
        "learning_rate": run.context.learning_rate,
        "replicas": run.strategy.num_replicas_in_sync,
        "workers": run.workers,
        "strategy": run.strategy_name,
        "precision": model_precision(model),  # what the evaluated model computes in (setup checked: run.policy)
        "seed": recipe.seed,
        "resumed_from_step": trainer.resumed["step"],
        "resumed_from_phase": trainer.resumed["phase"],
        "paths": {},
    }
    history = trainer.history_dict()
    timings.add("summary", time.perf_counter() - summary_began)
    summary["paths"] = _write_outputs(model, recipe, run.run_dir, trainer.history, summary, run.eval_ds, contract,
                                      timings)
    summary["timings"] = timings.report()  # the parts and "other" add up to "total"
    summary["total_seconds"] = summary["timings"]["total"]
    atomic_write_text(os.path.join(run.run_dir, "summary.json"), json.dumps(summary, indent=2))
    if not run.multiworker:
        trainer.backup.clear()
    return RunResult(summary, model, history)


def _expected_eval_examples(num_examples: int | None, eval_steps: int | None, batch: int) -> int | None:
    """The images the final evaluation should score: the split's count, fewer when ``eval_steps``
    batches hold fewer; None when the count is unknown."""
    if not num_examples or num_examples < 0:
        return None
    return num_examples if eval_steps is None else min(num_examples, eval_steps * batch)


def _jsonable(report: Any) -> Any:
    if report is None or isinstance(report, (dict, list, str, int, float, bool)):
        return report
    if dataclasses.is_dataclass(report):
        return dataclasses.asdict(report)
    return str(report)


def _plot_curves(rows: list[dict], path: str) -> None:
    """Loss and accuracy per epoch; validation only at the epochs validated (``validation_freq``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, metric in zip(axes, ("loss", "accuracy")):
        for prefix, style in (("", "-"), ("val_", "--")):
            points = [(int(row["epoch"]) + 1, row[prefix + metric]) for row in rows if prefix + metric in row]
            if points:
                axis.plot(*zip(*points), style, marker="o", label=prefix + metric)
        axis.set_xlabel("epoch")
        axis.set_title(metric)
        axis.grid(alpha=0.3)
        axis.legend()
    fig.tight_layout()
    with storage.staged(path, ".png") as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def _write_outputs(model, recipe, run_dir: str, history: list[dict], summary, eval_ds, contract,
                   timings) -> dict[str, str]:
    paths = {"run_dir": run_dir, "summary": os.path.join(run_dir, "summary.json"),
             "tensorboard": os.path.join(run_dir, "logs")}
    if history:
        paths["curves"] = os.path.join(run_dir, "curves.png")
        with timings.span("curves"):
            _plot_curves(history, paths["curves"])
    if "keras" in recipe.export:
        paths["keras"] = os.path.join(run_dir, "model.keras")
        with timings.span("export_keras"):
            save_keras(model, paths["keras"], contract)
    formats = [f for f in recipe.export if f in ("saved_model", "tflite")]
    if formats:
        from kerasnets import export

        metadata = {k: summary[k] for k in ("recipe", "recipe_file", "data", "test_accuracy", "params", "flops")}
        written, reports = export.export_run(model, run_dir, formats, contract, metadata, calibration=eval_ds)
        paths.update(written)
        for name, report in reports.items():  # e.g. export_saved_model, verify_saved_model
            for part, seconds in report.get("seconds", {}).items():
                timings.add(f"{part}_{name}", seconds)
    return paths
