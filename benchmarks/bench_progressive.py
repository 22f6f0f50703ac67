"""Progressive learning against a fixed image size, measured in one run: time to a stated accuracy
and final accuracy, side by side, on digits and on a folder of real photos (a markdown table).

    python benchmarks/bench_progressive.py [--epochs 12] [--datasets digits photos]

Both arms train the same model with the same optimizer, epochs, batch and seed through
``kerasnets.training.train`` (the Trainer a recipe runs; validation after every epoch at the
evaluation size):

- **fixed**: every epoch at the evaluation size, with the last stage's regularization;
- **progressive**: four stages (:func:`kerasnets.training.progressive_stages`, google/automl main.py's
  ramps): the image size grows in four equal steps from 5/8 of the evaluation size to it (main.py
  ramps from ``ibase``, half the size, and its first stage is already one step up: 20, 24, 28, 32 px
  on digits, 40 ... 64 px on photos), dropout 0.1 -> 0.3,
  MixUp alpha 0 -> 0.2, RandAugment magnitude 0 -> 8 (photos only: its rotations would turn a 6
  into a 9), stochastic depth 0.1 throughout.

The model: EfficientNetV2-B0's layout (Fused-MBConv and MBConv stages) at width 0.5 and depth 0.5,
for any input size in the progressive arm (the fixed arm's input is fixed: same weights), BatchNorm momentum 0.9 (a few hundred steps);
AdamW with one epoch of warmup, then cosine decay over the whole run (one schedule across stages).

Datasets:

- **digits**: kerasnets' embedded scikit-learn digits (1,437 train / 360 test images, 8x8 scaled to
  the pipeline's size), evaluated at 32 px; target 95%.
- **photos**: a folder of JPEG files (``train/<class>/``, ``test/<class>/``) cut from the only
  photographs the installed packages ship (no network here): scikit-learn's ``china.jpg`` and
  ``flower.jpg`` and matplotlib's ``grace_hopper.jpg``. Each photograph's top, middle and bottom
  third is a class (9 classes: "which part of which photo"); training crops (48-128 px, any
  aspect) come from the left 70% of each band, test crops from the right 30%, so no test pixel
  was trained on. Real photographic texture, JPEG decoding and random-resized crops from a folder,
  but only three scenes: a small stand-in, not a dataset benchmark. Evaluated at 64 px; target 80%.

Time is the wall-clock of the epochs (``history.csv``'s ``seconds``: the steps, each stage's first
traced step, the validation), summed up to the first epoch whose validation accuracy reaches the
target; ``total`` is the whole ``train()`` call (setup, every stage's pipeline, final evaluation,
the .keras export). On a shared machine other processes' load lands on both arms alike only
roughly: the arms alternate per dataset, and the table says which machine ran it.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

#: per dataset: evaluation size, smallest stage size (main.py's ``ibase``), batch, target accuracy,
#: training options (digits: no flip, near-whole crops, as the quickstart), RandAugment ramp
DATASETS = {
    "digits": {"image_size": 32, "ibase": 16, "batch_size": 64, "target": 0.95,
               "train_options": {"crop_scale": (0.85, 1.0), "flip": False}, "randaugment": None},
    "photos": {"image_size": 64, "ibase": 32, "batch_size": 32, "target": 0.80,
               "train_options": {"crop_scale": (0.25, 1.0)}, "randaugment": (0.0, 8.0)},
}
STAGES = 4
DROPOUT = (0.1, 0.3)
MIXUP = (0.0, 0.2)
DROP_CONNECT = 0.1
WIDTH, DEPTH = 0.5, 0.5
LEARNING_RATE = 3e-3
PHOTO_CROPS = {"train": 60, "test": 20}  # per class
TRAIN_COLUMNS = 0.7  # the left share of each band that training crops come from


def photo_folder(root: str, seed: int = 0) -> str:
    """Write the folder of photo crops described in the module docstring into ``root``; return it."""
    from matplotlib import cbook
    from PIL import Image
    from sklearn.datasets import load_sample_images

    china, flower = load_sample_images().images
    with cbook.get_sample_data("grace_hopper.jpg") as handle:
        hopper = np.asarray(Image.open(handle).convert("RGB"))
    rng = np.random.RandomState(seed)
    for photo_name, photo in (("china", china), ("flower", flower), ("hopper", hopper)):
        height, width = photo.shape[:2]
        cut = int(width * TRAIN_COLUMNS)
        for band, name in enumerate(("top", "middle", "bottom")):
            top, bottom = height * band // 3, height * (band + 1) // 3
            for split, (left, right) in (("train", (0, cut)), ("test", (cut, width))):
                folder = os.path.join(root, split, f"{photo_name} {name}")
                os.makedirs(folder, exist_ok=True)
                for index in range(PHOTO_CROPS[split]):
                    h = rng.randint(48, min(128, bottom - top) + 1)
                    w = rng.randint(48, min(128, right - left) + 1)
                    y, x = rng.randint(top, bottom - h + 1), rng.randint(left, right - w + 1)
                    Image.fromarray(photo[y:y + h, x:x + w]).save(os.path.join(folder, f"{index:03d}.jpg"), quality=90)
    return root


def make_recipe(dataset: str, data, progressive: bool, epochs: int, output: str):
    """The benchmark's recipe for one arm: the same model, optimizer and data, stages or not."""
    import kerasnets
    from kerasnets.training import Recipe, adamw_warmup_cosine, progressive_stages

    spec = DATASETS[dataset]
    stages = progressive_stages(epochs, (spec["ibase"], spec["image_size"]), STAGES, randaugment=spec["randaugment"],
                                mixup=MIXUP, dropout=DROPOUT, drop_connect=(DROP_CONNECT, DROP_CONNECT))
    last = stages[-1]

    def build_model(recipe, context):
        # the fixed arm's input is fixed at the evaluation size, the progressive arm's any size (its stages
        # resize); finalize profiles and exports a copy fixed at the recipe's image_size of an unfixed one
        size = None if progressive else spec["image_size"]
        return kerasnets.EfficientNet(preset="efficientnetv2-b0", width=WIDTH, depth=DEPTH, input_shape=(size, size, 3),
                                      classes=context.num_classes, dropout_rate=DROPOUT[1],
                                      drop_connect_rate=DROP_CONNECT, bn_momentum=0.9,
                                      synchronized_bn=context.synchronized_bn)

    def build_optimizer(recipe, context):
        return adamw_warmup_cosine(context.learning_rate, context.steps_per_epoch * recipe.epochs,
                                   warmup_steps=context.steps_per_epoch)

    train_options = dict(spec["train_options"])
    if not progressive:  # the last stage's regularization, every epoch
        train_options["mixup_alpha"] = last.mixup_alpha
        if last.randaugment_magnitude:
            from kerasnets.training.progressive import randaugment_option

            train_options["randaugment"] = randaugment_option(last)
    return Recipe(name=f"{dataset}_{'progressive' if progressive else 'fixed'}", build_model=build_model,
                  build_optimizer=build_optimizer, data=data, eval_split="test", image_size=spec["image_size"],
                  batch_size=spec["batch_size"], epochs=epochs, base_learning_rate=LEARNING_RATE,
                  reference_batch=spec["batch_size"], label_smoothing=0.1, train_options=train_options,
                  # validation resizes as the training pipeline does (bilinear, its default; eval's
                  # default is bicubic), so the two differ in cropping only; both arms alike
                  eval_options={"resize_method": "bilinear"}, stages=stages if progressive else (),
                  backup_every_epochs=epochs, export=("keras",), output=output, seed=0)


def run_arm(recipe) -> dict:
    """Train ``recipe``; its per-epoch history and wall-clock times."""
    from kerasnets.training import train

    began = time.perf_counter()
    result = train(recipe, resume=False, verbose=0)
    total = time.perf_counter() - began
    run_dir = os.path.join(recipe.output, recipe.name)
    with open(os.path.join(run_dir, "history.csv")) as handle:
        rows = list(csv.DictReader(handle))
    return {"rows": rows, "total": total, "result": result}


def time_to(rows: list[dict], target: float) -> tuple[float | None, int | None]:
    """(seconds, epoch) of the first epoch whose validation accuracy reaches ``target``, or (None, None)."""
    elapsed = 0.0
    for row in rows:
        elapsed += float(row["seconds"])
        if row.get("val_accuracy") and float(row["val_accuracy"]) >= target:
            return elapsed, int(row["epoch"]) + 1
    return None, None


def table(results: list[tuple[str, str, dict]], epochs: int) -> str:
    """The markdown table of every (dataset, arm, measurement)."""
    lines = ["| dataset | schedule | image sizes (px) | target | time to target | final accuracy | best | epochs time | total |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for dataset, arm, measured in results:
        rows, target = measured["rows"], DATASETS[dataset]["target"]
        seconds, epoch = time_to(rows, target)
        sizes = sorted({int(r["image_size"]) for r in rows})
        accuracies = [float(r["val_accuracy"]) for r in rows if r.get("val_accuracy")]
        reached = f"{seconds:.0f} s (epoch {epoch})" if seconds is not None else f"not in {epochs} epochs"
        lines.append(f"| {dataset} | {arm} | {', '.join(map(str, sizes))} | {target:.0%} | {reached} | "
                     f"{accuracies[-1]:.1%} | {max(accuracies):.1%} | {sum(float(r['seconds']) for r in rows):.0f} s | "
                     f"{measured['total']:.0f} s |")
    return "\n".join(lines)


def main() -> None:
    """Run both arms on each dataset and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=12, help="epochs of each arm (>= 4: one per stage)")
    parser.add_argument("--datasets", nargs="+", choices=sorted(DATASETS), default=["digits", "photos"])
    args = parser.parse_args()
    import keras
    import tensorflow as tf

    results = []
    with tempfile.TemporaryDirectory() as work:
        for dataset in args.datasets:
            data = "digits" if dataset == "digits" else photo_folder(os.path.join(work, "photos"))
            for arm in ("fixed", "progressive"):
                keras.backend.clear_session()
                keras.utils.set_random_seed(0)
                measured = run_arm(make_recipe(dataset, data, arm == "progressive", args.epochs,
                                               os.path.join(work, "runs")))
                results.append((dataset, arm, measured))
                print(f"{dataset} {arm}: " + ", ".join(f"{float(r['val_accuracy']):.3f}@{float(r['seconds']):.1f}s"
                                                       for r in measured["rows"]), flush=True)
    print(f"\n{time.strftime('%Y-%m-%d', time.gmtime())}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPU cores visible, TensorFlow {tf.__version__}, Keras {keras.__version__}, "
          f"{args.epochs} epochs per arm\n")
    print(table(results, args.epochs))


if __name__ == "__main__":
    main()
