"""ResNet-50 (v1.5) on ImageNet: torchvision's classic classification recipe
(pytorch/vision references/classification/train.py defaults, the ``IMAGENET1K_V1`` weights, 76.1% top-1).

    kerasnets train recipes/resnet50_imagenet.py --data '/data/imagenet/train-*'
    kerasnets train recipes/resnet50_imagenet.py --smoke

With ``--data`` the evaluation follows to ``validation-*-of-*`` in the same folder (``--eval-data``
chooses another). The split sizes below describe the recipe's own ``imagenet/`` shards; elsewhere
they are counted once (cached in the run folder), or state them:
``--train-examples 1281167 --eval-examples 50000``.

Reference settings, as here:
- SGD, momentum 0.9, plain (not Nesterov: torchvision's ``--opt sgd``);
- learning rate 0.1 per 256 images (8 GPUs x 32), scaled linearly with the global batch;
  x0.1 every 30 epochs (``StepLR(step_size=30, gamma=0.1)``), 90 epochs;
- weight decay 1e-4 coupled into the gradient (PyTorch SGD's ``weight_decay`` adds ``wd * w``),
  i.e. the L2 penalty ``1e-4 * sum(tf.nn.l2_loss(w))``: ``l2_regularization=1e-4``, on every
  parameter, BatchNorm's gamma/beta and biases included (``--norm-weight-decay`` unset, hence
  ``l2_on_batch_norm=True``; torchvision's newer recipe sets it to 0 but changes everything else too);
- no label smoothing, no EMA, no mixup;
- ResNet-50 v1.5 (stride on the 3x3), Kaiming fan-out init, BatchNorm momentum 0.1 (Keras 0.9),
  epsilon 1e-5;
- input: Inception crop (scale 0.08-1) + flip at 224, bilinear; eval resize 256 + center crop 224
  (padding 32: ``default_crop_padding(224)``; 87.5% of the short side at other sizes), bilinear;
  ImageNet 1,281,167 train / 50,000 validation images.

Deviations (named):
- a 5-epoch linear warmup (Goyal et al. 2017) when the global batch exceeds 256, so that the
  linearly scaled rate (1.6 at 4096) does not diverge; at 256 and below there is none, as the reference;
- per-replica batch 128 (torchvision: 32 per GPU), so BatchNorm's batch statistics cover 128 images;
- the model normalizes inside with caffe preprocessing (BGR mean subtraction, keras.applications'
  contract) instead of torchvision's RGB mean/std (the stem's BatchNorm removes the scale from
  the forward pass);
- BatchNorm is synchronized across replicas (torchvision: per GPU, unless ``--sync-bn``);
- Keras' SGD keeps the learning rate inside the momentum buffer (``v = m v - lr g``), PyTorch
  outside (``v = m v + g; w -= lr v``): identical at a constant rate, but at each x0.1 drop the
  PyTorch step shrinks at once and the Keras one over ~1/(1 - m) = 10 steps.

Data: TFRecords in the ImageNet layout with labels 1..1000 (``label_offset=-1``). The
TFRecord-only options (``label_offset``, ``num_classes``) are dropped, with a log line, when
``--data`` is a folder, ``digits`` or ``tfds:NAME`` (they know their classes).
"""

import keras

import kerasnets
from kerasnets.training import (
    STANDIN_TFRECORDS,
    Recipe,
    WarmupExponentialDecay,
    smoke_overrides,
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
    """SGD with plain momentum 0.9; x0.1 every 30 epochs (a 5-epoch warmup above batch 256); the
    coupled weight decay is ``recipe.l2_regularization`` (no decoupled ``weight_decay`` here)."""
    warmup_epochs = 5 if context.global_batch > recipe.reference_batch else 0
    schedule = WarmupExponentialDecay(
        peak=context.learning_rate,
        warmup_steps=warmup_epochs * context.steps_per_epoch,
        decay_steps=30 * context.steps_per_epoch,
        decay_rate=0.1,
    )
    return keras.optimizers.SGD(schedule, momentum=0.9, nesterov=False)


RECIPE = Recipe(
    name="resnet50_imagenet",
    build_model=build_model,
    build_optimizer=build_optimizer,
    data="imagenet/train-*-of-*",
    eval_data="imagenet/validation-*-of-*",
    train_examples=1_281_167,
    eval_examples=50_000,
    image_size=224,
    batch_size=128,
    epochs=90,
    base_learning_rate=0.1,
    reference_batch=256,
    label_smoothing=0.0,
    l2_regularization=1e-4,
    l2_on_batch_norm=True,
    ema_decay=None,
    family="resnet",  # precision "auto": mixed_bfloat16 on CPUs with AVX-512 BF16 (1.8x here), GPU/TPU as usual
    train_options={"label_offset": -1, "num_classes": 1000},
    eval_options={"label_offset": -1, "num_classes": 1000, "resize_method": "bilinear"},  # crop padding 32 at 224
    backup_every_steps=1000,
    smoke=smoke_overrides(data=STANDIN_TFRECORDS, eval_data=STANDIN_TFRECORDS, train_examples=None,
                          eval_examples=None, train_options={}, eval_options={"resize_method": "bilinear"}),
)

if __name__ == "__main__":
    from kerasnets.cli import recipe_main

    raise SystemExit(recipe_main(RECIPE))
