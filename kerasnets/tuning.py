"""keras-tuner search of EfficientNet's compound-scaling coefficients (paper STEP 1).

At phi = 1 the paper grid-searched depth, width and resolution bases alpha, beta, gamma >= 1 under
``alpha * beta^2 * gamma^2 ~= 2`` (FLOPs double per unit of phi) and found 1.2, 1.1, 1.15. Here the
constraint is applied to the grid before any model is built: the tuner only ever sees feasible
points (one ``Choice`` hyperparameter), so GridSearch (the paper's method), RandomSearch and
BayesianOptimization never waste a trial. STEP 2 is ``kerasnets.EfficientNet(phi, coefficients=...)``.
"""

from __future__ import annotations

import csv
import dataclasses
import gc
import hashlib
import io
import itertools
import json
import math
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import keras
import keras_tuner as kt

from kerasnets import storage
from kerasnets.models.efficientnet import EfficientNet
from kerasnets.profile import profile
from kerasnets.scaling import round_resolution
from kerasnets.training.optimizers import adamw_warmup_cosine
from kerasnets.training.recipe import Recipe

__all__ = ["SearchSpace", "Search", "CompoundScalingHyperModel", "ORACLES", "run_search",
           "load_coefficients", "release_traced_graphs", "trained_resolution", "effective_gamma",
           "search_fingerprint"]

ORACLES = ("grid", "random", "bayesian")


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """Grid of (alpha, beta, gamma), filtered by ``|alpha * beta^2 * gamma^2 - target| <= tolerance``."""

    alphas: tuple[float, ...] = (1.0, 1.1, 1.2, 1.3, 1.4)
    betas: tuple[float, ...] = (1.0, 1.05, 1.1, 1.15, 1.2)
    gammas: tuple[float, ...] = (1.0, 1.05, 1.1, 1.15, 1.2, 1.25)
    target: float = 2.0
    tolerance: float = 0.1

    def points(self) -> list[tuple[float, float, float]]:
        """Feasible grid points, ordered by distance to the target product (closest first)."""
        for name in ("alphas", "betas", "gammas"):
            values = getattr(self, name)
            if not values or any(not isinstance(v, (int, float)) or v < 1.0 for v in values):
                raise ValueError(f"SearchSpace.{name} must be numbers >= 1 (the paper's constraint), got {values!r}")
        feasible = [
            (a, b, g) for a, b, g in itertools.product(self.alphas, self.betas, self.gammas)
            if abs(a * b * b * g * g - self.target) <= self.tolerance
        ]
        if not feasible:
            raise ValueError(
                f"no grid point satisfies |alpha * beta^2 * gamma^2 - {self.target}| <= {self.tolerance}; "
                "widen the grid or the tolerance"
            )
        return sorted(feasible, key=lambda p: (abs(p[0] * p[1] ** 2 * p[2] ** 2 - self.target), p))


@dataclasses.dataclass(frozen=True)
class Search:
    """What makes a :class:`~kerasnets.training.Recipe` a coefficient search (``Recipe(search=Search(...))``):
    the grid, the phi = 0 base resolution, the phi the trials are built at, and the objective.

    The recipe's own fields give the data and each trial's training: ``data``, ``train_split``,
    ``eval_split`` (the split trials are selected on), ``epochs``, ``steps_per_epoch``,
    ``eval_steps``, ``batch_size``, ``base_learning_rate`` at ``reference_batch``,
    ``label_smoothing``, ``model_options``, ``train_options``, ``eval_options``, ``run_eagerly`` and
    ``smoke``.

    ``objective`` is "val_accuracy" or "score", the paper's ``ACC * (FLOPs / T) ** w`` with
    ``T = flops_target`` (default: twice the baseline's FLOPs) and ``w = -0.07``.

    Trials are selected on a validation split carved from the training data (``validation_split``
    of it, seeded), never on the test split: the search's result is then measured on test data it
    never saw. A source with a validation split of its own (a ``val/`` folder) uses that.
    """

    space: SearchSpace = dataclasses.field(default_factory=SearchSpace)
    base_resolution: int = 32
    phi: float = 1.0
    validation_split: float = 0.1
    objective: str = "val_accuracy"
    flops_budget: int | None = None
    flops_target: int | None = None
    score_exponent: float = -0.07
    max_trials: int = 10


def _learning_rate(recipe: Recipe) -> float:
    """The recipe's learning rate at its batch size (``base_learning_rate`` scaled linearly)."""
    return recipe.base_learning_rate * recipe.batch_size / recipe.reference_batch


def _search(recipe: Recipe) -> Search:
    """``recipe.search``, or ValueError when the recipe is no search."""
    if not isinstance(getattr(recipe, "search", None), Search):
        raise ValueError(f"recipe {recipe.name!r} is no compound-scaling search: give it "
                         "search=kerasnets.tuning.Search(space=SearchSpace(...), ...)")
    phi = recipe.search.phi
    if isinstance(phi, bool) or not isinstance(phi, (int, float)) or phi == 0:
        raise ValueError(f"Search.phi must be a nonzero number (at phi = 0 every point is the same baseline), "
                         f"got {phi!r}; the paper searches at phi=1.0")
    return recipe.search


def trained_resolution(base_resolution: int, gamma: float, phi: float) -> int:
    """The input size a trial at ``phi`` trains: ``base_resolution * gamma^phi`` rounded to a multiple of 8
    (:func:`kerasnets.scaling.round_resolution`), as ``EfficientNet(phi, coefficients=...)`` builds it."""
    return round_resolution(base_resolution * gamma ** phi)


def effective_gamma(resolution: int, base_resolution: int, phi: float) -> float:
    """The resolution coefficient a trial measured: ``(resolution / base_resolution) ** (1 / phi)``.

    Rounding to multiples of 8 merges grid gammas at small sizes (at 32 px and phi = 1, gammas 1.15,
    1.2 and 1.25 all train at 40 px: effective gamma 1.25), so this, not the grid value, is what the
    trial's accuracy and FLOPs belong to.
    """
    return (resolution / base_resolution) ** (1.0 / phi)


def _carve(recipe: Recipe) -> dict[str, Any]:
    """The ``validation_split`` option when the source has no validation split of its own."""
    from kerasnets import data

    splits = data.available_splits(recipe.data, validation_split=recipe.search.validation_split)
    native = data.available_splits(recipe.data)
    if native is None or recipe.eval_split in native:  # unknown (TFDS, TFRecords) or its own split
        return {}
    if splits is not None and recipe.eval_split not in splits:
        raise ValueError(f"search data {recipe.data!r} has no {recipe.eval_split!r} split and none can be carved "
                         f"from {recipe.train_split!r} (it has {', '.join(splits)}); for TFDS pass "
                         "train_split='train[:90%]', eval_split='train[90%:]'")
    return {"validation_split": recipe.search.validation_split}


@contextmanager
def release_traced_graphs() -> Iterator[None]:
    """Drop the custom gradients that tracing registers globally while the block runs.

    Under TF 2.21 every traced train step all-reduces its gradients through
    ``ReplicaContext.all_reduce``, a ``tf.custom_gradient``: in graph mode that registers a
    ``CustomGradient-N`` function in TensorFlow's global gradient registry and never removes it.
    Its closure holds the step's gradient tensors, hence the whole FuncGraph (~450 MB for a phi = 1
    EfficientNet), so every trial leaked its traced graphs even after ``clear_session``. The entries
    are only read while the graph is being differentiated, i.e. while it is traced inside the block.
    """
    registry = None
    if keras.backend.backend() == "tensorflow":
        from tensorflow.python.framework import ops as tf_ops  # private: no public API unregisters

        registry = getattr(getattr(tf_ops, "_gradient_registry", None), "_registry", None)
    before = set(registry) if isinstance(registry, dict) else set()
    try:
        yield
    finally:
        if isinstance(registry, dict):
            for name in set(registry) - before:
                if str(name).startswith("CustomGradient-"):
                    del registry[name]
        gc.collect()


def _key(point: tuple[float, float, float]) -> str:
    return ",".join(f"{v:g}" for v in point)


def _parse(key: str) -> tuple[float, float, float]:
    alpha, beta, gamma = (float(v) for v in key.split(","))
    return alpha, beta, gamma


class CompoundScalingHyperModel(kt.HyperModel):
    """Builds EfficientNet at ``recipe.search.phi`` from a feasible (alpha, beta, gamma) and trains it on the recipe's data.

    ``fit`` returns the metrics keras-tuner records for each trial: val_accuracy, params, FLOPs,
    FLOPs ratio to the phi = 0 baseline, the resolution trained and its effective gamma, wall time
    and the paper's score.
    """

    def __init__(self, recipe: Recipe, num_classes: int, num_examples: int):
        super().__init__(name="compound_scaling")
        _search(recipe)
        if recipe.search.objective not in ("val_accuracy", "score"):
            raise ValueError(f"objective must be 'val_accuracy' or 'score', got {recipe.search.objective!r}")
        self.recipe = recipe
        self.num_classes = num_classes
        self.steps_per_epoch = recipe.steps_per_epoch or math.ceil(num_examples / recipe.batch_size)
        self.baseline_flops = self._flops(None)
        points = recipe.search.space.points()
        if recipe.search.flops_budget is not None:
            if recipe.search.flops_budget < self.baseline_flops:
                raise ValueError(
                    f"flops_budget {recipe.search.flops_budget:,} is below the phi = 0 baseline's "
                    f"{self.baseline_flops:,} FLOPs: no scaled model can fit it"
                )
            points = [p for p in points if self._flops(p) <= recipe.search.flops_budget]
            if not points:
                raise ValueError(f"no feasible grid point fits flops_budget {recipe.search.flops_budget:,}")
        self.points = points
        self.flops_target = recipe.search.flops_target or 2 * self.baseline_flops

    def _model(self, point: tuple[float, float, float] | None) -> keras.Model:
        recipe = self.recipe
        if point is None:  # the phi = 0 baseline: Eq. 3 at phi 0 is the B0 layout at the base resolution
            point, phi = (1.0, 1.0, 1.0), 0.0
        else:
            phi = recipe.search.phi
        size = trained_resolution(recipe.search.base_resolution, point[2], phi)
        return EfficientNet(phi, coefficients=point, base_resolution=recipe.search.base_resolution,
                            input_shape=(size, size, 3), classes=self.num_classes, **recipe.model_options)

    def _flops(self, point) -> int:
        flops = profile(self._model(point))["flops"]
        keras.backend.clear_session()
        return flops

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        """EfficientNet at phi from the chosen feasible point, compiled with the quickstart's optimizer
        (AdamW, one epoch of warmup then cosine, global clipping, no decay on norms and biases)."""
        keras.backend.clear_session()
        gc.collect()
        point = _parse(hp.Choice("coefficients", [_key(p) for p in self.points]))
        model = self._model(point)
        optimizer = adamw_warmup_cosine(_learning_rate(self.recipe), self.steps_per_epoch * self.recipe.epochs,
                                        warmup_steps=self.steps_per_epoch if self.recipe.epochs > 1 else 0)
        model.compile(
            optimizer=optimizer,
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=self.recipe.label_smoothing),
            metrics=["accuracy"],
            run_eagerly=self.recipe.run_eagerly,
        )
        return model

    def fit(self, hp: kt.HyperParameters, model: keras.Model, *args, callbacks=None, verbose=0, **kwargs):
        """Train on the recipe's data at the model's resolution and return the trial's metrics."""
        from kerasnets import data

        recipe = self.recipe
        started = time.time()
        size = model.input_shape[1]
        train, _ = data.load(recipe.data, recipe.train_split, size, recipe.batch_size, training=True,
                             repeat=True, one_hot=True, **recipe.train_options, **_carve(recipe))
        valid, _ = data.load(recipe.data, recipe.eval_split, size, recipe.batch_size, training=False,
                             one_hot=True, **recipe.eval_options, **_carve(recipe))
        with release_traced_graphs():
            history = model.fit(train, epochs=recipe.epochs, steps_per_epoch=self.steps_per_epoch,
                                validation_data=valid, validation_steps=recipe.eval_steps,
                                callbacks=list(callbacks or []), verbose=verbose)
        accuracy = float(history.history["val_accuracy"][-1])
        stats = profile(model)
        alpha, beta, gamma = _parse(hp.get("coefficients"))
        del train, valid, history  # the next build() clears the session and collects
        return {
            "val_accuracy": accuracy,
            "score": accuracy * (stats["flops"] / self.flops_target) ** recipe.search.score_exponent,
            "flops": float(stats["flops"]),
            "params": float(stats["params"]),
            "flops_ratio": stats["flops"] / self.baseline_flops,
            "resolution": float(size),
            "alpha": alpha,
            "beta": beta,
            "gamma": gamma,
            "effective_gamma": effective_gamma(size, recipe.search.base_resolution, recipe.search.phi),
            "wall_time": time.time() - started,
        }


class FeasibleGridOracle(kt.Oracle):
    """Grid search over the feasible points, in order, that resumes after a restart.

    keras-tuner's GridSearchOracle keeps its walk through the grid in memory only, so a reloaded
    project stops at once; here the next point is derived from the saved trials themselves.
    """

    def populate_space(self, trial_id):
        """The first feasible point no earlier trial has tried, or STOPPED when the grid is done."""
        choice = next(hp for hp in self.get_space().space if hp.name == "coefficients")
        tried = {trial.hyperparameters.values.get("coefficients") for trial in self.trials.values()}
        for value in choice.values:
            if value not in tried:
                return {"status": kt.engine.trial.TrialStatus.RUNNING, "values": {"coefficients": value}}
        return {"status": kt.engine.trial.TrialStatus.STOPPED, "values": None}


def _make_tuner(oracle: str, hypermodel, objective, max_trials: int, seed: int, directory: str):
    if oracle not in ORACLES:
        raise ValueError(f"oracle must be one of {ORACLES}, got {oracle!r}")
    common = dict(directory=directory, project_name="tuner", overwrite=False)
    if oracle == "grid":
        return kt.Tuner(oracle=FeasibleGridOracle(objective=objective, max_trials=max_trials, seed=seed),
                        hypermodel=hypermodel, **common)
    tuner_class = kt.RandomSearch if oracle == "random" else kt.BayesianOptimization
    return tuner_class(hypermodel, objective=objective, max_trials=max_trials, seed=seed, **common)


#: The Recipe fields a search's trials depend on (with its Search, the oracle and the seed).
_RECIPE_FIELDS = ("data", "train_split", "eval_split", "epochs", "steps_per_epoch", "eval_steps", "batch_size",
                  "base_learning_rate", "reference_batch", "label_smoothing", "model_options", "train_options",
                  "eval_options")
RECIPE_FILE = "search_recipe.json"


def _plain(value: Any) -> Any:
    """``value`` as JSON data: dataclasses and mappings as dicts, sequences as lists, arrays by digest."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "tobytes") and hasattr(value, "shape"):  # in-memory images / labels
        return f"array{tuple(value.shape)} {value.dtype} sha256:{hashlib.sha256(value.tobytes()).hexdigest()[:16]}"
    if callable(value) and hasattr(value, "__qualname__"):  # functions and classes: by name, not address
        return f"{getattr(value, '__module__', '?')}.{value.__qualname__}"
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(value))  # objects: repr without the memory address


def search_fingerprint(recipe: Recipe, oracle: str, seed: int) -> dict[str, Any]:
    """What a search's trials depend on: the Search (grid, phi, base resolution, objective, ...; not
    ``max_trials``, which a resumed search may raise), the data and training fields of the recipe,
    the oracle and the seed. Recorded in the project folder; a different one is refused on resume."""
    search = _plain(recipe.search)
    search.pop("max_trials")
    return {"search": search, **{name: _plain(getattr(recipe, name)) for name in _RECIPE_FIELDS},
            "oracle": oracle, "seed": seed}


def _claim_project(run_dir: str, fingerprint: dict[str, Any]) -> None:
    """Record ``fingerprint`` in a new project folder, or check that an existing project was made by it.

    keras-tuner resumes whatever project is in the folder, with its old grid and trials, whatever
    recipe asks: a search made by another recipe (or before recipes were recorded) is refused.
    """
    path = os.path.join(run_dir, RECIPE_FILE)
    fix = (f"pass another --output folder (run_search(output=...)), or delete {run_dir!r} to start this search "
           "over; rerun the recorded recipe to continue that search")
    if storage.exists(path):
        recorded = json.loads(storage.read_text(path))
        if recorded != fingerprint:
            differ = [k for k in sorted(set(recorded) | set(fingerprint)) if recorded.get(k) != fingerprint.get(k)]
            first = differ[0]
            raise ValueError(
                f"{run_dir!r} holds a search made by another recipe ({', '.join(differ)} differ; e.g. {first}: "
                f"recorded {recorded.get(first)!r}, now {fingerprint.get(first)!r}); resuming would keep its old "
                f"grid and trials: {fix}"
            )
        return
    if storage.isdir(os.path.join(run_dir, "tuner")):
        raise ValueError(f"{run_dir!r} holds a keras-tuner project without {RECIPE_FILE} (made before searches "
                         f"recorded their recipe), so it cannot be resumed safely: {fix}")
    storage.atomic_write_text(path, json.dumps(fingerprint, indent=2, sort_keys=True))


def run_search(recipe: Recipe, output: str = "search_runs", oracle: str = "grid", max_trials: int | None = None,
               seed: int = 0, verbose: int = 0) -> dict[str, Any]:
    """Run (or resume) the search; write ``best.json``, ``trials.csv``, ``trials.md`` and ``search.png``.

    The keras-tuner project lives in ``output/recipe.name/tuner``: an interrupted search continues
    where it stopped (the recipe is recorded in ``search_recipe.json``; resuming with a different
    recipe, oracle or seed is a ValueError), and keras-tuner's distributed mode (KERASTUNER_TUNER_ID, KERASTUNER_ORACLE_IP,
    KERASTUNER_ORACLE_PORT) runs a chief and workers. Returns the best trial's record.
    """
    from kerasnets import data

    _search(recipe)
    max_trials = max_trials or recipe.search.max_trials
    if max_trials < 1:
        raise ValueError(f"max_trials must be >= 1, got {max_trials}")
    if oracle not in ORACLES:
        raise ValueError(f"oracle must be one of {ORACLES}, got {oracle!r}")
    if recipe.eval_split == "test":
        raise ValueError("the search must not select on the test split; use eval_split='validation' (carved from "
                         "train with validation_split)")
    _, info = data.load(recipe.data, recipe.train_split, recipe.search.base_resolution, 8, training=False,
                        **recipe.eval_options, **_carve(recipe))
    hypermodel = CompoundScalingHyperModel(recipe, info.num_classes, info.num_examples)
    run_dir = os.path.join(output, recipe.name)  # local, or a URL (gs://): keras-tuner writes through tf.io.gfile
    storage.makedirs(run_dir)
    _claim_project(run_dir, search_fingerprint(recipe, oracle, seed))
    tuner = _make_tuner(oracle, hypermodel, kt.Objective(recipe.search.objective, direction="max"), max_trials, seed, run_dir)
    tuner.oracle.max_trials = max_trials  # a reloaded project keeps its old limit otherwise
    tuner.search(verbose=verbose)
    if "KERASTUNER_TUNER_ID" in os.environ and os.environ["KERASTUNER_TUNER_ID"] != "chief":
        return {}
    rows = _trial_rows(tuner)
    completed = [r for r in rows if r["status"] == "COMPLETED"]
    if not completed:
        raise RuntimeError(
            f"no trial completed ({len(rows)} tried): see {run_dir}/tuner/trial_*/ for the errors "
            "(keras-tuner needs tensorboard installed; it fails every trial silently without it)"
        )
    best = max(completed, key=lambda r: r[recipe.search.objective])
    _write_outputs(run_dir, rows, best, recipe, hypermodel.baseline_flops)
    return best


def _trial_rows(tuner) -> list[dict[str, Any]]:
    rows = []
    for trial_id, trial in sorted(tuner.oracle.trials.items()):
        row = {"trial": trial_id, "status": str(trial.status), "coefficients": trial.hyperparameters.values.get("coefficients")}
        for name in ("alpha", "beta", "gamma", "effective_gamma", "val_accuracy", "score", "flops", "params",
                     "flops_ratio", "resolution", "wall_time"):
            value = trial.metrics.get_last_value(name) if trial.metrics.exists(name) else None
            row[name] = value
        rows.append(row)
    return rows


def _write_outputs(run_dir: str, rows, best, recipe: Recipe, baseline_flops: int) -> None:

    document = {
        "alpha": best["alpha"], "beta": best["beta"], "gamma": best["gamma"],
        "product": best["alpha"] * best["beta"] ** 2 * best["gamma"] ** 2,
        "resolution": best["resolution"], "effective_gamma": best["effective_gamma"],
        "effective_product": best["alpha"] * best["beta"] ** 2 * best["effective_gamma"] ** 2,
        "objective": recipe.search.objective, "val_accuracy": best["val_accuracy"], "score": best["score"],
        "flops": best["flops"], "flops_ratio": best["flops_ratio"], "baseline_flops": baseline_flops,
        "phi": recipe.search.phi, "base_resolution": recipe.search.base_resolution, "data": str(recipe.data),
        "trials_completed": sum(r["status"] == "COMPLETED" for r in rows),
    }
    storage.atomic_write_text(os.path.join(run_dir, "best.json"), json.dumps(document, indent=2))
    fields = list(rows[0])
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    storage.atomic_write_text(os.path.join(run_dir, "trials.csv"), table.getvalue())
    lines = ["| trial | alpha | beta | gamma | res | eff. gamma | params | MFLOPs | FLOPs ratio | val acc | time s "
             "| status |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["status"] == "COMPLETED":
            lines.append(f"| {r['trial']} | {r['alpha']:g} | {r['beta']:g} | {r['gamma']:g} | {r['resolution']:.0f} | "
                         f"{r['effective_gamma']:.4g} | "
                         f"{r['params']:,.0f} | {r['flops'] / 1e6:.2f} | {r['flops_ratio']:.2f} | "
                         f"{r['val_accuracy']:.4f} | {r['wall_time']:.0f} | {r['status']} |")
        else:
            lines.append(f"| {r['trial']} | {r['coefficients']} | | | | | | | | | | {r['status']} |")
    storage.atomic_write_text(os.path.join(run_dir, "trials.md"), "\n".join(lines) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if r["status"] == "COMPLETED"]
    fig, axis = plt.subplots(figsize=(6, 4))
    axis.scatter([r["flops"] / 1e6 for r in done], [r["val_accuracy"] for r in done])
    for r in done:
        axis.annotate(f"{r['alpha']:g},{r['beta']:g},{r['gamma']:g}", (r["flops"] / 1e6, r["val_accuracy"]), fontsize=7)
    axis.scatter([best["flops"] / 1e6], [best["val_accuracy"]], marker="*", s=200, color="red", label="best")
    axis.set_xlabel("MFLOPs (multiply-adds)")
    axis.set_ylabel("validation accuracy")
    axis.set_title(f"compound-scaling search at phi = {recipe.search.phi:g}")
    axis.legend()
    fig.tight_layout()
    with storage.staged(os.path.join(run_dir, "search.png"), ".png") as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def load_coefficients(path: str) -> tuple[float, float, float]:
    """(alpha, beta, gamma) from a search's ``best.json``, ready for ``EfficientNet(phi, coefficients=...)``.

    gamma is the effective one, ``(trained resolution / base_resolution) ** (1 / phi)``: what the best
    trial measured, not the grid value it was asked for (at small base resolutions several grid
    gammas round to the same size; see :func:`effective_gamma`). ``EfficientNet(phi,
    coefficients=..., base_resolution=...)`` at the search's phi then rebuilds the trained resolution.
    The grid value stays in ``best.json`` as ``gamma``.
    """
    document = json.loads(storage.read_text(path))
    try:
        alpha, beta = float(document["alpha"]), float(document["beta"])
        if "effective_gamma" in document:
            return alpha, beta, float(document["effective_gamma"])
        # written before effective gammas were recorded: the resolution the trial trained, recomputed
        phi, base = float(document["phi"]), int(document["base_resolution"])
        return alpha, beta, effective_gamma(trained_resolution(base, float(document["gamma"]), phi), base, phi)
    except KeyError as missing:
        raise ValueError(f"{path!r} is not a kerasnets search result (missing {missing})") from None
