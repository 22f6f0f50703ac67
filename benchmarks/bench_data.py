"""Input-pipeline throughput on a folder of full-size JPEGs, against keras.utils.image_dataset_from_directory.

    python benchmarks/bench_data.py [--images 256] [--batch 32] [--epochs 3]

The folder is made from scikit-learn's two sample photos (china.jpg, flower.jpg, 427x640),
randomly cropped and resized to typical ImageNet sizes (short side 333-500 px), saved as JPEG q90.
Every pipeline yields 224x224 batches; images/s is the best of ``--epochs`` full passes.
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


def make_folder(root: str, count: int, seed: int = 0) -> str:
    """``count`` JPEGs in two class folders, ImageNet-like sizes, from the sample photos."""
    rng = np.random.RandomState(seed)
    photos = load_sample_images().images
    for index in range(count):
        photo = photos[index % 2]
        h, w = photo.shape[:2]
        ch, cw = rng.randint(h // 2, h), rng.randint(w // 2, w)
        top, left = rng.randint(0, h - ch), rng.randint(0, w - cw)
        short = rng.randint(333, 501)
        crop = Image.fromarray(photo[top:top + ch, left:left + cw])
        scale = short / min(ch, cw)
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


def main() -> None:
    """Build the folder, time each pipeline, print a table with ratios to image_dataset_from_directory."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        make_folder(root, args.images)
        baseline = keras.utils.image_dataset_from_directory(
            root, image_size=(224, 224), batch_size=args.batch, shuffle=True, seed=0, verbose=False)
        pipelines = {
            "keras image_dataset_from_directory (decode + resize)": baseline,
            "kerasnets train (decode_and_crop + flip)": data.load(
                root, "all", 224, args.batch, training=True)[0],
            "kerasnets train + RandAugment": data.load(
                root, "all", 224, args.batch, training=True, randaugment=True)[0],
            "kerasnets train + AutoAugment": data.load(
                root, "all", 224, args.batch, training=True, autoaugment=True)[0],
            "kerasnets eval (center crop 32, bicubic)": data.load(
                root, "all", 224, args.batch, training=False)[0],
        }
        rates = {name: throughput(ds, args.epochs) for name, ds in pipelines.items()}
    base = rates["keras image_dataset_from_directory (decode + resize)"]
    print(f"{args.images} JPEGs (short side 333-500 px), batch {args.batch}, 224x224, {os.cpu_count()} CPU cores")
    print("| pipeline | images/s | ratio to image_dataset_from_directory |")
    print("|---|---|---|")
    for name, rate in rates.items():
        print(f"| {name} | {rate:.0f} | {rate / base:.2f} |")


if __name__ == "__main__":
    main()
