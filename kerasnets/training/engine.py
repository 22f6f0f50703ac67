"""The training engine behind every recipe: ``train(recipe)`` runs a :class:`~kerasnets.training.trainer.Trainer`
(setup: strategy, precision, data, model; fit: a ``strategy.run`` loop with exact backups;
finalize: evaluation, summary, exports)."""

from __future__ import annotations

from kerasnets.training.finalize import RunResult
from kerasnets.training.recipe import Recipe
from kerasnets.training.setup import STANDIN_TFRECORDS
from kerasnets.training.trainer import Trainer, accelerator_present

__all__ = ["train", "RunResult", "accelerator_present", "STANDIN_TFRECORDS"]


def train(recipe: Recipe, resume: bool = True, verbose: int | str = "auto", run_name: str | None = None,
          started: float | None = None) -> RunResult:
    """Train ``recipe`` phase by phase (fine-tuning recipes freeze and unfreeze blocks between
    phases), evaluate, save ``model.keras`` with its preprocessing contract, export, and write
    ``summary.json`` / ``history.csv`` / ``curves.png`` / TensorBoard logs into
    ``recipe.output/run_name``. Resumes exactly from the run's last backup unless
    ``resume=False``, across phase boundaries too.

    Data, model and weights are checked before anything is written: a bad source, an empty
    dataset, an unknown size or weights of another architecture raise ValueError and leave no run
    folder behind.

    ``started`` is the wall-clock time the summary's ``timings`` count from (default: now; the
    CLI passes its process start).
    """
    return Trainer(recipe, resume=resume, verbose=verbose, run_name=run_name, started=started).train()
