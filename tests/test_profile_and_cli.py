"""The FLOPs counter against a hand count, and the ``kerasnets info`` table."""

import keras
import pytest

import kerasnets
from kerasnets import cli


def test_profile_matches_hand_count():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)         # 8*8 * 4 * 3*3*3 = 6912 MACs, 112 params
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)        # 8*8 * 4 * 3*3   = 2304 MACs, 40 params
    x = keras.layers.Conv2D(6, 1, groups=2)(x)                    # 8*8 * 6 * 1*1*4/2 = 768 MACs, 18 params
    x = keras.layers.BatchNormalization()(x)                      # 0 MACs, 12 trainable + 12 moving
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(5)(x)                            # 6*5 = 30 MACs, 35 params
    stats = kerasnets.profile(keras.Model(inputs, outputs))
    assert stats == {"params": 112 + 40 + 18 + 24 + 35, "trainable_params": 112 + 40 + 18 + 12 + 35,
                     "flops": 6912 + 2304 + 768 + 30, "input_size": (8, 8)}


def test_profile_of_variable_size_model_needs_image_size():
    model = kerasnets.ResNet(18, include_top=False, input_shape=(None, None, 3))
    with pytest.raises(ValueError, match="image_size"):
        kerasnets.profile(model)
    fixed = kerasnets.profile(kerasnets.ResNet(18, include_top=False, input_shape=(64, 64, 3)))
    assert kerasnets.profile(model, image_size=64)["flops"] == fixed["flops"]


def test_b0_and_resnet50_flops_match_the_papers():
    # EfficientNet paper Table 2: B0 0.39B FLOPs; ResNet-50 (v1.5, torchvision/timm): 4.1 GMACs.
    assert round(kerasnets.profile(kerasnets.EfficientNetB0())["flops"] / 1e9, 2) == 0.39
    assert round(kerasnets.profile(kerasnets.ResNet50())["flops"] / 1e9, 1) == 4.1


def test_info_prints_a_row_per_requested_preset(capsys):
    assert cli.main(["info", "efficientnetb0"]) == 0
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if "efficientnetb0" in row)
    assert "5,330,571" in line  # keras.applications' EfficientNetB0 parameter count
    gflops = float(next(cell for cell in line.replace("|", " ").split() if cell.endswith("G"))[:-1])
    assert abs(gflops - 0.39) <= 0.005  # the paper's Table 2: 0.39B FLOPs
    assert cli.main(["info", "nosuchnet"]) == 2
    assert "allowed:" in capsys.readouterr().err


def test_info_table_covers_every_preset():
    assert set(kerasnets.PRESETS) >= {"resnet18", "resnet50_v1", "resnet50d", "efficientnetb7", "efficientnet-lite4"}
    rows = cli.preset_table(["resnet18", "efficientnet-lite0"])
    assert [row["input_size"] for row in rows] == [224, 224]
    # torchvision's resnet18 has 11,689,512 parameters; Keras also counts BN's moving mean and
    # variance (2 x 4,800 channels), which torchvision keeps as buffers
    assert rows[0]["params"] == 11_689_512 + 2 * 4_800


def test_profile_counts_separable_transposed_and_nested_layers_by_hand():
    """Multiply-adds counted by hand for one 8x8x3 image:
    SeparableConv2D(4, 3x3, same): depthwise 8*8*3*9 = 1728 + pointwise 8*8*3*4 = 768;
    Conv2DTranspose(2, 2x2, stride 2): each of 8*8 input pixels scatters 2*2*4*2 = 2048;
    a nested model's Conv2D(5, 1x1) on 16x16x2: 16*16*2*5 = 2560; Dense(3) after pooling: 5*3 = 15."""
    inner = keras.Sequential([keras.Input((16, 16, 2)), keras.layers.Conv2D(5, 1)], name="inner")
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.SeparableConv2D(4, 3, padding="same")(inputs)
    x = keras.layers.Conv2DTranspose(2, 2, strides=2)(x)
    x = keras.layers.GlobalAveragePooling2D()(inner(x))
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    assert kerasnets.profile(model)["flops"] == 1728 + 768 + 2048 + 2560 + 15


def test_profile_counts_a_backbone_built_for_any_size_at_the_size_it_is_called():
    """A B0 backbone with a (None, None, 3) input inside a classifier at 224 px, plus Dense(1000):
    the same multiply-adds as EfficientNetB0 itself (the paper's 0.39B)."""
    backbone = kerasnets.EfficientNet(0, include_top=False, input_shape=(None, None, 3), pooling="avg")
    inputs = keras.Input((224, 224, 3))
    model = keras.Model(inputs, keras.layers.Dense(1000)(backbone(inputs)))
    assert kerasnets.profile(model)["flops"] == kerasnets.profile(kerasnets.EfficientNetB0())["flops"]
