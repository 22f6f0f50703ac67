"""Quickstart: EfficientNet-B0 at 32x32 on the embedded digits dataset, 2 CPU cores, under 3 minutes.

    python recipes/quickstart.py            # or: kerasnets train recipes/quickstart.py

Trains B0 (phi=0, the published layout) from scratch on scikit-learn's handwritten digits upsampled
to 32 px, evaluates on the fixed test split, and exports model.keras, a SavedModel and a TFLite file
into saved_models/quickstart/. BatchNorm momentum 0.9 instead of the reference 0.99: with only a
few hundred steps the moving statistics would otherwise lag the weights.
"""

import keras

import kerasnets
from kerasnets.training import Recipe, exclude_norm_and_bias_from_weight_decay, train_main, warmup_cosine


def build_model(recipe, context):
    """EfficientNet-B0 at the recipe's resolution, for the dataset's classes."""
    return kerasnets.EfficientNet(
        0,
        input_shape=(recipe.image_size, recipe.image_size, 3),
        classes=context.num_classes,
        drop_connect_rate=0.0,
        bn_momentum=0.9,
        synchronized_bn=context.synchronized_bn,
    )


def build_optimizer(recipe, context):
    """AdamW, one epoch of linear warmup, then cosine decay to zero."""
    total = context.steps_per_epoch * recipe.epochs
    schedule = warmup_cosine(context.learning_rate, total, warmup_steps=context.steps_per_epoch)
    return exclude_norm_and_bias_from_weight_decay(keras.optimizers.AdamW(schedule, weight_decay=1e-4))


RECIPE = Recipe(
    name="quickstart",
    build_model=build_model,
    build_optimizer=build_optimizer,
    data="digits",
    image_size=32,
    batch_size=32,
    epochs=12,
    base_learning_rate=3e-3,
    reference_batch=32,
    train_options={"crop_scale": (0.85, 1.0), "flip": False},
    eval_options={"resize_method": "bilinear"},
    backup_every_steps=15,
    export=("keras", "saved_model", "tflite"),
    smoke={"epochs": 1, "steps_per_epoch": 3, "export": ("keras",)},
)

if __name__ == "__main__":
    raise SystemExit(train_main(RECIPE))
