"""Training: recipes, the Trainer (one ``strategy.run`` loop for every strategy), mixed precision,
distribution, exactly resumable runs."""

from kerasnets.training.errors import TrainingDiverged
from kerasnets.training.distribute import STRATEGIES, resolve_strategy
from kerasnets.training.engine import STANDIN_TFRECORDS, RunResult, train
from kerasnets.training.optimizers import TF1RMSprop
from kerasnets.training.trainer import Trainer
from kerasnets.training.precision import PRECISIONS, precision_scope, resolve_precision
from kerasnets.training.finetune import build_preset, saved_architecture
from kerasnets.training.recipe import TRAIN_ALL, Phase, Recipe, TrainContext, apply_overrides, load_recipe, smoke_overrides
from kerasnets.training.schedules import WarmupExponentialDecay, exclude_norm_and_bias_from_weight_decay, warmup_cosine

__all__ = [
    "Recipe",
    "Trainer",
    "TF1RMSprop",
    "Phase",
    "TRAIN_ALL",
    "TrainContext",
    "build_preset",
    "saved_architecture",
    "train",
    "train_main",
    "RunResult",
    "TrainingDiverged",
    "load_recipe",
    "apply_overrides",
    "smoke_overrides",
    "resolve_strategy",
    "resolve_precision",
    "precision_scope",
    "PRECISIONS",
    "STRATEGIES",
    "STANDIN_TFRECORDS",
    "WarmupExponentialDecay",
    "warmup_cosine",
    "exclude_norm_and_bias_from_weight_decay",
]


def train_main(recipe: Recipe, argv=None) -> int:
    """``python recipes/x.py [options]``: the same options as ``kerasnets train``."""
    from kerasnets.cli import main

    import sys

    return main(["train", recipe.source_file or sys.argv[0], *(sys.argv[1:] if argv is None else argv)])
