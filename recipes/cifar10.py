"""CIFAR-10 through TFDS: EfficientNet-B0 at 64x64 (images upsampled from 32x32).

    kerasnets train recipes/cifar10.py             # needs tfds:cifar10 prepared (download=True fetches it)
    kerasnets train recipes/cifar10.py --smoke     # 2 steps through the same TFDS code path, offline

RandAugment (2 ops, factor 0.5) and MixUp/CutMix, AdamW with warmup + cosine, label smoothing 0.1,
100 epochs. Eval resizes the whole 32x32 image (crop padding 0).
"""


import kerasnets
from kerasnets.training import Recipe, adamw_warmup_cosine, smoke_overrides


def build_model(recipe, context):
    """EfficientNet-B0 at the recipe's resolution."""
    return kerasnets.EfficientNet(
        0,
        input_shape=(recipe.image_size, recipe.image_size, 3),
        classes=context.num_classes,
        drop_connect_rate=0.2,
        synchronized_bn=context.synchronized_bn,
    )


def build_optimizer(recipe, context):
    """AdamW, 5 warmup epochs, cosine decay."""
    return adamw_warmup_cosine(context.learning_rate, context.steps_per_epoch * recipe.epochs,
                               warmup_steps=5 * context.steps_per_epoch, weight_decay=0.05, global_clipnorm=None)


_TFDS = {"download": True, "crop_padding": 0}
RECIPE = Recipe(
    name="cifar10",
    build_model=build_model,
    build_optimizer=build_optimizer,
    data="tfds:cifar10",
    eval_split="test",
    image_size=64,
    batch_size=128,
    epochs=100,
    base_learning_rate=2e-3,
    reference_batch=256,
    label_smoothing=0.1,
    train_options={**_TFDS, "crop_scale": (0.35, 1.0), "randaugment": True, "mixup_alpha": 0.2, "cutmix_alpha": 1.0},
    eval_options={**_TFDS, "resize_method": "bilinear"},
    backup_every_steps=500,
    smoke=smoke_overrides(
        data="tfds:kerasnets_digits",
        train_options={**_TFDS, "randaugment": True, "mixup_alpha": 0.2, "cutmix_alpha": 1.0},
        eval_options={**_TFDS, "resize_method": "bilinear"},
        image_size=32,
        batch_size=8,
    ),
)

if __name__ == "__main__":
    from kerasnets.cli import recipe_main

    raise SystemExit(recipe_main(RECIPE))
