"""Fine-tuning helpers: freeze() in whole blocks (BN in inference mode) and load_pretrained()."""

import keras
import numpy as np
import pytest

import kerasnets
import kerasnets.serving
from kerasnets.models import pretrained as weights_module

# Paper tables: EfficientNet-B0 Table 1 repeats per stage, ResNet-50 blocks per stage (He et al. Table 1).
B0_REPEATS = (1, 2, 2, 3, 3, 4, 1)
RESNET50_REPEATS = (3, 4, 6, 3)
B0_BLOCKS = ["stem"] + [f"block{s + 1}{'abcd'[j]}" for s, n in enumerate(B0_REPEATS) for j in range(n)] + ["top"]
RESNET50_BLOCKS = ["conv1"] + [f"conv{s + 2}_block{j + 1}" for s, n in enumerate(RESNET50_REPEATS) for j in range(n)]


def _in_block(name, block):
    if block == "top":
        return name in ("top_conv", "top_bn", "top_activation")
    if block == "stem":
        return name.startswith("stem_")
    if block == "conv1":
        return name.startswith(("conv1_", "pool1_"))
    return name.startswith(f"{block}_")


def _assert_trainable_exactly(model, blocks, trainable_blocks, head=("predictions",)):
    """Every weighted layer of a trainable block trains (BN aside), every other backbone layer is frozen."""
    checked = 0
    for layer in model.layers:
        if not layer.weights:
            continue
        owner = [b for b in blocks if _in_block(layer.name, b)]
        if layer.name in head:
            assert layer.trainable and layer.trainable_weights, layer.name
            continue
        if not owner:  # outside blocks and before the head: the input Normalization, nothing to train
            assert isinstance(layer, keras.layers.Normalization) and not layer.trainable_weights, layer.name
            continue
        assert len(owner) == 1, layer.name
        expected = owner[0] in trainable_blocks and not isinstance(layer, keras.layers.BatchNormalization)
        assert bool(layer.trainable_weights) == expected, (layer.name, expected)
        checked += 1
    assert checked > len(blocks)


def _count(weights):
    return sum(int(np.prod(w.shape)) for w in weights)


def test_model_blocks_follow_the_paper_tables():
    b0 = kerasnets.EfficientNet(0, input_shape=(32, 32, 3), classes=3)
    assert kerasnets.model_blocks(b0) == B0_BLOCKS
    theirs = keras.applications.EfficientNetB0(weights=None, include_top=False, input_shape=(32, 32, 3))
    assert kerasnets.model_blocks(theirs) == B0_BLOCKS
    assert kerasnets.model_blocks(kerasnets.ResNet(50, input_shape=(32, 32, 3))) == RESNET50_BLOCKS
    deep = kerasnets.model_blocks(kerasnets.ResNet(50, "d", input_shape=(32, 32, 3)))
    assert deep == RESNET50_BLOCKS  # the deep stem (conv1_1..conv1_3) is one block, "conv1"


@pytest.mark.parametrize("trainable_from", ["block6a", 6, -6])
def test_freeze_from_stage_6_of_b0_in_whole_blocks(trainable_from):
    model = kerasnets.EfficientNet(0, input_shape=(32, 32, 3), classes=3)
    report = kerasnets.freeze(model, trainable_from)
    expected = ["block6a", "block6b", "block6c", "block6d", "block7a", "top"]
    assert list(report.trainable_blocks) == expected
    assert list(report.frozen_blocks) == B0_BLOCKS[: -len(expected)]
    _assert_trainable_exactly(model, B0_BLOCKS, expected)
    assert report.trainable_params == _count(model.trainable_weights) > 0
    assert report.non_trainable_params == _count(model.non_trainable_weights)
    assert report.trainable_params + report.non_trainable_params == model.count_params()


def test_freeze_last_blocks_never_cuts_a_block():
    """keras-io#995: "the last 20 layers" of B0 start in the middle of a block; -n counts whole blocks."""
    model = kerasnets.EfficientNet(0, input_shape=(32, 32, 3), classes=3)
    names = [layer.name for layer in model.layers]
    cut_block = names[-20].split("_")[0]
    assert names[-21].startswith(cut_block + "_")  # layer count would split this block
    report = kerasnets.freeze(model, -2)
    assert report.trainable_blocks == ("block7a", "top")
    _assert_trainable_exactly(model, B0_BLOCKS, {"block7a", "top"})


def test_freeze_resnet_stage_and_block_names():
    model = kerasnets.ResNet(50, input_shape=(32, 32, 3), classes=3)
    assert kerasnets.freeze(model, 4).trainable_blocks == ("conv5_block1", "conv5_block2", "conv5_block3")
    _assert_trainable_exactly(model, RESNET50_BLOCKS, {"conv5_block1", "conv5_block2", "conv5_block3"})
    report = kerasnets.freeze(model, "conv4_block5")
    assert report.trainable_blocks[:2] == ("conv4_block5", "conv4_block6")
    _assert_trainable_exactly(model, RESNET50_BLOCKS, set(RESNET50_BLOCKS[RESNET50_BLOCKS.index("conv4_block5"):]))


def test_freeze_again_changes_phase_and_batch_norm_option():
    model = kerasnets.EfficientNet(0, input_shape=(32, 32, 3), classes=3)
    head_only = kerasnets.freeze(model)
    assert head_only.trainable_blocks == () and head_only.frozen_blocks == tuple(B0_BLOCKS)
    head = model.get_layer("predictions")
    assert {id(w) for w in model.trainable_weights} == {id(w) for w in head.weights}  # only the classifier
    more = kerasnets.freeze(model, -3)  # phase 2 unfreezes more
    _assert_trainable_exactly(model, B0_BLOCKS, {"block6d", "block7a", "top"})
    assert more.trainable_params > head_only.trainable_params
    with_bn = kerasnets.freeze(model, -3, train_batch_norm=True)
    assert model.get_layer("block7a_bn").trainable and not model.get_layer("block6c_bn").trainable
    assert with_bn.trainable_params > more.trainable_params
    assert kerasnets.freeze(model).trainable_params == head_only.trainable_params  # back again
    everything = kerasnets.freeze(model, "all")
    assert everything.non_trainable_params == _count(
        [w for layer in model.layers for w in layer.weights if "moving" in w.path or "normalization/" in w.path]
    )


def test_freeze_a_backbone_nested_in_a_classifier():
    backbone = kerasnets.EfficientNet(0, input_shape=(32, 32, 3), include_top=False, pooling="avg")
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.BatchNormalization(name="head_bn")(backbone(inputs))
    model = keras.Model(inputs, keras.layers.Dense(4, name="head")(x))
    report = kerasnets.freeze(model)
    assert report.frozen_blocks == tuple(B0_BLOCKS)
    trainable = {w.path for w in model.trainable_weights}
    assert trainable == {"head_bn/gamma", "head_bn/beta", "head/kernel", "head/bias"}
    kerasnets.freeze(model, "top")
    assert {"top_conv/kernel", "head/kernel"} <= {w.path for w in model.trainable_weights}
    assert "block7a_project_conv/kernel" not in {w.path for w in model.trainable_weights}


@pytest.mark.parametrize("trainable_from,error,message", [
    ("block9a", ValueError, r"not a block of this model; valid blocks: \['stem', 'block1a'"),
    (8, ValueError, r"valid stages \(first block\): \{1: 'block1a'.*7: 'block7a'\}"),
    (0, ValueError, "not a stage"),
    (-19, ValueError, "has 18"),
    (True, TypeError, "got bool"),
    (2.5, TypeError, "got float"),
])
def test_freeze_rejects_unknown_blocks_and_stages(trainable_from, error, message):
    model = kerasnets.EfficientNet(0, input_shape=(32, 32, 3), classes=3)
    with pytest.raises(error, match=message):
        kerasnets.freeze(model, trainable_from)


def test_freeze_needs_named_blocks():
    inputs = keras.Input((4,))
    with pytest.raises(ValueError, match="found no blocks"):
        kerasnets.freeze(keras.Model(inputs, keras.layers.Dense(2)(inputs)))


def test_frozen_batch_norm_runs_in_inference_mode_even_with_training_true():
    """keras#9214: in Keras 3, trainable=False is what puts BN in inference mode inside fit."""
    layer = keras.layers.BatchNormalization(epsilon=1e-3)
    layer.build((None, 3))
    gamma, beta, mean, var = np.array([1.5, 0.5, 2.0]), np.array([0.1, -0.2, 0.3]), np.array([1.0, 2.0, 3.0]), np.array([4.0, 0.25, 9.0])
    layer.set_weights([gamma, beta, mean, var])
    x = np.random.RandomState(0).normal(5, 3, (16, 3)).astype("float32")
    reference = gamma * (x - mean) / np.sqrt(var + 1e-3) + beta
    layer.trainable = False
    np.testing.assert_allclose(np.asarray(layer(x, training=True)), reference, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer.moving_mean.numpy(), mean)  # and the statistics did not move
    layer.trainable = True  # control: a trainable BN normalizes with the batch's statistics
    assert np.abs(np.asarray(layer(x, training=True)) - reference).max() > 0.1


def test_fit_step_changes_only_trainable_blocks_and_no_batch_norm_statistics():
    # v1: no zero-initialised last BN gamma, which (frozen) would block every gradient of the branch
    model = kerasnets.ResNet(18, "v1", input_shape=(32, 32, 3), classes=3)
    kerasnets.freeze(model, "conv5_block2")
    before = {w.path: w.numpy().copy() for w in model.weights}
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="sparse_categorical_crossentropy")
    rng = np.random.RandomState(0)
    model.fit(rng.uniform(-2, 2, (4, 32, 32, 3)).astype("float32"), np.array([0, 1, 2, 0]), batch_size=4, verbose=0)
    after = {w.path: w.numpy() for w in model.weights}
    changed = {path for path in before if not np.array_equal(before[path], after[path])}
    for path in before:
        layer_name = path.split("/")[0]
        if "moving" in path or layer_name.endswith("_bn"):
            assert path not in changed, path  # BN frozen everywhere: weights and moving statistics
        elif layer_name.startswith("conv5_block2_") or layer_name == "predictions":
            assert path in changed, path
        else:
            assert path not in changed, path
    assert "conv5_block2_1_conv/kernel" in changed and "conv5_block1_1_conv/kernel" not in changed


# --------------------------------------------------------------------------- load_pretrained


def _backbone_equal(source, target, head="predictions"):
    for layer in source.layers:
        if layer.weights and layer.name != head:
            for theirs, mine in zip(layer.get_weights(), target.get_layer(layer.name).get_weights()):
                np.testing.assert_array_equal(mine, theirs, err_msg=layer.name)


def _perturb(model, seed=3):
    """Non-default values everywhere (BN statistics and Normalization included), so copies are checked."""
    rng = np.random.RandomState(seed)
    for layer in model.layers:
        if layer.weights:
            layer.set_weights([w + rng.uniform(0.1, 0.2, w.shape).astype(w.dtype) for w in layer.get_weights()])
            if hasattr(layer, "finalize_state"):
                layer.finalize_state()
    return model


def test_load_pretrained_keras_file_into_another_class_count(tmp_path):
    source = _perturb(kerasnets.EfficientNet(0, input_shape=(32, 32, 3), classes=5))
    path = tmp_path / "run.keras"
    source.save(path)
    target = kerasnets.EfficientNet(0, input_shape=(32, 32, 3), classes=3)
    report = kerasnets.load_pretrained(target, str(path))
    _backbone_equal(source, target)
    for now in target.get_layer("predictions").get_weights():  # a new head starts at zero (BiT)
        np.testing.assert_array_equal(now, np.zeros_like(now))
    assert report.head_reinitialized and report.source == str(path)
    assert report.layers_copied == sum(1 for layer in target.layers if layer.weights) - 1
    assert "(3 classes, the file has 5 classes) not copied" in report.detail
    other = kerasnets.EfficientNet(0, input_shape=(32, 32, 3), classes=5)  # same count, other classes
    kerasnets.serving.write_keras_contract(str(path), kerasnets.serving.PreprocessingContract(
        (32, 32), 3, "bicubic", 5, tuple("abcde")))
    assert kerasnets.load_pretrained(other, str(path), class_names=tuple("vwxyz")).head_reinitialized
    assert not kerasnets.load_pretrained(other, str(path), class_names=tuple("abcde")).head_reinitialized
    assert kerasnets.model_blocks(keras.saving.load_model(path)) == B0_BLOCKS  # names survive .keras
    # the builders' weights= goes through it too; same class count copies everything
    again = kerasnets.EfficientNet(0, input_shape=(32, 32, 3), classes=5, weights=str(path))
    x = np.random.RandomState(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(again(x)), np.asarray(source(x)), atol=1e-6)


def test_load_pretrained_weights_file_into_another_class_count(tmp_path):
    source = _perturb(kerasnets.ResNet(18, input_shape=(32, 32, 3), classes=5))
    path = tmp_path / "run.weights.h5"
    source.save_weights(path)
    target = kerasnets.ResNet(18, input_shape=(32, 32, 3), classes=3)
    report = kerasnets.load_pretrained(target, path)
    _backbone_equal(source, target)
    for now in target.get_layer("predictions").get_weights():  # a new head starts at zero (BiT)
        np.testing.assert_array_equal(now, np.zeros_like(now))
    assert report.head_reinitialized and report.layers_copied == sum(1 for layer in target.layers if layer.weights) - 1
    same = kerasnets.ResNet(18, input_shape=(32, 32, 3), classes=5)
    assert not kerasnets.load_pretrained(same, path).head_reinitialized
    x = np.random.RandomState(1).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(same(x)), np.asarray(source(x)), atol=1e-6)


def test_load_pretrained_file_of_another_architecture_names_layer_and_shapes(tmp_path):
    r18 = kerasnets.ResNet(18, input_shape=(32, 32, 3), classes=3)
    r18.save_weights(tmp_path / "r18.weights.h5")
    r18.save(tmp_path / "r18.keras")
    target = kerasnets.ResNet(18, "v1", input_shape=(32, 32, 3), classes=3)  # conv biases: other shapes
    before = target.get_weights()
    for name in ("r18.weights.h5", "r18.keras"):
        with pytest.raises(ValueError) as error:
            kerasnets.load_pretrained(target, tmp_path / name)
        message = str(error.value)
        assert name in message and "'conv1_conv'" in message and "\n" not in message
        assert "[(7, 7, 3, 64)]" in message and "[(7, 7, 3, 64), (64,)]" in message
        assert "--model resnet18)" in message
    for value, kept in zip(target.get_weights(), before):
        np.testing.assert_array_equal(value, kept)
    deeper = kerasnets.ResNet(34, input_shape=(32, 32, 3), classes=3)
    with pytest.raises(ValueError, match="another architecture"):
        kerasnets.load_pretrained(deeper, tmp_path / "r18.weights.h5")
    shallower = kerasnets.ResNet(18, input_shape=(32, 32, 3), classes=3)
    deeper.save_weights(tmp_path / "r34.weights.h5")
    with pytest.raises(ValueError, match="r34.weights.h5.*another architecture"):
        kerasnets.load_pretrained(shallower, tmp_path / "r34.weights.h5")


@pytest.mark.parametrize("name,message", [
    ("missing.weights.h5", "no file at"),
    ("model.h5", r"expected a \.keras file"),
    ("notes.txt", r"expected a \.keras file"),
])
def test_load_pretrained_rejects_missing_and_unknown_files(tmp_path, name, message):
    if name != "missing.weights.h5":
        (tmp_path / name).write_text("x")
    model = kerasnets.ResNet(18, input_shape=(32, 32, 3), classes=3)
    with pytest.raises(ValueError, match=message):
        kerasnets.load_pretrained(model, tmp_path / name)
    assert kerasnets.load_pretrained(model, None) is None


@pytest.mark.parametrize("classes,with_top", [(10, False), (1000, True)])
def test_load_pretrained_imagenet_copies_backbone_and_keeps_other_heads(monkeypatch, classes, with_top):
    asked = {}

    def twin(name, include_top, input_shape):
        asked.update(name=name, include_top=include_top)
        donor = keras.applications.EfficientNetB0(weights=None, include_top=include_top)
        return _perturb(donor)

    monkeypatch.setattr(weights_module, "imagenet_twin", twin)
    target = kerasnets.EfficientNet(0, input_shape=(32, 32, 3), classes=classes)
    head = target.get_layer("predictions").get_weights()
    report = kerasnets.load_pretrained(target, "imagenet")
    assert asked == {"name": "EfficientNetB0", "include_top": with_top}  # twin inferred from the blocks
    assert report.head_reinitialized is not with_top
    now = target.get_layer("predictions").get_weights()
    if with_top:  # the 1000-class ImageNet classifier is copied
        assert all(not np.array_equal(a, b) for a, b in zip(head, now))
    else:  # another class count: a new head, zero-initialised (BiT)
        assert all(not np.any(w) for w in now)
    assert report.layers_copied == sum(1 for layer in target.layers if layer.weights) - (not with_top)


@pytest.mark.parametrize("build,twin", [
    (lambda: kerasnets.ResNet(50, "v1", input_shape=(32, 32, 3), classes=10), "ResNet50"),
    (lambda: kerasnets.EfficientNet(2, input_shape=(32, 32, 3), include_top=False), "EfficientNetB2"),
    (lambda: kerasnets.ResNet(50, "v1.5", input_shape=(32, 32, 3)), None),  # no conv biases: no ImageNet twin
    (lambda: kerasnets.EfficientNetLite0(input_shape=(32, 32, 3)), None),  # no squeeze-excite
])
def test_load_pretrained_imagenet_finds_the_keras_applications_twin(monkeypatch, build, twin):
    class Asked(Exception):
        pass

    def record(name, include_top, input_shape):
        raise Asked(name)

    monkeypatch.setattr(weights_module, "imagenet_twin", record)
    model = build()
    if twin is None:
        with pytest.raises(ValueError, match="no ImageNet weights exist for"):
            kerasnets.load_pretrained(model, "imagenet")
    else:
        with pytest.raises(Asked, match=f"^{twin}$"):
            kerasnets.load_pretrained(model, "imagenet")


def _saved_mixed_float16_model(path):
    """model.keras as a mixed_float16 run (a GPU's default) saves it: 16-bit layers, float32 classifier."""
    from kerasnets.training import precision_scope

    with precision_scope("mixed_float16"):
        model = kerasnets.EfficientNet(-2, coefficients=kerasnets.PAPER_COEFFICIENTS, input_shape=(32, 32, 3),
                                       classes=10)
    model.save(path)
    return path


@pytest.mark.parametrize("policy, computes", [("float32", "float32"), ("mixed_bfloat16", "bfloat16")])
def test_saved_architecture_computes_in_the_run_precision_not_the_files(tmp_path, policy, computes):
    """A model saved under mixed_float16, rebuilt for fine-tuning on a run of another precision: its
    layers used to keep float16 (a float32 CPU run then trained float16 without loss scaling). They
    now compute in the run's policy, the classifier in float32, as kerasnets' builders make them."""
    from kerasnets.models.weights import leaf_layers
    from kerasnets.training import precision_scope, saved_architecture

    path = _saved_mixed_float16_model(tmp_path / "mixed.keras")
    with precision_scope(policy):
        model = saved_architecture(str(path), 32, 3)
    weighted = [layer for layer in leaf_layers(model) if layer.weights and layer.name != "predictions"]
    assert {layer.compute_dtype for layer in weighted} == {computes}
    assert {layer.variable_dtype for layer in weighted} == {"float32"}
    assert model.get_layer("predictions").compute_dtype == "float32"
    assert model(np.zeros((1, 32, 32, 3), "float32")).dtype == "float32"


def test_finetune_setup_from_a_mixed_float16_file_runs_in_float32_and_odd_models_are_refused(tmp_path):
    """The finetune recipe's setup on a CPU (precision auto: float32) with --weights of a
    mixed_float16 model.keras: the model trained and reported is float32. A recipe whose model
    ignores the run's precision (a layer given its own dtype) is refused with the policies named.
    --image-size 32: the saved model's size, a tiny and fast EfficientNet."""
    from conftest import RECIPES, digits_folder
    from kerasnets.training import Recipe, apply_overrides, load_recipe
    from kerasnets.training.setup import setup

    path = _saved_mixed_float16_model(tmp_path / "mixed.keras")
    data = digits_folder(tmp_path / "digits", range(3), per_class_train=8)  # 8 per class: setup reads no batch
    recipe = apply_overrides(load_recipe(f"{RECIPES}/finetune.py"), data=str(data), weights=str(path), image_size=32,
                             output=str(tmp_path / "runs"))
    run = setup(recipe)
    assert run.policy == "float32"
    assert {layer.compute_dtype for layer in run.model.layers if layer.weights} == {"float32"}

    def float16_model(recipe, context):
        inputs = keras.Input((32, 32, 3))
        features = keras.layers.Conv2D(4, 3, dtype="mixed_float16")(inputs)
        pooled = keras.layers.GlobalAveragePooling2D()(features)
        return keras.Model(inputs, keras.layers.Dense(context.num_classes, activation="softmax")(pooled))

    odd = Recipe(name="odd", build_model=float16_model, build_optimizer=lambda r, c: keras.optimizers.SGD(),
                 data=str(data), image_size=32, precision="float32", output=str(tmp_path / "runs"))
    with pytest.raises(ValueError, match="computes in mixed_float16 but the run's precision is float32"):
        setup(odd)
