"""The trainer's first phase: strategy, precision, data (with explicit sizes), model and weights.

Everything here validates the run before anything is written: a bad source, an empty dataset, an
unknown size or weights of another architecture raise ValueError and leave no run folder behind.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from kerasnets import data as kdata
from kerasnets import storage
from kerasnets.models.freeze import check_trainable_from
from kerasnets.models.pretrained import load_pretrained
from kerasnets.training.distribute import check_divisible, global_batch_size, is_chief, resolve_strategy
from kerasnets.training.finetune import build_preset, timm_eval_options
from kerasnets.training.progressive import check_stages
from kerasnets.training.precision import check_model_precision, precision_scope, resolve_precision
from kerasnets.training.recipe import TRAIN_ALL, Phase, Recipe, TrainContext

__all__ = ["RunSetup", "setup", "STANDIN_TFRECORDS", "worker_index", "describe_source", "unsettled_batch_norm"]

log = logging.getLogger("kerasnets.training")
#: ``Recipe.data`` value (used by --smoke) that writes digits as ImageNet-layout TFRecords first.
STANDIN_TFRECORDS = "standin:tfrecords"


@dataclasses.dataclass
class RunSetup:
    """What :func:`setup` prepared: the strategy and its arithmetic, the data, the model."""

    recipe: Recipe
    run_dir: str
    strategy: tf.distribute.Strategy
    strategy_name: str
    policy: str
    global_batch: int
    chief: bool
    task: int  # this worker's index (0 on one machine)
    workers: int
    train_ds: tf.data.Dataset  # this worker's batches (global batch / workers images each)
    eval_ds: tf.data.Dataset  # the whole held-out split, every image once, chief-side batches
    info: kdata.DatasetInfo
    eval_info: kdata.DatasetInfo
    carve: float | None
    steps_per_epoch: int
    context: TrainContext
    model: keras.Model
    weights_report: Any
    phases: tuple[Phase, ...]
    # the keyword arguments of kerasnets.data.load that made ``train_ds``: progressive stages load
    # their pipelines with these, at their own size and augmentation
    train_load: dict = dataclasses.field(default_factory=dict)
    # :func:`unsettled_batch_norm`'s finding for this run (None: the moving statistics settle)
    batch_norm_warning: str | None = None

    @property
    def multiworker(self) -> bool:
        """True under MultiWorkerMirroredStrategy."""
        return isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy)

    @property
    def tpu(self) -> bool:
        """True under TPUStrategy."""
        return isinstance(self.strategy, tf.distribute.TPUStrategy)


def worker_index() -> tuple[int, int]:
    """``(index, count)`` of this worker in ``TF_CONFIG`` (``(0, 1)`` without it); chief first."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return 0, 1
    config = json.loads(raw)
    cluster, task = config.get("cluster", {}), config.get("task", {})
    chiefs, workers = len(cluster.get("chief", [])), len(cluster.get("worker", []))
    index = 0 if task.get("type") == "chief" else chiefs + int(task.get("index", 0))
    return index, max(1, chiefs + workers)


def _standin_tfrecords(run_dir: str) -> str:
    """Digits written as JPEG files, then as TFRecord shards: exercises the ImageNet input path offline."""
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


def describe_source(source: Any) -> str:
    """A data source as one short line for summaries and logs: ``(images, labels)`` numpy arrays as
    their shapes and dtypes (``str`` printed every pixel), anything else as ``str``."""
    if isinstance(source, (tuple, list)) and len(source) == 2 and all(hasattr(a, "shape") for a in source):
        images, labels = (np.asarray(a) for a in source)
        return f"numpy arrays: images {images.shape} {images.dtype}, labels {labels.shape} {labels.dtype}"
    return str(source)


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
    splits = kdata.available_splits(eval_source, **options)
    if splits is None or recipe.eval_split in splits:
        return recipe.eval_split
    if recipe.eval_data is not None and _plain_folder(eval_source):
        chosen = "all"  # a separate folder of class subfolders: all of it is held out
    else:
        chosen = kdata.held_out_split(eval_source, recipe.eval_split, **options)
    if chosen != recipe.eval_split:
        log.warning("evaluating on split %r of %s: it has no %r split (it has %s)", chosen, eval_source,
                    recipe.eval_split, ", ".join(splits))
    return chosen


def _size_options(source: Any, examples: int | None, run_dir: str) -> dict:
    """TFRecords: the recipe's stated size, else a count cached in the run folder (read when the
    folder exists; a new run's count is stored by :func:`store_counts` once the run is valid)."""
    if kdata.source_kind(source) != "tfrecords":
        return {}
    if examples:
        return {"num_examples": examples}
    return {"count_cache": run_dir} if storage.isdir(run_dir) else {}


def store_counts(run: "RunSetup") -> None:
    """Cache the TFRecord counts this run made in its folder, so that a resumed run reads them."""
    from kerasnets.data.tfrecords import record_files, store_count

    for info in (run.info, run.eval_info):
        if info.extras.get("count_source") == "counted" and info.extras.get("kind") == "tfrecords":
            files = record_files(info.source)
            if files:
                store_count(files, info.num_examples, run.run_dir)


def _datasets(recipe: Recipe, worker_batch: int, eval_batch: int, drop_remainder: bool, run_dir: str,
              shard: tuple[int, int], train_dtype: str):
    if recipe.data is None:
        raise ValueError(f"recipe {recipe.name!r} has no data source: pass --data DIR (a folder of class subfolders, "
                         "or of train/ val/ test/ folders with class subfolders)")
    # a timm checkpoint is evaluated with timm's eval crop and interpolation unless the recipe says otherwise
    train_options = dict(recipe.train_options)
    eval_options = timm_eval_options(recipe.weights, recipe.image_size, recipe.eval_options)
    if recipe.eval_data is None:  # one source: train and its held-out split must be carved alike
        carve = {train_options.get("validation_split"), eval_options.get("validation_split")} - {None}
        if len(carve) > 1:
            raise ValueError(f"recipe {recipe.name!r} carves validation_split {sorted(carve)} differently for training "
                             "and evaluation: set one value (in train_options and eval_options alike)")
        if carve:
            train_options["validation_split"] = eval_options["validation_split"] = carve.pop()
    if train_options.get("cache"):
        raise ValueError(f"recipe {recipe.name!r}: train_options cache=True would put the whole training set into "
                         "every backup (the data iterator is saved with the run); remove it (eval_options may cache)")
    train_source = _source(recipe.data, run_dir)
    # a fixed element order: the same seed gives the same run, and a resumed run the same batches
    train_options.setdefault("deterministic", True)
    train_load = dict(source=train_source, split=recipe.train_split, training=True, repeat=True,
                      drop_remainder=drop_remainder, image_size=recipe.image_size, batch_size=worker_batch,
                      seed=recipe.seed, one_hot=True, **_size_options(train_source, recipe.train_examples, run_dir),
                      **({"shard": (shard[1], shard[0])} if shard[1] > 1 else {}),  # each worker its part
                      **{"dtype": train_dtype, **train_options})
    train_ds, info = kdata.load(**train_load)
    eval_source = _source(recipe.eval_data if recipe.eval_data is not None else recipe.data, run_dir)
    eval_split = _eval_split(recipe, eval_source, eval_options)
    eval_ds, eval_info = kdata.load(eval_source, eval_split, training=False, image_size=recipe.image_size,
                                    batch_size=eval_batch, seed=recipe.seed, one_hot=True,
                                    **_size_options(eval_source, recipe.eval_examples, run_dir), **eval_options)
    numbered = tuple(str(i) for i in range(info.num_classes))  # sources without names (TFRecords without labels)
    if eval_info.num_classes != info.num_classes or numbered not in (info.class_names, eval_info.class_names) and \
            eval_info.class_names != info.class_names:
        raise ValueError(f"training data has classes {list(info.class_names)[:10]} but evaluation data "
                         f"{list(eval_info.class_names)[:10]}: pass --eval-data with the same classes")
    kdata.check_not_empty(train_ds, info)
    kdata.check_not_empty(eval_ds, eval_info)
    return train_ds, eval_ds, info, eval_info, eval_options.get("validation_split"), train_load


def steps_per_epoch(recipe: Recipe, num_examples: int, global_batch: int) -> int:
    """``recipe.steps_per_epoch``, else ceil(examples / global batch); an unknown size is an error."""
    if recipe.steps_per_epoch is not None:
        return recipe.steps_per_epoch
    if num_examples is None or num_examples < 1:
        raise ValueError(f"the size of {recipe.data!r} is unknown, so steps per epoch cannot be computed: pass "
                         "--steps-per-epoch N (or state Recipe.train_examples)")
    return math.ceil(num_examples / global_batch)


def model_family(recipe: Recipe) -> str | None:
    """The family of the model the run builds, for ``precision="auto"``: the ``model`` preset's when
    one is given (``--model``; "resnet..." presets are ResNets, the others EfficientNets), else
    ``recipe.family`` (None: unknown)."""
    if recipe.model:
        return "resnet" if recipe.model.lower().replace("-", "").startswith("resnet") else "efficientnet"
    return recipe.family


def _build_model(recipe: Recipe, context: TrainContext) -> tuple[keras.Model, Any]:
    """The recipe's model (or ``--model``'s preset) with ``--weights`` copied in; and the copy report."""
    if recipe.model:  # progressive stages train at several sizes: a preset then takes any
        model = build_preset(recipe.model, None if recipe.stages else recipe.image_size, context.num_classes,
                             context.synchronized_bn, **recipe.model_options)
    else:
        model = recipe.build_model(recipe, context)
    if int(model.output_shape[-1]) != context.num_classes:
        raise ValueError(f"the recipe's model has {model.output_shape[-1]} outputs but the data has "
                         f"{context.num_classes} classes: build it with classes=context.num_classes")
    report = load_pretrained(model, recipe.weights, class_names=context.class_names) if recipe.weights else None
    if report is not None:
        log.warning("weights: %s", report)
    return model, report


#: the share of a BatchNormalization moving statistic still at its initial value after training
#: (``momentum ** steps``) above which a run is warned that its evaluation may be meaningless
UNSETTLED_SHARE = 0.05


def unsettled_batch_norm(model: keras.Model, steps: int) -> str | None:
    """Why ``steps`` training steps leave ``model``'s BatchNormalization moving statistics unsettled,
    or None. ``steps`` counts only the steps that update them (the caller leaves out phases that
    keep BatchNormalization frozen, and runs whose statistics come with pretrained weights).
    A moving statistic keeps ``momentum ** steps`` of its initial value (mean 0, variance 1), and
    evaluation and exports use the moving statistics, not the batch's (with a weight EMA, an
    average of them, which lags further). Measured: the EfficientNetV2 recipe's rehearsal
    (momentum 0.99, 128 steps: 28% left) evaluated at 10% with a loss of 14; the same weights
    after recomputing the statistics on 512 training images scored 38% with a loss of 1.9; the
    ratio of batch to moving variance grew from 0.5 at its first BatchNormalization to 1e9 at
    its last. A momentum of 1 or more never moves the statistics: nothing to warn about here."""
    momenta = [float(layer.momentum) for layer in model._flatten_layers(include_self=False, recursive=True)
               if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]
    momenta = [m for m in momenta if 0.0 <= m < 1.0]
    if not momenta or steps <= 0:
        return None
    momentum = max(momenta)
    share = momentum ** steps
    if share <= UNSETTLED_SHARE:
        return None
    return (f"BatchNormalization momentum {momentum:g} averages its moving statistics over about "
            f"{1 / (1 - momentum):.0f} steps and this run trains them for {steps}: {share:.0%} of each moving "
            "statistic will still be its initial value, so the evaluation and the exports (which use the moving "
            "statistics) can score far below the training accuracy. Train at least "
            f"{math.ceil(math.log(UNSETTLED_SHARE) / math.log(momentum))} steps, or build the model with a lower "
            "BatchNormalization momentum (the kerasnets builders' bn_momentum=0.9, keras.applications' "
            "EfficientNetV2 value)")


def setup(recipe: Recipe, run_name: str | None = None) -> RunSetup:
    """Strategy, precision, datasets, steps per epoch, model and weights of a run; nothing written."""
    if recipe.search is not None:
        raise ValueError(f"recipe {recipe.name!r} is a compound-scaling search: run it with "
                         f"kerasnets search {recipe.source_file or 'RECIPE_FILE'}")
    keras.utils.set_random_seed(recipe.seed)
    strategy = resolve_strategy(recipe.strategy)
    policy = resolve_precision(recipe.precision, strategy, model_family(recipe))
    replicas = strategy.num_replicas_in_sync
    global_batch = global_batch_size(recipe.batch_size, strategy)
    check_divisible(global_batch, strategy)
    multiworker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    tpu = isinstance(strategy, tf.distribute.TPUStrategy)
    task, workers = worker_index() if multiworker else (0, 1)
    phases = recipe.schedule()
    if multiworker and len(phases) > 1:
        raise ValueError("multi-phase recipes (fine-tuning phases, progressive stages) do not run under "
                         "MultiWorkerMirroredStrategy yet; use --strategy default or mirrored")
    run_dir = os.path.join(recipe.output, run_name or recipe.name)
    train_ds, eval_ds, info, eval_info, carve, train_load = _datasets(
        recipe, global_batch // workers, global_batch, drop_remainder=replicas > 1 or tpu, run_dir=run_dir,
        # uint8 training batches: a quarter of the bytes to prefetch, back up and copy to the device,
        # cast to float32 there, in the step (StepFunctions); the TPU infeed keeps float32
        shard=(task, workers), train_dtype="float32" if tpu else "uint8")
    steps = steps_per_epoch(recipe, info.num_examples, global_batch)
    learning_rate = recipe.base_learning_rate * global_batch / recipe.reference_batch
    context = TrainContext(info.num_classes, steps, global_batch, replicas, learning_rate,
                           synchronized_bn=replicas > 1, class_names=info.class_names, epochs=recipe.epochs)
    name = "MultiWorkerMirroredStrategy" if multiworker else type(strategy).__name__
    log.warning("strategy %s with %d replica(s); per-replica batch %d -> global batch %d; %d steps per epoch "
                "(%s examples); learning rate %.5g (%.5g per %d images, scaled linearly); precision %s", name, replicas,
                recipe.batch_size, global_batch, steps, info.num_examples, learning_rate, recipe.base_learning_rate,
                recipe.reference_batch, policy)
    with strategy.scope(), precision_scope(policy):
        model, weights_report = _build_model(recipe, context)
    check_model_precision(model, policy)  # loss scaling and the summary follow ``policy``: the model must too
    for phase in phases:  # a bad phase fails now, not after the phases before it have trained
        if phase.trainable_from != TRAIN_ALL:
            check_trainable_from(model, phase.trainable_from)
    check_stages(model, recipe.stages)  # a bad stage too
    # the steps that move BatchNormalization's statistics: phases that freeze keep it in inference
    # mode (freeze.py), and pretrained weights bring their own statistics
    batch_norm = None if recipe.weights else unsettled_batch_norm(
        model, steps * sum(phase.epochs for phase in phases if phase.trainable_from == TRAIN_ALL))
    if batch_norm:
        log.warning("%s", batch_norm)
    return RunSetup(recipe, run_dir, strategy, name, policy, global_batch, is_chief(), task, workers, train_ds,
                    eval_ds, info, eval_info, carve, steps, context, model, weights_report, phases, train_load,
                    batch_norm)
