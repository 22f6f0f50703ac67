"""Export for serving and mobile: SavedModel (with an encoded-image signature) and LiteRT/TFLite
(fp32, float16, dynamic-range, full int8), each verified against the Keras model.

Both go through Keras 3's export machinery (``ExportArchive`` / ``model.export``): the TFLite file is
converted from a SavedModel written by ``model.export`` (``TFLiteConverter.from_concrete_functions``
produced NaN outputs on this stack) and run back with ``ai_edge_litert``'s interpreter.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
import weakref
from collections.abc import Iterable, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from kerasnets import int8
from kerasnets import storage
from kerasnets.storage import atomic_write_text
from kerasnets.data.pipeline import default_crop_padding
from kerasnets.data.headers import DEFAULT_MAX_PIXELS, check_max_pixels
from kerasnets.data.transforms import center_crop, check_encoded
from kerasnets.models.weights import transfer_weights
from kerasnets.serving import PreprocessingContract, attached_contract, write_contract_file, write_labels

__all__ = ["QUANTIZATIONS", "saved_model", "tflite", "run_tflite", "export_run", "center_softmax_classifier",
           "float32_model", "ExportError"]

log = logging.getLogger("kerasnets.export")

QUANTIZATIONS = ("none", "float16", "dynamic", "int8")
IO_DTYPES = int8.IO_DTYPES
#: Maximum absolute difference on probabilities accepted per quantization (issue contract).
TOLERANCE = {"none": 1e-4, "float16": 1e-2}


class ExportError(RuntimeError):
    """A conversion failed or its output does not match the Keras model."""


def _input_size(model: keras.Model) -> tuple[int, int, int]:
    shape = tuple(model.input_shape[1:])
    if len(shape) != 3 or None in shape:
        raise ValueError(
            f"export needs a model with a fixed (height, width, channels) input, got {model.input_shape}; "
            "rebuild it with input_shape=(size, size, 3)"
        )
    return shape  # type: ignore[return-value]


def float32_model(model: keras.Model) -> keras.Model:
    """``model`` itself when it computes in float32, else a float32 copy with the same weights.

    A model trained under mixed_bfloat16 / mixed_float16 keeps float32 variables but computes in
    16 bits; servers and phones run float32 (TFLite quantizes from float32), so the SavedModel and
    TFLite exports are of the float32 computation, and are verified against it. Nested models are
    copied layer by layer; weights are copied by structure (:func:`transfer_weights`, which also
    refreshes Normalization's state). A model that cannot be cloned (subclassed, custom layers
    without ``dtype``) is returned as it is, with a warning."""
    if all(getattr(layer, "dtype_policy", None) is None or layer.dtype_policy.compute_dtype == "float32"
           for layer in model._flatten_layers(include_self=False, recursive=True)):
        return model

    def as_float32(layer):
        return layer.__class__.from_config({**layer.get_config(), "dtype": "float32"})

    try:
        copy = keras.models.clone_model(model, clone_function=as_float32, recursive=True)
    except (TypeError, ValueError) as error:
        log.warning("exporting %r with its mixed-precision computation (a float32 copy failed: %s)", model.name, error)
        return model
    return transfer_weights(model, copy)


_FORWARD: "weakref.WeakKeyDictionary[keras.Model, Any]" = weakref.WeakKeyDictionary()


def _forward(model: keras.Model):
    """The model's inference as one ``tf.function`` over float32 ``[batch, H, W, C]``, traced once
    per model and shared by the SavedModel's endpoints and by every verification (tracing an
    EfficientNet costs seconds; Keras' ``predict`` would trace it again)."""
    if model not in _FORWARD:
        height, width, channels = _input_size(model)
        reference = weakref.ref(model)  # the cache must not keep the model alive

        @tf.function(input_signature=[tf.TensorSpec([None, height, width, channels], tf.float32)])
        def forward(images):
            return reference()(images, training=False)

        _FORWARD[model] = forward
    return _FORWARD[model]


def _keras_outputs(model: keras.Model, images: np.ndarray, batch: int = 64) -> np.ndarray:
    """The Keras model's outputs on ``images`` (float32), in batches, called eagerly: the reference
    that exports are verified against shares no traced graph with them (and costs no tracing)."""
    return np.concatenate([np.asarray(model(tf.constant(images[i:i + batch], tf.float32), training=False), np.float32)
                           for i in range(0, len(images), batch)])


def _outputs_probabilities(model: keras.Model) -> bool:
    last = model.layers[-1]
    return getattr(last, "activation", None) is keras.activations.softmax or (
        hasattr(last, "get_config") and last.get_config().get("activation") == "softmax"
    )


def center_softmax_classifier(model: keras.Model) -> keras.Model | None:
    """A copy of ``model`` whose final softmax Dense has zero-mean columns, or None if there is none.

    Softmax is shift invariant, so subtracting each kernel row's mean over the classes (and the bias
    mean) changes every logit of an example by the same amount and leaves the probabilities unchanged.
    Training leaves an unpenalised common component in the logits (seen up to +1400 on a digits
    model whose class logits differ by a few units); full-int8 quantizes the logits per tensor, so that
    common range swamps the differences. Centering removes it before calibration.
    """
    last = model.layers[-1]
    if not isinstance(last, keras.layers.Dense) or not _outputs_probabilities(model) or not last.use_bias:
        return None
    copy = transfer_weights(model, keras.models.clone_model(model))  # also refreshes Normalization's state
    kernel, bias = copy.layers[-1].get_weights()
    copy.layers[-1].set_weights([kernel - kernel.mean(axis=1, keepdims=True), bias - bias.mean()])
    return copy


def _prepare_target(path: str, overwrite: bool) -> None:
    if storage.exists(path) and not overwrite:
        raise FileExistsError(f"{path!r} already exists; pass overwrite=True (CLI: --overwrite) to replace it")
    storage.makedirs(os.path.dirname(storage.absolute(path)) or ".")


def _contract(model: keras.Model, contract: PreprocessingContract | None, class_names: Sequence[str] | None,
              crop_padding: int | None, resize_method: str | None) -> PreprocessingContract:
    """The serving contract: the stored one (or the default eval: :func:`default_crop_padding`,
    bicubic) with explicit arguments taking precedence."""
    height, width, channels = _input_size(model)
    classes = int(model.output_shape[-1])
    base = contract or PreprocessingContract((height, width), channels, "bicubic", default_crop_padding(min(height, width)),
                                             tuple(str(i) for i in range(classes)))
    names = tuple(str(n) for n in class_names) if class_names is not None else base.class_names
    if len(names) != classes:
        raise ValueError(f"{len(names)} class names for a model with {classes} outputs")
    if base.image_size != (height, width):
        raise ValueError(f"the preprocessing contract is for {base.image_size} inputs but the model takes "
                         f"{(height, width)}")
    return dataclasses.replace(base, image_size=(height, width), channels=channels,
                               resize_method=resize_method or base.resize_method,
                               crop_padding=base.crop_padding if crop_padding is None else int(crop_padding),
                               class_names=names)


def saved_model(
    model: keras.Model,
    path: str,
    class_names: Sequence[str] | None = None,
    top_k: int = 5,
    crop_padding: int | None = None,
    overwrite: bool = False,
    verify: np.ndarray | None = None,
    resize_method: str | None = None,
    contract: PreprocessingContract | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> dict[str, Any]:
    """Write a SavedModel with three signatures, atomically (temporary directory, then rename).

    - ``serving_default``: float32 images ``[batch, H, W, C]`` in 0..255 -> the model's output.
    - ``serve_uint8``: the same for uint8 images.
    - ``serve_bytes``: encoded JPEG/PNG strings ``[batch]`` -> decoded, center-cropped and resized
      exactly as the model's eval pipeline did (its :class:`~kerasnets.serving.PreprocessingContract`:
      ``crop_padding``, ``resize_method``, ``resize_first``; a (height, width) model gets a center window of its
      aspect ratio), then ``top_k`` ``class_ids``, ``class_names`` and ``probabilities``, and a
      ``status`` per image: "ok", or why it was refused before decoding (empty, not an image, a
      header declaring more than ``max_pixels`` pixels, a JPEG or PNG cut short:
      :func:`~kerasnets.data.transforms.check_encoded`); a refused image gets class id -1, name ""
      and probability 0, and never fails the others. Images are decoded one at a time, so a
      request's memory is bounded by one image within the budget (bytes that pass the header and
      end checks but are corrupt inside still fail the request with InvalidArgumentError).

    ``contract`` is the model's preprocessing contract (the engine passes the one it trained with;
    ``kerasnets export`` reads it from the ``.keras`` file; default: the one attached to ``model``,
    :func:`kerasnets.serving.attached_contract`, e.g. by ``kerasnets.from_timm``); ``class_names``, ``crop_padding`` and
    ``resize_method`` override it. Without any, the default eval crop (padding 32 from 224 px
    up, 87.5% below) and bicubic resizing are served. The contract is written into the folder as ``preprocessing.json`` and
    ``labels.txt``; class names are also a string variable of the SavedModel
    (``loaded.class_names[0]``).
    Verified with ``tf.saved_model.load`` against the Keras model on ``verify`` (or random) images;
    returns ``{"path", "max_abs_diff"}``.
    """
    contract = contract or attached_contract(model)  # kerasnets.from_timm's
    model = float32_model(model)
    height, width, channels = _input_size(model)
    classes = int(model.output_shape[-1])
    max_pixels = check_max_pixels(max_pixels)
    contract = _contract(model, contract, class_names, crop_padding, resize_method)
    names = list(contract.class_names)
    crop_padding, resize_method = contract.crop_padding, contract.resize_method
    top_k = min(top_k, classes)
    _prepare_target(path, overwrite)
    probabilities_out = _outputs_probabilities(model)

    archive = keras.export.ExportArchive()
    archive.track(model)
    names_table = tf.Variable(names, dtype=tf.string, trainable=False, name="class_names")
    archive.add_variable_collection("class_names", [names_table])  # loaded.class_names[0]

    began = time.perf_counter()
    # the model is traced once (``forward``); the other endpoints call that concrete function
    forward = _forward(model)

    def predict_uint8(images):
        return forward(tf.cast(images, tf.float32))

    def from_bytes(encoded):
        def decode(one):  # a refused image (check_encoded's reason) is never decoded: zeros stand in for it
            reason = check_encoded(one, max_pixels)
            image = tf.cond(tf.equal(reason, ""),
                            lambda: center_crop(one, (height, width), crop_padding=crop_padding,
                                                method=resize_method, max_pixels=max_pixels, checked=True,
                                                resize_first=contract.resize_first),
                            lambda: tf.zeros([height, width, 3], tf.float32))
            return image, tf.where(tf.equal(reason, ""), "ok", reason)

        # one image at a time: the pixel budget bounds one decode, not ten in parallel
        images, status = tf.map_fn(decode, encoded, parallel_iterations=1, fn_output_signature=(
            tf.TensorSpec([height, width, 3], tf.float32), tf.TensorSpec([], tf.string)))
        if channels == 1:
            images = tf.image.rgb_to_grayscale(images)
        scores = forward(images)
        probabilities = scores if probabilities_out else tf.nn.softmax(scores, axis=-1)
        top = tf.math.top_k(probabilities, k=top_k)
        valid = tf.equal(status, "ok")[:, None]  # refused images: class id -1, name "", probability 0
        return {"class_ids": tf.where(valid, top.indices, -1),
                "class_names": tf.where(valid, tf.gather(names_table, top.indices), ""),
                "probabilities": tf.where(valid, top.values, 0.0), "status": status}

    archive.add_endpoint("serving_default", forward)
    archive.add_endpoint("serve_uint8", predict_uint8, [tf.TensorSpec([None, height, width, channels], tf.uint8)])
    archive.add_endpoint("serve_bytes", from_bytes, [tf.TensorSpec([None], tf.string)])

    # written and verified in a local folder (beside the target: one rename publishes it), then published
    tmp = tempfile.mkdtemp(prefix=".saved_model-", dir=None if storage.is_url(path) else os.path.dirname(
        os.path.abspath(path)))
    try:
        export_dir = os.path.join(tmp, "model")
        # no gradient functions: serving never differentiates, and tracing them doubled the export time
        archive.write_out(export_dir, options=tf.saved_model.SaveOptions(experimental_custom_gradients=False),
                          verbose=False)
        write_contract_file(export_dir, contract)
        written = time.perf_counter()
        images = verify if verify is not None else np.random.RandomState(0).uniform(0, 255, (4, height, width, channels))
        images = np.asarray(images, np.float32)
        loaded = tf.saved_model.load(export_dir)
        served = loaded.signatures["serving_default"](tf.constant(images))
        served = next(iter(served.values())).numpy()
        expected = _keras_outputs(model, images)
        diff = float(np.abs(served - expected).max())
        checked = diff if _outputs_probabilities(model) else float(np.abs(int8.softmax(served) - int8.softmax(expected)).max())
        if checked > TOLERANCE["none"]:
            raise ExportError(f"SavedModel probabilities differ from Keras by {checked:.3g} (> {TOLERANCE['none']})")
        storage.publish_tree(export_dir, path, last=("saved_model.pb",))  # on a URL: valid once its .pb is there
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"path": path, "max_abs_diff": diff, "preprocessing": contract.to_dict(),
            "seconds": {"export": round(written - began, 2), "verify": round(time.perf_counter() - written, 2)}}


def _pixels(images: np.ndarray) -> np.ndarray:
    """Images as float32, or as they are when uint8 (a quarter of the memory: every consumer casts
    per batch or per image; ``kerasnets export`` draws its calibration and report images as uint8)."""
    return images if images.dtype == np.uint8 else images.astype(np.float32)


def _batches(data: Any, limit: int) -> Iterable[tuple[np.ndarray, np.ndarray | None]]:
    """(images, labels or None) numpy batches from a dataset, a tuple of arrays or an array."""
    if data is None:
        return
    if isinstance(data, np.ndarray):
        yield _pixels(data), None
        return
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], np.ndarray):
        yield _pixels(data[0]), np.asarray(data[1])
        return
    seen = 0
    for batch in data:
        images, labels = (batch if isinstance(batch, (tuple, list)) else (batch, None))
        images = np.asarray(images, np.float32)
        labels = None if labels is None else np.asarray(labels)
        if labels is not None and labels.ndim == 2:
            labels = labels.argmax(-1)
        yield images, labels
        seen += len(images)
        if seen >= limit:
            return


def run_tflite(path_or_bytes: str | bytes, images: np.ndarray, num_threads: int | None = None) -> np.ndarray:
    """Run a .tflite model (ai_edge_litert) on images ``[N, H, W, C]`` in 0..255 (integer or float; the
    model's own H, W, C); outputs dequantized to float32. ValueError/TypeError naming the expected
    shape for any other input."""
    from ai_edge_litert.interpreter import Interpreter

    kwargs = {"model_path": path_or_bytes} if isinstance(path_or_bytes, str) else {"model_content": path_or_bytes}
    interpreter = Interpreter(num_threads=num_threads, **kwargs)
    input_detail = interpreter.get_input_details()[0]
    output_detail = interpreter.get_output_details()[0]
    images = np.asarray(images)
    expected = tuple(int(d) for d in input_detail["shape"][1:])
    if images.dtype == bool or not (np.issubdtype(images.dtype, np.integer) or np.issubdtype(images.dtype, np.floating)):
        raise TypeError(f"run_tflite takes integer or float images in 0..255, got dtype {images.dtype}")
    if images.ndim != 4 or images.shape[1:] != expected:
        raise ValueError(f"run_tflite takes images of shape [N, {', '.join(map(str, expected))}] (the model's input, "
                         f"pixels 0..255), got shape {images.shape}; crop and resize them first "
                         f"(kerasnets.data.transforms.center_crop)")
    interpreter.resize_tensor_input(input_detail["index"], [1, *images.shape[1:]])
    interpreter.allocate_tensors()
    outputs = []
    for image in images:
        value = image[None].astype(np.float32)
        if input_detail["dtype"] in (np.int8, np.uint8):
            scale, zero = input_detail["quantization"]
            info = np.iinfo(input_detail["dtype"])
            value = np.clip(np.round(value / scale + zero), info.min, info.max).astype(input_detail["dtype"])
        interpreter.set_tensor(input_detail["index"], value)
        interpreter.invoke()
        out = interpreter.get_tensor(output_detail["index"])
        if output_detail["dtype"] in (np.int8, np.uint8):
            scale, zero = output_detail["quantization"]
            out = (out.astype(np.float32) - zero) * scale
        outputs.append(out[0].astype(np.float32))
    return np.stack(outputs)


def tflite(
    model: keras.Model,
    path: str,
    quantization: str = "none",
    representative: Any = None,
    calibration_steps: int = 500,
    io_dtype: str = "float32",
    eval_data: Any = None,
    eval_examples: int = 512,
    class_names: Sequence[str] | None = None,
    metadata: dict | None = None,
    overwrite: bool = False,
    saved_model_dir: str | None = None,
    contract: PreprocessingContract | None = None,
    resize_method: str | None = None,
    sources: dict | None = None,
) -> dict[str, Any]:
    """Convert ``model`` to a LiteRT flatbuffer and verify it against Keras.

    Args:
        quantization: "none" (fp32), "float16", "dynamic" (int8 weights) or "int8" (full integer,
            calibrated on ``representative``: a dataset of (images, labels) batches, e.g. the eval
            pipeline, or an array of images in 0..255; its first ``calibration_steps`` images are
            used, in a seeded random order whose last fifth (when there are 100 or more) is held out
            to choose between min/max and percentile ranges, see :mod:`kerasnets.int8`; draw them
            over every class, as ``kerasnets export`` does). A softmax classifier is centered first
            (:func:`center_softmax_classifier`, exact in float).
        io_dtype: "float32", or "int8"/"uint8" input and output (int8 quantization only).
        eval_data: labelled data for the report (top-1 agreement, accuracy of Keras and TFLite);
            defaults to ``representative``, then to random images (parity only).
        class_names, metadata: written beside the file as ``labels.txt`` and ``<name>.json``.
        contract: the model's preprocessing contract, stored under ``"preprocessing"`` in
            ``<name>.json`` (``class_names`` and ``resize_method`` override it).
        sources: what ``eval_data`` and ``representative`` are, e.g. ``{"evaluation": {"source",
            "split"}, "calibration": {...}}``: the report's ``evaluated_on`` and its calibration's
            ``calibrated_on`` carry them, with the image count and, for labelled data, per-class
            counts (by ``class_names``).
        saved_model_dir: convert the ``serving_default`` signature of this SavedModel of ``model``
            (e.g. one written by :func:`saved_model`) instead of exporting the model again.

    Returns the report: size, max abs diff of probabilities, top-1 agreement, accuracies and drop.
    fp32 beyond 1e-4 and float16 beyond 1e-2 raise :class:`ExportError`; dynamic and int8 figures
    are returned and printed, never silently accepted.
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {quantization!r}")
    if io_dtype not in IO_DTYPES:
        raise ValueError(f"io_dtype must be one of {IO_DTYPES}, got {io_dtype!r}")
    if io_dtype != "float32" and quantization != "int8":
        raise ValueError(f"io_dtype={io_dtype!r} needs quantization='int8'")
    if quantization == "int8" and representative is None:
        raise ValueError("quantization='int8' needs representative data (e.g. the eval pipeline of the training data)")
    model = float32_model(model)
    height, width, channels = _input_size(model)
    contract = _contract(model, contract, class_names, None, resize_method)
    _prepare_target(path, overwrite)

    centered = center_softmax_classifier(model) if quantization == "int8" else None
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if saved_model_dir is None or centered is not None:
            export_dir = os.path.join(tmp, "saved_model")
            (centered or model).export(export_dir, format="tf_saved_model", verbose=False)
            converter = tf.lite.TFLiteConverter.from_saved_model(export_dir)
        else:
            converter = _saved_model_converter(saved_model_dir)
        if quantization != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantization == "float16":
            converter.target_spec.supported_types = [tf.float16]
        calibration = samples = None
        if quantization == "int8":
            drawn = list(_batches(representative, calibration_steps))
            if not drawn or not sum(len(images) for images, _ in drawn):
                raise ValueError("representative data yielded no images")
            samples = np.concatenate([images for images, _ in drawn])[:calibration_steps]
            sample_labels = (None if any(labels is None for _, labels in drawn)
                             else np.concatenate([labels for _, labels in drawn])[:calibration_steps])
            order = np.random.RandomState(0).permutation(len(samples))  # the held-out fifth: any class
            samples = samples[order]
        try:
            if samples is not None:
                flatbuffer, calibration = int8.quantize(
                    converter, samples, reference=lambda images: _keras_outputs(model, images), run=run_tflite,
                    outputs_probabilities=_outputs_probabilities(model), io_dtype=io_dtype)
            else:
                flatbuffer = converter.convert()
        except Exception as error:
            raise ExportError(f"TFLite conversion ({quantization}) of {model.name!r} failed: {error}") from error

    converted = time.perf_counter()
    report, labels = _verify_tflite(model, flatbuffer, quantization,
                                    eval_data if eval_data is not None else representative, eval_examples,
                                    (height, width, channels))
    described = (sources or {}).get("evaluation" if eval_data is not None else "calibration")
    report["evaluated_on"] = _described(described, labels, report["examples"], contract.class_names)
    report["seconds"] = {"export": round(converted - began, 2), "verify": round(time.perf_counter() - converted, 2)}
    with storage.staged(path) as tmp_path, open(tmp_path, "wb") as handle:
        handle.write(flatbuffer)
    report.update({"path": path, "quantization": quantization, "io_dtype": io_dtype, "bytes": len(flatbuffer),
                   "centered_classifier": centered is not None})
    if calibration is not None:
        calibration["calibrated_on"] = _described((sources or {}).get("calibration"), sample_labels, len(samples),
                                                  contract.class_names)
        report["calibration"] = calibration
    write_labels(os.path.join(os.path.dirname(storage.absolute(path)), "labels.txt"), contract.class_names)
    sidecar = {**(metadata or {}), "input": {"shape": [height, width, channels], "range": [0, 255],
               "dtype": io_dtype, "layout": "NHWC RGB, normalization inside the model"},
               "preprocessing": contract.to_dict(), "report": report}
    atomic_write_text(os.path.splitext(path)[0] + ".json", json.dumps(sidecar, indent=2))
    return report


def _saved_model_converter(saved_model_dir: str):
    """A converter of the SavedModel's ``serving_default``. ``TFLiteConverter.from_saved_model``
    loads the whole SavedModel into Python only to list its signatures (about a second for an
    EfficientNet, and the conversion loads it again); the signature is known here, so the
    converter is built directly, with the public path as the fallback."""
    try:
        from tensorflow.lite.python.lite import TFLiteSavedModelConverterV2

        return TFLiteSavedModelConverterV2(saved_model_dir, {tf.saved_model.SERVING}, ["serving_default"])
    except (ImportError, TypeError):  # the internal class moved or changed: the public path
        return tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=["serving_default"])


def _described(source: dict | None, labels: np.ndarray | None, images: int, class_names: Sequence[str]) -> dict:
    """Which images a figure was measured on: ``source`` (e.g. source and split), the image count
    and, with labels, the count of each class (every class of the model, zeros included)."""
    described = {**(source or {}), "images": int(images)}
    if labels is not None:
        counts = np.bincount(np.asarray(labels, np.int64), minlength=len(class_names))
        described["per_class"] = {str(name): int(n) for name, n in zip(class_names, counts)}
    return described


def _verify_tflite(model, flatbuffer, quantization, data, limit, shape) -> tuple[dict[str, Any], np.ndarray | None]:
    """The report of ``flatbuffer`` against Keras on up to ``limit`` images of ``data`` (random
    images when there is none), and those images' labels (None when unlabelled)."""
    images, labels = [], []
    for batch_images, batch_labels in _batches(data, limit):
        images.append(batch_images)
        labels.append(batch_labels)
    if not images:
        images, labels = [np.random.RandomState(0).uniform(0, 255, (8, *shape)).astype(np.float32)], [None]
    x = np.concatenate(images)[:limit]
    y = None if any(lab is None for lab in labels) else np.concatenate(labels)[:limit]
    expected = _keras_outputs(model, x)
    got = run_tflite(flatbuffer, x)
    report: dict[str, Any] = {
        "examples": int(len(x)),
        "max_abs_diff": float(np.abs(got - expected).max()),
        "top1_agreement": float(np.mean(got.argmax(-1) == expected.argmax(-1))),
    }
    probabilities_diff = report["max_abs_diff"]
    if not _outputs_probabilities(model):  # logits (hundreds at times): the contract is on probabilities
        probabilities_diff = float(np.abs(int8.softmax(got) - int8.softmax(expected)).max())
        report["max_abs_diff_probabilities"] = probabilities_diff
    if y is not None:
        report["keras_accuracy"] = float(np.mean(expected.argmax(-1) == y))
        report["tflite_accuracy"] = float(np.mean(got.argmax(-1) == y))
        report["accuracy_drop"] = report["keras_accuracy"] - report["tflite_accuracy"]
    limit_diff = TOLERANCE.get(quantization)
    if limit_diff is not None and probabilities_diff > limit_diff:
        raise ExportError(f"TFLite {quantization} probabilities differ from Keras by {probabilities_diff:.3g} "
                          f"(> {limit_diff}); the file was not written")
    print(f"tflite {quantization}: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                                 for k, v in report.items()))
    return report, y


def export_run(model, run_dir: str, formats: Sequence[str], contract: PreprocessingContract, metadata: dict,
               calibration: Any = None, quantizations: Sequence[str] = ("none",)
               ) -> tuple[dict[str, str], dict[str, Any]]:
    """The training engine's export step: SavedModel and TFLite into ``run_dir``, plus metadata.json,
    each carrying ``contract`` (the preprocessing the model was evaluated with).

    Returns ``(paths, reports)``: the files written, and each export's verification report (with
    its ``seconds`` of export and verification)."""
    class_names = contract.class_names
    model = float32_model(model)
    paths: dict[str, str] = {}
    reports: dict[str, Any] = {}
    verify = next(iter(_batches(calibration, 8)), (None, None))[0]
    if "saved_model" in formats:
        reports["saved_model"] = saved_model(model, os.path.join(run_dir, "saved_model"), contract=contract,
                                             overwrite=True, verify=verify)
        paths["saved_model"] = reports["saved_model"]["path"]
    if "tflite" in formats:
        for quantization in quantizations:
            suffix = "fp32" if quantization == "none" else quantization
            target = os.path.join(run_dir, f"model_{suffix}.tflite")
            reports[f"tflite_{suffix}"] = tflite(model, target, quantization, representative=calibration,
                                                 eval_data=calibration, contract=contract,
                                                 metadata=metadata, overwrite=True,
                                                 saved_model_dir=paths.get("saved_model"))
            paths[f"tflite_{suffix}"] = target
    height, width, channels = _input_size(model)
    document = {**metadata, "class_names": list(class_names),
                "input": {"shape": [height, width, channels], "range": [0, 255], "dtype": "float32 or uint8",
                          "layout": "NHWC RGB; normalization is inside the model: do not divide by 255"},
                "preprocessing": contract.to_dict(), "exports": reports}
    atomic_write_text(os.path.join(run_dir, "metadata.json"), json.dumps(document, indent=2))
    paths["metadata"] = os.path.join(run_dir, "metadata.json")
    return paths, reports
