"""Input-pipeline throughput against keras.utils.image_dataset_from_directory and B0's appetite.

    python benchmarks/bench_data.py [--images 256] [--phone-images 32] [--batch 32] [--epochs 3] [--b0-steps 4]
    python benchmarks/bench_data.py --max-side 512 [--phone-images 32]   # write_tfrecords(max_side=...)

Two folders made from scikit-learn's two sample photos (china.jpg, flower.jpg, 427x640), saved as
JPEG q90: ImageNet-like (random crops resized to a short side of 333-500 px) and 12-MP phone
photos (4032x3024). Every pipeline yields 224x224 float batches with the same parallelism
(tf.data AUTOTUNE on every core); images/s is the best of ``--epochs`` full passes. The last
column divides by the images/s EfficientNet-B0 training consumes on this machine (batch 32,
224 px, float32, measured here over ``--b0-steps`` steps after the first).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from sklearn.datasets import load_sample_images  # noqa: E402

from kerasnets import data  # noqa: E402


def make_folder(root: str, count: int, seed: int = 0, phone: bool = False) -> str:
    """``count`` JPEGs in two class folders, from the sample photos: ImageNet-like sizes (short
    side 333-500 px), or 12-MP phone photos (4032x3024) when ``phone``."""
    rng = np.random.RandomState(seed)
    photos = load_sample_images().images
    for index in range(count):
        photo = photos[index % 2]
        h, w = photo.shape[:2]
        ch, cw = rng.randint(h // 2, h), rng.randint(w // 2, w)
        top, left = rng.randint(0, h - ch), rng.randint(0, w - cw)
        crop = Image.fromarray(photo[top:top + ch, left:left + cw])
        if phone:
            crop = crop.resize((4032, 3024), Image.BILINEAR)
        else:
            scale = rng.randint(333, 501) / min(ch, cw)
            crop = crop.resize((int(cw * scale), int(ch * scale)), Image.BILINEAR)
        folder = os.path.join(root, f"class{index % 2}")
        os.makedirs(folder, exist_ok=True)
        crop.save(os.path.join(folder, f"{index:05d}.jpg"), quality=90)
    return root


def throughput(dataset, epochs: int) -> float:
    """Best images/s over full passes of ``dataset``."""
    best = 0.0
    for _ in range(epochs):
        start, seen = time.perf_counter(), 0
        for images, _ in dataset:
            seen += int(images.shape[0])
        best = max(best, seen / (time.perf_counter() - start))
    return best


def b0_training_rate(batch: int, steps: int) -> float:
    """Images/s of EfficientNet-B0 training steps (224 px, float32, SGD) on this machine."""
    import tensorflow as tf

    from kerasnets import EfficientNet

    model = EfficientNet(0, classes=1000)
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy")
    images = tf.random.uniform((batch, 224, 224, 3), 0, 255)
    labels = tf.zeros((batch,), tf.int32)
    model.train_on_batch(images, labels)  # traces
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(images, labels)
    return batch * steps / (time.perf_counter() - start)


def _bare_decode(root: str, batch: int):
    """Every file read and fully decoded, nothing else (a 1x1 corner leaves): what no pipeline
    that decodes every pixel at full resolution can beat."""
    import tensorflow as tf

    paths = tf.io.gfile.glob(os.path.join(root, "*", "*.jpg"))

    def decode(path):
        return tf.io.decode_jpeg(tf.io.read_file(path), channels=3)[:1, :1], 0

    return (tf.data.Dataset.from_tensor_slices(paths).map(decode, num_parallel_calls=tf.data.AUTOTUNE)
            .batch(batch).prefetch(tf.data.AUTOTUNE))


KERAS = "keras image_dataset_from_directory (decode + resize)"


def pipelines(root: str, batch: int, augmentations: bool) -> dict:
    """The datasets compared on one folder."""
    found = {
        KERAS: keras.utils.image_dataset_from_directory(
            root, image_size=(224, 224), batch_size=batch, shuffle=True, seed=0, verbose=False),
        "kerasnets train (Inception crop + flip)": data.load(root, "all", 224, batch, training=True)[0],
        "kerasnets eval (center crop, bicubic)": data.load(root, "all", 224, batch, training=False)[0],
    }
    found["decode_jpeg alone, no resize (the decoder's floor)"] = _bare_decode(root, batch)
    if augmentations:
        found["kerasnets train + RandAugment"] = data.load(root, "all", 224, batch, training=True, randaugment=True)[0]
        found["kerasnets train + AutoAugment"] = data.load(root, "all", 224, batch, training=True, autoaugment=True)[0]
    return found


def stored_shrunk(root: str, batch: int, epochs: int, max_side: int) -> list[tuple[str, str, float, float]]:
    """Training and eval images/s of the folder written as TFRecords whole and with
    ``write_tfrecords(max_side=...)``, and the eval crops' mean difference between the two (grey
    levels, and on 4x4 block means: the picture rather than its pixel noise)."""
    rows, crops = [], {}
    for label, side in (("TFRecords, stored whole", None), (f"TFRecords, max_side={max_side}", max_side)):
        out = os.path.join(root + f"-records-{side}", "train")
        data.write_tfrecords(root, out, shards=4, progress=False, max_side=side)
        pattern = out + "-*-of-*"
        size = sum(os.path.getsize(f) for f in data.tfrecords.record_files(pattern)) / 1e6
        train = throughput(data.load(pattern, image_size=224, batch_size=batch, training=True)[0], epochs)
        evaluate = throughput(data.load(pattern, image_size=224, batch_size=batch, training=False)[0], epochs)
        ds = data.load(pattern, image_size=224, batch_size=batch, training=False)[0]
        crops[side] = np.concatenate([x.numpy() for x, _ in ds])
        rows.append((label, f"{size:.0f} MB", train, evaluate))
    whole, shrunk = crops[None], crops[max_side]
    blocks = [c.reshape(len(c), 56, 4, 56, 4, 3).mean(axis=(2, 4)) for c in (whole, shrunk)]
    print(f"eval crops, max_side={max_side} against whole: mean |difference| {np.abs(shrunk - whole).mean():.2f} "
          f"grey levels per pixel, {np.abs(blocks[1] - blocks[0]).mean():.2f} on 4x4 block means, "
          f"mean signed {float((shrunk - whole).mean()):+.2f}")
    return rows


def main() -> None:
    """Build the folders, time each pipeline and B0 training, print the table with both ratios."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--phone-images", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--b0-steps", type=int, default=4)
    parser.add_argument("--max-side", type=int, default=0,
                        help="only compare the phone photos stored as TFRecords whole and at this max_side")
    args = parser.parse_args()
    if args.max_side:
        with tempfile.TemporaryDirectory() as tmp:
            root = make_folder(os.path.join(tmp, "phone"), args.phone_images, phone=True)
            print(f"12-MP phone photos ({args.phone_images} JPEGs), 224 px, batch {args.batch}, {os.cpu_count()} CPU cores")
            print("| storage | size | train images/s | eval images/s |")
            print("|---|---|---|---|")
            for label, size, train, evaluate in stored_shrunk(root, args.batch, args.epochs, args.max_side):
                print(f"| {label} | {size} | {train:.0f} | {evaluate:.0f} |")
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, count, phone in (("ImageNet-like, short side 333-500 px", args.images, False),
                                    ("12-MP phone photos, 4032x3024", args.phone_images, True)):
            root = make_folder(os.path.join(tmp, "phone" if phone else "imagenet"), count, phone=phone)
            rates = {name: throughput(ds, args.epochs) for name, ds in pipelines(root, args.batch, not phone).items()}
            rows += [(f"{label} ({count} JPEGs)", name, rate, rate / rates[KERAS]) for name, rate in rates.items()]
    b0 = b0_training_rate(args.batch, args.b0_steps)
    print(f"224x224, batch {args.batch}, {os.cpu_count()} CPU cores; EfficientNet-B0 training consumes {b0:.1f} images/s")
    print("| folder | pipeline | images/s | ratio to image_dataset_from_directory | ratio to B0 training |")
    print("|---|---|---|---|---|")
    for folder, name, rate, ratio in rows:
        print(f"| {folder} | {name} | {rate:.0f} | {ratio:.2f} | {rate / b0:.0f} |")


if __name__ == "__main__":
    main()
