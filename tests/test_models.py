"""Builders against references: keras.applications, torchvision and timm counts, the paper's tables."""

import math

import keras
import numpy as np
import pytest

import kerasnets
from kerasnets.models.efficientnet import BASE_STAGES, EFFICIENTNET_PRESETS, resolve_preset, scaled_stages

# keras.applications 3.15 count_params() with weights=None (shared/ANCHORS.md).
KERAS_EFFICIENTNET_PARAMS = [5_330_571, 7_856_239, 9_177_569, 12_320_535, 19_466_823, 30_562_527, 43_265_143, 66_658_687]
KERAS_RESNET_PARAMS = {50: 25_636_712, 101: 44_707_176, 152: 60_419_944}
# torchvision's published parameter counts (ResNet v1.5), trainable parameters only.
TORCHVISION_RESNET_PARAMS = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160, 152: 60_192_808}


def trainable(model):
    return sum(math.prod(w.shape) for w in model.trainable_weights)


@pytest.mark.parametrize("phi", range(8))
def test_efficientnet_params_equal_keras_applications(phi):
    assert kerasnets.EfficientNet(phi).count_params() == KERAS_EFFICIENTNET_PARAMS[phi]


def test_b0_params_and_layer_names_equal_live_keras_applications():
    ours, theirs = kerasnets.EfficientNetB0(), keras.applications.EfficientNetB0(weights=None)
    assert ours.count_params() == theirs.count_params()
    ours_names = {layer.name for layer in ours.layers if layer.weights}
    theirs_names = {layer.name for layer in theirs.layers if layer.weights and not layer.name.startswith("normalization")}
    assert theirs_names <= ours_names


@pytest.mark.parametrize("depth", [50, 101, 152])
def test_resnet_v1_params_equal_keras_applications(depth):
    assert kerasnets.ResNet(depth, "v1").count_params() == KERAS_RESNET_PARAMS[depth]


@pytest.mark.parametrize("depth", [18, 34, 50, 101, 152])
def test_resnet_v15_trainable_params_equal_torchvision(depth):
    assert trainable(kerasnets.ResNet(depth, "v1.5")) == TORCHVISION_RESNET_PARAMS[depth]


def test_resnet50d_equals_timm_count():
    # timm resnet50d: 25,576,264 = ResNet-50 v1.5 + the deep stem's extra 19,232 weights (hand count below).
    deep_stem = (27 * 32 + 64) + (9 * 32 * 32 + 64) + (9 * 32 * 64 + 128)
    plain_stem = 49 * 3 * 64 + 128
    assert trainable(kerasnets.ResNet(50, "d")) == TORCHVISION_RESNET_PARAMS[50] - plain_stem + deep_stem == 25_576_264


def test_resnet_variants_differ_where_the_papers_say():
    v1, v15, d = (kerasnets.ResNet(50, v, input_shape=(64, 64, 3)) for v in ("v1", "v1.5", "d"))
    assert v1.get_layer("conv3_block1_1_conv").strides == (2, 2)
    assert v1.get_layer("conv3_block1_1_conv").use_bias
    assert v15.get_layer("conv3_block1_2_conv").strides == (2, 2)
    assert not v15.get_layer("conv3_block1_1_conv").use_bias
    assert v1.get_layer("conv1_bn").epsilon == pytest.approx(1.001e-5)
    assert isinstance(d.get_layer("conv3_block1_0_pool"), keras.layers.AveragePooling2D)
    assert d.get_layer("conv1_3_conv").filters == 64


def test_b0_outputs_identical_after_transfer_from_keras_applications(images):
    source = keras.applications.EfficientNetB0(weights=None, classifier_activation=None)
    norm = next(layer for layer in source.layers if isinstance(layer, keras.layers.Normalization))
    norm.set_weights([np.array([0.4, 0.5, 0.6]), np.array([0.05, 0.06, 0.07]), np.array(0)])
    norm.finalize_state()  # non-trivial statistics, so the transfer must carry them into the graph
    target = kerasnets.EfficientNet(0, classifier_activation=None)
    kerasnets.transfer_weights(source, target)
    diff = np.abs(np.asarray(source(images, training=False)) - np.asarray(target(images, training=False)))
    assert diff.max() <= 1e-5


def test_resnet50_outputs_identical_after_transfer_from_keras_applications(images):
    source = keras.applications.ResNet50(weights=None, classifier_activation=None)
    target = kerasnets.ResNet(50, "v1", classifier_activation=None, include_preprocessing=True)
    kerasnets.transfer_weights(source, target)
    expected = source(keras.applications.resnet.preprocess_input(images.copy()), training=False)
    diff = np.abs(np.asarray(expected) - np.asarray(target(images, training=False)))
    assert diff.max() <= 1e-5


def test_efficientnet_normalizes_with_imagenet_statistics():
    model = kerasnets.EfficientNet(0, input_shape=(32, 32, 3))
    probe = keras.Model(model.input, model.get_layer("normalization").output)
    mean_image = np.broadcast_to(np.array([0.485, 0.456, 0.406]) * 255, (1, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(probe(mean_image)), 0.0, atol=1e-5)
    std_step = np.asarray(probe(mean_image + np.array([0.229, 0.224, 0.225], "float32") * 255))
    np.testing.assert_allclose(std_step, 1.0, atol=1e-4)


def test_caffe_preprocess_matches_keras_applications(images):
    expected = keras.applications.resnet.preprocess_input(images.copy())
    np.testing.assert_allclose(np.asarray(kerasnets.caffe_preprocess(images)), expected, atol=1e-4)


def test_transfer_names_first_mismatching_layer():
    with pytest.raises(ValueError, match="conv1_conv"):
        kerasnets.transfer_weights(keras.applications.ResNet50(weights=None), kerasnets.ResNet(50, "v1.5"))
    with pytest.raises(ValueError, match="conv4_block7"):
        kerasnets.transfer_weights(keras.applications.ResNet101(weights=None), kerasnets.ResNet(50, "v1"))


def test_transfer_refuses_equal_shapes_that_compute_something_else(tmp_path):
    """Issue #18: v1.5 weights went silently into a ResNet with avg_down=True or stride_in_1x1=True
    (same weight shapes, other strides). Each is refused naming the layer and both settings, through
    transfer_weights and through saved files; a harmless difference (BN momentum) is not."""
    shape = (64, 64, 3)  # small input: the check reads layer configs, not activations
    # ResNet-18 (the cheapest build) for avg_down, by every path a user takes
    source = kerasnets.ResNet(18, input_shape=shape)
    source.save(tmp_path / "resnet18.keras")
    source.save_weights(tmp_path / "resnet18.weights.h5")  # arrays and the model's name only
    target = kerasnets.ResNet(18, input_shape=shape, avg_down=True)
    kernel = target.get_layer("conv3_block1_0_conv").get_weights()[0]
    with pytest.raises(ValueError, match=r"'conv3_block1_0_conv'.*'strides': \(2, 2\).*'conv3_block1_0_conv'.*"
                                         r"'strides': \(1, 1\)"):
        kerasnets.transfer_weights(source, target)
    np.testing.assert_array_equal(target.get_layer("conv3_block1_0_conv").get_weights()[0], kernel)  # untouched
    with pytest.raises(ValueError, match=r"resnet18.keras.*'conv3_block1_0_conv'.*strides"):
        kerasnets.ResNet(18, input_shape=shape, weights=str(tmp_path / "resnet18.keras"), avg_down=True)
    with pytest.raises(ValueError, match=r"resnet18.weights.h5.*saved from 'resnet18'.*'conv3_block1_0_conv'.*strides"):
        kerasnets.ResNet(18, input_shape=shape, weights=str(tmp_path / "resnet18.weights.h5"), avg_down=True)
    # a training-only setting copies, from the weights file and from the model
    momentum = kerasnets.ResNet(18, input_shape=shape, bn_momentum=0.5, weights=str(tmp_path / "resnet18.weights.h5"))
    np.testing.assert_array_equal(momentum.get_layer("conv1_conv").get_weights()[0],
                                  source.get_layer("conv1_conv").get_weights()[0])
    kerasnets.transfer_weights(source, momentum)
    # stride_in_1x1 exists in bottleneck blocks only: ResNet-50
    with pytest.raises(ValueError, match=r"'conv3_block1_1_conv'.*'strides': \(1, 1\).*'conv3_block1_1_conv'.*"
                                         r"'strides': \(2, 2\)"):
        kerasnets.transfer_weights(kerasnets.ResNet(50, input_shape=shape),
                                   kerasnets.ResNet(50, input_shape=shape, stride_in_1x1=True))


def _two_dense_model(seed, units=(3, 3)):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4,))
    x = keras.layers.Dense(units[0])(inputs)  # auto-named: dense, dense_1, ... (stripped, they would collide)
    return keras.Model(inputs, keras.layers.Dense(units[1])(x))


def test_transfer_copies_auto_named_layers_by_structure():
    source, target = _two_dense_model(0), _two_dense_model(1)
    assert [layer.name for layer in source.layers[1:]] == ["dense", "dense_1"]
    kerasnets.transfer_weights(source, target)
    for mine, theirs in zip(target.layers[1:], source.layers[1:]):
        np.testing.assert_array_equal(mine.get_weights()[0], theirs.get_weights()[0])
        np.testing.assert_array_equal(mine.get_weights()[1], theirs.get_weights()[1])


def test_transfer_mismatch_names_both_layers_and_shapes_and_writes_nothing():
    source, target = _two_dense_model(0, (3, 2)), _two_dense_model(1, (3, 5))
    before = target.get_weights()
    with pytest.raises(ValueError) as error:
        kerasnets.transfer_weights(source, target)
    message = str(error.value)
    assert "'dense_1'" in message and "'dense_3'" in message  # the layer of each model
    assert "[(3, 2), (2,)]" in message and "[(3, 5), (5,)]" in message  # both shape lists
    assert "\n" not in message
    for value, kept in zip(target.get_weights(), before):
        np.testing.assert_array_equal(value, kept)


def test_weighted_layer_order_equals_keras_applications():
    """Structural pairing needs the same order of weighted layers as keras.applications (not just the same set)."""
    pairs = [
        (keras.applications.EfficientNetB0(weights=None), kerasnets.EfficientNet(0)),
        (keras.applications.ResNet50(weights=None), kerasnets.ResNet(50, "v1", include_preprocessing=True)),
    ]
    for theirs, ours in pairs:
        theirs_names = [layer.name for layer in theirs.layers if layer.weights]
        ours_names = [layer.name for layer in ours.layers if layer.weights]
        assert len(theirs_names) == len(ours_names)
        assert [n for n in theirs_names if not n.startswith("normalization")] == [
            n for n in ours_names if n != "normalization"
        ]


def test_transfer_flattens_a_nested_backbone():
    backbone = kerasnets.ResNet(18, include_top=False, pooling="avg", input_shape=(32, 32, 3))
    inputs = keras.Input((32, 32, 3))
    source = keras.Model(inputs, keras.layers.Dense(4, name="head")(backbone(inputs)))
    target = kerasnets.ResNet(18, input_shape=(32, 32, 3), classes=4, classifier_activation=None)
    kerasnets.transfer_weights(source, target)
    x = np.random.RandomState(2).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(target(x)), np.asarray(source(x)), atol=1e-5)


def test_transfer_skip_classifier_copies_the_backbone_into_another_class_count():
    source = kerasnets.ResNet(18, input_shape=(32, 32, 3), classes=5)
    target = kerasnets.ResNet(18, input_shape=(32, 32, 3), classes=3)
    with pytest.raises(ValueError, match=r"'predictions'.*\(512, 5\).*'predictions'.*\(512, 3\).*skip_classifier=True"):
        kerasnets.transfer_weights(source, target)
    head = target.get_layer("predictions").get_weights()
    kerasnets.transfer_weights(source, target, skip_classifier=True)
    for layer in source.layers:
        if layer.weights and layer.name != "predictions":
            for theirs, mine in zip(layer.get_weights(), target.get_layer(layer.name).get_weights()):
                np.testing.assert_array_equal(mine, theirs)
    for kept, now in zip(head, target.get_layer("predictions").get_weights()):
        np.testing.assert_array_equal(now, kept)


def test_transfer_into_a_clone_is_bit_exact():
    """export.center_softmax_classifier copies arbitrary models into clone_model() copies."""
    source = kerasnets.EfficientNet(0, input_shape=(32, 32, 3), classes=4)
    rng = np.random.RandomState(5)
    source.set_weights([w + rng.uniform(0.01, 0.5, w.shape).astype(w.dtype) for w in source.get_weights()])
    source.get_layer("normalization").finalize_state()
    copy = kerasnets.transfer_weights(source, keras.models.clone_model(source))
    for theirs, mine in zip(source.get_weights(), copy.get_weights()):
        np.testing.assert_array_equal(mine, theirs)
    x = rng.uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(np.asarray(copy(x)), np.asarray(source(x)))


def _quirky_imagenet_b0(monkeypatch, **kwargs):
    """keras.applications.EfficientNetB0(weights="imagenet") built offline: its exact structure (with the
    Rescaling(1/sqrt(std)) it adds for ImageNet weights) and the file's quirky Normalization (variance =
    the standard deviation, tensorflow#49930); every other weight stays random."""
    from keras.src.applications import efficientnet as keras_efficientnet
    from keras.src.models.functional import Functional

    def load_quirky(self, *args, **kwargs):
        norm = next(layer for layer in self.layers if isinstance(layer, keras.layers.Normalization))
        norm.set_weights([np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225]), np.array(0)])
        norm.finalize_state()

    monkeypatch.setattr(keras_efficientnet.file_utils, "get_file", lambda *a, **k: "/nonexistent/b0.h5")
    monkeypatch.setattr(Functional, "load_weights", load_quirky, raising=False)
    model = keras.applications.EfficientNetB0(weights="imagenet", classifier_activation=None, **kwargs)
    assert sum(isinstance(layer, keras.layers.Rescaling) for layer in model.layers) == 2  # 1/255 and the fix
    return model


def test_transfer_folds_keras_applications_imagenet_variance_quirk(monkeypatch, images):
    source = _quirky_imagenet_b0(monkeypatch)
    target = kerasnets.EfficientNet(0, weights=None, classifier_activation=None)
    target.get_layer("normalization").set_weights([np.zeros(3), np.ones(3), np.array(0)])  # must be written
    kerasnets.transfer_weights(source, target)
    expected = np.asarray(source(images, training=False))
    assert np.abs(np.asarray(target(images, training=False)) - expected).max() <= 1e-5
    # random weights shrink the logits; the stem shows a wrong normalization at full scale
    stems = [keras.Model(m.input, m.get_layer("stem_activation").output) for m in (source, target)]
    stem_expected = np.asarray(stems[0](images))
    assert np.abs(stem_expected).max() > 1.0
    assert np.abs(np.asarray(stems[1](images)) - stem_expected).max() <= 1e-4
    # and back: into the keras.applications structure (its Rescaling after the Normalization)
    keras.utils.set_random_seed(7)
    back = _quirky_imagenet_b0(monkeypatch)
    kerasnets.transfer_weights(target, back)
    assert np.abs(np.asarray(back(images, training=False)) - expected).max() <= 1e-5


def test_keras_applications_variance_quirk_is_handled_from_files_too(monkeypatch, images, tmp_path):
    source = _quirky_imagenet_b0(monkeypatch)
    monkeypatch.undo()  # the real load_weights from here on
    stem = keras.Model(source.input, [source.output, source.get_layer("stem_activation").output])
    expected, expected_stem = (np.asarray(t) for t in stem(images, training=False))
    source.save(tmp_path / "b0.keras")
    source.save_weights(tmp_path / "b0.weights.h5")  # the std is saved, the Rescaling layer is not
    for path in ("b0.keras", "b0.weights.h5"):
        target = kerasnets.EfficientNet(0, weights=None, classifier_activation=None)
        kerasnets.load_pretrained(target, str(tmp_path / path))
        got, got_stem = stem.__class__(target.input, [target.output, target.get_layer("stem_activation").output])(
            images, training=False)
        # random weights shrink the logits (a wrong normalization moves them by ~2e-5 only): the stem
        # shows it at full scale (~1.5); float32 rounding of std**2 vs two square roots stays ~1e-5
        assert np.abs(np.asarray(got_stem) - expected_stem).max() <= 1e-4, path
        assert np.abs(np.asarray(got) - expected).max() <= 1e-4, path


def test_official_table_is_not_compound_formula():
    b1 = EFFICIENTNET_PRESETS["efficientnetb1"]
    assert (b1.width, b1.depth, b1.resolution) == (1.0, 1.1, 240)
    formula = kerasnets.compound_scale(1, kerasnets.PAPER_COEFFICIENTS)
    assert (formula.width, formula.depth) == pytest.approx((1.1, 1.2))
    assert formula.resolution == 256  # 224 * 1.15 = 257.6 -> nearest multiple of 8


@pytest.mark.parametrize("phi", [-3, -2, -1.5, -0.5, 1, 2.5, 4])
def test_compound_scaled_flops_follow_the_law_at_any_phi(phi):
    """Paper Eq. 3: FLOPs grow as (alpha * beta^2 * gamma^2)^phi (1.92^phi for 1.2, 1.1, 1.15),
    within 10% at the resolution the model is built for, negative and fractional phi included
    (rounding each stage's depth up gave +16% at phi = 1 and +27% at phi = -1)."""
    alpha, beta, gamma = 1.2, 1.1, 1.15
    base = kerasnets.profile(kerasnets.EfficientNet(0, coefficients=(alpha, beta, gamma)))["flops"]
    assert base == kerasnets.profile(kerasnets.EfficientNet(0))["flops"]  # phi = 0 is B0
    model = kerasnets.EfficientNet(phi, coefficients=(alpha, beta, gamma))
    assert model.input_shape[1] == round(224 * gamma**phi / 8) * 8
    law = (alpha * beta**2 * gamma**2) ** phi
    assert abs(kerasnets.profile(model)["flops"] / base / law - 1) <= 0.10


@pytest.mark.parametrize("phi", [-2.5, -1, 0.5, 3])
def test_compound_scaling_multiplies_depth_width_resolution_by_their_own_coefficient(phi):
    """depth alpha^phi, width beta^phi, resolution gamma^phi (nearest multiple of 8), with
    coefficients whose roles cannot be confused: swapping two of them in the code fails here."""
    alpha, beta, gamma = 1.3, 1.05, 1.2
    preset = resolve_preset(phi, (alpha, beta, gamma))
    assert preset.depth == pytest.approx(1.3**phi) and preset.width == pytest.approx(1.05**phi)
    assert preset.resolution == round(224 * 1.2**phi / 8) * 8
    stages = scaled_stages(preset)
    for spec, scaled in zip(BASE_STAGES, stages):  # every stage within one block of its scaled count
        assert max(1, math.floor(spec.repeats * 1.3**phi)) <= scaled.repeats <= max(1, math.ceil(spec.repeats * 1.3**phi))
        assert abs(scaled.filters - spec.filters * 1.05**phi) <= max(4, 0.1 * spec.filters * 1.05**phi)


def test_distribute_repeats_keeps_each_stage_within_a_block_and_the_total_on_target():
    from kerasnets.scaling import distribute_repeats

    # B0's stages at depth 0.5: scaled 0.5, 1, 1, 1.5, 1.5, 2, 0.5 (8 in all); the two 0.5 stages
    # keep their one block, so the 1.5 stages both round down to land on 8
    assert distribute_repeats([1, 2, 2, 3, 3, 4, 1], 0.5) == (1, 1, 1, 1, 1, 2, 1)
    # with costs the weighted total decides: 1.8 + 1.8 blocks at costs 10 and 1 -> 19.8; (2, 1)
    # costs 21, closer than (2, 2) = 22, which the unweighted count (3.6 -> 4) would pick
    assert distribute_repeats([3, 3], 0.6) == (2, 2)
    assert distribute_repeats([3, 3], 0.6, costs=[10, 1]) == (2, 1)
    assert distribute_repeats([1, 2, 2, 3, 3, 4, 1], 1.0) == (1, 2, 2, 3, 3, 4, 1)
    with pytest.raises(ValueError, match="depth_coefficient"):
        distribute_repeats([1, 2], 0)


def test_lite_follows_tpu_lite_builder():
    lite0 = kerasnets.EfficientNetLite0()
    assert not [layer for layer in lite0.layers if "se_" in layer.name]
    activations = {layer.get_config()["activation"] for layer in lite0.layers if isinstance(layer, keras.layers.Activation)}
    assert activations == {"relu6"}
    # timm tf_efficientnet_lite0 publishes 4.65M parameters (BN moving statistics not counted).
    assert round(trainable(lite0) / 1e4) == 465
    lite4 = kerasnets.EfficientNetLite4()
    assert lite4.get_layer("stem_conv").filters == 32 and lite4.get_layer("top_conv").filters == 1280
    stages = scaled_stages(EFFICIENTNET_PRESETS["efficientnet-lite4"])
    assert stages[0].repeats == BASE_STAGES[0].repeats and stages[-1].repeats == BASE_STAGES[-1].repeats
    assert stages[3].repeats == math.ceil(3 * 1.8)


def test_drop_path_ramps_linearly_with_block_index():
    model = kerasnets.EfficientNet(0, drop_connect_rate=0.2)
    rates = [layer.rate for layer in model.layers if layer.name.endswith("_drop")]
    blocks = [layer.name for layer in model.layers if layer.name.endswith("_project_bn")]
    expected = [0.2 * i / 16 for i, name in enumerate(blocks) if f"{name[:-len('project_bn')]}drop" in {l.name for l in model.layers}]
    assert len(blocks) == 16 and rates == pytest.approx(expected)
    noise = model.get_layer("block2b_drop").noise_shape
    assert tuple(noise) == (None, 1, 1, 1)


@pytest.mark.parametrize("channels,size", [(1, 32), (4, 47), (1, None)])
@pytest.mark.parametrize("family", ["efficientnet", "resnet"])
def test_other_channels_and_sizes_build_and_run(family, channels, size):
    shape = (size, size, channels)
    model = (kerasnets.EfficientNet(0, include_top=False, input_shape=shape) if family == "efficientnet"
             else kerasnets.ResNet(18, include_top=False, input_shape=shape))
    out = model(np.zeros((1, size or 40, size or 40, channels), "float32"))
    assert out.shape[-1] == {"efficientnet": 1280, "resnet": 512}[family]  # each family its own head width


def test_pooling_and_classes():
    assert kerasnets.EfficientNet(0, include_top=False, pooling="avg").output.shape == (None, 1280)
    assert kerasnets.ResNet(18, include_top=False, pooling="max").output.shape == (None, 512)
    assert kerasnets.ResNet(18, classes=7).output.shape == (None, 7)


@pytest.mark.parametrize("build", [
    lambda: kerasnets.EfficientNet(0, input_shape=(32, 32, 3), classes=5),
    lambda: kerasnets.ResNet(50, "v1", input_shape=(32, 32, 3), classes=5, include_preprocessing=True),
])
def test_keras_round_trip_without_custom_objects(tmp_path, build):
    model = build()
    x = np.random.RandomState(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), atol=1e-6)


def test_synchronized_batch_norm_option():
    model = kerasnets.ResNet(18, synchronized_bn=True, input_shape=(32, 32, 3))
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and all(layer.synchronized for layer in norms)
    plain = kerasnets.ResNet(18, input_shape=(32, 32, 3))
    assert plain.count_params() == model.count_params()


@pytest.mark.parametrize("alias,phi,size", [("EfficientNetB1", 1, 240), ("EfficientNetB3", 3, 300)])
def test_efficientnet_aliases_are_their_keras_applications_twins(alias, phi, size):
    """The alias has keras.applications' parameter count and default input size for that B-number
    (B1/B2/B3 differ in both), so an alias mapped to another preset fails."""
    model = getattr(kerasnets, alias)()
    assert (model.count_params(), model.input_shape[1:]) == (KERAS_EFFICIENTNET_PARAMS[phi], (size, size, 3))


@pytest.mark.parametrize("alias,depth", [("ResNet18", 18), ("ResNet50", 50)])
def test_resnet_aliases_are_torchvisions_v15(alias, depth):
    """ResNet18/ResNet50 are v1.5 (torchvision's counts; v1's conv biases would add 4,800 / 26,560)."""
    assert trainable(getattr(kerasnets, alias)()) == TORCHVISION_RESNET_PARAMS[depth]


def test_the_v1_preset_is_keras_applications_resnet50():
    assert kerasnets.build("resnet50_v1").count_params() == KERAS_RESNET_PARAMS[50]


@pytest.mark.parametrize("preset", ["resnet18", "resnet18_v1", "resnet18d"])
def test_a_resnet_preset_builds_a_model_of_its_own_name(preset):
    """``resnet18`` is v1.5, ``resnet18_v1`` the keras.applications layout, ``resnet18d`` ResNet-D:
    the model a preset builds carries the preset's name (summaries, exports, run folders)."""
    model = kerasnets.build(preset, input_shape=(32, 32, 3), classes=10)
    assert model.name == preset
