"""timm's EfficientNets in kerasnets (issue #20), checked against oracles that are not ours.

The checkpoints are written here in timm's format (``config.json`` + ``model.safetensors``) under the
names and shapes timm's own ``arch_def`` strings give (:func:`timm_efficientnet_shapes` decodes them
as timm's ``_efficientnet_builder.py`` does: its stage strings, ``round_channels``, per-stage ``ceil``
depth, Lite's ``fix_first_last`` / ``fix_stem``, SE widths ``round(mid * 0.25 / exp_ratio)``), never
from kerasnets' layer table. Two oracles:

- keras-hub's timm converter (``keras_hub.models.Backbone.from_preset(folder)``) for ``efficientnet_b0``
  and ``efficientnet_lite0``, random weights and BatchNorm statistics;
- keras.applications' ``EfficientNetB0`` / ``EfficientNetV2B0`` for the ``tf_`` ports, which keras-hub
  does not convert: the twin's random weights, written under timm's names by :func:`state_from_twin`.

Inputs are 64 px: the point is the mapping and the padding, not the resolution (64 keeps every strided
conv's input even, where TF-SAME and symmetric padding differ). No network.
"""

import json
import math
import os
import re

import keras
import numpy as np
import pytest
from safetensors.numpy import save_file

import kerasnets
from kerasnets.layers.factories import LayerConfig
from kerasnets.timm import efficientnet as family
from kerasnets.timm import supported_architectures
from test_timm import assert_close_to_scale, assert_stage_ends  # the core's tests' comparisons

SIZE = 64
CLASSES = 10
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

# timm models/efficientnet.py, _gen_efficientnet / _gen_efficientnet_lite / _gen_efficientnetv2_base /
# _gen_efficientnetv2_s, verbatim
V1_ARCH = ("ds_r1_k3_s1_e1_c16_se0.25", "ir_r2_k3_s2_e6_c24_se0.25", "ir_r2_k5_s2_e6_c40_se0.25",
           "ir_r3_k3_s2_e6_c80_se0.25", "ir_r3_k5_s1_e6_c112_se0.25", "ir_r4_k5_s2_e6_c192_se0.25",
           "ir_r1_k3_s1_e6_c320_se0.25")
LITE_ARCH = ("ds_r1_k3_s1_e1_c16", "ir_r2_k3_s2_e6_c24", "ir_r2_k5_s2_e6_c40", "ir_r3_k3_s2_e6_c80",
             "ir_r3_k5_s1_e6_c112", "ir_r4_k5_s2_e6_c192", "ir_r1_k3_s1_e6_c320")
V2_BASE_ARCH = ("cn_r1_k3_s1_e1_c16_skip", "er_r2_k3_s2_e4_c32", "er_r2_k3_s2_e4_c48", "ir_r3_k3_s2_e4_c96_se0.25",
                "ir_r5_k3_s1_e6_c112_se0.25", "ir_r8_k3_s2_e6_c192_se0.25")
V2_S_ARCH = ("cn_r2_k3_s1_e1_c24_skip", "er_r4_k3_s2_e4_c48", "er_r4_k3_s2_e4_c64", "ir_r6_k3_s2_e4_c128_se0.25",
             "ir_r9_k3_s1_e6_c160_se0.25", "ir_r15_k3_s2_e6_c256_se0.25")

#: timm architecture -> its generator's arguments: (arch_def, channel multiplier, depth multiplier,
#: stem, head (None: round_chs_fn(1280)), Lite's fix_stem / fix_first_last, round_limit)
TIMM_GEN = {
    "efficientnet_b0": (V1_ARCH, 1.0, 1.0, 32, None, False, 0.9),
    "efficientnet_b2": (V1_ARCH, 1.1, 1.2, 32, None, False, 0.9),
    "efficientnet_lite0": (LITE_ARCH, 1.0, 1.0, 32, 1280, True, 0.9),
    "tf_efficientnet_b0": (V1_ARCH, 1.0, 1.0, 32, None, False, 0.9),
    "tf_efficientnet_lite4": (LITE_ARCH, 1.4, 1.8, 32, 1280, True, 0.9),
    "tf_efficientnetv2_b0": (V2_BASE_ARCH, 1.0, 1.0, 32, None, False, 0.0),
    "tf_efficientnetv2_b2": (V2_BASE_ARCH, 1.1, 1.2, 32, None, False, 0.0),
    "tf_efficientnetv2_s": (V2_S_ARCH, 1.0, 1.0, 24, None, False, 0.9),
}


def _make_divisible(value: float, round_limit: float, divisor: int = 8) -> int:
    """timm layers/helpers.py make_divisible."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < round_limit * value else new


def timm_efficientnet_shapes(architecture: str, classes: int = CLASSES) -> dict[str, tuple]:
    """``{tensor name: torch shape}`` of timm's ``architecture``, in its state dict's order, decoded from
    :data:`TIMM_GEN` as timm's builder does."""
    arch, width, depth, stem, head, fixed, limit = TIMM_GEN[architecture]
    chs = lambda c: _make_divisible(c * width, limit)  # noqa: E731  (timm's round_chs_fn)
    shapes: dict[str, tuple] = {}

    def conv(name, out, inp, k, bias=False):
        shapes[f"{name}.weight"] = (out, inp, k, k)
        if bias:
            shapes[f"{name}.bias"] = (out,)

    def bn(name, c):
        shapes.update({f"{name}.{p}": (c,) for p in ("weight", "bias", "running_mean", "running_var")})
        shapes[f"{name}.num_batches_tracked"] = ()

    stem = stem if fixed else chs(stem)
    conv("conv_stem", stem, 3, 3), bn("bn1", stem)
    inp = stem
    for stage, text in enumerate(arch):
        kind, *options = text.split("_")
        opt = {m.group(1): m.group(2) for m in (re.fullmatch(r"([a-z]+)([\d.]*)", o) for o in options)}
        k, e, out = int(opt["k"]), int(opt["e"]), chs(int(opt["c"]))
        se = float(opt.get("se", 0))
        repeats = int(opt["r"]) if fixed and stage in (0, len(arch) - 1) else math.ceil(int(opt["r"]) * depth)
        for block in range(repeats):
            p = f"blocks.{stage}.{block}."
            mid = inp * e
            reduced = round(mid * se / e)  # timm: rd_ratio = se_ratio / exp_ratio of the expanded width
            if kind == "cn":
                conv(p + "conv", out, inp, k), bn(p + "bn1", out)
            elif kind == "er":
                conv(p + "conv_exp", mid, inp, k), bn(p + "bn1", mid), conv(p + "conv_pwl", out, mid, 1)
                bn(p + "bn2", out)
            elif kind == "ds":
                shapes[p + "conv_dw.weight"] = (inp, 1, k, k)
                bn(p + "bn1", inp)
                if se:
                    conv(p + "se.conv_reduce", reduced, inp, 1, True), conv(p + "se.conv_expand", inp, reduced, 1, True)
                conv(p + "conv_pw", out, inp, 1), bn(p + "bn2", out)
            else:  # "ir"
                conv(p + "conv_pw", mid, inp, 1), bn(p + "bn1", mid)
                shapes[p + "conv_dw.weight"] = (mid, 1, k, k)
                bn(p + "bn2", mid)
                if se:
                    conv(p + "se.conv_reduce", reduced, mid, 1, True), conv(p + "se.conv_expand", mid, reduced, 1, True)
                conv(p + "conv_pwl", out, mid, 1), bn(p + "bn3", out)
            inp = out
    head = chs(1280) if head is None else head
    conv("conv_head", head, inp, 1), bn("bn2", head)
    shapes["classifier.weight"], shapes["classifier.bias"] = (classes, head), (classes,)
    return shapes


def random_value(name: str, shape: tuple, rng) -> np.ndarray:
    """A random value for timm tensor ``name``: He-scaled kernels, BatchNorm statistics of either sign
    for the mean and positive for the variance, biases of either sign."""
    if name.endswith("num_batches_tracked"):
        return np.array(1000, np.int64)
    if name.endswith("running_var"):
        value = rng.uniform(0.5, 2.0, shape)
    elif name.endswith(".weight") and len(shape) == 1:  # BN gamma
        value = rng.uniform(0.5, 1.5, shape)
    elif len(shape) >= 2:
        value = rng.normal(0.0, math.sqrt(2.0 / np.prod(shape[1:])), shape)
    else:  # biases, BN beta and running_mean
        value = rng.normal(0.0, 0.2, shape)
    return value.astype(np.float32)


def write_folder(folder, architecture: str, state: dict, mean=MEAN, std=STD) -> str:
    """A timm checkpoint folder as ``huggingface_hub.snapshot_download`` leaves it."""
    os.makedirs(folder, exist_ok=True)
    save_file(state, os.path.join(folder, "model.safetensors"))
    cfg = {"input_size": [3, 224, 224], "interpolation": "bicubic", "crop_pct": 0.875, "mean": list(mean),
           "std": list(std), "num_classes": CLASSES, "first_conv": "conv_stem", "classifier": "classifier"}
    with open(os.path.join(folder, "config.json"), "w") as handle:
        json.dump({"architecture": architecture, "num_classes": CLASSES, "num_features": 1280,
                   "pretrained_cfg": cfg}, handle)
    return str(folder)


# --------------------------------------------------------------------------- oracle: keras-hub


@pytest.mark.parametrize("architecture", ["efficientnet_b0", "efficientnet_lite0"])
def test_backbone_features_equal_keras_hub(architecture, tmp_path):
    """timm's PyTorch-trained EfficientNets (symmetric padding, BN epsilon 1e-5): kerasnets' backbone
    features equal keras-hub's timm converter (``keras_hub.models.Backbone.from_preset(folder)``) on
    the same normalized input, random weights and BatchNorm statistics."""
    import keras_hub

    rng = np.random.default_rng(0)
    state = {name: random_value(name, shape, rng) for name, shape in timm_efficientnet_shapes(architecture).items()}
    folder = write_folder(tmp_path / architecture, architecture, state)
    ours = kerasnets.from_timm(folder, include_top=False, include_preprocessing=False, input_shape=(SIZE, SIZE, 3))
    hub = keras_hub.models.Backbone.from_preset(folder)
    x = np.random.default_rng(1).normal(size=(2, SIZE, SIZE, 3)).astype("float32")
    assert_close_to_scale(ours.predict(x, verbose=0), hub.predict(x, verbose=0))


# --------------------------------------------------------------------------- oracle: keras.applications


def _randomize(model: keras.Model, seed: int) -> None:
    """Random BatchNorm affine parameters and statistics and random biases (kernels keep their
    initialisation): what a trained checkpoint has and a fresh model lacks."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.2, c), rng.normal(0, 0.2, c),
                               rng.uniform(0.5, 2.0, c)])
        elif isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)) and layer.use_bias:
            layer.bias.assign(rng.normal(0, 0.2, layer.bias.shape).astype("float32"))


def _to_torch(layer: keras.layers.Layer) -> list[np.ndarray]:
    """A keras layer's arrays in torch's layout and timm's tensor order."""
    arrays = [np.asarray(w) for w in layer.get_weights()]
    if isinstance(layer, keras.layers.DepthwiseConv2D):  # (kh, kw, C, 1) -> (C, 1, kh, kw)
        return [np.transpose(arrays[0], (2, 3, 0, 1))] + arrays[1:]
    if isinstance(layer, keras.layers.Conv2D):  # HWIO -> OIHW
        return [np.transpose(arrays[0], (3, 2, 0, 1))] + arrays[1:]
    if isinstance(layer, keras.layers.Dense):
        return [arrays[0].T, arrays[1]]
    return arrays  # BatchNormalization: gamma, beta, moving mean, moving variance


def state_from_twin(twin: keras.Model, architecture: str) -> dict[str, np.ndarray]:
    """timm's state dict of ``architecture`` filled from keras.applications model ``twin``.

    An independent writer: timm's modules (from :func:`timm_efficientnet_shapes`) are paired with the
    twin's weighted layers in order, unit by unit (stem, each ``block<n><letter>_`` block, head,
    classifier), every array checked against timm's shape; kerasnets' layer table is not used.
    """
    shapes = timm_efficientnet_shapes(architecture)
    units: dict[str, list[str]] = {}  # timm unit -> its modules, in order
    for name in shapes:
        module, _ = name.rsplit(".", 1)
        unit = ".".join(module.split(".")[:3]) if module.startswith("blocks.") else module
        unit = {"conv_stem": "stem", "bn1": "stem", "conv_head": "top", "bn2": "top"}.get(unit, unit)
        if module not in units.setdefault(unit, []):
            units[unit].append(module)
    layers: dict[str, list] = {}
    for layer in twin.layers:
        if not layer.weights or isinstance(layer, keras.layers.Normalization):
            continue
        block = re.match(r"block(\d+)([a-z])_", layer.name)
        unit = (f"blocks.{int(block.group(1)) - 1}.{ord(block.group(2)) - ord('a')}" if block
                else "classifier" if layer.name == "predictions" else layer.name.split("_")[0])
        layers.setdefault(unit, []).append(layer)
    assert list(units) == list(layers), "the twin's blocks are not timm's"
    state = {}
    for unit, modules in units.items():
        assert len(modules) == len(layers[unit]), unit
        for module, layer in zip(modules, layers[unit]):
            names = [n for n in shapes if n.rsplit(".", 1)[0] == module and not n.endswith("num_batches_tracked")]
            for name, array in zip(names, _to_torch(layer), strict=True):
                assert array.shape == shapes[name], (name, layer.name, array.shape, shapes[name])
                state[name] = np.ascontiguousarray(array, np.float32)  # save_file writes a view's raw buffer
            if f"{module}.num_batches_tracked" in shapes:
                state[f"{module}.num_batches_tracked"] = np.array(0, np.int64)
    assert list(state) == list(shapes)
    return state


@pytest.mark.parametrize("architecture, twin", [
    ("tf_efficientnet_b0", keras.applications.EfficientNetB0),
    ("tf_efficientnetv2_b0", keras.applications.EfficientNetV2B0),
])
def test_tf_ports_equal_their_keras_applications_twin(architecture, twin, tmp_path):
    """Oracle: keras.applications. ``architecture``'s folder is written from the twin's random weights
    (random BatchNorm statistics and biases) under timm's names (:func:`state_from_twin`); read back
    by ``kerasnets.from_timm`` it computes the twin's features and logits on the same RGB 0..255 input
    (both normalize with the ImageNet mean/std inside)."""
    reference = twin(weights=None, input_shape=(SIZE, SIZE, 3), classes=CLASSES, classifier_activation=None)
    _randomize(reference, seed=2)
    normalization = next(layer for layer in reference.layers if isinstance(layer, keras.layers.Normalization))
    if normalization.weights:  # V1's adaptable Normalization: give it the ImageNet statistics
        normalization.set_weights([np.array(MEAN), np.square(STD), np.array(0)])
        normalization.finalize_state()
    folder = write_folder(tmp_path / architecture, architecture, state_from_twin(reference, architecture))
    ours = kerasnets.from_timm(folder, input_shape=(SIZE, SIZE, 3), classifier_activation=None)
    x = np.random.default_rng(3).uniform(0, 255, (2, SIZE, SIZE, 3)).astype("float32")
    features = [keras.Model(model.inputs, model.get_layer("top_activation").output) for model in (ours, reference)]
    assert_close_to_scale(features[0].predict(x, verbose=0), features[1].predict(x, verbose=0))
    assert_close_to_scale(ours.predict(x, verbose=0), reference.predict(x, verbose=0))


# --------------------------------------------------------------------------- names, shapes, refusals


@pytest.mark.parametrize("architecture", ["efficientnet_b2", "tf_efficientnet_lite4", "tf_efficientnetv2_b2",
                                          "tf_efficientnetv2_s"])
def test_scaled_architectures_take_timms_names_and_shapes(architecture, tmp_path):
    """Scaled widths and depths (a first stage of several DS blocks with skips, Lite's fixed first/last
    stages, V2's unrounded-limit channels, V2-S's ConvBnAct stage with skips): every tensor timm's
    ``arch_def`` gives fills one kerasnets variable of its shape, and every variable is filled (the
    strict loader refuses anything else)."""
    rng = np.random.default_rng(4)
    state = {name: random_value(name, shape, rng) for name, shape in timm_efficientnet_shapes(architecture).items()}
    folder = write_folder(tmp_path / architecture, architecture, state)
    model = kerasnets.from_timm(folder, input_shape=(SIZE, SIZE, 3))
    assert model.name == architecture
    kernel = model.get_layer("top_conv").get_weights()[0]
    np.testing.assert_array_equal(kernel[0, 0], state["conv_head.weight"][:, :, 0, 0].T)


def test_every_architecture_is_a_kerasnets_preset_with_timms_deltas():
    """The table: PyTorch-trained ones get symmetric padding and epsilon 1e-5, the tf_ ports none;
    EfficientNetV2-XL (no kerasnets table) is not listed, and the registry refuses it."""
    torch_trained = [name for name in family.ARCHITECTURES if not name.startswith("tf_")]
    assert torch_trained == [f"efficientnet_b{i}" for i in range(6)] + ["efficientnet_lite0"]
    for name, (preset, deltas) in family.ARCHITECTURES.items():
        assert deltas == (family.TORCH_DELTAS if name in torch_trained else {}), name
    assert set(family.ARCHITECTURES) <= set(supported_architectures())
    with pytest.raises(ValueError, match="tf_efficientnetv2_xl.*not supported.*tf_efficientnetv2_l"):
        kerasnets.timm.family_for("tf_efficientnetv2_xl")


def test_a_missing_tensor_is_named_with_its_shape(tmp_path):
    """Strict, by name: a checkpoint without one SE bias fails naming it and the shape it needs."""
    rng = np.random.default_rng(5)
    state = {name: random_value(name, shape, rng) for name, shape in
             timm_efficientnet_shapes("efficientnet_b0").items()}
    del state["blocks.1.0.se.conv_reduce.bias"]
    folder = write_folder(tmp_path / "b0", "efficientnet_b0", state)
    with pytest.raises(ValueError, match=r"blocks\.1\.0\.se\.conv_reduce\.bias.*\(4,\)"):
        kerasnets.from_timm(folder, input_shape=(SIZE, SIZE, 3))


#: keras.applications EfficientNet-B0's stage ends at strides 4..32 (kerasnets' features_only
#: endpoints, by their layer names in the whole network)
B0_STAGE_ENDS = {"stride_4": "block2b_add", "stride_8": "block3b_add", "stride_16": "block5c_add",
                 "stride_32": "block7a_project_bn"}


def test_features_only_is_the_whole_networks_stage_ends(tmp_path):
    """``from_timm(folder, features_only=True)``, which has no head conv (``conv_head`` / ``bn2``) and
    no classifier, skips those tensors only and returns the stage ends of the whole model built from
    the same folder; the builder's ``features_only=True, weights="timm:..."`` (with timm's deltas) too."""
    rng = np.random.default_rng(6)
    state = {name: random_value(name, shape, rng) for name, shape in
             timm_efficientnet_shapes("efficientnet_b0").items()}
    folder = write_folder(tmp_path / "b0", "efficientnet_b0", state)
    # include_preprocessing=False throughout: x below is already timm-normalized (the bare networks' input)
    features = kerasnets.from_timm(folder, features_only=True, include_preprocessing=False, input_shape=(SIZE, SIZE, 3))
    built = kerasnets.EfficientNet(0, features_only=True, weights=f"timm:{folder}", include_preprocessing=False,
                                   input_shape=(SIZE, SIZE, 3), **family.TORCH_DELTAS)
    whole = kerasnets.from_timm(folder, include_preprocessing=False, input_shape=(SIZE, SIZE, 3))
    x = np.random.default_rng(7).normal(size=(2, SIZE, SIZE, 3)).astype("float32")
    assert_stage_ends((features, built), whole, B0_STAGE_ENDS, x)
    del state["blocks.6.0.bn3.running_var"]  # the stride-32 end's own norm: not a head tensor
    with pytest.raises(ValueError, match=r"no tensor 'blocks\.6\.0\.bn3\.running_var'.*\(320,\)"):
        kerasnets.from_timm(write_folder(tmp_path / "cut", "efficientnet_b0", state), features_only=True,
                            include_preprocessing=False, input_shape=(SIZE, SIZE, 3))  # as above: the bare network


# --------------------------------------------------------------------------- the padding delta


def test_symmetric_padding_is_a_keyword_delta_of_the_builder():
    """``strided_padding="symmetric"`` pads k // 2 on every side of the stem and of every strided
    depthwise (V1) or fused (V2) conv, where "tf_same" pads (k // 2 - 1, k // 2) at even sizes; the
    model is then another function of the same weights: named ``_custom``, no ImageNet twin."""
    for builder, strided in ((lambda **kw: kerasnets.EfficientNet(0, **kw), ["stem_conv", "block2a_dwconv",
                              "block3a_dwconv", "block4a_dwconv", "block6a_dwconv"]),
                             (lambda **kw: kerasnets.EfficientNetV2("b0", **kw), ["stem_conv", "block2a_expand_conv",
                              "block3a_expand_conv", "block4a_dwconv2", "block6a_dwconv2"])):
        model = builder(strided_padding="symmetric", include_top=False, input_shape=(SIZE, SIZE, 3))
        pads = {layer.name: layer.padding for layer in model.layers if isinstance(layer, keras.layers.ZeroPadding2D)}
        assert sorted(pads) == sorted(f"{name}_pad" for name in strided)
        for name in strided:
            half = model.get_layer(name).kernel_size[0] // 2
            assert pads[f"{name}_pad"] == ((half, half), (half, half)), name
            assert model.get_layer(name).padding == "valid"
        assert model.name.endswith("_custom")
    tf_same = kerasnets.EfficientNet(0, include_top=False, input_shape=(SIZE, SIZE, 3))
    assert tf_same.get_layer("stem_conv_pad").padding == ((0, 1), (0, 1)) and tf_same.name == "efficientnetb0"
    assert kerasnets.EfficientNet(0, dropout_rate=0.5, input_shape=(SIZE, SIZE, 3)).name == "efficientnetb0"
    with pytest.raises(TypeError, match=r"dropout_rate=, not dropout="):  # one name for one setting
        kerasnets.EfficientNet(0, dropout=0.5, input_shape=(SIZE, SIZE, 3))
    with pytest.raises(ValueError, match="efficientnetb0_custom has no published weights"):
        kerasnets.EfficientNet(0, strided_padding="symmetric", weights="imagenet")
    with pytest.raises(ValueError, match=r"one of \('tf_same', 'same', 'symmetric'\)"):
        kerasnets.EfficientNet(0, strided_padding="reflect")
    with pytest.raises(ValueError, match=r"one of \('tf_same', 'same', 'symmetric'\)"):
        LayerConfig(strided_padding="valid")
    with pytest.raises(TypeError, match="unknown keywords \\['padding'\\].*'strided_padding'"):
        kerasnets.EfficientNet(0, padding="symmetric")


def test_mean_std_preprocessing_is_a_keyword_delta():
    """``preprocessing=(mean, std)`` puts Rescaling(1/255) + a constant Normalization in the model;
    anything but two RGB 3-tuples with std > 0 is refused, saying what is allowed."""
    model = kerasnets.EfficientNetLite(0, preprocessing=((0.5,) * 3, (0.25,) * 3), input_shape=(SIZE, SIZE, 3),
                                       include_top=False)
    assert [layer.name for layer in model.layers[1:3]] == ["rescaling", "normalization"]
    assert not model.get_layer("normalization").weights
    x = np.full((1, SIZE, SIZE, 3), 255.0, "float32")
    np.testing.assert_allclose(keras.Model(model.inputs[0], model.get_layer("normalization").output)(x), 2.0, rtol=1e-6)
    with pytest.raises(ValueError, match=r"pair \(mean, std\) of RGB 3-tuples"):
        kerasnets.EfficientNet(0, preprocessing=((0.5, 0.5), (0.5, 0.5)))
    with pytest.raises(ValueError, match=r"one of \('imagenet_variables', 'imagenet', 'signed'\)"):
        kerasnets.EfficientNet(0, preprocessing="torch")
