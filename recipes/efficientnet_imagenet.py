"""EfficientNet on ImageNet, faithful to the tensorflow/tpu reference training
(models/official/efficientnet: main.py, utils.py, preprocessing.py).

    kerasnets train recipes/efficientnet_imagenet.py --data '/data/imagenet/train-*'
    kerasnets train recipes/efficientnet_imagenet.py --smoke     # 2 steps on a TFRecord stand-in

With ``--data`` the evaluation follows to ``validation-*-of-*`` in the same folder (``--eval-data``
chooses another). The split sizes below describe the recipe's own ``imagenet/`` shards; elsewhere
they are counted once (cached in the run folder), or state them:
``--train-examples 1281167 --eval-examples 50000``.

Reference settings, as here:
- loss: softmax cross-entropy, label smoothing 0.1, plus ``1e-5 * sum(tf.nn.l2_loss(w))`` over the
  trainable variables not named ``batch_normalization`` (biases included): ``l2_regularization``,
  not a decoupled weight decay;
- optimizer: TF1 ``RMSPropOptimizer(lr, decay=0.9, momentum=0.9, epsilon=1e-3)``:
  :class:`~kerasnets.training.optimizers.TF1RMSprop` (Keras' RMSprop starts the mean-square
  accumulator at 0, TF1 at 1.0; the update is otherwise the same, epsilon inside the sqrt);
- learning rate 0.016 per 256 images, scaled linearly with the global batch; 5 warmup epochs
  (linear from 0), then x0.97 every 2.4 epochs, staircase, counted from step 0 (``build_learning_rate``);
- EMA of the weights, decay 0.9999 with ``num_updates`` = step (``ema_decay``, kept by the trainer);
  evaluation and export on the EMA weights;
- 350 epochs (218,949 steps at batch 2048); ImageNet 1,281,167 train / 50,000 validation images;
- EfficientNet-B0: the preset's resolution (224) and dropout (0.2), stochastic depth 0.2
  (survival_prob 0.8); BatchNorm momentum 0.99, epsilon 1e-3, synchronized across replicas;
- input: Inception crop + flip, bicubic resize (the reference's default for B0-B7, training
  and evaluation); eval center crop with padding 32; AutoAugment policy v0 (the published
  checkpoints' ``--augment_name=autoaugment``; the flag's default is none).

Deviations (named):
- steps per epoch are ``ceil(examples / global batch)``, the reference's ``examples / batch`` is
  fractional: warmup and decay boundaries move by under one step per epoch (< 0.4% at batch 4096);
- the reference's TPU BatchNorm groups replicas; here all replicas are synchronized. (The EMA
  averages BatchNorm's moving statistics with the weights, as the reference does: no deviation.)

Data: TFRecords in the ImageNet layout (``image/encoded``, ``image/class/label``). The TPU
converter writes labels 1..1000, hence ``label_offset=-1``; use 0 for 0-based shards. The
TFRecord-only options (``label_offset``, ``num_classes``) are dropped, with a log line, when
``--data`` is a folder, ``digits`` or ``tfds:NAME`` (they know their classes).
"""

import kerasnets
from kerasnets.models.efficientnet import EFFICIENTNET_PRESETS
from kerasnets.training import (
    STANDIN_TFRECORDS,
    Recipe,
    smoke_overrides,
)
from kerasnets.training.optimizers import tpu_rmsprop

PHI = 0  # EfficientNet-B{PHI}; the resolution and dropout come from the official preset table
PRESET = EFFICIENTNET_PRESETS[f"efficientnetb{PHI}"]


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
    """The TPU reference's TF1 RMSProp with 5 warmup epochs, then x0.97 every 2.4 epochs
    (:func:`kerasnets.training.optimizers.tpu_rmsprop`)."""
    return tpu_rmsprop(context)


RECIPE = Recipe(
    name=f"efficientnet_b{PHI}_imagenet",
    build_model=build_model,
    build_optimizer=build_optimizer,
    data="imagenet/train-*-of-*",
    eval_data="imagenet/validation-*-of-*",
    train_examples=1_281_167,
    eval_examples=50_000,
    image_size=PRESET.resolution,
    batch_size=128,
    epochs=350,
    base_learning_rate=0.016,
    reference_batch=256,
    label_smoothing=0.1,
    l2_regularization=1e-5,
    l2_on_batch_norm=False,
    ema_decay=0.9999,
    train_options={"autoaugment": True, "resize_method": "bicubic", "label_offset": -1, "num_classes": 1000},
    eval_options={"label_offset": -1, "num_classes": 1000, "crop_padding": 32, "resize_method": "bicubic"},
    backup_every_steps=1000,
    smoke=smoke_overrides(
        data=STANDIN_TFRECORDS,
        eval_data=STANDIN_TFRECORDS,
        train_examples=None,
        eval_examples=None,
        train_options={"autoaugment": True, "resize_method": "bicubic"},
        eval_options={"crop_padding": 32, "resize_method": "bicubic"},
    ),
)

if __name__ == "__main__":
    from kerasnets.cli import recipe_main

    raise SystemExit(recipe_main(RECIPE))
