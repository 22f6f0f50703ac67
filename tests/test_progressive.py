"""Progressive learning (EfficientNetV2): stages measured where they act (the batches the compiled
step receives, the dropout rates its graph was traced with, the learning rate of the one
optimizer), exact resume inside a later stage, and the V2 recipe against google/automl."""

import json
import os

import keras
import kerasnets
import numpy as np
import pytest
import tensorflow as tf

from kerasnets import cli
from kerasnets import data as kdata
from kerasnets.training import Phase, Recipe, Stage, TrainContext, load_recipe, progressive_stages
from kerasnets.training.progressive import check_stages

from conftest import RECIPES  # noqa: E402
from test_trainer import _interrupted_then_resumed  # noqa: E402

# A tiny model named as EfficientNet's blocks, with kerasnets' own drop path ramped as the builders
# ramp it (block b of B = 3 at 0.5 * b / B; block1a has none), and a Dropout before the classifier.
TINY = """
import keras
from kerasnets.layers import drop_path
from kerasnets.training import Recipe, Stage


def build_model(recipe, context):
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="stem_conv")(keras.layers.Rescaling(1 / 255)(inputs))
    for b, name in enumerate(("block1a", "block1b", "block2a")):
        y = keras.layers.Conv2D(4, 3, padding="same", name=f"{name}_conv")(x)
        x = keras.layers.Add(name=f"{name}_add")([x, drop_path(y, 0.5 * b / 3, f"{name}_drop")])
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(keras.layers.Conv2D(8, 1, name="top_conv")(x))
    x = keras.layers.Dropout(0.5, name="top_dropout")(x)
    return keras.Model(inputs, keras.layers.Dense(context.num_classes, activation="softmax", name="predictions")(x))


def build_optimizer(recipe, context):  # the rate halves every step: the history shows whose steps it counted
    return keras.optimizers.Adam(keras.optimizers.schedules.ExponentialDecay(0.01, 1, 0.5))


# why each override: 24 px / batch 8 / 3 steps per epoch keep every stage a few seconds (what is
# tested is the stages, not accuracy); a backup every step, so an interruption lands inside any
# stage; EMA 0.9, so the EMA's state is part of what a resume must restore exactly; .keras export
# only (the formats are tested on the main job); the default path is test_main_job_* (no stages)
RECIPE = Recipe(name="progressive", build_model=build_model, build_optimizer=build_optimizer, image_size=24,
                batch_size=8, epochs=EPOCHS, steps_per_epoch=3, backup_every_steps=1, ema_decay=0.9,
                export=("keras",), stages=STAGES)
"""

RATES = """(Stage("small", 1, 16, dropout_rate=0.1, drop_connect_rate=0.3),
          Stage("medium", 1, 20, dropout_rate=0.2, drop_connect_rate=0.6),
          Stage("large", 1, 24, dropout_rate=0.3, drop_connect_rate=0.9))"""
AUGMENTED = """(Stage("randaugment_mixup", 1, 16, randaugment_magnitude=15, mixup_alpha=0.4),
             Stage("cutmix", 1, 20, cutmix_alpha=1.0))"""


def _recipe_file(tmp_path, stages, epochs):
    path = tmp_path / "progressive.py"
    path.write_text(TINY.replace("EPOCHS", str(epochs)).replace("STAGES", stages))
    return path


def _spy_steps(monkeypatch, loop):
    """Record what each compiled step receives (images, labels: drawn inside the call, so recorded
    from there) and the rate every Dropout layer is traced with, under the batch size being traced."""
    received, traced, size = [], [], [None]
    original = loop.StepFunctions._replica_train

    def recording(self, images, labels):
        size[0] = int(images.shape[1])  # static: each stage's pipeline has one size
        tf.py_function(lambda x, y: received.append((x.numpy(), y.numpy())) or 0, [images, labels], tf.int32)
        return original(self, images, labels)

    call = keras.layers.Dropout.call

    def tracing(self, inputs, training=False):  # python runs when the step is traced: the rate its graph holds
        if training:
            traced.append((size[0], self.name, round(float(self.rate), 6)))
        return call(self, inputs, training=training)

    monkeypatch.setattr(loop.StepFunctions, "_replica_train", recording)
    monkeypatch.setattr(keras.layers.Dropout, "call", tracing)
    return received, traced


def test_stages_train_at_their_sizes_with_their_rates_one_optimizer_and_resume_exactly_in_a_later_stage(
        tmp_path, monkeypatch, capsys):
    """Three stages of one epoch (3 steps) at 16, 20 and 24 px, dropout 0.1/0.2/0.3 and stochastic
    depth 0.3/0.6/0.9: the steps receive batches of the stage's size; each stage's step is traced
    with its rates (drop path ramped b / B over the blocks, as the builders do); the learning rate
    keeps halving across stages (one optimizer, one schedule); then a run interrupted in stage 3
    resumes to the uninterrupted run's weights, bit for bit. Tiny model, 3 steps per stage: what is
    tested is the stage machinery; --deterministic: bit-for-bit comparable runs."""
    from kerasnets.training import loop
    from tensorflow.python.framework import config as tf_config

    recipe_file = _recipe_file(tmp_path, RATES, 3)
    received, traced = _spy_steps(monkeypatch, loop)
    command = ["train", str(recipe_file), "--output", str(tmp_path), "--deterministic"]
    try:
        assert cli.main(command + ["--name", "whole"]) == 0
        whole_out = capsys.readouterr().out
        monkeypatch.undo()
        keras.backend.clear_session()
        _interrupted_then_resumed(command + ["--name", "resumed"], monkeypatch, loop, cli, at_call=8)
    finally:  # --deterministic turned op determinism on for this process: not for the tests after this one
        tf_config.disable_op_determinism()
    assert [images.shape[1:] for images, _ in received] == [(16, 16, 3)] * 3 + [(20, 20, 3)] * 3 + [(24, 24, 3)] * 3
    assert {images.dtype for images, _ in received} == {np.dtype(np.uint8)}
    for size, dropout, depth in ((16, 0.1, 0.3), (20, 0.2, 0.6), (24, 0.3, 0.9)):
        expected = {("top_dropout", dropout), ("block1b_drop", round(depth / 3, 6)),
                    ("block2a_drop", round(depth * 2 / 3, 6))}
        assert {(name, rate) for traced_size, name, rate in traced if traced_size == size} == expected, size

    summary = json.loads((tmp_path / "whole" / "summary.json").read_text())
    assert [(s["name"], s["image_size"], s["dropout_rate"], s["drop_connect_rate"]) for s in summary["stages"]] == [
        ("small", 16, 0.1, 0.3), ("medium", 20, 0.2, 0.6), ("large", 24, 0.3, 0.9)]
    assert "stage       medium: 1 epochs at 20 px" in whole_out and "dropout 0.2, stochastic depth 0.6" in whole_out
    header, *rows = [line.split(",") for line in (tmp_path / "whole" / "history.csv").read_text().splitlines()]
    assert [int(row[header.index("image_size")]) for row in rows] == [16, 20, 24]
    rates = [float(row[header.index("learning_rate")]) for row in rows]
    assert rates == pytest.approx([0.01 * 0.5 ** 3, 0.01 * 0.5 ** 6, 0.01 * 0.5 ** 9])  # steps 3, 6, 9 of one schedule

    resumed = json.loads((tmp_path / "resumed" / "summary.json").read_text())
    assert (resumed["resumed_from_phase"], resumed["resumed_from_step"], resumed["steps_run"]) == (2, 1, 2)
    header, *rows = [line.split(",") for line in (tmp_path / "resumed" / "history.csv").read_text().splitlines()]
    assert [int(row[header.index("image_size")]) for row in rows] == [16, 20, 24]
    whole = keras.saving.load_model(tmp_path / "whole" / "model.keras", compile=False)  # no custom objects
    again = keras.saving.load_model(tmp_path / "resumed" / "model.keras", compile=False)
    assert whole.input_shape == (None, 24, 24, 3)  # exported at the evaluation size
    assert whole.get_layer("top_dropout").rate == 0.3
    for a, b in zip(whole.weights, again.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)


def test_augmentation_stages_resume_exactly_inside_randaugment_mixup_and_inside_cutmix(tmp_path, monkeypatch):
    """Stage 1 RandAugment at automl magnitude 15 (a Keras RandAugment of factor 0.5) with MixUp,
    stage 2 CutMix: both stages' labels are mixed. Their Keras layers draw from per-batch seeds
    (stateless), so the stage's data iterator is in its backups: a run interrupted in stage 1
    (backup at step 2) and one interrupted in stage 2 (backup at its step 1) receive the
    uninterrupted run's batches, augmentation draws included, and end with its weights, bit for
    bit. Tiny model, 3 steps per stage; --deterministic: bit-for-bit comparable runs."""
    from kerasnets.data import augment
    from kerasnets.training import loop
    from kerasnets.training.backup import RunBackup
    from tensorflow.python.framework import config as tf_config

    factors = []
    make = augment.randaugment_layer
    monkeypatch.setattr(augment, "randaugment_layer", lambda *args: factors.append(make(*args).factor) or make(*args))
    recipe_file = _recipe_file(tmp_path, AUGMENTED, 2)
    received, _ = _spy_steps(monkeypatch, loop)
    restored, restore = [], RunBackup.restore

    def recording_restore(self, checkpoint, save):  # what the backup holds (cleared once the run is done)
        names = [name for name, _ in tf.train.list_variables(os.path.join(self.dir, save["dir"], "ckpt"))]
        restored.append(any(name.startswith("iterator/") for name in names))
        return restore(self, checkpoint, save)

    monkeypatch.setattr(RunBackup, "restore", recording_restore)
    command = ["train", str(recipe_file), "--output", str(tmp_path), "--deterministic"]
    runs = {}
    try:
        assert cli.main(command + ["--name", "whole"]) == 0
        assert factors == [(0, 0.5)]  # one RandAugment pipeline, the first stage's
        whole = list(received)
        for name, at_call in (("in_randaugment_mixup", 3), ("in_cutmix", 5)):
            received.clear()
            keras.backend.clear_session()
            _interrupted_then_resumed(command + ["--name", name], monkeypatch, loop, cli, at_call=at_call)
            runs[name] = list(received)
    finally:  # --deterministic turned op determinism on for this process: not for the tests after this one
        tf_config.disable_op_determinism()
    assert restored == [True, True]  # the stage's iterator is in its backups (not a replay of the stream)
    assert [labels.shape for _, labels in whole] == [(8, 10)] * 6
    assert all(not set(np.unique(labels)) <= {0.0, 1.0} for _, labels in whole)  # MixUp, then CutMix, mix them
    weights = keras.saving.load_model(tmp_path / "whole" / "model.keras", compile=False).weights
    for name, (phase, step), replayed in (("in_randaugment_mixup", (0, 2), 2), ("in_cutmix", (1, 1), 4)):
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        assert (summary["resumed_from_phase"], summary["resumed_from_step"]) == (phase, step)
        # the interrupted attempt ran the steps before its backup, the resumed one the steps after
        got = runs[name][replayed:]
        assert len(got) == 6 - replayed
        for index, ((images, labels), (want_images, want_labels)) in enumerate(zip(got, whole[replayed:])):
            np.testing.assert_array_equal(images, want_images, err_msg=f"{name}: step {replayed + index + 1}")
            np.testing.assert_array_equal(labels, want_labels, err_msg=f"{name}: step {replayed + index + 1}")
        again = keras.saving.load_model(tmp_path / name / "model.keras", compile=False)
        for a, b in zip(weights, again.weights):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=f"{name}: {a.path}")


def test_progressive_stages_are_the_ramps_of_automl_main_py():
    """google/automl efficientnetv2 main.py, 350 epochs in 4 stages from ibase 128 to V2-S's 300:
    ``ratio = (stage + 1) / 4``, ``image_size = int(128 + (300 - 128) * ratio)``, ``max_steps =
    int(ratio * train_steps)``, ``np.linspace(5, ram, 4)`` and ``np.linspace(0, alpha, 4)``."""
    stages = progressive_stages(350, (128, 300), 4, randaugment=(5, 10), mixup=(0, 0.2), cutmix=(0, 0.2),
                                dropout=(0.1, 0.3), drop_connect=(0.2, 0.2))
    assert [s.image_size for s in stages] == [171, 214, 257, 300]
    assert [s.epochs for s in stages] == [87, 88, 87, 88]  # ends at epochs 87, 175, 262, 350
    assert [s.randaugment_magnitude for s in stages] == pytest.approx(np.linspace(5, 10, 4))
    assert [s.mixup_alpha for s in stages] == [s.cutmix_alpha for s in stages] == pytest.approx(np.linspace(0, 0.2, 4))
    assert [s.dropout_rate for s in stages] == pytest.approx(np.linspace(0.1, 0.3, 4))
    assert {s.drop_connect_rate for s in stages} == {0.2}
    unset = progressive_stages(8, (16, 32), 2)
    # unset: as the recipe's train_options (augmentation) and as built (rates)
    assert (unset[0].randaugment_magnitude, unset[0].mixup_alpha, unset[0].dropout_rate) == (None, None, None)
    with pytest.raises(ValueError, match="epochs must be an integer >= count=4"):
        progressive_stages(3, (128, 300))


def test_a_stage_that_leaves_augmentation_unset_keeps_the_recipes():
    """A recipe's own train_options augmentation (MixUp here) stays on in stages that do not set it
    (it used to be switched off silently), and a stage's explicit 0 switches it off: measured on
    the labels of the stage's pipeline (MixUp mixes them)."""
    from kerasnets.training.progressive import stage_augmentation, stage_dataset

    load_args = dict(source="digits", split="train", training=True, repeat=True, batch_size=32, one_hot=True, seed=0,
                     image_size=32, dtype="uint8", mixup_alpha=0.4)

    def mixed(stage):
        _, labels = next(iter(stage_dataset(load_args, stage, 0)[0]))
        return not set(np.unique(labels.numpy())) <= {0.0, 1.0}

    assert mixed(Stage("unset", 1, 16)) and not mixed(Stage("off", 1, 16, mixup_alpha=0.0))
    assert stage_augmentation(Stage("unset", 1, 16), load_args) == {"randaugment": False, "mixup_alpha": 0.4,
                                                                   "cutmix_alpha": 0.0}


def test_stage_errors_say_what_is_allowed():
    with pytest.raises(ValueError, match="image_size must be a positive integer"):
        Stage("s", 1, 0)
    with pytest.raises(ValueError, match=r"randaugment_magnitude must be in \[0, 30\]"):
        Stage("s", 1, 16, randaugment_magnitude=31)
    with pytest.raises(ValueError, match=r"dropout_rate must be in \[0, 1\) or None"):
        Stage("s", 1, 16, dropout_rate=1.0)
    build = dict(name="r", build_model=lambda r, c: None, build_optimizer=lambda r, c: None)
    with pytest.raises(ValueError, match="phases .* or stages .*, not both"):
        Recipe(**build, epochs=2, phases=(Phase("a", 2),), stages=(Stage("s", 2, 16),))
    with pytest.raises(ValueError, match=r"the stages' epochs \[1\] must add up to epochs=2"):
        Recipe(**build, epochs=2, stages=(Stage("s", 1, 16),))
    fixed = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"fixed at 16x16 .* input_shape=\(None, None, 3\)"):
        check_stages(fixed, (Stage("s", 1, 16), Stage("t", 1, 24)))
    with pytest.raises(ValueError, match="no Dropout layer: build it with dropout_rate > 0"):
        check_stages(fixed, (Stage("s", 1, 16, dropout_rate=0.1),))


def test_a_stream_from_a_later_epoch_is_that_epoch_of_the_whole_stream():
    """data.load(first_epoch=1) (a later stage's stream) starts where the whole stream's epoch 1
    starts (digits: 1,437 training examples, each epoch a permutation), with its own crops."""
    options = dict(image_size=8, batch_size=64, training=True, repeat=True, seed=3, dtype="uint8")
    whole, info = kdata.load("digits", "train", **options)
    later, _ = kdata.load("digits", "train", first_epoch=1, **options)
    count = info.num_examples
    labels = np.concatenate([y.numpy() for _, y in whole.take(count // 64 + 3)])
    assert np.array_equal(np.concatenate([y.numpy() for _, y in later.take(2)]), labels[count:count + 128])
    assert not np.array_equal(labels[:128], labels[count:count + 128])
    with pytest.raises(ValueError, match="first_epoch must be an integer >= 0, and 0 unless training"):
        kdata.load("digits", "test", first_epoch=1)


def test_efficientnetv2_recipe_is_google_automl_efficientnetv2(monkeypatch):
    """recipes/efficientnetv2_imagenet.py against google/automl efficientnetv2 (commit 2fb46e7):
    effnetv2_configs.py ``'efficientnetv2-s': (v2_s_block, 1.0, 1.0, 300, 384, 0.2, 10, 0, 'randaug')``
    and ``train=dict(stages=4, sched=True)``; hparams.py ``ibase=128``, ``ra_num_layers=2``,
    ``epochs=350``, ``lr_base=0.016``, ``lr_warmup_epoch=5``, ``lr_decay_epoch=2.4``,
    ``lr_decay_factor=0.97``, ``ema_decay=0.9999``, ``weight_decay=1e-5``, ``label_smoothing=0.1``,
    ``survival_prob=0.8``, ``batch_size=4096``; utils.build_optimizer: RMSProp decay 0.9, momentum
    0.9, epsilon 0.001; main.py's stage loop; the paper's Table 6 dropout 0.1 -> 0.3 and section
    5.1 BN momentum 0.99."""
    recipe = load_recipe(os.path.join(RECIPES, "efficientnetv2_imagenet.py"))
    assert (recipe.epochs, recipe.image_size, recipe.base_learning_rate, recipe.reference_batch) == (350, 384, 0.016, 256)
    assert (recipe.label_smoothing, recipe.l2_regularization, recipe.ema_decay) == (0.1, 1e-5, 0.9999)
    stages = recipe.stages
    assert [s.image_size for s in stages] == [int(128 + (300 - 128) * (s + 1) / 4) for s in range(4)] == [171, 214,
                                                                                                       257, 300]
    assert [s.epochs for s in stages] == [87, 88, 87, 88]
    assert [s.randaugment_magnitude for s in stages] == pytest.approx([5, 5 + 5 / 3, 5 + 10 / 3, 10])
    assert {s.mixup_alpha for s in stages} == {s.cutmix_alpha for s in stages} == {0.0}  # V2-S: mix 0
    assert [s.dropout_rate for s in stages] == pytest.approx([0.1, 0.1 + 0.2 / 3, 0.1 + 0.4 / 3, 0.3])
    assert [s.drop_connect_rate for s in stages] == pytest.approx([0.2] * 4)  # 1 - survival_prob
    assert recipe.train_options["randaugment"] == {"num_ops": 2} and recipe.train_options["crop_scale"] == (0.05, 1.0)
    from kerasnets.training.optimizers import TF1RMSprop

    optimizer = recipe.build_optimizer(recipe, TrainContext(1000, 100, 4096, 32, 0.016 * 4096 / 256, True))
    assert isinstance(optimizer, TF1RMSprop)
    assert (optimizer.rho, optimizer.momentum, optimizer.epsilon) == (0.9, 0.9, 1e-3)
    schedule = optimizer._learning_rate  # 100 steps per epoch at batch 4096: 0.256 after 5 warmup epochs
    assert [float(schedule(s)) for s in (250, 500, 720)] == pytest.approx([0.128, 0.256 * 0.97 ** 2, 0.256 * 0.97 ** 3])
    built = []  # a spy instead of the 21M-parameter build (the --smoke test builds and trains it)
    monkeypatch.setattr(kerasnets, "EfficientNetV2", lambda variant, **kwargs: built.append((variant, kwargs)))
    recipe.build_model(recipe, TrainContext(1000, 100, 4096, 32, 0.256, True))
    variant, kwargs = built[0]
    assert (variant, kwargs["input_shape"], kwargs["bn_momentum"], kwargs["dropout_rate"],
            kwargs["drop_connect_rate"]) == ("s", (None, None, 3), 0.99, 0.2, 0.2)


def test_fixed_input_copy_check_stages_and_profile_follow_channels_first():
    """Under keras.config.image_data_format() == "channels_first" a progressive model's input is
    (3, None, None): check_stages reads its height and width there (it read (3, None) as height 3
    and refused every stage), fixed_input_copy fixes (3, 24, 24) with the same weights, and
    profile() counts the convolution on its channel axis: 24 * 24 positions x 4 filters x 3 x 3 x 3
    inputs, plus the 4 x 2 classifier, counted by hand. Built symbolically: none of the three runs
    the model (keras' TF backend does run channels_first convolutions on the CPU, transposed)."""
    from kerasnets.training.progressive import fixed_input_copy

    previous = keras.config.image_data_format()
    keras.config.set_image_data_format("channels_first")  # restored below: the other tests run channels_last
    try:
        inputs = keras.Input((3, None, None))
        x = keras.layers.Conv2D(4, 3, padding="same", name="stem_conv")(inputs)
        x = keras.layers.Dropout(0.2, name="top_dropout")(keras.layers.GlobalAveragePooling2D()(x))
        model = keras.Model(inputs, keras.layers.Dense(2, name="predictions")(x))
        check_stages(model, (Stage("s", 1, 16, dropout_rate=0.1), Stage("t", 1, 24)))
        copy = fixed_input_copy(model, 24)
        assert copy.input_shape == (None, 3, 24, 24)
        for a, b in zip(model.weights, copy.weights):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
        assert fixed_input_copy(copy, 32) is copy  # fixed already
        stats = kerasnets.profile(copy)
        assert stats["input_size"] == (24, 24)
        assert stats["flops"] == 24 * 24 * 4 * 3 * 3 * 3 + 4 * 2
        assert kerasnets.profile(model, image_size=24)["flops"] == stats["flops"]
        with pytest.raises(ValueError, match=r"fixed at 24x24 .* input_shape=\(3, None, None\)"):
            check_stages(copy, (Stage("s", 1, 16),))
    finally:
        keras.config.set_image_data_format(previous)
