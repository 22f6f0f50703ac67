"""Fine-tune a pretrained network on your own images (keras.io "Image classification via
fine-tuning with EfficientNet", in two phases, on block boundaries).

    kerasnets train recipes/finetune.py --data photos                          # EfficientNet-B0, from scratch
    kerasnets train recipes/finetune.py --data photos --weights imagenet       # keras.applications' ImageNet weights
    kerasnets train recipes/finetune.py --data photos --weights saved_models/run/model.keras
    kerasnets train recipes/finetune.py --data photos --model resnet50_v1 --weights imagenet
    kerasnets train recipes/finetune.py --data photos --weights timm:resnet50.a1_in1k   # timm's weights and eval

``--data`` is a folder laid out as downloaded datasets are: ``photos/train/<class>/``, with
``val/`` or ``validation/`` and ``test/`` beside it, or simply ``photos/<class>/`` (then 20% of
each class is held out for evaluation). The model: ``--model PRESET`` (``kerasnets info``), else the
architecture of a ``--weights`` ``.keras`` file (an earlier run, rebuilt at ``--image-size`` with a
classifier for these classes) or ``timm:`` checkpoint (timm's architecture and mean/std; the run
evaluates and serves with timm's crop_pct and interpolation), else EfficientNet-B0. Weights are copied by structure; the classifier
is new when the class count differs.

Phase 1, "head" (12 epochs): the whole backbone frozen, its BatchNormalization layers in inference
mode (keras#9214), only the new classifier trains (zero-initialised), at 1e-2 per 64 images (Adam,
as keras.io; short warmup, cosine decay).
Phase 2, "top_blocks" (6 epochs): the last 3 blocks unfrozen as whole blocks (keras-io#995; for B0:
block6d, block7a and the head conv ``top``), BatchNormalization still frozen, at a hundredth of the
head's rate (1e-4 per 64 images). Both phases run in one command; a killed run resumes in the phase
it was in. Deviations from keras.io: whole blocks instead of "the top 20 layers", the Inception
crop (scale 0.35-1) + flip instead of RandomRotation/Translation/Contrast, label smoothing 0.1, and
the EfficientNet reference eval (center crop padding 32 at 224 px, bicubic). These defaults suit
ImageNet features; a backbone pretrained on a narrow task needs more of it re-learned (a recipe file
that replaces ``phases``: tests/test_own_images.py shows one). From scratch (no --weights) the
frozen backbone is random: pass --weights for real fine-tuning.
"""

import keras

from kerasnets.models.pretrained import is_timm_weights
from kerasnets.training import (
    Phase,
    Recipe,
    build_preset,
    saved_architecture,
    smoke_overrides,
    timm_architecture,
    warmup_cosine,
)

DEFAULT_MODEL = "efficientnetb0"
UNFREEZE_BLOCKS = 3  # phase 2 trains the last 3 blocks (whole blocks, never half of one)


def build_model(recipe, context):
    """The ``--weights`` .keras file's or timm checkpoint's architecture (re-headed for these classes),
    else EfficientNet-B0."""
    if recipe.weights and str(recipe.weights).endswith(".keras"):
        return saved_architecture(recipe.weights, recipe.image_size, context.num_classes)
    if is_timm_weights(recipe.weights):
        return timm_architecture(recipe.weights, recipe.image_size, context.num_classes, context.synchronized_bn,
                                 **recipe.model_options)
    return build_preset(DEFAULT_MODEL, recipe.image_size, context.num_classes, context.synchronized_bn,
                        **recipe.model_options)


def build_optimizer(recipe, context):
    """Adam with a short warmup and cosine decay over the current phase (a fresh optimizer per phase)."""
    steps = context.steps_per_epoch * context.epochs
    schedule = warmup_cosine(context.learning_rate, steps, warmup_steps=max(1, steps // 20))
    return keras.optimizers.Adam(schedule, global_clipnorm=1.0)


RECIPE = Recipe(
    name="finetune",
    build_model=build_model,
    build_optimizer=build_optimizer,
    data=None,  # --data DIR is required
    eval_split="test",  # a folder without test/ is evaluated on its validation split (the engine says so)
    image_size=224,
    batch_size=32,
    epochs=18,
    phases=(Phase("head", 12, trainable_from=None), Phase("top_blocks", 6, trainable_from=-UNFREEZE_BLOCKS,
                                                            learning_rate_scale=0.01)),
    base_learning_rate=1e-2,
    reference_batch=64,
    label_smoothing=0.1,
    train_options={"crop_scale": (0.35, 1.0)},
    export=("keras", "saved_model", "tflite"),
    smoke=smoke_overrides(data="digits", image_size=32, epochs=2, phases=(Phase("head", 1, trainable_from=None),
                                                                         Phase("top_blocks", 1, trainable_from=-3))),
)

if __name__ == "__main__":
    from kerasnets.cli import recipe_main

    raise SystemExit(recipe_main(RECIPE))
