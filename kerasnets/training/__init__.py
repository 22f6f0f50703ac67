"""Training: recipes, the Trainer (one ``strategy.run`` loop for every strategy), mixed precision,
distribution, exactly resumable runs.

The names below load their module on first use (PEP 562), so that importing one light module of
the package (``kerasnets.training.precision`` for the CLI's choices) does not import the engine,
the data pipelines or TensorFlow Datasets. The package never imports the CLI; recipe files run
themselves with :func:`kerasnets.cli.recipe_main`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# registered for .keras loading (keras.saving.register_keras_serializable) on import of the
# package, as before it was lazy: both import keras only
from kerasnets.training import optimizers as _optimizers  # noqa: F401
from kerasnets.training import schedules as _schedules  # noqa: F401

if TYPE_CHECKING:  # the same names, eagerly, for readers and type checkers
    from kerasnets.training.distribute import STRATEGIES, resolve_strategy  # noqa: F401
    from kerasnets.training.engine import STANDIN_TFRECORDS, RunResult, train  # noqa: F401
    from kerasnets.training.errors import TrainingDiverged  # noqa: F401
    from kerasnets.training.finetune import build_preset, saved_architecture, timm_architecture  # noqa: F401
    from kerasnets.training.optimizers import TF1RMSprop, adamw_warmup_cosine  # noqa: F401
    from kerasnets.training.progressive import Stage, progressive_stages  # noqa: F401
    from kerasnets.training.precision import PRECISIONS, precision_scope, resolve_precision  # noqa: F401
    from kerasnets.training.recipe import (TRAIN_ALL, Phase, Recipe, TrainContext, apply_overrides, load_recipe,  # noqa: F401
                                           smoke_overrides)
    from kerasnets.training.schedules import (WarmupExponentialDecay, exclude_norm_and_bias_from_weight_decay,  # noqa: F401
                                              warmup_cosine)
    from kerasnets.training.trainer import Trainer  # noqa: F401

#: public name -> the module that defines it
_MODULES = {
    "Recipe": "recipe", "Phase": "recipe", "TRAIN_ALL": "recipe", "TrainContext": "recipe",
    "Stage": "progressive", "progressive_stages": "progressive",
    "apply_overrides": "recipe", "load_recipe": "recipe", "smoke_overrides": "recipe",
    "Trainer": "trainer", "train": "engine", "RunResult": "engine", "STANDIN_TFRECORDS": "engine",
    "TF1RMSprop": "optimizers", "adamw_warmup_cosine": "optimizers", "TrainingDiverged": "errors",
    "build_preset": "finetune", "saved_architecture": "finetune", "timm_architecture": "finetune",
    "resolve_strategy": "distribute", "STRATEGIES": "distribute",
    "resolve_precision": "precision", "precision_scope": "precision", "PRECISIONS": "precision",
    "WarmupExponentialDecay": "schedules", "warmup_cosine": "schedules",
    "exclude_norm_and_bias_from_weight_decay": "schedules",
}

__all__ = list(_MODULES)


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module 'kerasnets.training' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"kerasnets.training.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
