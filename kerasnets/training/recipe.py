"""Recipes: a frozen dataclass of hyper-parameters plus the recipe's own model and optimizer builders.

A recipe file (``recipes/*.py``) defines ``RECIPE = Recipe(...)`` and ends with
``if __name__ == "__main__": raise SystemExit(kerasnets.cli.recipe_main(RECIPE))``, so it runs as ``python recipes/x.py`` and as
``kerasnets train recipes/x.py``; command-line options override its fields.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from collections.abc import Callable
from typing import Any

from kerasnets.models.freeze import TRAIN_ALL  # ``Phase.trainable_from`` that trains every layer
from kerasnets.training.progressive import Stage, progressive_stages, scale_stage_sizes

__all__ = ["Recipe", "Phase", "Stage", "progressive_stages", "TrainContext", "TRAIN_ALL", "AUTO_STEPS_PER_EXECUTION", "resolve_steps_per_execution",
           "load_recipe", "apply_overrides", "smoke_overrides"]


#: ``steps_per_execution="auto"``: training steps per compiled call. One call costs a few ms of
#: host work (dispatch, the host read of its results); at 32 steps that is under 0.2 ms a step, below
#: the noise of any model, while a diverging run still stops at its first non-finite step (the call
#: breaks there) and the progress bar moves every 32 steps. Calls are cut at backups and epoch
#: ends, so neither moves. 32 is also what the issue's ``model.fit`` reference used.
AUTO_STEPS_PER_EXECUTION = 32


def resolve_steps_per_execution(value: Any, where: str = "") -> int:
    """``"auto"`` -> :data:`AUTO_STEPS_PER_EXECUTION`; a positive integer as is; else ValueError
    (its message starts with ``where``)."""
    if value == "auto":
        return AUTO_STEPS_PER_EXECUTION
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{where}steps_per_execution must be 'auto' or a positive integer (training steps per compiled "
                         f"call), got {value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class Phase:
    """One stage of a multi-phase run (fine-tuning): what is trainable, for how long, at what rate.

    Attributes:
        name: shown in logs and the summary (e.g. "head", "top_blocks").
        epochs: epochs of this phase.
        trainable_from: ``"all"`` (:data:`TRAIN_ALL`, nothing frozen), ``None`` (the whole backbone
            frozen: only the classifier trains), a block name (``"block6a"``, ``"conv5_block1"``),
            a stage index, or ``-n`` for the last n blocks (see :func:`kerasnets.freeze`).
            BatchNormalization layers stay frozen (inference mode) in every phase that freezes.
        learning_rate_scale: multiplies the recipe's (batch-scaled) learning rate.
    """

    name: str
    epochs: int
    trainable_from: str | int | None = TRAIN_ALL
    learning_rate_scale: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"phase {self.name!r}: epochs must be a positive integer, got {self.epochs!r}")
        if not self.learning_rate_scale > 0:
            raise ValueError(f"phase {self.name!r}: learning_rate_scale must be > 0, got {self.learning_rate_scale!r}")


@dataclasses.dataclass(frozen=True)
class TrainContext:
    """What the engine knows once data and strategy are set, handed to the recipe's builders."""

    num_classes: int
    steps_per_epoch: int
    global_batch: int
    num_replicas: int
    learning_rate: float
    synchronized_bn: bool
    class_names: tuple[str, ...] = ()
    epochs: int = 0  # epochs of the current phase (the recipe's epochs for single-phase recipes)
    phase: Phase | None = None  # the current phase of a multi-phase recipe


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Everything a training run needs; ``build_model`` / ``build_optimizer`` take (recipe, TrainContext).

    Attributes:
        name: run name (the output folder is ``output/name``).
        build_model, build_optimizer: the recipe's builders.
        data: a :func:`kerasnets.data.load` source. eval_data: evaluation source (default: ``data``).
        train_split / eval_split: their splits.
        image_size: training and evaluation resolution.
        batch_size: per-replica batch; the global batch is batch_size x replicas.
        epochs: training epochs. steps_per_epoch: default ceil(examples / global batch).
        base_learning_rate / reference_batch: learning rate at ``reference_batch`` images, scaled
            linearly to the global batch (``TrainContext.learning_rate``).
        label_smoothing: of the categorical cross-entropy.
        train_options / eval_options: extra :func:`kerasnets.data.load` options (augmentation, crops).
        precision, strategy: see :mod:`kerasnets.training.precision` / ``distribute``.
        backup_every_steps: a resumable backup every this many steps within epochs (0: none
            within epochs).
        backup_every_epochs: a backup at the end of every this many epochs, and of each phase's
            last epoch (1: every epoch).
        validation_freq: validate on the held-out split every this many epochs (as Keras'
            ``fit(validation_freq=...)``), and after each phase's last epoch.
        export: formats written after training ("keras", "saved_model", "tflite").
        smoke: field overrides for ``--smoke`` (a couple of steps on a small stand-in dataset).
        run_eagerly: skip tf.function tracing (worth it only for runs of a few steps).
        seed: seeds Python, NumPy, TF and the data pipeline.
        family: "efficientnet" or "resnet", for ``precision="auto"``'s per-family CPU table
            (:data:`~kerasnets.training.precision.CPU_BF16_SPEEDUP`); default: the ``model``
            preset's family, else none (float32 on CPU).
        model: a preset name (``kerasnets info`` lists them) built instead of ``build_model``
            (CLI ``--model``), with ``model_options`` that the preset's builder accepts.
        weights: ``"imagenet"``, the path of a ``.weights.h5`` / ``.keras`` file copied by structure, or
            ``"timm:<hub name or folder>"`` (a timm checkpoint, by name; the run then evaluates with
            timm's crop and interpolation and its contract records timm's ``pretrained_cfg``), loaded
            into the model before training (CLI ``--weights``); the classifier is re-initialised
            when the class count differs.
        phases: a multi-phase schedule (fine-tuning); their epochs add up to ``epochs``. Empty:
            one phase that trains everything.
        stages: progressive learning (:class:`~kerasnets.training.progressive.Stage`, e.g. from
            :func:`~kerasnets.training.progressive.progressive_stages`): each stage's image size,
            RandAugment, MixUp/CutMix and dropout/stochastic-depth rates; their epochs add up to
            ``epochs``; one optimizer and learning-rate schedule across them. ``image_size`` stays the
            evaluation size. The model must take every stage's size (build it with
            ``input_shape=(None, None, 3)``; ``model`` presets are). Not with ``phases``.
        train_examples / eval_examples: the known sizes of the train and eval splits (ImageNet:
            1,281,167 / 50,000). TFRecords written by ``write_tfrecords`` carry their counts; foreign
            TFRecords are otherwise counted once (cached in the run folder).
        l2_regularization: L2 penalty added to the loss, ``l2 * sum(tf.nn.l2_loss(w))`` over the
            trainable weights except BatchNormalization's (the TPU reference's 1e-5; coupled SGD
            weight decay ``wd`` is the same penalty with ``l2 = wd``). ``l2_on_batch_norm`` includes
            BN's gamma and beta too (torchvision's original ResNet recipe).
        search: a :class:`kerasnets.tuning.Search`: the recipe is a compound-scaling search
            (``kerasnets search``), each trial trained with the fields above; builders unused.
        steps_per_execution: training steps per compiled call (Keras' ``compile(steps_per_execution=)``):
            loss and accuracy accumulate on the device and the host reads them once per call.
            ``"auto"``: :data:`AUTO_STEPS_PER_EXECUTION` (32). Calls are cut at backups and epoch
            ends; the weights do not depend on it.
        ema_decay: keep an exponential moving average of the weights as the TPU reference
            (``tf.train.ExponentialMovingAverage(decay, num_updates=step)``: the decay used at
            update n is ``min(ema_decay, (1 + n) / (10 + n))``); evaluation and export use it,
            training continues from the raw weights. None: no EMA.
    """

    name: str
    build_model: Callable[..., Any] | None = None
    build_optimizer: Callable[..., Any] | None = None
    data: Any = "digits"
    eval_data: Any = None
    train_split: str = "train"
    eval_split: str = "test"
    image_size: int = 224
    batch_size: int = 32
    epochs: int = 1
    steps_per_epoch: int | None = None
    eval_steps: int | None = None
    base_learning_rate: float = 0.1
    reference_batch: int = 256
    label_smoothing: float = 0.0
    train_options: dict = dataclasses.field(default_factory=dict)
    eval_options: dict = dataclasses.field(default_factory=dict)
    precision: str = "auto"
    strategy: str = "auto"
    backup_every_steps: int = 0
    backup_every_epochs: int = 1
    validation_freq: int = 1
    export: tuple[str, ...] = ("keras", "saved_model", "tflite")
    output: str = "saved_models"
    smoke: dict = dataclasses.field(default_factory=dict)
    run_eagerly: bool = False
    seed: int = 0
    family: str | None = None
    model: str | None = None
    model_options: dict = dataclasses.field(default_factory=dict)
    weights: str | None = None
    phases: tuple[Phase, ...] = ()
    stages: tuple[Stage, ...] = ()
    train_examples: int | None = None
    eval_examples: int | None = None
    l2_regularization: float = 0.0
    l2_on_batch_norm: bool = False
    ema_decay: float | None = None
    steps_per_execution: int | str = "auto"
    search: Any = None
    source_file: str | None = None

    def __post_init__(self) -> None:
        for field in ("image_size", "batch_size", "epochs", "backup_every_epochs", "validation_freq"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"recipe {self.name!r}: {field} must be a positive integer, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"recipe {self.name!r}: seed must be an integer >= 0, got {self.seed!r}")
        if self.search is None and (not callable(self.build_model) or not callable(self.build_optimizer)):
            raise ValueError(f"recipe {self.name!r}: build_model and build_optimizer must be callables "
                             "(a compound-scaling search gives search=kerasnets.tuning.Search(...) instead)")
        for field in ("train_examples", "eval_examples", "steps_per_epoch"):
            value = getattr(self, field)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"recipe {self.name!r}: {field} must be a positive integer or None, got {value!r}")
        if not (isinstance(self.l2_regularization, (int, float)) and self.l2_regularization >= 0):
            raise ValueError(f"recipe {self.name!r}: l2_regularization must be a number >= 0, "
                             f"got {self.l2_regularization!r}")
        if self.family not in (None, "efficientnet", "resnet"):
            raise ValueError(f"recipe {self.name!r}: family must be 'efficientnet', 'resnet' or None, got {self.family!r}")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"recipe {self.name!r}: ema_decay must be in (0, 1) or None, got {self.ema_decay!r}")
        resolve_steps_per_execution(self.steps_per_execution, f"recipe {self.name!r}: ")
        if self.phases and self.stages:
            raise ValueError(f"recipe {self.name!r}: give phases (fine-tuning) or stages (progressive learning), "
                             "not both")
        for kind, parts in (("phases", self.phases), ("stages", self.stages)):
            if parts and sum(p.epochs for p in parts) != self.epochs:
                raise ValueError(f"recipe {self.name!r}: the {kind}' epochs {[p.epochs for p in parts]} must add up "
                                 f"to epochs={self.epochs}")

    def schedule(self) -> tuple[Phase, ...]:
        """The phases to run: ``phases``, one per stage (training every layer), or one phase that
        trains every layer for ``epochs``."""
        if self.stages:
            return tuple(Phase(stage.name, stage.epochs, TRAIN_ALL) for stage in self.stages)
        return self.phases or (Phase("train", self.epochs, TRAIN_ALL),)


def load_recipe(path: str) -> Recipe:
    """Import a recipe file and return its ``RECIPE``; clear errors for a missing file or field."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"recipe file {path!r} not found (e.g. recipes/quickstart.py)")
    spec = importlib.util.spec_from_file_location(f"kerasnets_recipe_{abs(hash(os.path.abspath(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    recipe = getattr(module, "RECIPE", None)
    if not isinstance(recipe, Recipe):
        raise ValueError(
            f"recipe file {path!r} must define RECIPE = kerasnets.training.Recipe(name=..., build_model=..., "
            "build_optimizer=...)"
        )
    return dataclasses.replace(recipe, source_file=os.path.abspath(path))


def apply_overrides(recipe: Recipe, smoke: bool = False, **overrides: Any) -> Recipe:
    """Recipe with ``--smoke`` deltas and command-line overrides (None values are ignored)."""
    changes = dict(recipe.smoke) if smoke else {}
    changes.update({k: v for k, v in overrides.items() if v is not None})
    fields = {f.name for f in dataclasses.fields(Recipe)}
    unknown = sorted(set(changes) - fields)
    if unknown:
        raise ValueError(f"unknown recipe fields {unknown}; allowed: {sorted(fields)}")
    given = set(changes)
    for kind in ("phases", "stages"):
        parts = changes.get(kind, getattr(recipe, kind))
        if parts and "epochs" in given and kind not in given:
            changes[kind] = split_epochs(parts, changes["epochs"])
    if recipe.stages and "image_size" in given and "stages" not in given:  # --image-size: the stages follow
        changes["stages"] = scale_stage_sizes(changes.get("stages", recipe.stages), recipe.image_size,
                                              changes["image_size"])
    return dataclasses.replace(recipe, **changes)


def split_epochs(phases: tuple[Any, ...], epochs: int) -> tuple[Any, ...]:
    """``phases`` (or stages) with their epochs rescaled to add up to ``epochs`` (each >= 1; CLI ``--epochs``)."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < len(phases):
        raise ValueError(f"epochs must be an integer >= {len(phases)} (one per phase: "
                         f"{', '.join(p.name for p in phases)}), got {epochs!r}")
    total = sum(p.epochs for p in phases)
    counts = [max(1, round(p.epochs * epochs / total)) for p in phases]
    counts[-1] = max(1, epochs - sum(counts[:-1]))
    while sum(counts) > epochs:  # rounding up of the early phases overshot: take from the largest
        counts[counts.index(max(counts))] -= 1
    return tuple(dataclasses.replace(p, epochs=n) for p, n in zip(phases, counts))


def smoke_overrides(**changes: Any) -> dict:
    """``Recipe.smoke`` for a recipe's real code path: 2 eager steps at 64 px, one eval batch, .keras only."""
    return {"image_size": 64, "batch_size": 4, "epochs": 1, "steps_per_epoch": 2, "eval_steps": 1,
            "export": ("keras",), "run_eagerly": True, **changes}
