"""keras.applications' own test battery, run unchanged on kerasnets' builders (issue #19, "Exactness").

Keras ships the battery in its wheel (keras/src/applications/applications_test.py, ``ApplicationsTest``):
six test methods, each parametrized by absl over ``MODEL_LIST`` x ("channels_first", "channels_last").
Here the same test functions (keras' code object, taken from its parametrized methods' ``__wrapped__``)
are parametrized again over the battery's own entries for the models and methods of :data:`RUNS`, with
keras' builder swapped for kerasnets' alias of the same name (``kerasnets.EfficientNetV2B0`` for
``keras.applications.EfficientNetV2B0``; ``last_dim`` and the preprocessing module stay keras').
keras' own models are switched off in the subclass. What the battery checks: 1- and 4-channel
inputs of any size, a custom input size and a custom input tensor (both data formats, built
symbolically, as keras' battery builds them), ``pooling="max"``, and the classifier's
``softmax``. What it found: every channels_first build failed (``input_shape`` read channels-last,
BN axes and channel counts from the last axis); the builders now follow the data format
(kerasnets/layers/data_format.py), and the last test here checks that layer by layer against keras.

Note: ``kerasnets.ResNet50`` is ResNet v1.5 (torchvision's layout), not keras' v1 (``ResNet(50, "v1")``);
the battery checks what both share (shapes, API), and runs the alias a keras.applications user calls.

Skipped: ``test_application_base`` for every model: it builds ``weights="imagenet"`` (a download) and
classifies elephant.jpg fetched from storage.googleapis.com; tests never touch the network
(test_v2_models.py checks ``weights="imagenet"`` on a stand-in file). keras skips its channels_first
half on a CPU anyway.
"""

import functools

import pytest
from absl.testing import parameterized
from keras.src.applications import applications_test as battery

from kerasnets.presets import ALIASES

OFFLINE = ("needs the ImageNet weights (download) and elephant.jpg from storage.googleapis.com; "
           "tests never touch the network")


def _keras_test_functions():
    """keras' battery methods by name, unparametrized (absl's generated methods wrap them)."""
    found = {}
    for name in dir(battery.ApplicationsTest):
        inner = getattr(getattr(battery.ApplicationsTest, name), "__wrapped__", None)
        if name.startswith("test_") and inner is not None:
            found[inner.__name__] = inner
    return found


def _offline(function):
    """``function`` skipped with :data:`OFFLINE` (a wrapper: keras' function keeps its own marks)."""

    @functools.wraps(function)
    def skipped(self, *args):
        return function(self, *args)

    return pytest.mark.skip(reason=OFFLINE)(skipped)


KERAS_TESTS = _keras_test_functions()
NEEDS_DOWNLOAD = {"test_application_base"}
#: the cheapest method: one headless build per data format
CHEAPEST = "test_application_pooling"
#: model -> the battery methods run on it (None: all). Every method on V2-B0 and ResNet50V2; the
#: cheapest on the other V2 models and on V1 B0 and ResNet50 (kerasnets.ResNet50 is v1.5; every channels_first
#: path of V1, Normalization variables and TF-SAME ZeroPadding2D included, is built by the cheapest
#: method). Measured on the 2 shared cores (load ~3.5), all six methods x both formats: B0 12 s,
#: ResNet50 14 s, V2-B0 14 s, ResNet50V2 9 s, V2-B1..B3 19-26 s, V2-S 36 s, V2-M 54 s, V2-L 92 s,
#: ResNet101V2/152V2 21/30 s, B1-B7 15-62 s, ResNet101/152 24/34 s: 12 minutes for the 21 models
#: both packages build (all passed). V1 B1-B7 and ResNet101/152 are left out: the code paths of B0
#: and ResNet50, whose params and outputs test_models.py checks against keras.applications.
#: This module as RUNS has it: 44 passed + 24 skipped in 90 s on the 2 cores at load ~5 (V2-L 12 s, V2-M 10 s).
RUNS = {"EfficientNetV2B0": None, "ResNet50V2": None,
        **{name: (CHEAPEST,) for name in ("EfficientNetV2B1", "EfficientNetV2B2", "EfficientNetV2B3", "EfficientNetV2S",
                                          "EfficientNetV2M", "EfficientNetV2L", "ResNet101V2", "ResNet152V2",
                                          "EfficientNetB0", "ResNet50")}}

def parameters(method):
    """The battery's own parameters (name, builder, last_dim, module, data format) of the models
    :data:`RUNS` runs ``method`` on, with kerasnets' builder in place of keras'."""
    return [(name, ALIASES[app.__name__], *rest) for name, app, *rest in battery.test_parameters
            if app.__name__ in RUNS and (RUNS[app.__name__] is None or method in RUNS[app.__name__]
                                         or method in NEEDS_DOWNLOAD)]


#: keras' ``ApplicationsTest`` over kerasnets' builders (see the module docstring); made by absl's
#: metaclass, which expands each ``named_parameters`` into one method per model and data format
KerasnetsApplicationsTest = type(battery.ApplicationsTest)(
    "KerasnetsApplicationsTest", (battery.ApplicationsTest,),
    {"__module__": __name__, "__doc__": "keras' ApplicationsTest over kerasnets' builders.",
     **{name: parameterized.named_parameters(parameters(name))(_offline(function) if name in NEEDS_DOWNLOAD
                                                                else function)
        for name, function in KERAS_TESTS.items()}})

# keras' own parametrized methods (its models) are inherited: None is not a test, so they are not collected
for _inherited in [name for name in dir(KerasnetsApplicationsTest)
                   if name.startswith("test") and name not in vars(KerasnetsApplicationsTest)]:
    setattr(KerasnetsApplicationsTest, _inherited, None)


def test_the_battery_runs_what_runs_says():
    """keras' six test methods over the models of :data:`RUNS`, in both data formats, and RUNS names
    only models of keras' battery that kerasnets builds: a keras upgrade that renamed its builders or
    methods would otherwise shrink the battery silently."""
    assert set(RUNS) <= {entry[0].__name__ for entry in battery.MODEL_LIST} & set(ALIASES)
    assert len(KERAS_TESTS) == 6 and CHEAPEST in KERAS_TESTS
    ran = {name for name, method in vars(KerasnetsApplicationsTest).items() if name.startswith("test_") and method}
    expected = {f"{method}_{model}_{data_format}" for model, methods in RUNS.items()
                for method in (KERAS_TESTS if methods is None else {*methods, *NEEDS_DOWNLOAD})
                for data_format in ("channels_first", "channels_last")}
    assert ran == expected and len(ran) == 2 * (2 * 6 + 10 * 2)


@pytest.mark.parametrize("alias", ["EfficientNetB0", "EfficientNetV2B0", "ResNet50V2"])
def test_channels_first_models_match_the_keras_twin_layer_by_layer(alias):
    """The battery's channels_first half checks only the last feature map's width. Here every layer
    of kerasnets' model built under channels_first has the name and output shape of keras.applications'
    twin built the same way, and the twin's weights transfer (transfer_weights compares each weighted
    layer's data_format, BN and Normalization axes, padding and strides). B0 covers the TF-SAME
    ZeroPadding2D and the Normalization weights, V2-B0 Fused-MBConv and squeeze-excite, ResNet50V2 the
    pre-activation blocks. Built symbolically: names, shapes and weights need no run."""
    import keras

    import kerasnets

    format_before = keras.config.image_data_format()
    keras.config.set_image_data_format("channels_first")
    try:
        shape = (3, 64, 64)
        ours = getattr(kerasnets, alias)(input_shape=shape, include_top=False)
        twin = getattr(keras.applications, alias)(weights=None, input_shape=shape, include_top=False)
        kerasnets.transfer_weights(twin, ours)
    finally:
        keras.config.set_image_data_format(format_before)
    assert ours.output.shape[1] == twin.output.shape[1] and ours.output.shape[2:] == (2, 2)
    twin_shapes = {layer.name: layer.output.shape for layer in twin.layers}
    our_shapes = {layer.name: layer.output.shape for layer in ours.layers}
    # by design, in both formats: SE squeezes with keepdims=True where keras pools then reshapes
    # ("*_se_reshape"); ResNetV2's 1x1 max-pool shortcuts are named after their block, keras' are not
    assert all(name.endswith("_se_reshape") or name.startswith("max_pooling2d") for name in set(twin_shapes) - set(our_shapes))
    shared = [name for name in twin_shapes if name in our_shapes and not name.endswith("_se_squeeze")]
    assert len(shared) > 0.8 * len(twin_shapes)
    assert {name: our_shapes[name] for name in shared} == {name: twin_shapes[name] for name in shared}
