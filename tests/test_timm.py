"""timm checkpoints in kerasnets (issue #20): the core (locate, read, strict by-name loading, the
contract) and the ResNet family, checked against oracles that are not ours.

The checkpoints are written here, in timm's format (``config.json`` + ``model.safetensors`` written by
``safetensors.numpy.save_file``), with random weights and random BatchNorm statistics under timm's
names and shapes as timm's ``models/resnet.py`` / ``resnetv2.py`` define them (:func:`timm_resnet_shapes`,
written from timm's source, not from kerasnets' table). No network: hub access is mocked.
Inputs are 64 px (the point is the mapping, not the resolution; 64 keeps every stage's map even and
non-trivial: 16, 8, 4, 2).
"""

import json
import math
import os
import struct
import subprocess

import keras
import numpy as np
import pytest
from safetensors.numpy import save_file

import kerasnets
from conftest import ENV, RECIPES, ROOT, kerasnets_cmd
from kerasnets import serving
from kerasnets.timm import checkpoint as timm_checkpoint

SIZE = 64
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
#: a pretrained_cfg as timm writes it (resnet50.a1_in1k's values)
PRETRAINED_CFG = {"tag": "a1_in1k", "input_size": [3, 224, 224], "test_input_size": [3, 288, 288],
                  "interpolation": "bicubic", "crop_pct": 0.95, "crop_mode": "center", "mean": list(MEAN),
                  "std": list(STD), "num_classes": 1000, "first_conv": "conv1", "classifier": "fc"}
#: timm's layers per stage
TIMM_LAYERS = {18: (2, 2, 2, 2), 26: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3),
               152: (3, 8, 36, 3)}


def timm_resnet_shapes(architecture: str, classes: int) -> dict[str, tuple]:
    """``{tensor name: shape}`` of timm's ``architecture`` state dict (resnet{18..152}, resnet*d,
    resnetv2_*), as timm's modules name them (torch layouts: conv OIHW, Linear (out, in))."""
    v2 = architecture.startswith("resnetv2_")
    depth = int("".join(c for c in architecture.split("_")[-1] if c.isdigit()))
    deep = not v2 and architecture.endswith("d")
    bottleneck = depth not in (18, 34)
    shapes: dict[str, tuple] = {}

    def conv(name, out, inp, k):
        shapes[f"{name}.weight"] = (out, inp, k, k)

    def bn(name, c):
        shapes.update({f"{name}.{p}": (c,) for p in ("weight", "bias", "running_mean", "running_var")})
        shapes[f"{name}.num_batches_tracked"] = ()

    if v2:
        conv("stem.conv", 64, 3, 7)  # preact: no stem norm
    elif deep:  # conv1 = Sequential(conv, bn, act, conv, bn, act, conv); then bn1
        conv("conv1.0", 32, 3, 3), bn("conv1.1", 32), conv("conv1.3", 32, 32, 3), bn("conv1.4", 32)
        conv("conv1.6", 64, 32, 3), bn("bn1", 64)
    else:
        conv("conv1", 64, 3, 7), bn("bn1", 64)
    inplanes = 64
    for stage, (blocks, planes) in enumerate(zip(TIMM_LAYERS[depth], (64, 128, 256, 512))):
        out = planes * 4 if bottleneck else planes
        for block in range(blocks):
            if v2:  # PreActBottleneck; ResNetStage gives block 0 a DownsampleConv
                p = f"stages.{stage}.blocks.{block}."
                bn(p + "norm1", inplanes), conv(p + "conv1", planes, inplanes, 1), bn(p + "norm2", planes)
                conv(p + "conv2", planes, planes, 3), bn(p + "norm3", planes), conv(p + "conv3", out, planes, 1)
                if block == 0:
                    conv(p + "downsample.conv", out, inplanes, 1)
            else:
                p = f"layer{stage + 1}.{block}."
                if bottleneck:
                    conv(p + "conv1", planes, inplanes, 1), bn(p + "bn1", planes)
                    conv(p + "conv2", planes, planes, 3), bn(p + "bn2", planes)
                    conv(p + "conv3", out, planes, 1), bn(p + "bn3", out)
                else:
                    conv(p + "conv1", planes, inplanes, 3), bn(p + "bn1", planes)
                    conv(p + "conv2", planes, planes, 3), bn(p + "bn2", planes)
                if block == 0 and (stage > 0 or inplanes != out):  # make_blocks' downsample rule
                    first = 1 if deep else 0  # downsample_avg: (AvgPool2d or Identity, conv, bn)
                    conv(f"{p}downsample.{first}", out, inplanes, 1), bn(f"{p}downsample.{first + 1}", out)
            inplanes = out
    if v2:
        bn("norm", inplanes)
        shapes["head.fc.weight"], shapes["head.fc.bias"] = (classes, inplanes, 1, 1), (classes,)  # a 1x1 conv
    else:
        shapes["fc.weight"], shapes["fc.bias"] = (classes, inplanes), (classes,)
    return shapes


def random_state(shapes: dict[str, tuple], seed: int = 0) -> dict[str, np.ndarray]:
    """He-scaled random kernels and random BatchNorm affine parameters and statistics."""
    rng = np.random.default_rng(seed)
    state = {}
    for name, shape in shapes.items():
        if name.endswith("num_batches_tracked"):
            value = np.array(1000, np.int64)
        elif name.endswith("running_var"):
            value = rng.uniform(0.5, 2.0, shape)
        elif name.endswith("running_mean"):
            value = rng.normal(0.0, 0.2, shape)
        elif len(shape) == 1 and name.endswith(".weight"):
            value = rng.uniform(0.5, 1.5, shape)
        elif len(shape) >= 2:
            value = rng.normal(0.0, math.sqrt(2.0 / np.prod(shape[1:])), shape)
        else:
            value = rng.normal(0.0, 0.1, shape)
        state[name] = value if value.dtype == np.int64 else value.astype(np.float32)
    return state


def write_timm_folder(folder, architecture: str, classes: int = 10, state=None, seed: int = 0, config=None):
    """A folder as ``huggingface_hub.snapshot_download`` leaves a timm model (``config`` entries
    replace config.json's); returns its state."""
    os.makedirs(folder, exist_ok=True)
    state = random_state(timm_resnet_shapes(architecture, classes), seed) if state is None else state
    save_file(state, os.path.join(folder, "model.safetensors"))
    document = {"architecture": architecture, "num_classes": classes, "num_features": 512,
                "pretrained_cfg": PRETRAINED_CFG, **(config or {})}
    with open(os.path.join(folder, "config.json"), "w") as handle:
        json.dump(document, handle)
    return state


def normalized(seed=1, batch=2):
    """timm-normalized input (what the bare networks take)."""
    return np.random.default_rng(seed).normal(size=(batch, SIZE, SIZE, 3)).astype("float32")


def assert_close_to_scale(ours, theirs):
    """Equal within 1e-5 of the reference's scale (its largest magnitude)."""
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.shape == theirs.shape
    scale = float(np.abs(theirs).max())
    assert scale > 0
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5 * scale)


@pytest.fixture(scope="module")
def resnet18_folder(tmp_path_factory):
    """One resnet18 checkpoint (10 classes) shared by the core's tests."""
    folder = tmp_path_factory.mktemp("timm") / "resnet18.test"
    write_timm_folder(folder, "resnet18")
    return folder


# --------------------------------------------------------------------------- oracle: keras-hub


@pytest.mark.parametrize("architecture", ["resnet18", "resnet50", "resnetv2_50"])
def test_backbone_features_equal_keras_hub(architecture, tmp_path):
    """kerasnets' backbone of a random timm checkpoint equals keras-hub's timm converter
    (``keras_hub.models.Backbone.from_preset(folder)``) on the same normalized input."""
    import keras_hub

    write_timm_folder(tmp_path, architecture)
    ours = kerasnets.from_timm(str(tmp_path), include_top=False, include_preprocessing=False,
                               input_shape=(SIZE, SIZE, 3))
    hub = keras_hub.models.Backbone.from_preset(str(tmp_path))
    x = normalized()
    assert_close_to_scale(ours.predict(x, verbose=0), hub.predict(x, verbose=0))


def test_resnet18_classifier_and_preprocessing(resnet18_folder):
    """The whole model on RGB 0..255: timm's mean/std inside, then features, average pool and ``fc``
    (keras-hub's backbone features, pooled and multiplied by the checkpoint's fc by hand)."""
    import keras_hub

    model = kerasnets.from_timm(str(resnet18_folder), input_shape=(SIZE, SIZE, 3), classifier_activation=None)
    hub = keras_hub.models.Backbone.from_preset(str(resnet18_folder))
    pixels = np.random.default_rng(2).uniform(0, 255, (2, SIZE, SIZE, 3)).astype("float32")
    features = hub.predict((pixels / 255.0 - np.array(MEAN)) / np.array(STD), verbose=0).mean(axis=(1, 2))
    state = timm_checkpoint.read_safetensors(resnet18_folder / "model.safetensors")
    assert_close_to_scale(model.predict(pixels, verbose=0), features @ state["fc.weight"].T + state["fc.bias"])


def test_resnet50d_equals_keras_hub_vd_backbone_ported_by_hand(tmp_path):
    """ResNet-D has no keras-hub converter. Oracle: keras-hub's own ResNet-vd backbone
    (``ResNetBackbone(block_type="bottleneck_block_vd", input_conv_filters=[32, 32, 64])``: deep 3x3
    stem, average-pool shortcut) with the same timm tensors ported by hand in this test (keras-hub's
    layer names, kernels OIHW -> HWIO), against kerasnets.from_timm on the same folder."""
    import keras_hub

    state = write_timm_folder(tmp_path, "resnet50d")
    hub = keras_hub.models.ResNetBackbone(
        stackwise_num_filters=[64, 128, 256, 512], stackwise_num_blocks=[3, 4, 6, 3], stackwise_num_strides=[1, 2, 2, 2],
        block_type="bottleneck_block_vd", use_pre_activation=False, input_conv_filters=[32, 32, 64],
        input_conv_kernel_sizes=[3, 3, 3], image_shape=(SIZE, SIZE, 3))
    ported = {"conv1.0": "conv1_conv", "conv1.1": "conv1_bn", "conv1.3": "conv2_conv", "conv1.4": "conv2_bn",
              "conv1.6": "conv3_conv", "bn1": "conv3_bn"}
    for stage, blocks in enumerate((3, 4, 6, 3)):
        for block in range(blocks):
            ours, theirs = f"stack{stage}_block{block}_", f"layer{stage + 1}.{block}."
            ported.update({f"{theirs}conv{k}": f"{ours}{k}_conv" for k in (1, 2, 3)})
            ported.update({f"{theirs}bn{k}": f"{ours}{k}_bn" for k in (1, 2, 3)})
            if block == 0:
                ported.update({f"{theirs}downsample.1": f"{ours}0_conv", f"{theirs}downsample.2": f"{ours}0_bn"})
    for prefix, name in ported.items():
        layer = hub.get_layer(name)
        if isinstance(layer, keras.layers.Conv2D):
            layer.set_weights([np.transpose(state[f"{prefix}.weight"], (2, 3, 1, 0))])
        else:
            layer.set_weights([state[f"{prefix}.{p}"] for p in ("weight", "bias", "running_mean", "running_var")])
    ours = kerasnets.from_timm(str(tmp_path), include_top=False, include_preprocessing=False, input_shape=(SIZE, SIZE, 3))
    x = normalized()
    assert_close_to_scale(ours.predict(x, verbose=0), hub.predict(x, verbose=0))


# --------------------------------------------------------------------------- strict loading


@pytest.mark.parametrize("features_only", [False, True])
@pytest.mark.parametrize("change, words", [
    ("extra", ["'layer9.0.conv1.weight'", "(3, 3)", "expected shape None"]),
    ("missing", ["'layer4.1.bn2.running_var'", "(512,)", "has none"]),
    ("misshaped", ["'layer2.0.conv2.weight'", "(128, 128, 1, 1)", "(128, 128, 3, 3)"]),
])
def test_checkpoint_must_match_tensor_for_tensor(change, words, features_only, tmp_path):
    """One extra, one missing or one mis-shaped tensor fails with that tensor's timm name and both
    shapes, for the whole network and for a features_only one (which skips the head's tensors, and
    only those); num_batches_tracked is ignored, nothing is loaded by position."""
    state = random_state(timm_resnet_shapes("resnet18", 10))
    if change == "extra":
        state["layer9.0.conv1.weight"] = np.zeros((3, 3), np.float32)
    elif change == "missing":
        del state["layer4.1.bn2.running_var"]
    else:
        state["layer2.0.conv2.weight"] = np.zeros((128, 128, 1, 1), np.float32)
    write_timm_folder(tmp_path, "resnet18", state=state)
    with pytest.raises(ValueError) as caught:
        kerasnets.from_timm(str(tmp_path), input_shape=(SIZE, SIZE, 3), features_only=features_only)
    for word in words:
        assert word in str(caught.value)


def test_classifier_other_width_or_no_top(resnet18_folder):
    """include_top=False ignores the checkpoint's fc; another class count gets a zeroed classifier
    and the same backbone (fine-tuning), from from_timm and from the builder's weights="timm:..."."""
    bare = kerasnets.from_timm(str(resnet18_folder), include_top=False, input_shape=(SIZE, SIZE, 3))
    three = kerasnets.from_timm(str(resnet18_folder), classes=3, input_shape=(SIZE, SIZE, 3))
    assert three.output_shape == (None, 3)
    assert not np.any(three.get_layer("predictions").get_weights()[0])
    built = kerasnets.ResNet(18, weights=f"timm:{resnet18_folder}", classes=3, input_shape=(SIZE, SIZE, 3))
    assert not np.any(built.get_layer("predictions").get_weights()[0])
    np.testing.assert_array_equal(bare.get_layer("conv5_block2_2_bn").get_weights()[3],
                                  three.get_layer("conv5_block2_2_bn").get_weights()[3])


#: kerasnets' ResNet-18 block outputs at strides 4..32, by their layer names (what timm's
#: ``features_only`` returns: each stage's last block)
RESNET18_STAGE_ENDS = {"stride_4": "conv2_block2_out", "stride_8": "conv3_block2_out", "stride_16": "conv4_block2_out",
                       "stride_32": "conv5_block2_out"}


def assert_stage_ends(feature_models, whole, stage_ends: dict[str, str], x) -> None:
    """Each ``features_only`` model returns exactly ``whole``'s layers ``stage_ends`` ({output: layer name})."""
    for features in feature_models:
        outputs = features.predict(x, verbose=0)
        assert sorted(outputs) == sorted(stage_ends)
        for stride, layer in stage_ends.items():
            expected = keras.Model(whole.inputs, whole.get_layer(layer).output).predict(x, verbose=0)
            np.testing.assert_array_equal(outputs[stride], expected)


def test_features_only_is_the_whole_networks_stage_ends(resnet18_folder):
    """``from_timm(folder, features_only=True)`` (and the builder's ``features_only=True,
    weights="timm:..."``) returns the stage ends of the whole model built from the same folder: the
    classifier's tensors, absent from the truncated model, are skipped."""
    # include_preprocessing=False: normalized() is already timm-normalized input (the bare networks')
    features = kerasnets.from_timm(str(resnet18_folder), features_only=True, include_preprocessing=False,
                                   input_shape=(SIZE, SIZE, 3))
    built = kerasnets.ResNet(18, features_only=True, weights=f"timm:{resnet18_folder}", input_shape=(SIZE, SIZE, 3))
    whole = kerasnets.from_timm(str(resnet18_folder), include_preprocessing=False, input_shape=(SIZE, SIZE, 3))
    assert_stage_ends((features, built), whole, RESNET18_STAGE_ENDS, normalized())


def test_only_a_model_truncated_at_its_end_may_lack_head_layers():
    """A model that lacks the head conv but has the classifier after it is no include_top=False /
    features_only model: the layer map refuses it instead of skipping the head conv's tensors."""
    from kerasnets.timm.mapping import absent_head

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.BatchNormalization(name="top_bn")(inputs)
    x = keras.layers.Dense(4, name="predictions")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, x)
    table = {"conv_head": "top_conv", "bn2": "top_bn", "classifier": "predictions"}
    with pytest.raises(ValueError, match=r"lacks the head layers of timm modules \['conv_head'\] but has later ones"):
        absent_head(table, model, ("conv_head", "bn2", "classifier"))
    topless = keras.Model(inputs, keras.layers.BatchNormalization(name="top_bn")(
        keras.layers.Conv2D(4, 1, name="top_conv")(inputs)))
    assert absent_head(table, topless, ("conv_head", "bn2", "classifier")) == ("classifier",)
    features = keras.Model(inputs, keras.layers.Conv2D(4, 1, name="stem_conv")(inputs))
    assert absent_head(table, features, ("conv_head", "bn2", "classifier")) == ("conv_head", "bn2", "classifier")


def test_a_head_module_missing_from_the_layer_map_is_named():
    """A family whose head_modules names a module its layer map lacks is a family bug: one ValueError
    naming the module, not a bare KeyError."""
    from kerasnets.timm.mapping import absent_head

    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(4, 1, name="top_conv")(inputs))
    with pytest.raises(ValueError, match=r"head modules \['classifier'\] are not in the family's layer map"):
        absent_head({"conv_head": "top_conv"}, model, ("conv_head", "classifier"))


def test_resnet_family_names_its_architectures_for_an_unknown_one():
    """The ResNet family's head_modules / layer_map / build on a name it does not read: one ValueError
    listing the names it does read."""
    from kerasnets.timm import resnet as timm_resnet

    for call in (lambda: timm_resnet.head_modules("resnet19"), lambda: timm_resnet.build("resnet19")):
        with pytest.raises(ValueError, match=r"'resnet19' is not a ResNet of kerasnets.timm; supported: .*'resnet50d'"):
            call()
    assert timm_resnet.head_modules("resnetv2_50") == ("head.fc",)  # timm's resnetv2.py: self.head = ClassifierHead
    assert timm_resnet.head_modules("resnet50d") == ("fc",)  # timm's resnet.py: self.fc = nn.Linear


def test_a_layer_mapped_from_two_timm_modules_is_refused():
    """The layer map is by name, one timm module per layer: a layer named twice is a family bug."""
    from kerasnets.timm.mapping import expand_layer_map

    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(4, 3, use_bias=False, name="conv1_conv")(inputs))
    with pytest.raises(ValueError, match="layer 'conv1_conv' is mapped from two timm modules, 'conv1' and 'stem.conv'"):
        expand_layer_map({"conv1": "conv1_conv", "stem.conv": "conv1_conv"}, model)


# --------------------------------------------------------------------------- where checkpoints come from


def test_hub_repo_id_implies_the_timm_organisation():
    assert timm_checkpoint.hub_repo_id("resnet50.a1_in1k") == "timm/resnet50.a1_in1k"
    assert timm_checkpoint.hub_repo_id("someone/resnet50.x") == "someone/resnet50.x"


def test_a_hub_name_is_fetched_once_per_training_run(resnet18_folder, monkeypatch):
    """``kerasnets train --weights timm:<hub name>`` locates its checkpoint for the architecture, the eval
    crop, the contract's pretrained_cfg and the weights: in-process, as the engine calls them, the hub
    is asked once (snapshot_download mocked and counted: no network)."""
    import huggingface_hub

    from kerasnets.training.finetune import timm_architecture, timm_eval_options, weights_pretrained_cfg

    asked = []

    def snapshot(repo_id, **kwargs):
        asked.append(repo_id)
        return str(resnet18_folder)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot)
    monkeypatch.setattr(timm_checkpoint, "_SNAPSHOTS", {})  # this process's earlier fetches (other tests) forgotten
    weights = "timm:resnet18.counted"
    model = timm_architecture(weights, SIZE, 3)
    options = timm_eval_options(weights, SIZE, {})
    cfg = weights_pretrained_cfg(weights)
    report = kerasnets.load_pretrained(model, weights, class_names=["a", "b", "c"])
    assert asked == ["timm/resnet18.counted"]
    assert options["resize_first"] and cfg["architecture"] == "resnet18" and report.head_reinitialized




def test_hub_name_offline_says_how_to_pass_a_folder(monkeypatch):
    """A hub name goes to huggingface_hub.snapshot_download as timm/<name>; offline, one ValueError
    that says how to pass a local folder (snapshot_download mocked: no network)."""
    import huggingface_hub

    asked = []

    def offline(repo_id, **kwargs):
        asked.append(repo_id)
        raise huggingface_hub.errors.LocalEntryNotFoundError("offline: cannot reach huggingface.co")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    monkeypatch.setattr(timm_checkpoint, "_SNAPSHOTS", {})  # this process's earlier fetches (other tests) forgotten
    with pytest.raises(ValueError) as caught:
        kerasnets.from_timm("resnet50.a1_in1k")
    assert asked == ["timm/resnet50.a1_in1k"]
    message = str(caught.value)
    assert "timm/resnet50.a1_in1k" in message and "local folder" in message and "from_timm('DIR')" in message


def test_hub_name_reads_the_snapshot_folder(resnet18_folder, monkeypatch):
    """``timm/<name>`` is fetched into huggingface_hub's cache and read from the folder it returns."""
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo_id, **kwargs: str(resnet18_folder))
    monkeypatch.setattr(timm_checkpoint, "_SNAPSHOTS", {})  # this process's earlier fetches (other tests) forgotten
    model = kerasnets.from_timm("timm/resnet18.test", input_shape=(SIZE, SIZE, 3))
    assert model.name == "resnet18" and model.output_shape == (None, 10)


def test_lone_safetensors_needs_the_architecture(resnet18_folder):
    lone = str(resnet18_folder / "model.safetensors")
    with pytest.raises(ValueError, match="architecture='resnet50'"):
        kerasnets.from_timm(lone)
    model = kerasnets.from_timm(lone, architecture="resnet18", classes=10, input_shape=(SIZE, SIZE, 3))
    folder = kerasnets.from_timm(str(resnet18_folder), input_shape=(SIZE, SIZE, 3))
    x = np.random.default_rng(3).uniform(0, 255, (1, SIZE, SIZE, 3)).astype("float32")
    np.testing.assert_allclose(model.predict(x, verbose=0), folder.predict(x, verbose=0), atol=1e-6)


def test_unsupported_architecture_lists_what_is_supported(tmp_path):
    write_timm_folder(tmp_path, "resnet18", config={"architecture": "vit_base_patch16_224"})
    with pytest.raises(ValueError) as caught:
        kerasnets.from_timm(str(tmp_path))
    message = str(caught.value)
    assert "'vit_base_patch16_224' is not supported" in message
    for name in ("resnet18", "resnet26", "resnet152", "resnet50d", "resnet101d", "resnetv2_50", "resnetv2_152"):
        assert name in message


def test_safetensors_reader_dtypes(tmp_path):
    """F32 / F16 / I64 as safetensors.numpy writes them read back exactly; an unknown dtype is
    refused with the supported list."""
    arrays = {"f32": np.arange(6, dtype=np.float32).reshape(2, 3) / 7, "f16": np.float16([1.5, -2.25]),
              "i64": np.int64([3, -4])}
    save_file(arrays, str(tmp_path / "a.safetensors"))
    read = timm_checkpoint.read_safetensors(tmp_path / "a.safetensors")
    for name, array in arrays.items():
        assert read[name].dtype == array.dtype
        np.testing.assert_array_equal(read[name], array)
    _write_raw(tmp_path / "b.safetensors", {"c": {"dtype": "U8X", "shape": [1], "data_offsets": [0, 1]}}, b"\0")
    with pytest.raises(ValueError, match="'U8X'; supported: .*'BF16'"):
        timm_checkpoint.read_safetensors(tmp_path / "b.safetensors")


def _write_raw(path, header: dict, data: bytes) -> None:
    """A safetensors file byte by byte: 8-byte little-endian header length, JSON header, data."""
    encoded = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + data)


def test_safetensors_reader_bf16(tmp_path):
    """BF16 (written by hand: numpy has no bfloat16) becomes float32 exactly."""
    values = np.float32([1.0, -0.15625, 393216.0])  # exactly representable in bfloat16
    _write_raw(tmp_path / "b.safetensors", {"b": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 6]}},
               (values.view(np.uint32) >> 16).astype("<u2").tobytes())
    read = timm_checkpoint.read_safetensors(tmp_path / "b.safetensors")
    assert read["b"].dtype == np.float32
    np.testing.assert_array_equal(read["b"], values)


# --------------------------------------------------------------------------- the builders' weights="timm:..."


def test_builder_weights_timm_is_from_timm(resnet18_folder):
    """``ResNet(18, weights="timm:<folder>")`` (the builder's bare network) equals from_timm's; a
    builder whose preprocessing or layout is not timm's is refused, naming the difference."""
    built = kerasnets.ResNet(18, weights=f"timm:{resnet18_folder}", classes=10, input_shape=(SIZE, SIZE, 3))
    loaded = kerasnets.from_timm(str(resnet18_folder), include_preprocessing=False, input_shape=(SIZE, SIZE, 3))
    x = normalized()
    np.testing.assert_array_equal(built.predict(x, verbose=0), loaded.predict(x, verbose=0))
    with pytest.raises(ValueError, match="CaffePreprocessing.*mean=.*preprocessing=\\(mean, std\\)"):
        kerasnets.ResNet(18, weights=f"timm:{resnet18_folder}", classes=10, input_shape=(SIZE, SIZE, 3),
                         include_preprocessing=True)
    with pytest.raises(ValueError, match="not timm's 'resnet18': its layer 'conv1_bn' should be .*'epsilon': 1e-05"):
        kerasnets.ResNet(18, weights=f"timm:{resnet18_folder}", classes=10, input_shape=(SIZE, SIZE, 3),
                         bn_epsilon=1.001e-5)  # the same weight shapes, another computation


# --------------------------------------------------------------------------- the contract


def test_contract_travels_from_from_timm_to_the_keras_file(resnet18_folder, tmp_path):
    """from_timm attaches timm's preprocessing; save_keras writes it; the loaded model computes the same."""
    model = kerasnets.from_timm(str(resnet18_folder), input_shape=(SIZE, SIZE, 3))
    path = serving.save_keras(model, str(tmp_path / "m.keras"))
    contract = serving.read_contract(path)
    cfg = contract.pretrained_cfg
    assert (cfg["mean"], cfg["std"], cfg["crop_pct"], cfg["interpolation"]) == (list(MEAN), list(STD), 0.95, "bicubic")
    assert cfg["architecture"] == "resnet18" and cfg["input_size"] == [3, 224, 224]
    assert contract.resize_method == "bicubic" and contract.resize_first and contract.image_size == (SIZE, SIZE)
    assert contract.crop_padding == math.floor(SIZE / 0.95) - SIZE == 3
    x = np.random.default_rng(4).uniform(0, 255, (1, SIZE, SIZE, 3)).astype("float32")
    np.testing.assert_allclose(keras.saving.load_model(path).predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-6)


@pytest.mark.parametrize("every", [2, 1])
def test_eval_crop_is_timms_resize_then_center_crop(every):
    """A timm model's contract crops as timm's eval transform: ``Resize(floor(224 / crop_pct))`` of the
    short side (PIL bicubic, antialiased when it shrinks) then ``CenterCrop(224)`` (written here with
    PIL as torchvision does it), on a real photograph made smaller (214 x 320: timm enlarges it) or
    kept (427 x 640: timm shrinks it). Per-pixel differences are PIL's uint8 rounding (mean < 0.5 of
    255), far below a one-pixel shift of the window (mean > 5)."""
    import tensorflow as tf
    from PIL import Image
    from sklearn.datasets import load_sample_images

    from kerasnets.data import transforms

    photo = load_sample_images().images[0][::every, ::every]
    size = 224
    contract = serving.timm_contract((size, size, 3), PRETRAINED_CFG, (), "resnet50")
    scale = math.floor(size / PRETRAINED_CFG["crop_pct"])
    height, width = photo.shape[:2]
    resized = np.asarray(Image.fromarray(photo).resize((int(scale * width / height), scale), Image.BICUBIC), np.float32)
    top, left = int(round((resized.shape[0] - size) / 2.0)), int(round((resized.shape[1] - size) / 2.0))
    timm_crop = resized[top:top + size, left:left + size]
    jpeg = tf.io.encode_png(photo)  # lossless: the bytes path decodes the same pixels
    for source in (tf.constant(photo), jpeg):
        ours = transforms.center_crop(source, size, contract.crop_padding, method=contract.resize_method,
                                      resize_first=contract.resize_first).numpy()
        assert np.abs(ours - timm_crop).mean() < 0.5
    shifted = resized[top + 1:top + 1 + size, left + 1:left + 1 + size]
    assert np.abs(shifted - timm_crop).mean() > 5


def test_timms_resize_first_crop_is_for_square_sizes_only():
    """timm resizes first then center-crops a square; a non-square model's contract crops the same
    fraction of the short side as a window instead (resize_first off), and the resize-first crop
    refuses a non-square size rather than cropping something timm never does."""
    from kerasnets.data import transforms

    contract = serving.timm_contract((SIZE, 96, 3), PRETRAINED_CFG, (), "resnet50")
    assert not contract.resize_first and contract.image_size == (SIZE, 96)
    assert contract.crop_padding == math.floor(SIZE / 0.95) - SIZE  # timm's crop_pct at the short side
    image = np.zeros((80, 120, 3), np.uint8)
    with pytest.raises(ValueError, match=r"resize_first \(timm's eval crop\) needs a square size, got \(64, 96\)"):
        transforms.center_crop(image, (SIZE, 96), contract.crop_padding, resize_first=True)
    assert tuple(transforms.center_crop(image, (SIZE, 96), contract.crop_padding).shape) == (SIZE, 96, 3)


def test_channels_first_is_refused_where_timms_contract_is_made(resnet18_folder):
    """The contract and the serving pipeline feed (batch, height, width, RGB) images: under
    channels_first, from_timm with timm's preprocessing inside is one ValueError naming the way out;
    the bare network (no contract) loads and computes what the channels-last one does."""
    last = kerasnets.from_timm(str(resnet18_folder), include_preprocessing=False, input_shape=(SIZE, SIZE, 3))
    x = normalized()
    keras.config.set_image_data_format("channels_first")
    try:
        with pytest.raises(ValueError, match=r"needs keras.config.image_data_format\(\) 'channels_last'.*"
                                             r"set_image_data_format\('channels_last'\)"):
            kerasnets.from_timm(str(resnet18_folder), input_shape=(3, SIZE, SIZE))
        first = kerasnets.from_timm(str(resnet18_folder), include_preprocessing=False, input_shape=(3, SIZE, SIZE))
        logits = first.predict(np.transpose(x, (0, 3, 1, 2)), verbose=0)
    finally:
        keras.config.set_image_data_format("channels_last")
    np.testing.assert_allclose(logits, last.predict(x, verbose=0), rtol=0, atol=1e-6)


def test_finetune_from_a_timm_checkpoint_serves_with_timms_preprocessing(photo_folder, tmp_path):
    """``kerasnets train recipes/finetune.py --data photos --weights timm:<folder>`` fine-tunes timm's
    architecture; the run evaluates with timm's crop and interpolation and its exports carry them."""
    checkpoint = tmp_path / "resnet18.timm"
    write_timm_folder(checkpoint, "resnet18", classes=1000)
    # --image-size 64 and --batch-size 8: small and quick (48 train photos make 6 steps); --epochs 2:
    # one epoch per phase (head, top_blocks); --export keras saved_model: the contract's carriers
    # (TFLite is covered elsewhere)
    proc = subprocess.run(kerasnets_cmd("train", os.path.join(RECIPES, "finetune.py"), "--data", str(photo_folder),
                                        "--weights", f"timm:{checkpoint}", "--image-size", str(SIZE), "--batch-size",
                                        "8", "--epochs", "2", "--export", "keras", "saved_model", "--output",
                                        str(tmp_path / "runs")),
                          env=ENV, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "runs" / "finetune"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["weights_report"]["head_reinitialized"] is True  # 2 classes, not timm's 1000
    assert [p["name"] for p in summary["phases"]] == ["head", "top_blocks"]
    for contract in (serving.read_contract(str(run / "model.keras")), serving.read_contract(str(run / "saved_model"))):
        assert contract.crop_padding == 3 and contract.resize_method == "bicubic" and contract.resize_first
        assert contract.pretrained_cfg["architecture"] == "resnet18"
        assert (contract.pretrained_cfg["mean"], contract.pretrained_cfg["crop_pct"]) == (list(MEAN), 0.95)
    model = keras.saving.load_model(run / "model.keras")
    assert [layer.name for layer in model.layers[1:3]] == ["rescaling", "normalization"]
    assert np.allclose(model.get_layer("normalization").mean.numpy().ravel(), MEAN)


@pytest.mark.parametrize("build", [lambda **kw: kerasnets.ResNet(18, **kw), lambda **kw: kerasnets.EfficientNet(0, **kw)])
def test_mean_std_preprocessing_on_other_than_rgb_is_one_clear_error(build):
    """A (mean, std) pair is per RGB channel: a 1-channel model with it in the model is refused by the
    shared factory, for every family, with the way out (not a Keras shape error from Normalization)."""
    with pytest.raises(ValueError, match=r"normalizes RGB input \(3 channels\), got 1 channels"):
        build(input_shape=(64, 64, 1), include_top=False, include_preprocessing=True,
              preprocessing=((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)))
