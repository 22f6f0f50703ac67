"""The ImageNet recipes without training: their reference settings, TF1 RMSProp, ``--data`` /
``--eval-data`` resolution, and the miniature ImageNet of :mod:`imagenet_layout`."""

import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerasnets.training
from kerasnets import cli
from kerasnets import data as kdata
from kerasnets.training import STANDIN_TFRECORDS, TrainContext, load_recipe
from kerasnets.training.optimizers import TF1RMSprop

from conftest import RECIPES  # noqa: E402
from imagenet_layout import IMAGENET_CLASSES, write_mini_imagenet  # noqa: E402

EFFICIENTNET = os.path.join(RECIPES, "efficientnet_imagenet.py")
RESNET = os.path.join(RECIPES, "resnet50_imagenet.py")
EFFICIENTNETV2 = os.path.join(RECIPES, "efficientnetv2_imagenet.py")  # its automl values: test_progressive.py


@pytest.fixture(scope="module")
def mini_imagenet(tmp_path_factory):
    """1,024 train shards of 2 images and 128 validation shards of 1, labels 1..10 of 1..1000."""
    return write_mini_imagenet(tmp_path_factory.mktemp("imagenet"))


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """A plain folder of two classes of four PNG images each."""
    from PIL import Image

    root = tmp_path_factory.mktemp("folder")
    for name, value in (("cats", 40), ("dogs", 200)):
        (root / name).mkdir()
        for index in range(4):
            Image.fromarray(np.full((16, 16, 3), value + index, np.uint8)).save(root / name / f"{index}.png")
    return root


def _resolve(recipe_path, *flags):
    args = cli.build_parser().parse_args(["train", recipe_path, *map(str, flags)])
    return cli.train_overrides(args, load_recipe(recipe_path))


def _schedule(optimizer):
    return optimizer.learning_rate if callable(optimizer.learning_rate) else optimizer._learning_rate


def test_recipes_state_imagenet_sizes_and_their_references_regularization():
    efficientnet, resnet = load_recipe(EFFICIENTNET), load_recipe(RESNET)
    for recipe in (efficientnet, resnet, load_recipe(EFFICIENTNETV2)):
        assert (recipe.train_examples, recipe.eval_examples) == (1_281_167, 50_000)
        assert recipe.train_options["label_offset"] == recipe.eval_options["label_offset"] == -1
    assert (efficientnet.l2_regularization, efficientnet.l2_on_batch_norm, efficientnet.ema_decay,
            efficientnet.label_smoothing) == (1e-5, False, 0.9999, 0.1)
    assert (resnet.l2_regularization, resnet.l2_on_batch_norm, resnet.ema_decay, resnet.label_smoothing,
            resnet.epochs) == (1e-4, True, None, 0.0, 90)

    context = TrainContext(1000, 100, 4096, 32, 0.016 * 4096 / 256, True)
    rmsprop = efficientnet.build_optimizer(efficientnet, context)
    assert isinstance(rmsprop, TF1RMSprop)
    assert (rmsprop.rho, rmsprop.momentum, rmsprop.epsilon, rmsprop.initial_accumulator_value) == (0.9, 0.9, 1e-3, 1.0)
    assert not rmsprop.use_ema and rmsprop.weight_decay is None  # the trainer owns EMA and the L2 penalty
    schedule = _schedule(rmsprop)
    assert float(schedule(250)) == pytest.approx(0.128)  # warmup over 5 epochs
    assert float(schedule(500)) == pytest.approx(0.256 * 0.97 ** 2)  # staircase counted from step 0
    assert float(schedule(720)) == pytest.approx(0.256 * 0.97 ** 3)

    sgd = resnet.build_optimizer(resnet, TrainContext(1000, 100, 256, 1, 0.1, False))
    assert isinstance(sgd, keras.optimizers.SGD) and (sgd.momentum, sgd.nesterov) == (0.9, False)
    assert not sgd.use_ema and sgd.weight_decay is None
    schedule = _schedule(sgd)
    assert [float(schedule(s)) for s in (0, 2999, 3000, 6000)] == pytest.approx([0.1, 0.1, 0.01, 0.001])  # StepLR
    big = _schedule(resnet.build_optimizer(resnet, TrainContext(1000, 100, 4096, 32, 1.6, True)))
    assert [float(big(s)) for s in (250, 500, 3000)] == pytest.approx([0.8, 1.6, 0.16])  # warmup above 256


def _tf1_rmsprop(params, grad_fn, lrs, rho=0.9, momentum=0.9, epsilon=1e-3):
    """tf.compat.v1.train.RMSPropOptimizer, by its documented formula, in numpy: ms starts at 1."""
    params = [np.array(p, np.float64) for p in params]
    ms = [np.ones_like(p) for p in params]
    mom = [np.zeros_like(p) for p in params]
    for lr in lrs:
        grads = grad_fn(params)
        for i, g in enumerate(grads):
            ms[i] = rho * ms[i] + (1 - rho) * g ** 2
            mom[i] = momentum * mom[i] + lr * g / np.sqrt(ms[i] + epsilon)
            params[i] = params[i] - mom[i]
    return params


def test_tf1_rmsprop_matches_the_tf1_formula_for_three_steps():
    # loss = 0.5 * sum(a * w**2) + sum(b**3) / 3: gradients a * w and b**2
    a, w0, b0 = np.array([1.0, 4.0]), np.array([0.5, -1.5]), np.array([0.2, -0.7, 2.0])
    lrs = [0.1, 0.05, 0.025]  # ExponentialDecay(0.1, 1, 0.5): the rate inside the momentum matters
    expected = _tf1_rmsprop([w0, b0], lambda p: [a * p[0], p[1] ** 2], lrs)

    def run(optimizer):
        w, b = keras.Variable(w0.astype("float32")), keras.Variable(b0.astype("float32"))
        for _ in lrs:
            with tf.GradientTape() as tape:
                loss = 0.5 * tf.reduce_sum(a.astype("float32") * w ** 2) + tf.reduce_sum(b ** 3) / 3
            optimizer.apply_gradients(zip(tape.gradient(loss, [w, b]), [w, b]))
        return [np.asarray(w), np.asarray(b)]

    # the formula is TF1's: tf.compat.v1's own RMSPropOptimizer (eager, float64) agrees
    w, b, step = tf.Variable(w0), tf.Variable(b0), [0]
    tf1 = tf.compat.v1.train.RMSPropOptimizer(lambda: lrs[step[0]], decay=0.9, momentum=0.9, epsilon=1e-3)
    for step[0] in range(len(lrs)):
        with tf.GradientTape() as tape:
            loss = 0.5 * tf.reduce_sum(a * w ** 2) + tf.reduce_sum(b ** 3) / 3
        tf1.apply_gradients(zip(tape.gradient(loss, [w, b]), [w, b]))
    np.testing.assert_allclose(w.numpy(), expected[0], atol=1e-6)
    np.testing.assert_allclose(b.numpy(), expected[1], atol=1e-6)

    decay = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=1, decay_rate=0.5)
    got = run(TF1RMSprop(decay, rho=0.9, momentum=0.9, epsilon=1e-3))
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)
    stock = run(keras.optimizers.RMSprop(decay, rho=0.9, momentum=0.9, epsilon=1e-3))
    assert np.abs(stock[0] - expected[0]).max() > 0.1  # Keras starts ms at 0: far larger first steps

    config = TF1RMSprop(decay, momentum=0.9, epsilon=1e-3).get_config()
    serialized = keras.saving.serialize_keras_object(TF1RMSprop.from_config(config))
    restored = keras.saving.deserialize_keras_object(serialized)
    assert isinstance(restored, TF1RMSprop) and restored.initial_accumulator_value == 1.0
    with pytest.raises(ValueError, match="initial_accumulator_value must be a number >= 0"):
        TF1RMSprop(initial_accumulator_value=-1)


def test_tf1_rmsprop_trains_in_fit_and_survives_a_keras_save(tmp_path):
    from kerasnets.training import WarmupExponentialDecay

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    schedule = WarmupExponentialDecay(peak=0.01, warmup_steps=2, decay_steps=2.4, decay_rate=0.97)
    model.compile(optimizer=TF1RMSprop(schedule, rho=0.9, momentum=0.9, epsilon=1e-3),
                  loss="sparse_categorical_crossentropy")
    x, y = np.random.RandomState(0).normal(size=(16, 4)).astype("float32"), np.arange(16) % 3
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)  # compiled tf.function path
    velocity = [np.asarray(v) for v in model.optimizer._velocities]
    assert all(np.all(v > 0.5) for v in velocity)  # started at 1, 4 steps of x0.9: still near 1
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert isinstance(loaded.optimizer, TF1RMSprop) and loaded.optimizer.epsilon == 1e-3
    assert isinstance(loaded.optimizer._learning_rate, WarmupExponentialDecay)
    for saved, restored in zip(velocity, loaded.optimizer._velocities):
        np.testing.assert_allclose(np.asarray(restored), saved)


def test_write_mini_imagenet_has_the_real_layout_and_1_based_labels(mini_imagenet):
    root = os.path.dirname(mini_imagenet["train"])
    names = sorted(os.listdir(root))
    assert len(names) == 1024 + 128  # shards only: no dataset.json, no labels file
    assert names[0] == "train-00000-of-01024" and names[1023] == "train-01023-of-01024"
    assert names[1024] == "validation-00000-of-00128" and names[-1] == "validation-00127-of-00128"
    assert (mini_imagenet["train_examples"], mini_imagenet["eval_examples"]) == (2048, 128)
    assert mini_imagenet["num_classes"] == IMAGENET_CLASSES == 1000
    for key, count in (("train_files", 2048), ("eval_files", 128)):
        labels = [int(tf.train.Example.FromString(r.numpy()).features.feature["image/class/label"].int64_list.value[0])
                  for r in tf.data.TFRecordDataset(mini_imagenet[key])]
        assert len(labels) == count and set(labels) == set(range(1, 11))
    record = next(iter(tf.data.TFRecordDataset(mini_imagenet["eval_files"][:1])))
    image = tf.io.decode_jpeg(tf.train.Example.FromString(record.numpy()).features.feature["image/encoded"]
                              .bytes_list.value[0])
    assert image.shape == (32, 32, 3)


@pytest.mark.parametrize("recipe_path", [EFFICIENTNET, EFFICIENTNETV2, RESNET])
def test_data_glob_takes_the_validation_shards_next_to_it(recipe_path, mini_imagenet, caplog):
    own = load_recipe(recipe_path)
    recipe = _resolve(recipe_path, "--data", mini_imagenet["train"])
    assert recipe.data == mini_imagenet["train"] and recipe.eval_data == mini_imagenet["eval"]
    assert (recipe.train_examples, recipe.eval_examples) == (None, None)  # ImageNet's sizes: not these shards'
    assert recipe.train_options == own.train_options and recipe.eval_options == own.eval_options
    assert "evaluating on" in caplog.text and "own count applies" in caplog.text
    # any glob of the folder, and --smoke too, evaluate next to it
    shorter = os.path.join(os.path.dirname(mini_imagenet["train"]), "train-*")
    assert _resolve(recipe_path, "--data", shorter, "--smoke").eval_data == mini_imagenet["eval"]
    # the recipe's options read the shards: 1-based labels become 0..9 of 1,000 classes
    options = {k: v for k, v in recipe.eval_options.items() if k != "crop_padding"}
    dataset, info = kdata.load(recipe.eval_data, "validation", image_size=32, batch_size=128, training=False, **options)
    labels = np.concatenate([y.numpy() for _, y in dataset])
    assert info.num_classes == 1000 and len(labels) == 128 and set(labels) == set(range(10))

    stated = _resolve(recipe_path, "--data", mini_imagenet["train"], "--train-examples", 2048, "--eval-examples", 128)
    assert (stated.train_examples, stated.eval_examples) == (2048, 128)
    chosen = _resolve(recipe_path, "--data", mini_imagenet["train"], "--eval-data", mini_imagenet["train_files"][0])
    assert chosen.eval_data == mini_imagenet["train_files"][0]  # --eval-data wins
    assert _resolve(recipe_path).eval_data == own.eval_data and _resolve(recipe_path).train_examples == 1_281_167
    smoke = _resolve(recipe_path, "--smoke")
    assert smoke.data == smoke.eval_data == STANDIN_TFRECORDS and smoke.train_examples is None


def test_data_glob_without_validation_shards_fails_in_one_line(mini_imagenet, tmp_path, capsys):
    shutil.copy(mini_imagenet["train_files"][0], tmp_path / "train-00000-of-00001")
    code = cli.main(["train", RESNET, "--data", str(tmp_path / "train-*"), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "validation-*-of-*" in err and "--eval-data" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("recipe_path", [EFFICIENTNET, EFFICIENTNETV2, RESNET])
def test_folder_or_digits_data_drops_the_tfrecord_options(recipe_path, image_folder, monkeypatch, caplog, capsys):
    recipe = _resolve(recipe_path, "--data", image_folder)
    assert cli.source_kind(str(image_folder)) == "folder" and recipe.eval_data is None  # its held-out split
    for options in (recipe.train_options, recipe.eval_options):
        assert not {"label_offset", "num_classes", "class_names"} & set(options)
    assert recipe.eval_options.get("resize_method") == load_recipe(recipe_path).eval_options["resize_method"]
    assert (recipe.train_examples, recipe.eval_examples) == (None, None)
    assert "dropped" in caplog.text and "held-out split" in caplog.text
    # the options that remain load the folder (what the trainer does with them)
    train_options = {k: v for k, v in recipe.train_options.items() if k != "autoaugment"}
    for split, training, options in (("train", True, train_options), ("validation", False, recipe.eval_options)):
        dataset, info = kdata.load(str(image_folder), split, image_size=32, batch_size=2, training=training, **options)
        assert info.num_classes == 2 and next(iter(dataset))[0].shape[1:] == (32, 32, 3)

    digits = _resolve(recipe_path, "--data", "digits", "--smoke")
    assert digits.eval_data is None and "label_offset" not in digits.train_options

    reached = []

    def fake_train(recipe, **kwargs):
        reached.append(recipe)
        raise ValueError("stopped before training")

    monkeypatch.setattr(kerasnets.training, "train", fake_train)
    assert cli.main(["train", recipe_path, "--data", str(image_folder)]) == 2
    assert "Traceback" not in capsys.readouterr().err
    assert reached and reached[0].data == str(image_folder) and "num_classes" not in reached[0].train_options


def test_imagenet_recipe_on_the_users_own_write_tfrecords_shards_drops_the_imagenet_label_options(tmp_path):
    """Shards written by write_tfrecords describe themselves (0-based labels, dataset.json): the
    recipe's ImageNet label_offset=-1 / num_classes=1000 would misread them, so they are dropped."""
    import numpy as np
    from PIL import Image

    from kerasnets import data

    for name in ("cat", "dog"):
        (tmp_path / "photos" / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((20, 20, 3), 40 * i, np.uint8)).save(tmp_path / "photos" / name / f"{i}.jpg")
    for split in ("train", "validation"):
        data.write_tfrecords(str(tmp_path / "photos"), str(tmp_path / "records" / split), shards=2, progress=False)
    recipe = load_recipe(os.path.join(RECIPES, "resnet50_imagenet.py"))
    args = cli.build_parser().parse_args(["train", "x", "--data", str(tmp_path / "records" / "train-*")])
    resolved = cli.train_overrides(args, recipe)
    assert "label_offset" not in resolved.train_options and "num_classes" not in resolved.train_options
    assert resolved.eval_data == str(tmp_path / "records" / "validation-*-of-*")
    assert "label_offset" not in resolved.eval_options
    _, info = data.load(resolved.data, "train", 16, 2, **resolved.train_options)
    assert info.class_names == ("cat", "dog") and info.num_examples == 6
