"""Hostile inputs at every entry point that reads images: ``data.load`` (folders and arrays),
``kerasnets predict``, a SavedModel's ``serve_bytes`` and ``export.run_tflite``.

Each input gets the right answer (checked against PIL, numpy or the Keras model itself on pixels
prepared independently) or one clear error; images whose headers declare 20000 x 20000 pixels are
run in a subprocess whose peak memory is measured (before the pixel budget: 6.3 GB each).
"""

import functools
import io
import json
import os
import struct
import subprocess
import sys
import zlib

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import ENV, ROOT
from kerasnets import cli, data, export
from kerasnets.data import headers, transforms
from kerasnets.data.files import check_image_file

#: a request or a command on the huge-header files must stay under this peak RSS (the bar of issue #18)
PEAK_LIMIT_MB = 1500
HUGE = 20000  # pixels a side the hostile headers declare: 400 MP, 1.2 GB as RGB


def _encode(array, fmt, **options):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt, **options)
    return buffer.getvalue()


def _photo(height=37, width=53, seed=0):
    """A smooth RGB test image (JPEG-friendly) of odd size, so height and width cannot be swapped unseen."""
    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.RandomState(seed)
    channels = [127 + 100 * np.sin(x / (4 + c) + rng.uniform(0, 6)) * np.cos(y / (5 + c)) for c in range(3)]
    return np.stack(channels, -1).astype(np.uint8)


@functools.lru_cache(maxsize=None)
def _png_declaring(width, height):
    """A real, valid 8-bit grayscale PNG of all-zero pixels (389 KB at 20000 x 20000), built with zlib once."""
    compressor, rows, parts = zlib.compressobj(9), b"\0" * ((width + 1) * 500), []
    for _ in range(height // 500):
        parts.append(compressor.compress(rows))
    parts.append(compressor.compress(b"\0" * ((width + 1) * (height % 500))) + compressor.flush())

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b""))


def _patched(encoded, at, fmt, *values):
    return encoded[:at] + struct.pack(fmt, *values) + encoded[at + struct.calcsize(fmt):]


def _jpeg_declaring(width, height, progressive):
    """A small JPEG whose start-of-frame is rewritten to declare ``width`` x ``height``."""
    encoded = _encode(_photo(), "JPEG", progressive=progressive)
    sof = encoded.index(b"\xff\xc2" if progressive else b"\xff\xc0")
    return _patched(encoded, sof + 5, ">HH", height, width)


def _huge_files():
    """Files whose headers declare 20000 x 20000 pixels, each format as its header stores the size."""
    small = _photo()
    return {
        "huge.png": _png_declaring(HUGE, HUGE),
        "huge.gif": _patched(_encode(small, "GIF"), 6, "<HH", HUGE, HUGE),  # logical screen descriptor
        "huge.bmp": _patched(_encode(small, "BMP"), 18, "<ii", HUGE, -HUGE),  # negative height: top-down rows
        "huge_progressive.jpg": _jpeg_declaring(HUGE, HUGE, progressive=True),
    }


def _tiny_model(shape=(32, 32, 3)):
    """A 3-class softmax model of the kerasnets contract (RGB 0..255 in, normalization inside)."""
    inputs = keras.Input(shape)
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))


def _peak_run(code, *args):
    """Run ``code`` in a fresh interpreter; (returncode, stdout, stderr, peak RSS in MB).

    The peak is the child's own ``VmHWM`` (/proc/self/status), not ``getrusage``'s ``ru_maxrss``:
    Linux carries ``ru_maxrss`` across exec, so a child spawned by a pytest process that has grown
    past the limit (the full suite) would report the parent's size."""
    script = (f"{code}\nimport sys\n"
              "print('PEAK_KB', next(line.split()[1] for line in open('/proc/self/status') "
              "if line.startswith('VmHWM')), file=sys.stderr)\n"
              "sys.exit(globals().get('rc', 0))")
    proc = subprocess.run([sys.executable, "-c", script, *args], env=ENV, cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    peaks = [line for line in proc.stderr.splitlines() if line.startswith("PEAK_KB")]
    assert peaks, proc.stderr[-3000:]
    return proc.returncode, proc.stdout, proc.stderr, int(peaks[-1].split()[1]) / 1024


# ---------------------------------------------------------------------------------------------- headers


def test_both_header_readers_agree_with_pil_on_every_format():
    image = _photo()
    gray = image[..., 0]
    files = {
        "baseline.jpg": _encode(image, "JPEG"),
        "progressive.jpg": _encode(image, "JPEG", progressive=True),
        "exif.jpg": _encode(image, "JPEG", exif=Image.Exif().tobytes() + b"\0" * 3000),  # APP1 before the frame
        "rgb.png": _encode(image, "PNG"),
        "gray.png": _encode(gray, "PNG"),
        "rgba.png": _encode(np.dstack([image, gray]), "PNG"),
        "16bit.png": _encode(gray.astype(np.uint16) * 257, "PNG"),
        "palette.gif": _encode(image, "GIF"),
        "rgb.bmp": _encode(image, "BMP"),
        # WebP (TensorFlow decodes it in TFRecords, TFDS and serve_bytes): each first chunk PIL writes
        "lossy.webp": _encode(image, "WEBP", quality=80),  # VP8
        "lossless.webp": _encode(image, "WEBP", lossless=True),  # VP8L
        "exif.webp": _encode(image, "WEBP", quality=80, exif=Image.Exif().tobytes()),  # VP8X
    }
    assert {files[n][12:16] for n in ("lossy.webp", "lossless.webp", "exif.webp")} == {b"VP8 ", b"VP8L", b"VP8X"}
    for name, encoded in files.items():
        width, height = Image.open(io.BytesIO(encoded)).size
        header = headers.read_header(io.BytesIO(encoded))
        assert (header.width, header.height) == (width, height), name
        assert header.progressive == (name == "progressive.jpg"), name
        # the graph reader: within budget at exactly the decoded pixels, refused one pixel below, naming the size
        pixels = headers.decoded_pixels(header)
        assert transforms.check_encoded(tf.constant(encoded), pixels).numpy() == b"", name
        refused = transforms.check_encoded(tf.constant(encoded), pixels - 1).numpy().decode()
        assert f"{width}x{height} pixels decodes {pixels} pixels" in refused, name
        assert refused == headers.over_budget(header, pixels - 1)  # one wording for both readers
    # a WebP is decoded as PIL decodes it (lossless: pixel for pixel)
    decoded = transforms.decode_rgb(tf.constant(files["lossless.webp"])).numpy()
    assert np.array_equal(decoded, np.asarray(Image.open(io.BytesIO(files["lossless.webp"])).convert("RGB")))
    # a WebP declaring 16000 x 16000 (VP8X: width-1 and height-1, 24 bits each) is refused by both readers
    huge = _encode(image, "WEBP", quality=80, exif=Image.Exif().tobytes())
    huge = huge[:24] + (16000 - 1).to_bytes(3, "little") * 2 + huge[30:]
    reason = headers.over_budget(headers.read_header(io.BytesIO(huge)), headers.DEFAULT_MAX_PIXELS)
    assert "WebP of 16000x16000 pixels decodes 256000000 pixels" in reason
    assert transforms.check_encoded(tf.constant(huge)).numpy().decode() == reason
    wav = b"RIFF" + bytes(4) + b"WAVEfmt " + bytes(30)  # another RIFF file
    assert headers.read_header(io.BytesIO(wav)) == headers.NOT_AN_IMAGE
    assert transforms.check_encoded(tf.constant(wav)).numpy().decode() == headers.NOT_AN_IMAGE


def test_huge_headers_are_refused_before_decoding_and_baseline_jpegs_count_at_one_eighth(tmp_path):
    for name, encoded in _huge_files().items():
        (tmp_path / name).write_bytes(encoded)
        reason = check_image_file(str(tmp_path / name))
        assert reason and f"{HUGE}x{HUGE} pixels" in reason and "max_pixels=89478485" in reason, (name, reason)
        assert transforms.check_encoded(tf.constant(encoded)).numpy().decode() == reason
    # a baseline JPEG is decoded in the DCT domain at 1/8 when it is that large: 2500 x 2500, within budget
    baseline = _jpeg_declaring(HUGE, HUGE, progressive=False)
    assert transforms.check_encoded(tf.constant(baseline)).numpy() == b""
    assert transforms.check_encoded(tf.constant(baseline), 2500 * 2500).numpy() == b""
    assert "decodes 6250000 pixels" in transforms.check_encoded(tf.constant(baseline), 2500 * 2500 - 1).numpy().decode()
    # ... but a full-resolution decode counts every pixel (4000 x 4000 here: a refusal must not cost 1.2 GB)
    midsize = _jpeg_declaring(4000, 4000, progressive=False)
    with pytest.raises(tf.errors.InvalidArgumentError, match="JPEG of 4000x4000 pixels decodes 16000000 pixels"):
        transforms.decode_rgb(tf.constant(midsize), max_pixels=1_000_000)
    assert transforms.check_encoded(tf.constant(midsize), 1_000_000).numpy() == b""  # the crops: 500 x 500
    for hostile in (b"", b"junk", b"\x89PNG\r\n\x1a\n", b"\xff\xd8" + b"\xff" * 5000, b"\xff\xd8\xff\xe0\x00\x02"):
        assert transforms.check_encoded(tf.constant(hostile)).numpy() != b""  # a reason, never an exception
    with pytest.raises(ValueError, match="max_pixels must be a positive integer"):
        transforms.check_encoded(tf.constant(b""), 0)


# ----------------------------------------------------------------------------------------------- folders


def _folder_with(root, files):
    for relative, encoded in files.items():
        path = os.path.join(os.fsencode(root), os.fsencode(relative) if isinstance(relative, str) else relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(encoded)


def test_folder_skips_and_counts_huge_files_and_keeps_memory_bounded(tmp_path):
    files = {f"a/{name}": encoded for name, encoded in _huge_files().items()}
    files.update({"a/good.png": _encode(_photo(), "PNG"), "b/good.png": _encode(_photo(seed=1), "PNG")})
    _folder_with(tmp_path / "photos", files)
    rc, out, err, peak = _peak_run(
        "import json, os, sys; from kerasnets import data\n"
        "ds, info = data.load(sys.argv[1], 'all', image_size=32, batch_size=8)\n"  # default flags otherwise
        "print(json.dumps([len(list(ds.unbatch())), info.num_examples, "
        "sorted(os.path.basename(p) for p in info.extras['skipped'])]))",
        str(tmp_path / "photos"))
    assert rc == 0, err[-2000:]
    assert json.loads(out) == [2, 2, sorted(_huge_files())]
    assert peak < PEAK_LIMIT_MB, peak
    # max_pixels is the user's: a budget between the two good sizes skips the larger one only
    _folder_with(tmp_path / "sizes", {"a/small.png": _encode(_photo(20, 20), "PNG"),
                                      "a/large.png": _encode(_photo(40, 40), "PNG"),
                                      "b/small.png": _encode(_photo(20, 20), "PNG")})
    _, info = data.load(str(tmp_path / "sizes"), "all", image_size=16, max_pixels=1000)
    assert [os.path.basename(p) for p in info.extras["skipped"]] == ["large.png"] and info.num_examples == 2


def _pixels(source, size, split="all", **options):
    """Whole images as the pipeline yields them: no crop (padding 0) at their own size, in file order."""
    ds, info = data.load(source, split, image_size=size, batch_size=64, crop_padding=0, training=False, **options)
    return np.concatenate([x.numpy() for x, _ in ds]), info


@functools.lru_cache(maxsize=None)
def _big_baseline_jpeg(colour):
    """A real baseline JPEG of 10000 x 9000 flat ``colour`` (90 MP, over the 89.5-MP budget at full
    resolution, 1/8 of it through the crops): 1.4 MB, written by PIL in under a second."""
    buffer = io.BytesIO()
    Image.new("RGB", (10000, 9000), colour).save(buffer, "JPEG")
    return buffer.getvalue()


def test_a_folder_of_baseline_jpegs_over_89_mp_trains_as_an_endless_stream(tmp_path):
    """The pipeline decodes such JPEGs DCT-downscaled at 1/8 and accepts them, but the probe that
    tells a folder where nothing decodes from a readable one decoded at full resolution, called the
    folder unreadable and gave one pass instead of the endless training stream (1 batch, then the
    end). Now: every batch asked for, each image its class's colour."""
    colours = {"a": (200, 30, 90), "b": (20, 160, 170)}
    _folder_with(tmp_path / "big", {f"{name}/big.jpg": _big_baseline_jpeg(rgb) for name, rgb in colours.items()})
    # 'all' with training: the endless stream a training run reads (the default carve would hold out one of 2 files)
    ds, info = data.load(str(tmp_path / "big"), "all", image_size=32, batch_size=2, training=True, repeat=True)
    assert info.num_examples == 2 and not info.extras["skipped"]
    batches = list(ds.take(3))
    assert len(batches) == 3
    for images, labels in batches:
        for image, label in zip(images.numpy(), labels.numpy()):
            np.testing.assert_allclose(image.mean(axis=(0, 1)), colours[info.class_names[label]], atol=2)


def test_jpegs_with_trailing_data_are_read_and_truncated_ones_skipped(tmp_path):
    image = _photo(48, 48)
    jpeg = _encode(image, "JPEG", quality=95)
    mp4 = (b"\0\0\0\x18ftypmp42\0\0\0\0isommp42" + np.random.RandomState(0).bytes(20_000)
           + b"\xff\xd9" + np.random.RandomState(1).bytes(3000))  # an FF D9 inside the video, as in real MP4 data
    _folder_with(tmp_path / "phone", {
        "a/motion_photo.jpg": jpeg + mp4,  # Pixel / Samsung motion photo: the JPEG, then an MP4
        "a/padded.jpg": jpeg + b"\0" * 4096,
        "a/truncated.jpg": jpeg[: len(jpeg) // 2],  # cut in the middle of its scan data
        "b/plain.jpg": jpeg,
    })
    pixels, info = _pixels(str(tmp_path / "phone"), 48)
    assert [os.path.basename(p) for p in info.extras["skipped"]] == ["truncated.jpg"] and info.num_examples == 3
    reference = tf.io.decode_jpeg(jpeg).numpy()  # the JPEG alone, decoded as the photo it is
    assert np.abs(reference.astype(float) - image).mean() < 3  # (and it is the photo)
    for decoded in pixels:
        np.testing.assert_allclose(decoded, reference, atol=1e-3)


def test_odd_file_names_and_channel_layouts_are_read_as_pil_reads_them(tmp_path):
    image = _photo(24, 24)
    gray = image[..., 1]
    rgb_of_gray = np.repeat(gray[..., None], 3, -1)
    palette = _encode(image, "GIF")
    files = [  # (name, bytes, the RGB pixels a user expects), in the folder's sorted order
        (b"a/caf\xe9 latin-1.png", _encode(image, "PNG"), image),  # not UTF-8: a latin-1 byte name
        ("a/with space.png", _encode(gray, "PNG"), rgb_of_gray),
        ("a/\u65e5\u672c\u8a9e.png", _encode(np.dstack([image, gray]), "PNG"), image),  # RGBA: alpha dropped
        ("b/16bit.png", _encode(gray.astype(np.uint16) * 257, "PNG"), rgb_of_gray),  # 16-bit scaled, not clipped
        ("b/palette.gif", palette, np.asarray(Image.open(io.BytesIO(palette)).convert("RGB"))),
        ("b/zero.png", b"", None),
    ]
    _folder_with(tmp_path / "names", {name: encoded for name, encoded, _ in files})
    pixels, info = _pixels(str(tmp_path / "names"), 24)
    assert [os.path.basename(p) for p in info.extras["skipped"]] == ["zero.png"] and info.num_examples == 5
    for decoded, (name, _, expected) in zip(pixels, files):
        np.testing.assert_allclose(decoded, expected, atol=1e-3, err_msg=str(name))
    train, info = data.load(str(tmp_path / "names"), image_size=24)  # the default path: the seeded carve hashes names
    assert 0 < info.num_examples == len(list(train.unbatch())) <= 5


# ----------------------------------------------------------------------------------------- TFRecords


def _hostile_folder(root):
    """root/<class>/ with good files of odd names and layouts and bad files of every kind; returns
    {relative name: class} of the good ones. Good images differ in colour, so each is recognisable."""
    from test_hostile_cli import write_undecodable_png

    jpeg = _encode(_photo(32, 32, seed=3), "JPEG", quality=95)
    good = {
        "a/plain.png": _encode(_photo(32, 32, seed=0), "PNG"),
        b"a/caf\xe9 latin-1.png": _encode(_photo(32, 32, seed=1), "PNG"),  # a name that is no UTF-8
        "a/with space.jpg": _encode(_photo(32, 32, seed=2), "JPEG", quality=95),
        "b/\u65e5\u672c\u8a9e.png": _encode(np.dstack([_photo(32, 32, seed=4), np.full((32, 32), 255, np.uint8)]),
                                             "PNG"),  # RGBA
        "b/motion_photo.jpg": jpeg + b"\0\0\0\x18ftypmp42" + np.random.RandomState(0).bytes(5000),  # trailing data
        "b/gray.png": _encode(_photo(32, 32, seed=5)[..., 0], "PNG"),
    }
    bad = {
        "a/empty.jpg": b"",
        "a/huge.png": _png_declaring(HUGE, HUGE),  # 389 KB declaring 400 MP
        "b/text.png": b"just some text",
        "b/truncated.jpg": jpeg[: len(jpeg) // 2],
    }
    _folder_with(root, {**good, **bad})
    write_undecodable_png(root / "b" / "corrupt.png")  # passes every header check, fails to decode
    return {os.fsdecode(name): os.fsdecode(name).split("/")[0] for name in good}


def test_write_tfrecords_writes_the_good_files_of_a_hostile_folder_and_counts_the_rest(tmp_path):
    expected = _hostile_folder(tmp_path / "photos")
    rc, out, err, peak = _peak_run(
        "import json, sys; from kerasnets import data\n"
        "print(json.dumps(data.write_tfrecords(sys.argv[1], sys.argv[2], shards=2)))",  # default flags otherwise
        str(tmp_path / "photos"), str(tmp_path / "records" / "train"))
    assert rc == 0 and peak < PEAK_LIMIT_MB, (rc, peak, err[-2000:])
    written = json.loads((tmp_path / "records" / "dataset.json").read_text())["splits"]["train"]
    assert (written["examples"], written["skipped"]) == (len(expected), 5)
    assert "skipped 5 of 11 image files" in err and "corrupt.png" in err  # the one that only fails to decode
    # read back: exactly the good images, each once, with its class; pixels as PIL decodes the originals
    originals = {name: np.asarray(Image.open(os.path.join(os.fsencode(tmp_path / "photos"), os.fsencode(name)))
                                  .convert("RGB"), np.float32) for name in expected}
    ds, info = data.load(str(tmp_path / "records" / "train-*"), image_size=32, batch_size=64, crop_padding=0,
                         training=False)
    assert info.class_names == ("a", "b") and info.num_examples == len(expected)
    found = []
    for images, labels in ds:
        for image, label in zip(images.numpy(), labels.numpy()):
            name = min(originals, key=lambda n: np.abs(originals[n] - image).mean())
            assert np.abs(originals[name] - image).mean() < 3, name  # JPEG decoders (IDCTs) differ by a level or two
            found.append((name, info.class_names[label]))
    assert sorted(found) == sorted(expected.items())


#: a recipe file for `kerasnets train`: one conv at 16 px, 1 epoch of 2 steps, model.keras only
TINY_RECIPE = """
import keras
from kerasnets.training import Recipe


def build_model(recipe, context):
    return keras.Sequential([keras.Input((recipe.image_size, recipe.image_size, 3)), keras.layers.Rescaling(1 / 255),
                             keras.layers.Conv2D(4, 3), keras.layers.GlobalAveragePooling2D(),
                             keras.layers.Dense(context.num_classes, activation="softmax")])


RECIPE = Recipe(name="tiny", build_model=build_model, build_optimizer=lambda r, c: keras.optimizers.SGD(0.01),
                image_size=16, batch_size=4, epochs=1, steps_per_epoch=2, export=("keras",))
"""


def test_kerasnets_train_on_a_hostile_folder_trains_on_the_good_files_and_reports_the_skipped(tmp_path, capsys,
                                                                                             caplog):
    """The user's command on a folder with every kind of bad file beside good ones of odd names:
    it trains, scores every good test image, names the skipped files, exits 0. (A folder where
    nothing decodes: one error line, exit 2, no run folder: test_own_images.py,
    test_bad_sources_fail_with_one_line_and_write_nothing.)"""
    good_train = _hostile_folder(tmp_path / "photos" / "train")
    good_test = {"a/red.png": (200, 30, 90), "b/teal.png": (20, 160, 170), "b/teal 2.png": (30, 150, 160)}
    _folder_with(tmp_path / "photos" / "test", {
        **{name: _encode(np.full((40, 40, 3), rgb, np.uint8), "PNG") for name, rgb in good_test.items()},
        "a/empty.png": b"", "b/huge.jpg": _jpeg_declaring(HUGE, HUGE, progressive=True)})
    # a recipe file of a one-conv model, in-process: the data path is tested here, the quickstart's
    # model, training and exports by its own tests (with it this test took 70 s, 53 of them tracing)
    (tmp_path / "tiny.py").write_text(TINY_RECIPE)
    assert cli.main(["train", str(tmp_path / "tiny.py"), "--data", str(tmp_path / "photos"),
                     "--output", str(tmp_path / "runs")]) == 0, capsys.readouterr().err[-3000:]
    summary = json.loads((tmp_path / "runs" / "tiny" / "summary.json").read_text())
    assert summary["class_names"] == ["a", "b"] and summary["eval_split"] == "test"
    assert summary["train_examples"] == len(good_train) + 1  # + the file corrupt inside: dropped as it streams
    assert (summary["train_skipped_files"], summary["eval_skipped_files"]) == (4, 2)
    assert summary["eval_examples"] == summary["eval_expected_examples"] == len(good_test)
    assert "skipped 4 unreadable image file(s)" in caplog.text and "huge.png" in caplog.text
    assert "skipped 2 unreadable image file(s)" in caplog.text


# ------------------------------------------------------------------------------- predict and serve_bytes

GOOD = {"red.png": (200, 30, 90), "teal.png": (20, 160, 170)}  # flat colours: any crop and resize keeps them


def _bad_files():
    """Hostile files and what ``predict`` must say about each (a fragment of its one error line)."""
    jpeg = _encode(_photo(), "JPEG")
    return {
        **{name: (encoded, f"{HUGE}x{HUGE} pixels") for name, encoded in _huge_files().items()},
        "empty.jpg": (b"", "zero bytes"),
        "text.png": (b"just some text", "not a JPEG/PNG/BMP/GIF/WebP file"),
        "truncated_header.png": (_encode(_photo(), "PNG")[:20], "truncated PNG"),
        "no_frame.jpg": (b"\xff\xd8\xff\xe0\x00\x10JFIF" + b"\0" * 40, "no start-of-frame"),
        "cut.jpg": (jpeg[: len(jpeg) // 2], "cannot read image"),  # passes the header check, fails to decode
    }


def _write_inputs(folder):
    folder.mkdir(exist_ok=True)
    for name, colour in GOOD.items():
        Image.fromarray(np.full((50, 70, 3), colour, np.uint8)).save(folder / name)
    for name, (encoded, _) in _bad_files().items():
        (folder / name).write_bytes(encoded)
    return folder


def _expected_scores(model, colour, shape=(32, 32, 3)):
    return np.asarray(model(np.full((1, *shape), colour, np.float32)))[0]


def test_predict_names_each_bad_file_once_and_predicts_the_others_in_bounded_memory(tmp_path):
    model = _tiny_model()
    model.save(tmp_path / "model.keras")
    inputs = _write_inputs(tmp_path / "inputs")
    latin1 = os.path.join(os.fsencode(inputs), b"caf\xe9.png")  # a file name that is no UTF-8
    with open(latin1, "wb") as handle:
        handle.write((inputs / "red.png").read_bytes())
    # a baseline JPEG declaring 20000 x 20000 (with a 53 x 37 photo's data) decodes at 1/8: bounded, whatever it says
    (inputs / "huge_baseline.jpg").write_bytes(_jpeg_declaring(HUGE, HUGE, progressive=False))
    names = [*GOOD, *_bad_files(), "huge_baseline.jpg"]
    rc, out, err, peak = _peak_run("import sys; from kerasnets.cli import main; rc = main(sys.argv[1:])", "predict",
                                   str(tmp_path / "model.keras"), *[str(inputs / n) for n in names], latin1)
    assert rc == 2 and peak < PEAK_LIMIT_MB, (rc, peak, err[-2000:])
    printed = dict(line.split(": ", 1) for line in out.strip().splitlines())
    assert set(printed) == {str(inputs / n) for n in [*GOOD, "huge_baseline.jpg"]} | {str(inputs / "caf\\xe9.png")}
    for name, colour in [*GOOD.items(), ("caf\\xe9.png", GOOD["red.png"])]:
        scores = _expected_scores(model, colour)
        ranked = [(int(i), float(s)) for i, s in (pair.split() for pair in printed[str(inputs / name)].split(", "))]
        assert [i for i, _ in ranked] == list(np.argsort(scores)[::-1])
        np.testing.assert_allclose([s for _, s in ranked], np.sort(scores)[::-1], atol=1e-3)
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == len(_bad_files())  # one line per bad file
    for name, (_, why) in _bad_files().items():
        assert [line for line in errors if line.startswith(f"{inputs / name}: error: cannot read image")
                and why in line], (name, errors)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The tiny model exported through ``export.saved_model`` (default crop and budget)."""
    keras.utils.set_random_seed(0)
    model = _tiny_model()
    path = tmp_path_factory.mktemp("served") / "saved_model"
    export.saved_model(model, str(path), class_names=["a", "b", "c"])
    return model, path


def test_serve_bytes_gives_each_image_a_status_and_stays_in_bounded_memory(served, tmp_path):
    model, path = served
    inputs = _write_inputs(tmp_path / "inputs")
    order = ["red.png", *(n for n in _bad_files() if n != "cut.jpg"), "teal.png"]
    rc, out, err, peak = _peak_run(
        "import json, sys; import tensorflow as tf\n"
        "serve = tf.saved_model.load(sys.argv[1]).signatures['serve_bytes']\n"
        "out = serve(tf.constant([open(p, 'rb').read() for p in sys.argv[2:]]))\n"
        "print(json.dumps({k: v.numpy().tolist() for k, v in out.items()}, default=bytes.decode))",
        str(path), *[str(inputs / n) for n in order])
    assert rc == 0 and peak < PEAK_LIMIT_MB, (peak, err[-2000:])
    result = json.loads(out)
    assert {"class_ids", "class_names", "probabilities", "status"} <= set(result)  # the old outputs keep their names
    bad = _bad_files()
    for name, status, ids, names, probabilities in zip(order, result["status"], result["class_ids"],
                                                       result["class_names"], result["probabilities"]):
        if name in GOOD:
            scores = _expected_scores(model, GOOD[name])
            assert status == "ok" and ids == list(np.argsort(scores)[::-1])
            assert names == [["a", "b", "c"][i] for i in ids]
            np.testing.assert_allclose(probabilities, np.sort(scores)[::-1], atol=1e-5)
        else:
            assert bad[name][1] in status and ids == [-1] * 3 and names == [""] * 3 and probabilities == [0.0] * 3


def test_serve_bytes_fails_the_request_only_for_bytes_corrupt_past_their_header(served):
    model, path = served
    serve = tf.saved_model.load(str(path)).signatures["serve_bytes"]
    jpeg = _encode(_photo(120, 160), "JPEG")
    # a whole JPEG declaring 12-bit samples (some scientific cameras write them): it passes every header and
    # end-marker check, and TF's decoder refuses it (a half JPEG is now refused by the checks, with a status)
    twelve_bit = _patched(jpeg, jpeg.index(b"\xff\xc0") + 4, ">B", 12)
    assert transforms.check_encoded(tf.constant(twelve_bit)).numpy() == b""
    with pytest.raises(tf.errors.InvalidArgumentError, match="Invalid JPEG data"):  # documented: no silent answer
        serve(tf.constant([twelve_bit]))
    assert serve(tf.constant([jpeg]))["status"].numpy().tolist() == [b"ok"]


# ------------------------------------------------------------------------------------ non-square models


def test_non_square_model_exports_serves_and_predicts_with_a_window_of_its_aspect(tmp_path, capsys):
    model = _tiny_model((24, 40, 3))  # height 24, width 40
    photo = _photo(100, 100, seed=3)
    Image.fromarray(photo).save(tmp_path / "square.png")
    # reference, cut with numpy: padding 0 keeps the largest 24:40 window of a 100 x 100 image, rows 20..79
    window = tf.image.resize(photo[20:80].astype(np.float32), (24, 40), method="bicubic")
    window = np.clip(window.numpy(), 0, 255)
    cropped = transforms.center_crop(tf.constant((tmp_path / "square.png").read_bytes()), (24, 40), crop_padding=0)
    np.testing.assert_allclose(cropped.numpy(), window, atol=1e-3)
    expected = np.asarray(model(window[None]))[0]
    # padding 0 (an override): the reference window above is the one the SavedModel must cut
    export.saved_model(model, str(tmp_path / "sm"), crop_padding=0)
    served = tf.saved_model.load(str(tmp_path / "sm")).signatures["serve_bytes"](
        tf.constant([(tmp_path / "square.png").read_bytes()]))
    assert served["class_ids"].numpy()[0].tolist() == list(np.argsort(expected)[::-1])
    np.testing.assert_allclose(served["probabilities"].numpy()[0], np.sort(expected)[::-1], atol=1e-5)
    model.save(tmp_path / "wide.keras")
    assert cli.main(["predict", str(tmp_path / "wide.keras"), str(tmp_path / "square.png"), "--crop-padding", "0"]) == 0
    ranked = capsys.readouterr().out.split(": ", 1)[1].split(", ")
    assert [int(pair.split()[0]) for pair in ranked] == list(np.argsort(expected)[::-1])
    np.testing.assert_allclose([float(pair.split()[1]) for pair in ranked], np.sort(expected)[::-1], atol=1e-3)


def test_predict_refuses_a_model_of_any_input_size_with_one_line(tmp_path, capsys):
    _tiny_model((None, None, 3)).save(tmp_path / "any.keras")
    Image.fromarray(_photo()).save(tmp_path / "photo.png")
    assert cli.main(["predict", str(tmp_path / "any.keras"), str(tmp_path / "photo.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "takes inputs of shape (None, None, 3)" in err and "fixed input_shape" in err


# ------------------------------------------------------------------------------------ evaluation counts


def test_evaluate_scores_the_rest_of_a_folder_and_reports_what_the_scan_skipped(tmp_path, capsys):
    """Files the scan refuses (named one by one in its warning) are reported beside the count and do
    not fail the command; only images that pass every check and then fail to decode do (exit 2,
    tests/test_hostile_cli.py), the rule the trainer's final evaluation follows too."""
    from test_hostile_cli import _accuracy_line, _colour_folder, _colour_model, _files, _reference_accuracy

    model = _colour_model(tmp_path / "m.keras")
    root = _colour_folder(tmp_path / "ds", {"red": 6, "blue": 6})
    readable = _files(root, ("red", "blue"))
    _folder_with(root, {"red/empty.png": b"", "blue/huge.jpg": _jpeg_declaring(HUGE, HUGE, progressive=True)})
    assert cli.main(["evaluate", str(tmp_path / "m.keras"), "--data", str(root)]) == 0
    accuracy, line = _accuracy_line(capsys.readouterr().out)
    assert "on 12 of the 12 images" in line and "(2 more files skipped by the scan" in line
    assert accuracy == pytest.approx(_reference_accuracy(model, readable), abs=1e-4)


# ---------------------------------------------------------------------------------------- run folders

#: a finished run's folder as saved_models/README.md documents it (what a user finds and would ship)
FINISHED_RUN = ("summary.json", "history.csv", "curves.png", "model.keras", "saved_model/saved_model.pb",
                "saved_model/preprocessing.json", "model_fp32.tflite", "model_fp32.json", "model_int8.tflite",
                "model_int8.json", "labels.txt", "metadata.json", "logs/train/events.out.tfevents.1.host")


def test_a_no_resume_rerun_that_fails_leaves_no_old_export_looking_current(tmp_path):
    """--no-resume into a finished run's folder used to remove only its summary and history: a rerun
    that then failed (here it diverges at once) left the old model.keras, SavedModel and TFLite
    files beside no summary, to be shipped as the new run's. Now nothing of the old run is left."""
    from kerasnets.training import Recipe, TrainingDiverged, train

    run = tmp_path / "reused"
    for name in FINISHED_RUN:
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_bytes(b"an earlier run's " + name.encode())
    (run / "summary.json").write_text(json.dumps({"run_id": "0123", "test_accuracy": 0.99}))
    (run / "notes.txt").write_text("the user's own file")

    def build_model(recipe, context):
        return keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3), keras.layers.Flatten(),
                                 keras.layers.Dense(context.num_classes, activation="softmax")])

    # a one-conv model at 16 px and lr 1e30: the run diverges within its 4 steps, the early failure tested
    recipe = Recipe(name="reused", build_model=build_model, build_optimizer=lambda r, c: keras.optimizers.SGD(1e30),
                    image_size=16, batch_size=16, epochs=1, steps_per_epoch=4, output=str(tmp_path))
    with pytest.raises(ValueError, match="holds a finished run"):  # without --no-resume: refused, nothing touched
        train(recipe, verbose=0)
    assert all((run / name).exists() for name in FINISHED_RUN)
    with pytest.raises(TrainingDiverged):
        train(recipe, resume=False, verbose=0)
    left = sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file() and "backup" not in p.parts)
    assert left == ["notes.txt"]


# ------------------------------------------------------------------------------------------------ TFDS
# Datasets TFDS builds offline from arrays these tests make (no network): the source path a
# `tfds:NAME` user takes, from the prepared files through as_dataset, on good and hostile features.

TFDS_IMAGES = np.random.RandomState(7).randint(0, 256, (10, 12, 12, 3)).astype(np.uint8)
TFDS_LABELS = np.arange(10) % 3


def _tfds_builder(class_name, image_feature, label_feature, images):
    """A GeneratorBasedBuilder registered as snake_case(class_name) with one "train" split of ``images``."""
    import tensorflow_datasets as tfds

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(
            {"image": image_feature, "label": label_feature}), supervised_keys=("image", "label"))

    def _split_generators(self, dl_manager):
        return {"train": ((i, {"image": image, "label": int(TFDS_LABELS[i])}) for i, image in enumerate(images))}

    return type(class_name, (tfds.core.GeneratorBasedBuilder,), {
        "VERSION": tfds.core.Version("1.0.0"), "_info": _info, "_split_generators": _split_generators,
        "_generate_examples": lambda self: None})


def test_tfds_source_yields_what_the_builder_holds_and_refuses_hostile_features(tmp_path):
    import tensorflow_datasets as tfds

    names = tfds.features.ClassLabel(names=["x", "y", "z"])
    _tfds_builder("KnGood", tfds.features.Image(shape=(12, 12, 3)), names, TFDS_IMAGES)
    _tfds_builder("KnSixteenBit", tfds.features.Image(shape=(12, 12, 1), dtype=np.uint16), names,
                  TFDS_IMAGES[..., :1].astype(np.uint16) * 256 + 200)  # high byte: the 8-bit pixel
    _tfds_builder("KnFloat", tfds.features.Image(shape=(12, 12, 1), dtype=np.float32), names,
                  TFDS_IMAGES[..., :1].astype(np.float32) / 255)  # 0..1 pixels
    _tfds_builder("KnNoClasses", tfds.features.Image(shape=(12, 12, 3)), tfds.features.Tensor(shape=(), dtype=np.int64),
                  TFDS_IMAGES)
    options = {"data_dir": str(tmp_path), "download": True}  # download=True prepares from the arrays, offline

    def examples(name, split="train"):
        """(index into the arrays the builder was given, label) of each example, in the order TFDS stores them."""
        # crop padding 0 at the images' own size: the whole image, so pixels compare exactly
        ds, info = data.load(f"tfds:{name}", split, image_size=12, crop_padding=0, training=False, **options)
        reference = TFDS_IMAGES if name == "kn_good" else np.repeat(TFDS_IMAGES[..., :1], 3, -1)
        found = [(int(np.flatnonzero((reference == image).all(axis=(1, 2, 3)))[0]), int(label))
                 for images, labels in ds for image, label in zip(images.numpy(), labels.numpy())]
        return found, info

    found, info = examples("kn_good")
    assert info.num_examples == 10 and info.class_names == ("x", "y", "z")
    assert sorted(found) == list(enumerate(TFDS_LABELS))  # every example once, with its label
    found, info = examples("kn_good", "train[:40%]")
    assert len(found) == info.num_examples == 4  # a sliced split: its own count
    found, _ = examples("kn_sixteen_bit")  # 16-bit pixels to 8 bits as a 16-bit PNG file reads (its high byte)
    assert sorted(found) == list(enumerate(TFDS_LABELS))
    with pytest.raises(ValueError, match=r"kn_float.*float32.*0\.\.255"):
        data.load("tfds:kn_float", "train", image_size=12, **options)
    with pytest.raises(ValueError, match=r"kn_no_classes.*'label' is a Tensor.*ClassLabel"):
        data.load("tfds:kn_no_classes", "train", image_size=12, **options)


# --------------------------------------------------------------------------------------------- arrays


@pytest.mark.parametrize("images, labels, error, words", [
    (np.random.RandomState(0).uniform(0, 1, (4, 8, 8, 3)), np.arange(4), ValueError, r"0\.\.1 pixels.*images \* 255"),
    (np.full((4, 8, 8, 3), 300.0), np.arange(4), ValueError, r"in 0\.\.255.*got 300\.0\.\.300\.0"),
    (np.full((4, 8, 8, 3), -1, np.int16), np.arange(4), ValueError, r"in 0\.\.255.*got -1\.\.-1"),
    (np.full((4, 8, 8, 3), np.nan), np.arange(4), ValueError, "NaN"),
    (np.zeros((4, 8, 8, 2), np.uint8), np.arange(4), ValueError, r"C in \(1, 3, 4\).*got shape \(4, 8, 8, 2\)"),
    (np.zeros((4, 8, 8, 5), np.uint8), np.arange(4), ValueError, r"got shape \(4, 8, 8, 5\)"),
    (np.zeros((4, 2, 8, 8, 3), np.uint8), np.arange(4), ValueError, r"got shape \(4, 2, 8, 8, 3\)"),
    (np.zeros((8, 8), np.uint8), np.arange(8), ValueError, r"got shape \(8, 8\);"),  # one image without N
    (np.array([["a"]]), np.arange(1), TypeError, "got dtype <U1"),
    (np.zeros((4, 8, 8, 3), np.uint8), np.eye(4), ValueError, r"one-hot\? pass labels.argmax\(-1\)"),
    (np.zeros((4, 8, 8, 3), np.uint8), np.array([0, 1.5, 2, 3]), ValueError, "fractional"),
])
def test_hostile_arrays_fail_with_one_clear_error(images, labels, error, words):
    with pytest.raises(error, match=words):
        data.load((images, labels), image_size=8)


def test_float_arrays_in_0_255_are_the_same_images_as_uint8():
    pixels = np.random.RandomState(0).randint(0, 256, (4, 12, 12, 3))
    as_float, _ = _pixels((pixels.astype(np.float32), np.arange(4)), 12)
    as_uint8, _ = _pixels((pixels.astype(np.uint8), np.arange(4)), 12)
    np.testing.assert_array_equal(as_float, pixels)
    np.testing.assert_array_equal(as_uint8, pixels)
    dark, _ = _pixels((np.zeros((2, 12, 12, 3), np.float32), np.arange(2)), 12)  # all black is no 0..1 image
    assert not dark.any()


# -------------------------------------------------------------------------------------------- TFLite


def test_run_tflite_refuses_inputs_the_model_cannot_take(tmp_path):
    model = _tiny_model()
    export.tflite(model, str(tmp_path / "tiny.tflite"))
    images = np.random.RandomState(0).randint(0, 256, (2, 32, 32, 3))
    np.testing.assert_allclose(export.run_tflite(str(tmp_path / "tiny.tflite"), images.astype(np.uint8)),
                               np.asarray(model(images.astype(np.float32))), atol=1e-5)
    for wrong in (images[0], images[..., :1], np.zeros((2, 24, 40, 3)), np.zeros((0,))):
        with pytest.raises(ValueError, match=r"takes images of shape \[N, 32, 32, 3\].*got shape"):
            export.run_tflite(str(tmp_path / "tiny.tflite"), wrong)
    with pytest.raises(TypeError, match="integer or float images in 0..255, got dtype <U1"):
        export.run_tflite(str(tmp_path / "tiny.tflite"), np.full((1, 32, 32, 3), "x"))
