"""Per-step time of the Trainer's loop (``kerasnets train``) against ``model.fit``, in one run.

    python benchmarks/bench_loop.py [--steps 64] [--rounds 2]

Each row trains the same model on the same ``kerasnets.data`` pipeline (the one the Trainer's
setup builds), batch and optimizer (SGD with momentum), once through the Trainer (``setup`` +
``fit``, no export) and once through ``model.fit(steps_per_execution=32)``; both timed alike, by the
wall clock over the epochs after the first (which traces), the Trainer's less its validation and
backups. The two
alternate for ``--rounds`` rounds and the best time per step of each is kept, so that noise from
other processes hits both. Rows (as issue #21 measured them):

* a tiny convnet (24k params, 32 px) on 8,000 random images from numpy arrays;
* the same convnet on digits;
* the quickstart model (EfficientNet phi = -2, 32 px) on digits;
* the tiny convnet on digits under MirroredStrategy over 2 logical CPU devices, against
  ``model.fit`` under the same strategy at ``steps_per_execution=1`` (at 32, Keras 3.15's mirrored
  ``fit`` fails: "You must feed a value for placeholder tensor 'while/cond/Placeholder_2'").

Ratio = fit's time per step / the Trainer's (>= 1.0: the Trainer is at least as fast): of the best
times of each side, and the median (and range) of the rounds' own ratios, each round's two runs
being neighbours in time.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

_CPU = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_CPU, [tf.config.LogicalDeviceConfiguration()] * 2)  # the mirrored row

import keras  # noqa: E402
import numpy as np  # noqa: E402

import kerasnets  # noqa: E402
from kerasnets.training import Recipe  # noqa: E402
from kerasnets.training import setup as setup_module  # noqa: E402
from kerasnets.training.trainer import Trainer  # noqa: E402

FIT_STEPS_PER_EXECUTION = 32
MIRRORED_FIT_STEPS_PER_EXECUTION = 1  # Keras 3.15's mirrored fit fails at 32 (see the module docstring)


def tiny_convnet(recipe, context) -> keras.Model:
    """24,682 parameters at 32 px: three strided conv-BN-ReLU blocks, pooling, a softmax head."""
    layers = [keras.Input((recipe.image_size, recipe.image_size, 3)), keras.layers.Rescaling(1 / 255)]
    for filters, stride in ((16, 2), (32, 2), (64, 1)):
        layers += [keras.layers.Conv2D(filters, 3, strides=stride, padding="same"),
                   keras.layers.BatchNormalization(synchronized=context.synchronized_bn), keras.layers.ReLU()]
    layers += [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(context.num_classes, activation="softmax")]
    return keras.Sequential(layers)


def quickstart_model(recipe, context) -> keras.Model:
    """The quickstart recipe's model: EfficientNet at phi = -2 with the paper's coefficients."""
    return kerasnets.EfficientNet(-2, coefficients=kerasnets.PAPER_COEFFICIENTS,
                                  input_shape=(recipe.image_size, recipe.image_size, 3), classes=context.num_classes,
                                  drop_connect_rate=0.0, bn_momentum=0.9, synchronized_bn=context.synchronized_bn)


def sgd(recipe, context) -> keras.optimizers.Optimizer:
    """The same optimizer on both sides."""
    return keras.optimizers.SGD(0.01, momentum=0.9)


def rows() -> list[tuple[str, dict]]:
    """The table's rows: (label, Recipe fields)."""
    rng = np.random.RandomState(0)
    arrays = (rng.randint(0, 256, (8000, 32, 32, 3), np.uint8), rng.randint(0, 10, 8000))
    return [("tiny convnet (24k params, 32 px), 8,000 numpy images", {"build_model": tiny_convnet, "data": arrays}),
            ("tiny convnet, digits", {"build_model": tiny_convnet}),
            ("quickstart model (phi = -2, 32 px), digits", {"build_model": quickstart_model}),
            ("tiny convnet, digits, MirroredStrategy over 2 CPUs", {"build_model": tiny_convnet,
                                                                   "strategy": "mirrored"})]


def _strategy(name: str) -> tf.distribute.Strategy:
    """``--strategy mirrored`` picks GPUs only: the mirrored row mirrors over the 2 logical CPUs."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    return tf.distribute.get_strategy()


class _EpochTimedTrainer(Trainer):
    """The Trainer with each epoch timed by the wall clock, as ``fit``'s epochs are, less its
    validation and backups (work ``fit`` does not do here)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.epoch_seconds: list[float] = []

    def _extra(self) -> float:
        return sum(self.timings.seconds.get(name, 0.0) for name in ("validation", "backup"))

    def _epoch(self, *args, **kwargs) -> None:
        began, extra = time.perf_counter(), self._extra()
        super()._epoch(*args, **kwargs)
        self.epoch_seconds.append(time.perf_counter() - began - (self._extra() - extra))


def trainer_step_seconds(recipe: Recipe) -> float:
    """Seconds per step of the Trainer's loop (``setup`` + ``fit``, no export): the epochs after
    the first (which traces) by the wall clock, as :func:`fit_step_seconds` times ``fit``."""
    trainer = _EpochTimedTrainer(recipe, resume=False, verbose=0)
    trainer.setup()
    trainer.fit()
    return sum(trainer.epoch_seconds[1:]) / (recipe.steps_per_epoch * (len(trainer.epoch_seconds) - 1))


def fit_step_seconds(recipe: Recipe, steps_per_execution: int) -> float:
    """Seconds per step of ``model.fit(steps_per_execution=)`` on the Trainer's own pipeline."""
    keras.backend.clear_session()
    run = setup_module.setup(recipe)
    with run.strategy.scope():
        model = run.model
        model.compile(optimizer=sgd(recipe, run.context), steps_per_execution=steps_per_execution,
                      loss=keras.losses.CategoricalCrossentropy(), metrics=["accuracy"])
    ends = []
    callback = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: ends.append(time.perf_counter()))
    model.fit(run.train_ds, epochs=recipe.epochs, steps_per_epoch=run.steps_per_epoch, callbacks=[callback], verbose=0)
    return (ends[-1] - ends[0]) / (run.steps_per_epoch * (len(ends) - 1))  # the epochs after the first (tracing)


def main() -> None:
    """Print the table: ms per step of each side and the ratio, per row."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=64, help="steps per epoch (3 epochs per side and round)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    setup_module.resolve_strategy = _strategy
    output = tempfile.mkdtemp(prefix="bench_loop_")
    print("| model and source | kerasnets train (ms/step) | model.fit (ms/step), steps_per_execution | ratio of "
          "the bests | median ratio of the rounds (range) |")
    print("|---|---|---|---|---|")
    for label, fields in rows():
        recipe = Recipe(name="bench", build_optimizer=sgd, image_size=32, batch_size=64 // (2 if "strategy" in fields
                                                                                            else 1),
                        epochs=3, steps_per_epoch=args.steps, backup_every_epochs=10, validation_freq=10,
                        eval_steps=1, export=(), output=output, precision="float32", **fields)
        per_call = MIRRORED_FIT_STEPS_PER_EXECUTION if "strategy" in fields else FIT_STEPS_PER_EXECUTION
        times = {"trainer": [], "fit": []}
        for _ in range(args.rounds):
            times["trainer"].append(trainer_step_seconds(recipe))
            times["fit"].append(fit_step_seconds(recipe, per_call))
            keras.backend.clear_session()
        best = {side: min(values) for side, values in times.items()}
        # each round's two runs are neighbours in time: their ratio sees the same machine load
        ratios = sorted(f / t for f, t in zip(times["fit"], times["trainer"]))
        print(f"| {label} | {best['trainer'] * 1e3:.1f} | {best['fit'] * 1e3:.1f}, {per_call} | "
              f"{best['fit'] / best['trainer']:.2f}x | {float(np.median(ratios)):.2f}x "
              f"({ratios[0]:.2f}-{ratios[-1]:.2f}) |", flush=True)


if __name__ == "__main__":
    main()
