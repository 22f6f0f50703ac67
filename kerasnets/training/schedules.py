"""Learning-rate schedules of the reference recipes that Keras lacks, and weight-decay helpers."""

from __future__ import annotations

import keras
from keras import ops

__all__ = ["WarmupExponentialDecay", "warmup_cosine", "exclude_norm_and_bias_from_weight_decay"]


@keras.saving.register_keras_serializable(package="kerasnets")
class WarmupExponentialDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup to ``peak`` over ``warmup_steps``, then ``peak * rate ** floor(step / decay_steps)``.

    The staircase decay counts from step 0, the warmup overriding it (``warmup_steps=0``: none),
    as ``utils.build_learning_rate`` of the EfficientNet TPU reference (``tf.train.exponential_decay``
    with ``staircase=True``, then ``tf.cond(step < warmup_steps, peak * step / warmup_steps, ...)``):
    warmup 5 epochs, x0.97 every 2.4 epochs. With ``decay_rate=0.1`` and ``decay_steps`` of 30
    epochs it is torchvision's ``StepLR(step_size=30, gamma=0.1)`` (the classic ResNet recipe).
    """

    def __init__(self, peak: float, warmup_steps: int, decay_steps: float, decay_rate: float = 0.97):
        self.peak = float(peak)
        self.warmup_steps = int(warmup_steps)
        self.decay_steps = float(decay_steps)
        self.decay_rate = float(decay_rate)

    def __call__(self, step):
        """Learning rate at ``step``."""
        step = ops.cast(step, "float32")
        warm = self.peak * step / max(self.warmup_steps, 1)
        decayed = self.peak * ops.power(self.decay_rate, ops.floor(step / self.decay_steps))
        return ops.where(step < self.warmup_steps, warm, decayed)

    def get_config(self):
        """Constructor arguments."""
        return {"peak": self.peak, "warmup_steps": self.warmup_steps, "decay_steps": self.decay_steps,
                "decay_rate": self.decay_rate}


def warmup_cosine(peak: float, total_steps: int, warmup_steps: int) -> keras.optimizers.schedules.CosineDecay:
    """Keras CosineDecay with linear warmup from 0 to ``peak`` (the ResNet / quickstart schedule)."""
    warmup_steps = min(warmup_steps, max(total_steps - 1, 0))
    return keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=max(total_steps - warmup_steps, 1), warmup_target=peak, warmup_steps=warmup_steps
    )


def exclude_norm_and_bias_from_weight_decay(optimizer: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
    """No weight decay on BatchNormalization parameters and biases (the reference recipes' rule)."""
    optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    return optimizer
