"""Bad input gives clear errors; weights files and the ImageNet path load what they should."""

import urllib.error

import h5py
import keras
import numpy as np
import pytest
from keras.src.legacy.saving import legacy_h5_format
from keras.src.utils import file_utils

import kerasnets


@pytest.mark.parametrize("call,message", [
    (lambda: kerasnets.ResNet(42), r"depth must be one of \[18, 26, 34, 50, 101, 152\]"),
    (lambda: kerasnets.ResNet(50, "v3"), r"variant must be one of \['d', 'v1', 'v1.5', 'v2'\]"),
    (lambda: kerasnets.ResNet(50, stem="huge"), "stem must be '7x7' or 'deep'"),
    (lambda: kerasnets.ResNet(50, wings=3), "unknown ResNet variant keywords"),
    (lambda: kerasnets.EfficientNet(-1), "phi must be an integer 0..7"),
    (lambda: kerasnets.EfficientNet(1.5), "phi must be an integer 0..7"),
    (lambda: kerasnets.EfficientNet(8), "phi must be an integer 0..7"),
    (lambda: kerasnets.EfficientNet(1, coefficients=(1.2, 0.9, 1.15)), "each >= 1"),
    (lambda: kerasnets.EfficientNet(1, coefficients=(1.2, 1.1)), "three numbers"),
    (lambda: kerasnets.EfficientNet(1, coefficients="abc"), "three numbers"),
    (lambda: kerasnets.EfficientNet(0, input_shape=(224, 224)), "rank 3"),
    (lambda: kerasnets.EfficientNet(0, input_shape=(16, 16, 3)), ">= 32"),
    (lambda: kerasnets.ResNet(50, input_shape=(64, 31, 3)), ">= 32"),
    (lambda: kerasnets.EfficientNet(0, weights="imagenet", classes=10), "needs classes=1000"),
    (lambda: kerasnets.ResNet(50, "v1", weights="imagenet", classes=10), "needs classes=1000"),
    (lambda: kerasnets.ResNet(50, "v1.5", weights="imagenet"), "variant='v1'"),
    (lambda: kerasnets.ResNet(18, "v1", weights="imagenet"), "depth 50, 101 or 152"),
    (lambda: kerasnets.ResNet(50, "v1", weights="imagenet", avg_down=True), r"variant='v1' with \{'avg_down': True\}"),
    (lambda: kerasnets.EfficientNetLite0(weights="imagenet"), "B0..B7"),
    (lambda: kerasnets.EfficientNet(0, weights="imagenet", input_shape=(224, 224, 1), include_top=False), "3 input channels"),
    (lambda: kerasnets.EfficientNet(0, weights="/no/such/file.weights.h5"), "no file at"),
    (lambda: kerasnets.EfficientNet(0, pooling="mean", include_top=False), r"pooling must be one of"),
    (lambda: kerasnets.EfficientNetLite(5), "Lite index must be an integer 0..4"),
    (lambda: kerasnets.build("resnet51"), "unknown preset"),
])
def test_bad_arguments_raise_value_error_naming_allowed_values(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_weights_file_round_trip_and_wrong_architecture(tmp_path):
    model = kerasnets.ResNet(18, input_shape=(32, 32, 3), classes=3)
    path = tmp_path / "r18.weights.h5"
    model.save_weights(path)
    again = kerasnets.ResNet(18, input_shape=(32, 32, 3), classes=3, weights=str(path))
    x = np.random.RandomState(0).uniform(0, 255, (1, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(again(x)), np.asarray(model(x)))
    with pytest.raises(ValueError, match="another architecture"):
        kerasnets.ResNet(34, input_shape=(32, 32, 3), classes=3, weights=str(path))


def test_a_keras_applications_weights_file_loads_into_its_twin(tmp_path):
    """keras.applications names its ResNet-50 v1 "resnet50", the name of kerasnets' v1.5 preset: a
    file saved from it must still load into ResNet(50, "v1") (its arrays, not its name, decide), and
    compute what keras.applications computes. 64 px: the outputs, not the resolution, are tested."""
    twin = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3), classes=5)
    path = tmp_path / "keras_resnet50.weights.h5"
    twin.save_weights(path)
    ours = kerasnets.ResNet(50, "v1", weights=str(path), input_shape=(64, 64, 3), classes=5)
    x = np.random.RandomState(0).uniform(-120, 130, (2, 64, 64, 3)).astype("float32")  # caffe-preprocessed range
    np.testing.assert_allclose(np.asarray(ours(x)), np.asarray(twin(x)), atol=1e-5)


def test_imagenet_offline_error_says_how_to_use_a_local_file(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(file_utils, "get_file", offline)
    with pytest.raises(RuntimeError, match=r"weights='/path/model.weights.h5'"):
        kerasnets.EfficientNet(0, weights="imagenet", include_top=False)


def test_imagenet_path_transfers_the_keras_applications_file(tmp_path, monkeypatch, images):
    """The 'imagenet' route end to end, with a stand-in for the downloaded file (tests stay offline)."""
    donor = keras.applications.EfficientNetB0(weights=None)
    norm = next(layer for layer in donor.layers if isinstance(layer, keras.layers.Normalization))
    norm.set_weights([np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225]), np.array(0)])
    path = tmp_path / "efficientnetb0.h5"
    with h5py.File(path, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, donor)
    monkeypatch.setattr(file_utils, "get_file", lambda *a, **k: str(path))
    reference = keras.applications.EfficientNetB0(weights="imagenet", classifier_activation=None)
    ours = kerasnets.EfficientNet(0, weights="imagenet", classifier_activation=None)
    diff = np.abs(np.asarray(reference(images, training=False)) - np.asarray(ours(images, training=False)))
    assert diff.max() <= 1e-5


@pytest.mark.parametrize("saved,preset", [("resnet50", "resnet50"), ("resnet50_v1", "resnet50_v1"),
                                          ("resnet101d", "resnet101d"), ("resnet50_v1_5", "resnet50"),
                                          ("resnet18_d", "resnet18d")])
def test_a_weights_file_names_the_preset_it_was_saved_from(saved, preset):
    """Models are named as their preset (older files: resnet50_v1_5, resnet50_d): the hint for a
    file that does not fit names the preset that rebuilds its architecture."""
    from kerasnets.models.pretrained import _preset_hint

    assert _preset_hint(saved).endswith(f"--model {preset})")


def test_features_only_loads_a_file_of_the_whole_network_or_of_a_backbone(tmp_path):
    """A user's fine-tuned classifier (10 classes, saved with save_weights) becomes a detection
    backbone: the feature maps equal that classifier's intermediate outputs. A file saved from a
    features_only model loads back too."""
    shape = (64, 64, 3)  # small input: the check is which weights land where, not the resolution
    rng = np.random.RandomState(4)
    trained = kerasnets.EfficientNet(0, input_shape=shape, classes=10)
    trained.set_weights([w + rng.normal(0, 0.05, w.shape).astype(w.dtype) for w in trained.get_weights()])
    trained.get_layer("normalization").finalize_state()
    trained.save_weights(tmp_path / "classifier.weights.h5")
    ends = {"stride_4": "block2b_add", "stride_8": "block3b_add", "stride_16": "block5c_add",
            "stride_32": "block7a_project_bn"}
    probe = keras.Model(trained.input, {k: trained.get_layer(v).output for k, v in ends.items()})
    x = rng.uniform(0, 255, (2, *shape)).astype("float32")
    expected = {k: np.asarray(v) for k, v in probe(x, training=False).items()}
    features = kerasnets.EfficientNet(0, features_only=True, input_shape=shape,
                                      weights=str(tmp_path / "classifier.weights.h5"))
    features.save_weights(tmp_path / "features.weights.h5")
    again = kerasnets.EfficientNet(0, features_only=True, input_shape=shape, weights=str(tmp_path / "features.weights.h5"))
    for model in (features, again):
        got = model(x, training=False)
        for key, value in expected.items():
            np.testing.assert_allclose(np.asarray(got[key]), value, rtol=1e-5, atol=1e-5 * np.abs(value).max(),
                                       err_msg=key)
    with pytest.raises(ValueError, match="classifier.weights.h5.*another architecture"):
        kerasnets.EfficientNet(1, features_only=True, input_shape=shape, weights=str(tmp_path / "classifier.weights.h5"))
