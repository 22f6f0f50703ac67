"""from_timm on the folders make.py wrote, against timm's own logits: prints max |diff| / scale for the
bare network (normalized input) and the full model (RGB 0..255 input). Run with kerasnets' venv:
    OUT=/tmp/timmref python benchmarks/timm_parity/compare.py resnet50 efficientnet_b0 ..."""
import os, sys, json
OUT = os.environ.get("OUT", "/tmp/timmref")
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, kerasnets
x = np.load(f"{OUT}/x.npy").transpose(0, 2, 3, 1)  # NCHW -> NHWC, timm-normalized
for arch in sys.argv[1:]:
    folder = f"{OUT}/{arch}"
    ref = np.load(f"{folder}/logits.npy")
    bare = kerasnets.from_timm(folder, include_preprocessing=False, input_shape=(128, 128, 3), classifier_activation=None)
    got = np.asarray(bare(x, training=False))
    cfg = json.load(open(f"{folder}/config.json"))["pretrained_cfg"]
    mean, std = np.array(cfg["mean"]), np.array(cfg["std"])
    full = kerasnets.from_timm(folder, input_shape=(128, 128, 3), classifier_activation=None)  # RGB 0..255 input
    got255 = np.asarray(full((x * std + mean) * 255.0, training=False))
    scale = np.abs(ref).max()
    print(f"| {arch} | {scale:.3g} | {np.abs(got - ref).max() / scale:.1e} | {np.abs(got255 - ref).max() / scale:.1e} | "
          f"{(got.argmax(-1) == ref.argmax(-1)).mean():.0%} |", flush=True)
