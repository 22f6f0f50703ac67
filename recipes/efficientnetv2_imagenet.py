"""EfficientNetV2 on ImageNet with progressive learning, faithful to google/automl efficientnetv2
(hparams.py, main.py, effnetv2_configs.py, datasets.py, preprocessing.py; Tan & Le, ICML 2021).

    kerasnets train recipes/efficientnetv2_imagenet.py --data '/data/imagenet/train-*'
    kerasnets train recipes/efficientnetv2_imagenet.py --smoke     # 2 stages of 1 step on a TFRecord stand-in

Reference settings, as here (each value's source beside it below):
- 350 epochs in 4 stages (main.py's stage loop): stage s of 4 ends at ``int(350 * (s + 1) / 4)``
  epochs and trains at ``int(128 + (train_size - 128) * (s + 1) / 4)`` px (V2-S: 171, 214, 257,
  300); RandAugment magnitude ``linspace(5, ram, 4)``, mixup and cutmix ``linspace(0, alpha, 4)``;
  evaluation at the variant's eval size (V2-S: 384);
- loss: softmax cross-entropy, label smoothing 0.1, L2 1e-5 in the loss; TF1 RMSProp (decay 0.9,
  momentum 0.9, epsilon 1e-3); 0.016 per 256 images (0.256 at the reference's batch of 4096),
  5 warmup epochs, then x0.97 every 2.4 epochs (staircase); weight EMA 0.9999;
- stochastic depth 0.2 (survival_prob 0.8) in every stage.

The paper's dropout ramp is on: Table 6 ramps dropout 0.1 -> 0.3 (S), 0.4 (M), 0.5 (L) with the
image size, which is what the paper reports; the released main.py builds ``dp_list`` and leaves
it commented out (``# config.model.dropout_rate = dp_list[stage]``).

Deviations (named):
- BatchNorm momentum 0.99, the paper's (section 5.1); automl's hparams.py says ``bn_momentum=0.9``
  and keras.applications builds V2 with 0.9 (one keyword: ``BN_MOMENTUM``);
  at 0.99 the moving statistics average over about 100 steps, so a run of 100-200 steps can
  evaluate near chance: the rehearsal's 128 steps scored 10%, and the same weights scored 38%
  once the statistics were recomputed. Such a run warns (``batch_norm_warning`` in its summary);
- RandAugment is Keras' (``factor = magnitude / 30``: see
  :data:`kerasnets.training.progressive.RANDAUGMENT_MAGNITUDE_SCALE`), not automl's op list;
  MixUp/CutMix are Keras' (automl splits a batch half and half when both are on, Keras picks
  one per batch);
- the L2 penalty skips BatchNorm only (automl's ``weight_decay_exclude='.*(bias|gamma|beta).*'``
  skips biases too: the SE and classifier biases here);
- stages end on epoch boundaries (automl: ``int(ratio * train_steps)`` steps); automl's
  evaluation resizes the whole image to 384 x 384, here the central square is resized (no padding);
- training crops: automl's ``area_range=(0.05, 1.0)`` and bilinear resize, as here.
"""

import kerasnets
from kerasnets.models.efficientnet import EFFICIENTNETV2_OFFICIAL
from kerasnets.training import (
    STANDIN_TFRECORDS,
    Recipe,
    progressive_stages,
    smoke_overrides,
)
from kerasnets.training.optimizers import tpu_rmsprop

VARIANT = "s"  # "s", "m" or "l": the variants automl trains progressively with RandAugment
OFFICIAL = EFFICIENTNETV2_OFFICIAL[VARIANT]  # effnetv2_configs.py efficientnetv2_params: train/eval size, dropout
#: effnetv2_configs.py efficientnetv2_params (randaug, mixup): ``data=dict(ram=randaug, mixup_alpha=mix,
#: cutmix_alpha=mix)``; the paper's Table 6 lists 15 / 20 / 25 and mixup 0 / 0.2 / 0.4
AUTOML_AUGMENT = {"s": (10, 0.0), "m": (15, 0.2), "l": (20, 0.5)}
PAPER_DROPOUT = {"s": (0.1, 0.3), "m": (0.1, 0.4), "l": (0.1, 0.5)}  # paper Table 6 (min, max)
IBASE = 128  # hparams.py ``data.ibase=128``: main.py's smallest size
STAGES = 4  # effnetv2_configs.py efficientnetv2_config: ``train=dict(stages=4, sched=True)``
RA_START = 5  # main.py: ``ram_list = np.linspace(5, config.data.ram, total_stages)``
DROP_CONNECT = 0.2  # hparams.py ``survival_prob=0.8``
BN_MOMENTUM = 0.99  # paper section 5.1 (automl hparams.py: bn_momentum=0.9)
EPOCHS = 350  # hparams.py ``train.epochs=350``; datasets.py ImageNet ``epochs=350``
RAM, MIX = AUTOML_AUGMENT[VARIANT]


def stages(epochs, train_size, count=STAGES, ibase=IBASE):
    """main.py's stages: sizes from ``ibase`` to ``train_size``, RandAugment 5 -> RAM, mixup and cutmix
    0 -> MIX (main.py: ``mixup_list``, ``cutmix_list``), the paper's dropout ramp, stochastic depth fixed."""
    return progressive_stages(epochs, (ibase, train_size), count, randaugment=(RA_START, RAM), mixup=(0.0, MIX),
                              cutmix=(0.0, MIX), dropout=PAPER_DROPOUT[VARIANT],
                              drop_connect=(DROP_CONNECT, DROP_CONNECT))


def build_model(recipe, context):
    """EfficientNetV2-{VARIANT} for any input size (the stages set its size, dropout and
    stochastic depth; built with the official dropout so that the layer exists)."""
    return kerasnets.EfficientNetV2(
        VARIANT,
        input_shape=(None, None, 3),
        classes=context.num_classes,
        dropout_rate=OFFICIAL.dropout,
        drop_connect_rate=DROP_CONNECT,
        bn_momentum=BN_MOMENTUM,
        synchronized_bn=context.synchronized_bn,
    )


def build_optimizer(recipe, context):
    """The TPU reference's TF1 RMSProp with 5 warmup epochs, then x0.97 every 2.4 epochs
    (:func:`kerasnets.training.optimizers.tpu_rmsprop`)."""
    return tpu_rmsprop(context)


RECIPE = Recipe(
    name=f"efficientnetv2_{VARIANT}_imagenet",
    build_model=build_model,
    build_optimizer=build_optimizer,
    family="efficientnet",
    data="imagenet/train-*-of-*",
    eval_data="imagenet/validation-*-of-*",
    train_examples=1_281_167,
    eval_examples=50_000,
    image_size=OFFICIAL.eval_size,  # evaluation (effnetv2_configs.py eval isize); the stages train smaller
    stages=stages(EPOCHS, OFFICIAL.train_size),
    batch_size=128,
    epochs=EPOCHS,
    base_learning_rate=0.016,  # hparams.py / datasets.py ImageNet ``lr_base=0.016``
    reference_batch=256,  # main.py: ``scaled_lr = lr_base * (batch_size / 256.0)``; 0.256 at 4096
    label_smoothing=0.1,  # hparams.py / datasets.py ImageNet ``label_smoothing=0.1``
    l2_regularization=1e-5,  # hparams.py ``weight_decay=1e-5`` (main.py: an L2 term in the loss)
    l2_on_batch_norm=False,
    ema_decay=0.9999,  # hparams.py ``ema_decay=0.9999``
    # hparams.py ``ra_num_layers=2``; preprocessing.py: crop area_range (0.05, 1.0), bilinear resize
    train_options={"randaugment": {"num_ops": 2}, "crop_scale": (0.05, 1.0), "resize_method": "bilinear",
                   "label_offset": -1, "num_classes": 1000},
    eval_options={"label_offset": -1, "num_classes": 1000, "crop_padding": 0, "resize_method": "bilinear"},
    backup_every_steps=1000,
    smoke=smoke_overrides(
        data=STANDIN_TFRECORDS,
        eval_data=STANDIN_TFRECORDS,
        train_examples=None,
        eval_examples=None,
        epochs=2,
        steps_per_epoch=1,
        image_size=48,
        stages=stages(2, 40, count=2, ibase=24),  # 32 and 40 px: two stages of one step: the stage switch on the real path
        train_options={"randaugment": {"num_ops": 2}, "crop_scale": (0.05, 1.0), "resize_method": "bilinear"},
        eval_options={"crop_padding": 0, "resize_method": "bilinear"},
    ),
)

if __name__ == "__main__":
    from kerasnets.cli import recipe_main

    raise SystemExit(recipe_main(RECIPE))
