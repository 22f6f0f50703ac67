"""EfficientNet on ImageNet, faithful to the tensorflow/tpu reference training.

    kerasnets train recipes/efficientnet_imagenet.py --data '/data/imagenet/train-*'
    kerasnets train recipes/efficientnet_imagenet.py --smoke     # 2 steps on a TFRecord stand-in

Reference settings: RMSProp (rho 0.9, momentum 0.9, epsilon 1e-3); learning rate 0.016 per 256
images, scaled linearly with the global batch; 5 warmup epochs then x0.97 every 2.4 epochs; weight
decay 1e-5, not on BatchNorm or biases; label smoothing 0.1; EMA of the weights (0.9999), with
evaluation on the EMA weights; AutoAugment (policy v0); stochastic depth 0.2; the preset's dropout
and resolution; 350 epochs; eval center crop with padding 32, bicubic.

Data: TFRecords in the ImageNet layout (``image/encoded``, ``image/class/label``). The TPU
converter writes labels 1..1000, hence ``label_offset=-1``; use 0 for 0-based shards.
"""

import keras

import kerasnets
from kerasnets.models.efficientnet import PRESETS
from kerasnets.training import (
    STANDIN_TFRECORDS,
    Recipe,
    smoke_overrides,
    WarmupExponentialDecay,
    exclude_norm_and_bias_from_weight_decay,
    train_main,
)

PHI = 0  # EfficientNet-B{PHI}; the resolution and dropout come from the official preset table
PRESET = PRESETS[f"efficientnetb{PHI}"]


def build_model(recipe, context):
    """EfficientNet-B{PHI} with the reference's stochastic depth and the preset's dropout."""
    return kerasnets.EfficientNet(
        PHI,
        input_shape=(recipe.image_size, recipe.image_size, 3),
        classes=context.num_classes,
        drop_connect_rate=0.2,
        synchronized_bn=context.synchronized_bn,
    )


def build_optimizer(recipe, context):
    """RMSProp with warmup + staircase exponential decay, weight decay off BN, weight EMA."""
    schedule = WarmupExponentialDecay(
        peak=context.learning_rate,
        warmup_steps=5 * context.steps_per_epoch,
        decay_steps=2.4 * context.steps_per_epoch,
        decay_rate=0.97,
    )
    optimizer = keras.optimizers.RMSprop(
        schedule, rho=0.9, momentum=0.9, epsilon=1e-3, weight_decay=1e-5, use_ema=True, ema_momentum=0.9999
    )
    return exclude_norm_and_bias_from_weight_decay(optimizer)


RECIPE = Recipe(
    name=f"efficientnet_b{PHI}_imagenet",
    build_model=build_model,
    build_optimizer=build_optimizer,
    data="imagenet/train-*-of-*",
    eval_data="imagenet/validation-*-of-*",
    image_size=PRESET.resolution,
    batch_size=128,
    epochs=350,
    base_learning_rate=0.016,
    reference_batch=256,
    label_smoothing=0.1,
    train_options={"autoaugment": True, "label_offset": -1, "num_classes": 1000},
    eval_options={"label_offset": -1, "num_classes": 1000, "crop_padding": 32, "resize_method": "bicubic"},
    backup_every_steps=1000,
    smoke=smoke_overrides(
        data=STANDIN_TFRECORDS,
        eval_data=STANDIN_TFRECORDS,
        train_options={"autoaugment": True},
        eval_options={"crop_padding": 32, "resize_method": "bicubic"},
    ),
)

if __name__ == "__main__":
    raise SystemExit(train_main(RECIPE))
