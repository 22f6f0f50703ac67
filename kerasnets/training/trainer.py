"""The Trainer: ``setup`` (strategy, precision, data, model), ``fit`` (phases of a ``strategy.run``
loop with exact backups) and ``finalize`` (evaluate, summary, export), shared by every strategy."""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import math
import os
import secrets
import time
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from kerasnets import data as kdata
from kerasnets import storage
from kerasnets.storage import atomic_write_text
from kerasnets.models.freeze import freeze
from kerasnets.training.backup import RunBackup
from kerasnets.training.errors import TrainingDiverged
from kerasnets.training.loop import StepFunctions, WeightEMA, l2_variables
from kerasnets.training.precision import precision_scope
from kerasnets.training.distribute import per_host_stream
from kerasnets.training.progressive import apply_rates, model_rates, stage_augmentation, stage_load
from kerasnets.training.recipe import TRAIN_ALL, Phase, Recipe, resolve_steps_per_execution
from kerasnets.training.setup import RunSetup, setup, store_counts
from kerasnets.training.timings import Timings

__all__ = ["Trainer", "accelerator_present", "replays", "HISTORY_FIELDS"]

log = logging.getLogger("kerasnets.training")
HISTORY_FIELDS = ("epoch", "phase", "image_size", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate",
                  "seconds")


def accelerator_present() -> bool:
    """True when a GPU or TPU is visible (XLA is then worth it; on CPU it slows EfficientNet 6-10x)."""
    return bool(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))


def replays(run: RunSetup, info) -> bool:
    """Whether the run's training stream is replayed to a resumed step (:func:`per_host_stream`)
    instead of restored from the iterator saved in its backups: under TPUStrategy, whose
    distributed iterator cannot be saved. (``info``, the pipeline's DatasetInfo: every
    ``kerasnets.data.load`` stream can be saved today, ``extras["checkpointable"]``.)"""
    return run.tpu or not info.extras.get("checkpointable", True)


def _set_trainable(model: keras.Model, phase: Phase, phased: bool) -> dict[str, Any]:
    """Freeze what ``phase`` keeps fixed (kerasnets.freeze: whole blocks, BN in inference mode)."""
    if phase.trainable_from == TRAIN_ALL:
        if phased:  # an earlier phase may have frozen layers
            freeze(model, TRAIN_ALL)
        return {"trainable_from": TRAIN_ALL, "frozen_blocks": []}
    frozen = freeze(model, phase.trainable_from)
    return {"trainable_from": phase.trainable_from, "frozen_blocks": list(frozen.frozen_blocks),
            "trainable_blocks": list(frozen.trainable_blocks)}


def _claim_run_folder(run_dir: str, resume: bool) -> None:
    """Refuse a folder that holds a finished run (its ``summary.json``) unless ``resume`` is False,
    which starts over in it: everything an earlier run wrote there (summary first, then
    ``model.keras``, the SavedModel, TFLite files, history, logs: ``finalize.RUN_OUTPUTS``) is
    removed before anything trains, so that a rerun that fails leaves no old export looking like
    its own. An unfinished run (backups, no summary) is resumed as usual."""
    from kerasnets.training.finalize import clear_finished_run

    summary = os.path.join(run_dir, "summary.json")
    if resume and storage.exists(summary):
        raise ValueError(f"{run_dir} holds a finished run ({summary} exists): rerunning would train over it. For a new "
                         "run pass --output DIR or --name NAME; to replace it pass --no-resume (or delete the folder)")
    if not resume:
        removed = clear_finished_run(run_dir)
        if removed:
            log.info("--no-resume: removed %d outputs of the earlier run in %s", len(removed), run_dir)


class Trainer:
    """One training run of ``recipe`` in three phases: :meth:`setup`, :meth:`fit`, :meth:`finalize`.

    Every strategy runs the same ``strategy.run`` loop (:class:`~kerasnets.training.loop.StepFunctions`),
    the same backups (model, optimizer, EMA, data iterator and step in one checkpoint per worker,
    resumed exactly after ``kill -9``), the same EMA, metrics, ``history.csv`` and TensorBoard
    logs (chief), and the same evaluation (every image; on the chief, with no collective ops,
    under MultiWorkerMirroredStrategy) and export.
    """

    def __init__(self, recipe: Recipe, resume: bool = True, verbose: int | str = "auto", run_name: str | None = None,
                 started: float | None = None):
        """``started``: the wall-clock time the run's timings count from (the CLI passes its
        process start, so that start-up and imports are counted as ``startup``); default now."""
        self.recipe, self.resume, self.run_name = recipe, resume, run_name
        self.verbose = 1 if verbose == "auto" else int(verbose)
        self.timings = Timings(started)
        if started is not None:
            self.timings.add("startup", time.time() - started)
        self.started = self.timings.started
        self.run: RunSetup | None = None
        self.ema: WeightEMA | None = None
        self.history: list[dict] = []
        self.phase_reports: list[dict] = []
        self.resumed = {"phase": 0, "step": 0}
        self.steps_done = 0
        self.steps_run = 0  # steps this process executed (a resumed run: the remaining ones)
        self.run_id: str | None = None  # this attempt's id, written into summary.json (agreed by all workers)
        self._train_iterator = None  # the training stream, shared by the phases
        self._optimizer = None  # progressive stages share one optimizer (and its learning-rate schedule)
        self._writers: dict = {}

    # ---------------------------------------------------------------- setup
    def setup(self) -> RunSetup:
        """Strategy, precision, data, model; then the run folder and its backups."""
        with self.timings.span("setup"):
            self.run = setup(self.recipe, self.run_name)
            _claim_run_folder(self.run.run_dir, self.resume)
            storage.makedirs(self.run.run_dir)  # everything above can fail on bad input without writing
            store_counts(self.run)
            self.backup = RunBackup(self.run.run_dir, self.run.task)
            if not self.resume:
                self.backup.clear()
        return self.run

    def _agreed_start(self) -> dict | None:
        """The save to resume from: this worker's latest, or under multi-worker the newest save
        that every worker has (a worker killed mid-save is one save behind)."""
        latest = self.backup.latest() if self.resume else None
        nonce = secrets.randbits(62)
        if not self.run.multiworker:
            self.run_id = f"{nonce:016x}"
            return latest
        key = -1 if latest is None else latest["phase"] * 10**12 + latest["step"]
        strategy = self.run.strategy
        # one gather agrees on the save (the oldest latest) and on the run id (the chief's nonce)
        keys = strategy.gather(strategy.run(lambda: tf.constant([[key, nonce]], tf.int64)), axis=0).numpy()
        self.run_id = f"{int(keys[0, 1]):016x}"
        agreed = int(keys[:, 0].min())
        if agreed < 0:
            return None
        save = self.backup.find(agreed // 10**12, agreed % 10**12)
        if save is None:
            raise RuntimeError(f"worker {self.run.task} has no backup at step {agreed % 10**12} that the other workers "
                               f"resume from (it has {self.backup.saves()}); restart with --no-resume")
        return save

    # ---------------------------------------------------------------- fit
    def fit(self) -> None:
        """Train every phase of the recipe, resuming from the last backup."""
        run = self.run
        start = self._agreed_start()
        self._load_history(start)
        first_epoch = 0
        for index, phase in enumerate(run.phases):
            phase_steps = run.steps_per_epoch * phase.epochs
            if start is not None and index < start["phase"]:  # its weights are in the later phase's backup
                self.phase_reports.append({"name": phase.name, "epochs": phase.epochs, "steps": phase_steps,
                                           "resumed": "done"})
                first_epoch += phase.epochs
                self.steps_done += phase_steps
                continue
            save = start if start is not None and index == start["phase"] else None
            done = self._fit_phase(index, phase, first_epoch, save)
            first_epoch += phase.epochs
            self.steps_done += done

    def _fit_phase(self, index: int, phase: Phase, first_epoch: int, save: dict | None) -> int:
        with self.timings.span("phase_setup"):  # optimizer, EMA, checkpoint, data iterator, restore
            functions, iterator, step, checkpoint, optimizer, context, frozen = self._prepare_phase(index, phase, save)
        run = self.run
        phase_steps = run.steps_per_epoch * phase.epochs
        while int(step.numpy()) < phase_steps:
            self._epoch(index, phase, first_epoch, functions, iterator, step, checkpoint, optimizer)
        stage = self.recipe.stages[index] if self.recipe.stages else None
        # a stage's rates as the model's layers hold them (not the recipe's numbers)
        measured = {"image_size": stage.image_size, "randaugment_magnitude": stage.randaugment_magnitude,
                    **stage_augmentation(stage, run.train_load), **model_rates(run.model)} if stage else {}
        self.phase_reports.append({"name": phase.name, "epochs": phase.epochs, "steps": phase_steps,
                                   "learning_rate": context.learning_rate,
                                   "trainable_params": int(sum(int(np.prod(w.shape)) for w in run.model.trainable_weights)),
                                   **frozen, **measured})
        return phase_steps

    def _prepare_phase(self, index: int, phase: Phase, save: dict | None):
        """The phase's optimizer, step functions, checkpoint and data iterator (restored from ``save``)."""
        run, recipe = self.run, self.recipe
        strategy, model = run.strategy, run.model
        stage = recipe.stages[index] if recipe.stages else None
        # stages: the run's context (all its epochs), so that one learning-rate schedule spans them
        context = run.context if stage else dataclasses.replace(
            run.context, learning_rate=run.context.learning_rate * phase.learning_rate_scale, epochs=phase.epochs,
            phase=phase if recipe.phases else None)
        frozen = _set_trainable(model, phase, bool(recipe.phases))
        if stage:  # before the stage's step is traced: Keras' Dropout reads its rate then
            apply_rates(model, stage.dropout_rate, stage.drop_connect_rate)
        with strategy.scope(), precision_scope(run.policy):
            if stage and self._optimizer is not None:  # the stage before's: its step count drives the schedule
                optimizer = self._optimizer
            else:
                optimizer = recipe.build_optimizer(recipe, context)
                if getattr(optimizer, "use_ema", False):
                    raise ValueError(f"recipe {recipe.name!r}: the optimizer has use_ema=True; set Recipe.ema_decay "
                                     "instead (the trainer keeps the TPU reference's EMA and evaluates and exports it)")
                if run.policy == "mixed_float16" and not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
                    optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
                optimizer.build(model.trainable_variables)
                self._optimizer = optimizer
            if recipe.ema_decay and self.ema is None:
                self.ema = WeightEMA(model.weights, recipe.ema_decay)
            step = tf.Variable(0, dtype=tf.int64, trainable=False, name="phase_step")
        info, train_ds, load = run.info, run.train_ds, run.train_load
        if stage:  # the stage's pipeline; its stream starts at the stage's first epoch
            load = stage_load(run.train_load, stage, sum(s.epochs for s in recipe.stages[:index]))
            train_ds, info = kdata.load(**load)
        checkpointable = not replays(run, info)
        weights = {id(w) for w in model.weights}
        # the random state of dropout and stochastic depth (Keras SeedGenerators) is not a weight
        # and tf.train.Checkpoint(model) does not see it: saved explicitly, or a resumed run would
        # draw other masks than the uninterrupted one
        random_state = [getattr(v, "value", v) for v in model.variables if id(v) not in weights]
        objects = {"model": model, "optimizer": optimizer, "step": step, "random_state": random_state,
                   **({"ema": self.ema} if self.ema else {})}
        # the phases read ONE stream: a later phase continues where the one before stopped (a fresh
        # iterator would replay the first phase's images and crops); each phase's backup holds the
        # shared iterator's position, so a run resumed in any phase reads the same batches. A stage
        # has its own stream (its own size), starting at its first epoch: its backups hold its position
        # What the iterator's checkpoint holds is the pipeline's choice (data.load: in-flight batches,
        # TFRecords' record buffer; TFDS symbolically, positions only)
        if checkpointable:
            if stage:
                iterator = iter(train_ds)
            else:
                if self._train_iterator is None:
                    self._train_iterator = iter(train_ds)
                iterator = self._train_iterator
            objects["iterator"] = iterator
        checkpoint = tf.train.Checkpoint(**objects)
        if save is not None:
            self.backup.restore(checkpoint, save)
            self.resumed = {"phase": index, "step": int(step.numpy())}
            log.warning("resumed from %s at step %d of %d (phase %d)", os.path.join(self.backup.dir, save["dir"]),
                        int(step.numpy()), run.steps_per_epoch * phase.epochs, index + 1)
        if not checkpointable:  # TPU (or a pipeline that says so): per-host pipelines replayed to the step
            # the phases before read these (a stage's stream is its own)
            earlier = 0 if stage else run.steps_per_epoch * sum(p.epochs for p in run.phases[:index])
            iterator = per_host_stream(strategy, load, run.global_batch, earlier + int(step.numpy()))
        if stage:
            log.warning("stage %d/%d %r: %d epochs at %d px, %s, %s", index + 1, len(run.phases), stage.name,
                        stage.epochs, stage.image_size, stage_augmentation(stage, run.train_load), model_rates(model))
        if recipe.phases:
            log.warning("phase %d/%d %r: %d epochs, learning rate %.3g, trainable from %s", index + 1, len(run.phases),
                        phase.name, phase.epochs, context.learning_rate, phase.trainable_from)
        functions = StepFunctions(model, optimizer, recipe.label_smoothing, strategy, recipe.l2_regularization,
                                  l2_variables(model, recipe.l2_on_batch_norm), self.ema,
                                  # as Keras: XLA without tf.distribute only (under MirroredStrategy it
                                  # disables merge_call: LossScaleOptimizer's per-replica finite check
                                  # would then branch around the all-reduce)
                                  jit_compile=accelerator_present() and not recipe.run_eagerly
                                  and not tf.distribute.has_strategy() and strategy.num_replicas_in_sync == 1
                                  and not run.tpu,
                                  run_eagerly=recipe.run_eagerly, counter=step)
        self.functions = functions
        return functions, iterator, step, checkpoint, optimizer, context, frozen

    def _epoch(self, index, phase, first_epoch, functions, iterator, step, checkpoint, optimizer) -> None:
        run, recipe = self.run, self.recipe
        per_epoch = run.steps_per_epoch
        begin = int(step.numpy())
        epoch = begin // per_epoch
        end = (epoch + 1) * per_epoch
        started = time.time()
        progress = keras.utils.Progbar(per_epoch, stateful_metrics=["loss", "accuracy"],
                                       verbose=self.verbose if run.chief else 0)
        totals = [0.0, 0.0, 0.0]
        current, every = begin, recipe.backup_every_steps
        per_call = resolve_steps_per_execution(recipe.steps_per_execution)
        while current < end:
            count = _call_steps(current, end, every, per_call, first=functions.steps == 0)
            call_began = time.perf_counter()
            # the one host read of the call: every step's loss and accuracy summed on the device
            loss_sum, correct, seen, done, last_loss = (v.numpy() for v in functions.train_steps(
                iterator, tf.constant(count, tf.int64)))
            done = int(done)
            self.steps_run += done
            if not math.isfinite(float(last_loss)):
                saved = self.backup.latest()
                raise TrainingDiverged(
                    f"loss became {float(last_loss)} at step {current + done} of phase {phase.name!r} "
                    f"(epoch {first_epoch + epoch + 1}); training stopped. The last good backup is "
                    f"{saved and os.path.join(self.backup.dir, saved['dir'])}. Lower the learning rate (now "
                    f"{_learning_rate(optimizer):.4g}), check the data (images must be 0..255), or use precision='float32'")
            current += done
            totals = [totals[0] + float(loss_sum), totals[1] + float(correct), totals[2] + float(seen)]
            progress.update(current - epoch * per_epoch, [("loss", totals[0] / totals[2]),
                                                          ("accuracy", totals[1] / totals[2])])
            # a phase's first call (one step) traces and optimises the graph: timed apart from the steady steps
            self.timings.add("first_step" if functions.steps == 0 else "train_steps", time.perf_counter() - call_began,
                             count=done)
            functions.steps += done
            if every and current % every == 0 and current % per_epoch:
                with self.timings.span("backup"):
                    self.backup.save(checkpoint, index, current)
        size = recipe.stages[index].image_size if recipe.stages else recipe.image_size
        row = {"epoch": first_epoch + epoch, "phase": index, "image_size": size, "loss": totals[0] / max(totals[2], 1.0),
               "accuracy": totals[1] / max(totals[2], 1.0), "learning_rate": _learning_rate(optimizer)}
        last = epoch + 1 == phase.epochs
        # multi-worker: validation once, on the chief, in finalize
        if not run.multiworker and (last or (first_epoch + epoch + 1) % recipe.validation_freq == 0):
            with self.timings.span("validation"):
                row.update({f"val_{k}": v for k, v in self.validate(functions).items() if k != "examples"})
        row["seconds"] = round(time.time() - started, 2)
        with self.timings.span("history"):
            self._record(row)
        if last or (first_epoch + epoch + 1) % recipe.backup_every_epochs == 0:
            with self.timings.span("backup"):
                self.backup.save(checkpoint, index, int(step.numpy()))

    # ---------------------------------------------------------------- evaluation
    def validate(self, functions: StepFunctions) -> dict[str, float]:
        """Loss and accuracy of the evaluated weights (the EMA's when the recipe keeps one) on
        every image of the held-out split, under the strategy (padded, masked batches)."""
        run = self.run
        if self.ema is not None:
            self.ema.swap()
        try:
            return functions.evaluate(run.eval_ds, run.global_batch, self.recipe.eval_steps)
        finally:
            if self.ema is not None:
                self.ema.swap()

    # ---------------------------------------------------------------- history
    def _load_history(self, start: dict | None) -> None:
        """Rows of the interrupted attempt, up to the epoch the run resumes in."""
        path = os.path.join(self.run.run_dir, "history.csv")
        if start is None or not storage.exists(path):
            return
        rows = [{k: (int(float(v)) if k in ("epoch", "phase", "image_size") else float(v))
                 for k, v in row.items() if v != ""} for row in csv.DictReader(io.StringIO(storage.read_text(path)))]
        resumed_epoch = sum(p.epochs for p in self.run.phases[:start["phase"]]) + start["step"] // self.run.steps_per_epoch
        self.history = [r for r in rows if int(r["epoch"]) < resumed_epoch]

    def _record(self, row: dict) -> None:
        """Append an epoch to ``history.csv`` (rewritten atomically) and TensorBoard (chief only)."""
        self.history.append(row)
        if not self.run.chief:
            return
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=HISTORY_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(self.history)
        atomic_write_text(os.path.join(self.run.run_dir, "history.csv"), buffer.getvalue())
        logs = os.path.join(self.run.run_dir, "logs")
        for kind, prefix in (("train", ""), ("validation", "val_")):
            if kind not in self._writers:
                self._writers[kind] = tf.summary.create_file_writer(os.path.join(logs, kind))
            with self._writers[kind].as_default():
                for metric in ("loss", "accuracy"):
                    if prefix + metric in row:
                        tf.summary.scalar(f"epoch_{metric}", row[prefix + metric], step=int(row["epoch"]))
                if kind == "train":
                    tf.summary.scalar("epoch_learning_rate", row["learning_rate"], step=int(row["epoch"]))

    def history_dict(self) -> dict[str, list]:
        """The history as Keras' ``History.history`` (metric -> values per epoch)."""
        history: dict[str, list] = {}
        for row in self.history:
            for key, value in row.items():
                history.setdefault(key, []).append(value)
        return history

    # ---------------------------------------------------------------- finalize
    def finalize(self):
        """Evaluate, summarise and export (see :mod:`kerasnets.training.finalize`)."""
        from kerasnets.training.finalize import finalize

        return finalize(self)

    def train(self):
        """``setup``, ``fit``, ``finalize``: the whole run; returns a :class:`RunResult`."""
        self.setup()
        self.fit()
        return self.finalize()


def _call_steps(current: int, end: int, every: int, per_call: int, first: bool) -> int:
    """Steps of the next compiled call from step ``current``: ``per_call``, cut at the epoch's end
    ``end`` and at the next backup (every ``every`` steps; 0: none), so that backups and epochs
    land on their steps; a phase's first call runs one step (it traces, and is timed apart)."""
    count = min(per_call, end - current)
    if every:
        count = min(count, every - current % every)
    return 1 if first else count


def _learning_rate(optimizer) -> float:
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    rate = inner.learning_rate
    return float(rate.numpy() if hasattr(rate, "numpy") else rate)
