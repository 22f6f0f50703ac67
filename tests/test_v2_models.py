"""EfficientNetV2 and ResNetV2 (issue #19) against keras.applications and the official EfficientNetV2 table.

Big models (V2-M, V2-L, ResNet152V2) are built once, in the parameter/FLOPs test; everything that runs
images uses 64 px inputs (every stride-32 map keeps 2 x 2 pixels).
"""

import urllib.error

import h5py
import keras
import numpy as np
import pytest
from keras.src.legacy.saving import legacy_h5_format
from keras.src.utils import file_utils

import kerasnets
from kerasnets.models.efficientnet import EFFICIENTNET_PRESETS, EFFICIENTNETV2_OFFICIAL, scaled_stages

#: keras.applications 3.15 ``count_params()`` with ``weights=None`` at the default size (measured; the
#: transfer tests below check B0, S and ResNet50V2 against live builds).
KERAS_PARAMS = {
    "EfficientNetV2B0": 7_200_312,
    "EfficientNetV2B1": 8_212_124,
    "EfficientNetV2B2": 10_178_374,
    "EfficientNetV2B3": 14_467_622,
    "EfficientNetV2S": 21_612_360,
    "EfficientNetV2M": 54_431_388,
    "EfficientNetV2L": 119_027_848,
    "ResNet50V2": 25_613_800,
    "ResNet101V2": 44_675_560,
    "ResNet152V2": 60_380_648,
}
#: google/automl efficientnetv2/README.md: FLOPs (billions of multiply-adds) at the eval size, which is
#: keras.applications' default input size (224/240/260/300, 384/480/480; effnetv2_configs.py eval isize).
OFFICIAL_GFLOPS = {"EfficientNetV2B0": 0.72, "EfficientNetV2B1": 1.2, "EfficientNetV2B2": 1.7, "EfficientNetV2B3": 3.0,
                   "EfficientNetV2S": 8.4, "EfficientNetV2M": 24.7, "EfficientNetV2L": 56.3}
EVAL_SIZE = {"EfficientNetV2B0": 224, "EfficientNetV2B1": 240, "EfficientNetV2B2": 260, "EfficientNetV2B3": 300,
             "EfficientNetV2S": 384, "EfficientNetV2M": 480, "EfficientNetV2L": 480}
SHAPE = (64, 64, 3)


@pytest.mark.parametrize("alias", sorted(KERAS_PARAMS))
def test_params_equal_keras_applications_and_flops_the_official_table(alias):
    """Every V2 model has keras.applications' parameter count; each EfficientNetV2 has the FLOPs of the
    official table at its eval size within 1%. Measured (kerasnets.profile, multiply-adds of convs and
    the classifier): B0 0.718B (-0.3%), B1 1.197B (-0.3%), B2 1.698B (-0.1%), B3 3.011B (+0.4%), S 8.366B
    (-0.4%), M 24.58B (-0.5%), L 56.08B (-0.4%): the table rounds to 2-3 digits, and what its counter
    adds (BN, activations, SE multiplies are not multiply-adds of weights here) is under 0.5%. A model
    with one stage's expansion or repeats wrong is off by more than 1% (and its parameters differ)."""
    model = getattr(kerasnets, alias)()
    assert model.count_params() == KERAS_PARAMS[alias]
    if alias in OFFICIAL_GFLOPS:
        stats = kerasnets.profile(model)
        assert stats["input_size"] == (EVAL_SIZE[alias],) * 2
        assert abs(stats["flops"] / (OFFICIAL_GFLOPS[alias] * 1e9) - 1) <= 0.01, stats["flops"]


def _keras_default_sizes() -> dict[str, int]:
    """{keras.applications constructor: its default input size}, read from each EfficientNetV2
    constructor's source (the ``default_size=`` it passes), without building any model."""
    import inspect
    import re

    sizes = {}
    for name in ("EfficientNetV2B0", "EfficientNetV2B1", "EfficientNetV2B2", "EfficientNetV2B3", "EfficientNetV2S",
                 "EfficientNetV2M", "EfficientNetV2L"):
        found = re.findall(r"default_size=(\d+)", inspect.getsource(getattr(keras.applications, name)))
        assert len(found) == 1, (name, found)  # one literal per constructor, or this reading is wrong
        sizes[name] = int(found[0])
    return sizes


def test_v2_preset_resolution_is_keras_applications_default_input_size():
    """Each efficientnetv2-* preset's resolution (what kerasnets builds, profiles and trains at by
    default) is its keras.applications twin's default input size."""
    keras_sizes = _keras_default_sizes()
    presets = {spec.twin: spec.resolution for spec in EFFICIENTNET_PRESETS.values()
               if spec.twin and spec.twin.startswith("EfficientNetV2")}
    assert presets == keras_sizes


def _randomize_batch_norms(model, seed):
    """Non-trivial BN statistics, so a BN layer paired with the wrong one (or left at its init) shows."""
    rng = np.random.RandomState(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([gamma * rng.uniform(0.5, 1.5, gamma.shape).astype("float32"), beta + 0.1,
                               mean + rng.normal(0, 0.1, mean.shape).astype("float32"), variance * 1.5])


TRANSFER = {  # keras.applications twin -> (our builder, whether the twin takes RGB 0..255 itself)
    "EfficientNetV2B0": (lambda **kw: kerasnets.EfficientNetV2("b0", **kw), True),
    "EfficientNetV2S": (lambda **kw: kerasnets.EfficientNetV2("s", **kw), True),
    "ResNet50V2": (lambda **kw: kerasnets.ResNet(50, "v2", include_preprocessing=True, **kw), False),
}


@pytest.mark.parametrize("twin", sorted(TRANSFER))
def test_outputs_agree_with_the_keras_applications_twin_after_transfer(twin):
    """transfer_weights from keras.applications (random weights, randomized BN statistics) gives the
    same logits within 1e-5, from RGB 0..255 (ResNetV2: keras' preprocess_input for the twin, our
    in-model rescaling for ours). Same parameter count live, same weighted-layer names in the same
    order, same FLOPs."""
    build, takes_pixels = TRANSFER[twin]
    source = getattr(keras.applications, twin)(weights=None, input_shape=SHAPE, classifier_activation=None)
    _randomize_batch_norms(source, 1)
    target = build(input_shape=SHAPE, classifier_activation=None)
    assert source.count_params() == target.count_params() == KERAS_PARAMS[twin]
    assert [l.name for l in target.layers if l.weights] == [l.name for l in source.layers if l.weights]
    assert kerasnets.profile(target)["flops"] == kerasnets.profile(source)["flops"]
    kerasnets.transfer_weights(source, target)
    x = np.random.RandomState(0).uniform(0, 255, (2, *SHAPE)).astype("float32")
    source_x = x if takes_pixels else keras.applications.resnet_v2.preprocess_input(x.copy())
    expected = np.asarray(source(source_x, training=False))
    assert np.abs(expected).max() > 0.05  # logits of a scale where a wrong layer shows
    assert np.abs(np.asarray(target(x, training=False)) - expected).max() <= 1e-5


#: keras.applications twin -> (the stride 4/8/16/32 endpoints: the last block output at each stride,
#: ResNetV2's stride 32 its normalized output post_relu; the kerasnets builder with features_only=True and
#: weights="imagenet"; how both models' input is scaled: None for RGB 0..255, else the twin's
#: preprocess_input, as the kerasnets ResNets built with weights="imagenet" take it too)
TWIN_ENDPOINTS = {
    "EfficientNetB0": ({"stride_4": "block2b_add", "stride_8": "block3b_add", "stride_16": "block5c_add",
                        "stride_32": "block7a_project_bn"},
                       lambda **kw: kerasnets.EfficientNet(0, **kw), None),
    "ResNet50": ({"stride_4": "conv2_block3_out", "stride_8": "conv3_block4_out", "stride_16": "conv4_block6_out",
                  "stride_32": "conv5_block3_out"},
                 lambda **kw: kerasnets.ResNet(50, "v1", **kw), keras.applications.resnet.preprocess_input),
    "EfficientNetV2B0": ({"stride_4": "block2b_add", "stride_8": "block3b_add", "stride_16": "block5e_add",
                          "stride_32": "block6h_add"},
                         lambda **kw: kerasnets.EfficientNetV2("b0", **kw), None),
    "ResNet50V2": ({"stride_4": "conv2_block2_out", "stride_8": "conv3_block3_out", "stride_16": "conv4_block5_out",
                    "stride_32": "post_relu"},
                   lambda **kw: kerasnets.ResNet(50, "v2", **kw), keras.applications.resnet_v2.preprocess_input),
}


@pytest.mark.parametrize("twin", sorted(TWIN_ENDPOINTS))
def test_imagenet_weights_and_features_only_are_the_twins(twin, tmp_path, monkeypatch):
    """``features_only=True, weights="imagenet"`` (V1: issue #18, it always raised) gives the feature maps
    of the pretrained network. Offline, keras.applications' file is a stand-in: the twin's random weights
    with randomized BN statistics (and ImageNet's statistics in V1's Normalization), written in the legacy
    .h5 format Keras downloads. The reference is keras.applications' own model loading that file."""
    endpoints, build, scale = TWIN_ENDPOINTS[twin]
    donor = getattr(keras.applications, twin)(weights=None, include_top=False, input_shape=SHAPE)
    _randomize_batch_norms(donor, 3)
    for layer in donor.layers:
        if isinstance(layer, keras.layers.Normalization) and layer.weights:  # V1's: weights in the file
            layer.set_weights([np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225]), np.array(0)])
    path = tmp_path / f"{twin}_notop.h5"
    with h5py.File(path, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, donor)
    requested = []
    monkeypatch.setattr(file_utils, "get_file", lambda name, *a, **k: requested.append(name) or str(path))
    reference = getattr(keras.applications, twin)(weights="imagenet", include_top=False, input_shape=SHAPE)
    probe = keras.Model(reference.input, {k: reference.get_layer(v).output for k, v in endpoints.items()})
    requested.clear()
    ours = build(features_only=True, weights="imagenet", input_shape=SHAPE)
    assert requested and all(name.endswith("_notop.h5") for name in requested)  # the twin's no-top file
    x = np.random.RandomState(4).uniform(0, 255, (2, *SHAPE)).astype("float32")
    if scale is not None:
        x = scale(x)
    expected, got = probe(x, training=False), ours(x, training=False)
    assert {k: v.shape[1] for k, v in ours.output.items()} == {"stride_4": 16, "stride_8": 8, "stride_16": 4,
                                                                "stride_32": 2}
    for key, value in expected.items():
        value = np.asarray(value)
        assert np.abs(value).max() > 0.1, key
        np.testing.assert_allclose(np.asarray(got[key]), value, rtol=1e-4, atol=1e-4 * np.abs(value).max(),
                                   err_msg=key)


@pytest.mark.parametrize("build,twin", [(kerasnets.EfficientNetV2B0, "EfficientNetV2B0"),
                                        (kerasnets.ResNet50V2, "ResNet50V2")])
def test_imagenet_offline_says_how_to_use_a_local_file(monkeypatch, build, twin):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(file_utils, "get_file", offline)
    message = rf"keras.applications.{twin} .*weights='/path/model.weights.h5'"
    with pytest.raises(RuntimeError, match=message):
        build(weights="imagenet", include_top=False, input_shape=SHAPE)
    with pytest.raises(RuntimeError, match=message):  # the twin found from the model's blocks (the training route)
        kerasnets.load_pretrained(build(include_top=False, input_shape=SHAPE), "imagenet")


def _blocks_freeze_whole(model):
    """Each block's layers other than BatchNormalization are all trainable or all frozen."""
    from kerasnets.models.freeze import block_of

    states: dict[str, set] = {}
    for layer in model.layers:
        block = block_of(layer.name)
        if block is not None and layer.weights and not isinstance(layer, keras.layers.BatchNormalization):
            states.setdefault(block, set()).add(layer.trainable)
    return all(len(s) == 1 for s in states.values())


def test_freeze_and_blocks_of_efficientnetv2():
    model = kerasnets.EfficientNetV2B0(input_shape=SHAPE, classes=5)
    blocks = kerasnets.model_blocks(model)
    assert blocks[:4] == ["stem", "block1a", "block2a", "block2b"] and blocks[-2:] == ["block6h", "top"]
    assert len(blocks) == 2 + sum(s.repeats for s in scaled_stages(EFFICIENTNET_PRESETS["efficientnetv2-b0"]))
    report = kerasnets.freeze(model, 4)  # stage 4: the first MBConv stage
    assert report.frozen_blocks[-1] == "block3b" and report.trainable_blocks[0] == "block4a"
    assert _blocks_freeze_whole(model)
    assert not model.get_layer("block4a_bn").trainable and model.get_layer("block4a_dwconv2").trainable
    assert not model.get_layer("block3b_project_conv").trainable and model.get_layer("predictions").trainable
    assert report.trainable_params + report.non_trainable_params == model.count_params()


def test_freeze_keeps_resnetv2s_final_norm_in_the_backbone():
    """ResNetV2's post_bn / post_relu are the block ``post``: frozen with the backbone (only the
    classifier trains), trainable with the last blocks."""
    model = kerasnets.ResNet50V2(input_shape=SHAPE, classes=5)
    assert kerasnets.model_blocks(model)[-2:] == ["conv5_block3", "post"]
    kerasnets.freeze(model, None)
    assert [w.path for w in model.trainable_weights] == ["predictions/kernel", "predictions/bias"]
    report = kerasnets.freeze(model, -2, train_batch_norm=True)
    assert report.trainable_blocks == ("conv5_block3", "post")
    assert model.get_layer("post_bn").trainable and not model.get_layer("conv5_block2_3_conv").trainable
    assert _blocks_freeze_whole(model)


def test_profile_counts_resnet50v2_by_hand():
    """ResNet50V2's multiply-adds at 224 px, counted by hand from keras' layout: the 7x7 stem, then per
    stage the bottlenecks (the strided 3x3 is the stage's LAST block), the first block's projection,
    and the classifier."""
    def bottleneck(size_in, size_out, c_in, width):  # 1x1 at the input size, 3x3 and 1x1 at the output
        return size_in ** 2 * c_in * width + size_out ** 2 * (9 * width * width + width * 4 * width)

    flops, c_in, size = 112 ** 2 * 49 * 3 * 64, 64, 56
    for width, blocks, stride in ((64, 3, 2), (128, 4, 2), (256, 6, 2), (512, 3, 1)):
        flops += size ** 2 * c_in * 4 * width  # the projection (1x1 of the pre-activated input)
        for b in range(blocks):
            out = size // stride if b == blocks - 1 else size
            flops += bottleneck(size, out, c_in if b == 0 else 4 * width, width)
            size = out
        c_in = 4 * width
    flops += 2048 * 1000
    assert kerasnets.profile(kerasnets.ResNet50V2())["flops"] == flops


@pytest.mark.parametrize("build", [
    lambda: kerasnets.EfficientNetV2("b0", input_shape=SHAPE, classes=5),
    lambda: kerasnets.ResNet(50, "v2", input_shape=SHAPE, classes=5, include_preprocessing=True),
])
def test_keras_round_trip_without_custom_objects(tmp_path, build):
    model = build()
    x = np.random.RandomState(1).uniform(0, 255, (2, *SHAPE)).astype("float32")
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), atol=1e-6)


def test_keras_defaults_and_official_values_one_keyword_away():
    """keras.applications' dropout 0.2 for every variant is the default; the official value
    (google/automl effnetv2_configs.py: L 0.4) is ``dropout_rate``. Channels round without V1's 10%
    rule: B3's first stage keeps 16 channels (19.2 rounded), which the 10% rule would make 24."""
    large = EFFICIENTNET_PRESETS["efficientnetv2-l"]
    assert large.dropout == 0.2 and EFFICIENTNETV2_OFFICIAL["l"].dropout == 0.4
    assert scaled_stages(EFFICIENTNET_PRESETS["efficientnetv2-b3"])[0].filters == 16
    model = kerasnets.EfficientNetV2("b3", input_shape=SHAPE, dropout_rate=EFFICIENTNETV2_OFFICIAL["b3"].dropout)
    assert model.get_layer("top_dropout").rate == 0.3
    assert model.get_layer("block1a_project_conv").filters == 16 and model.name == "efficientnetv2-b3"


@pytest.mark.parametrize("call,error,message", [
    (lambda: kerasnets.EfficientNetV2("xl"), ValueError, r"variant must be one of \['b0', 'b1', 'b2', 'b3', 's', 'm', 'l'\]"),
    (lambda: kerasnets.EfficientNetV2("s", phi=1), TypeError, r"takes no \['phi'\]"),
    (lambda: kerasnets.ResNet(18, "v2"), ValueError, r"depth must be one of \[26, 50, 101, 152\]"),
    (lambda: kerasnets.ResNet(50, "v2", stem="deep"), ValueError, "stem='7x7'"),
    (lambda: kerasnets.EfficientNet(0, include_preprocessing=False, weights="imagenet"), ValueError,
     "include_preprocessing=True"),
])
def test_bad_arguments_name_the_allowed_values(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_presets_and_aliases():
    from kerasnets.models.pretrained import _preset_hint

    assert _preset_hint("resnet50v2").endswith("--model resnet50v2)")  # a file that does not fit names its preset
    assert _preset_hint("efficientnetv2-s").endswith("--model efficientnetv2-s)")
    assert {"efficientnetv2-b0", "efficientnetv2-l", "resnet50v2", "resnet152v2"} <= set(kerasnets.PRESETS)
    assert "resnet18v2" not in kerasnets.PRESETS
    model = kerasnets.build("resnet50v2", input_shape=SHAPE, include_top=False)
    assert model.name == "resnet50v2" and len([n for n in kerasnets.model_blocks(model) if n.startswith("conv4")]) == 6
