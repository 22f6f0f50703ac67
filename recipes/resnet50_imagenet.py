"""ResNet-50 (v1.5) on ImageNet: the torchvision / NVIDIA / Model Garden classification recipe.

    kerasnets train recipes/resnet50_imagenet.py --data '/data/imagenet/train-*'
    kerasnets train recipes/resnet50_imagenet.py --smoke

SGD with Nesterov momentum 0.9; learning rate 0.1 x global batch / 256; 5 warmup epochs then
cosine decay; weight decay 1e-4, not on BatchNorm or biases; label smoothing 0.1; 90 epochs;
Inception crop + flip at 224, eval center crop (padding 32). The model takes RGB 0..255 (caffe
preprocessing in the model), like every kerasnets pipeline output.
"""

import keras

import kerasnets
from kerasnets.training import (
    STANDIN_TFRECORDS,
    Recipe,
    smoke_overrides,
    exclude_norm_and_bias_from_weight_decay,
    train_main,
    warmup_cosine,
)


def build_model(recipe, context):
    """ResNet-50 v1.5 with in-model preprocessing."""
    return kerasnets.ResNet(
        50,
        "v1.5",
        input_shape=(recipe.image_size, recipe.image_size, 3),
        classes=context.num_classes,
        include_preprocessing=True,
        synchronized_bn=context.synchronized_bn,
    )


def build_optimizer(recipe, context):
    """Nesterov SGD, linear warmup then cosine, decoupled weight decay off BN and biases."""
    schedule = warmup_cosine(context.learning_rate, context.steps_per_epoch * recipe.epochs,
                             warmup_steps=5 * context.steps_per_epoch)
    optimizer = keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True, weight_decay=1e-4)
    return exclude_norm_and_bias_from_weight_decay(optimizer)


RECIPE = Recipe(
    name="resnet50_imagenet",
    build_model=build_model,
    build_optimizer=build_optimizer,
    data="imagenet/train-*-of-*",
    eval_data="imagenet/validation-*-of-*",
    image_size=224,
    batch_size=128,
    epochs=90,
    base_learning_rate=0.1,
    reference_batch=256,
    label_smoothing=0.1,
    train_options={"label_offset": -1, "num_classes": 1000},
    eval_options={"label_offset": -1, "num_classes": 1000},
    backup_every_steps=1000,
    smoke=smoke_overrides(data=STANDIN_TFRECORDS, eval_data=STANDIN_TFRECORDS, train_options={}, eval_options={}),
)

if __name__ == "__main__":
    raise SystemExit(train_main(RECIPE))
