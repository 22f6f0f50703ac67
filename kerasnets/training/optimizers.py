"""Optimizers of the reference recipes that Keras lacks (keras only, backend-agnostic)."""

from __future__ import annotations

import keras

from kerasnets.training.schedules import WarmupExponentialDecay, exclude_norm_and_bias_from_weight_decay, warmup_cosine

__all__ = ["TF1RMSprop", "adamw_warmup_cosine", "tpu_rmsprop"]


@keras.saving.register_keras_serializable(package="kerasnets")
class TF1RMSprop(keras.optimizers.RMSprop):
    """RMSprop exactly as TF1's ``tf.compat.v1.train.RMSPropOptimizer`` (the EfficientNet TPU reference).

    Per variable, with gradient ``g`` and learning rate ``lr``::

        ms  = rho * ms + (1 - rho) * g ** 2            # ms starts at initial_accumulator_value (TF1: 1.0)
        mom = momentum * mom + lr * g / sqrt(ms + epsilon)
        var = var - mom

    Keras 3's RMSprop has the same update (epsilon inside the square root, the learning rate
    inside the momentum accumulator) but starts ``ms`` at 0: its first steps are then
    ``1 / sqrt(0.1 g**2 + epsilon)`` times larger than TF1's (about 30x for small gradients with
    epsilon 1e-3). This subclass only changes that initial value.

    Args:
        learning_rate, rho, momentum, epsilon, centered, **kwargs: as ``keras.optimizers.RMSprop``
            (TF1 calls ``rho`` "decay").
        initial_accumulator_value: starting value of the mean-square accumulator ``ms``
            (TF1: 1.0; 0.0 gives Keras' RMSprop).
    """

    def __init__(self, learning_rate=0.001, rho: float = 0.9, momentum: float = 0.0, epsilon: float = 1e-10,
                 centered: bool = False, initial_accumulator_value: float = 1.0, **kwargs):
        super().__init__(learning_rate=learning_rate, rho=rho, momentum=momentum, epsilon=epsilon,
                         centered=centered, **kwargs)
        value = initial_accumulator_value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"initial_accumulator_value must be a number >= 0 (TF1: 1.0), got {value!r}")
        self.initial_accumulator_value = float(value)

    def build(self, var_list):
        """Create the slots: ``velocity`` (TF1's ``ms``) at ``initial_accumulator_value``, momentum
        and (centered) average gradient at 0."""
        if self.built:
            return
        super(keras.optimizers.RMSprop, self).build(var_list)  # the base's build, not RMSprop's zeros
        self._velocities = self.add_optimizer_variables(
            var_list, "velocity", initializer=keras.initializers.Constant(self.initial_accumulator_value))
        self._momentums = self.add_optimizer_variables(var_list, "momentum") if self.momentum > 0 else []
        self._average_gradients = self.add_optimizer_variables(var_list, "average_gradient") if self.centered else []

    def get_config(self) -> dict:
        """RMSprop's config plus ``initial_accumulator_value``."""
        return {**super().get_config(), "initial_accumulator_value": self.initial_accumulator_value}


def adamw_warmup_cosine(peak: float, total_steps: int, warmup_steps: int, weight_decay: float = 1e-4,
                        global_clipnorm: float | None = 1.0) -> keras.optimizers.AdamW:
    """AdamW with linear warmup to ``peak`` over ``warmup_steps``, cosine decay to 0 at
    ``total_steps``, decoupled weight decay except on BatchNormalization parameters and biases,
    and global gradient clipping: the quickstart's, the compound-scaling search's and CIFAR-10's
    optimizer (CIFAR: ``weight_decay=0.05``, no clipping)."""
    optimizer = keras.optimizers.AdamW(warmup_cosine(peak, total_steps, warmup_steps), weight_decay=weight_decay,
                                       global_clipnorm=global_clipnorm)
    return exclude_norm_and_bias_from_weight_decay(optimizer)


def tpu_rmsprop(context) -> TF1RMSprop:
    """The EfficientNet TPU references' optimizer (tensorflow/tpu efficientnet and google/automl
    efficientnetv2 ``utils.build_optimizer``): TF1 RMSProp (decay 0.9, momentum 0.9, epsilon 1e-3),
    5 warmup epochs to ``context.learning_rate`` (``lr_warmup_epoch=5``), then x0.97
    (``lr_decay_factor``) every 2.4 epochs (``lr_decay_epoch``), one schedule over the whole run
    (all stages of a progressive one). No decoupled weight decay (the L2 penalty is
    ``recipe.l2_regularization``) and no Keras ``use_ema`` (the trainer keeps the EMA)."""
    schedule = WarmupExponentialDecay(peak=context.learning_rate, warmup_steps=5 * context.steps_per_epoch,
                                      decay_steps=2.4 * context.steps_per_epoch, decay_rate=0.97)
    return TF1RMSprop(schedule, rho=0.9, momentum=0.9, epsilon=1e-3)
