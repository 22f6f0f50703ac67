"""``kerasnets.from_timm(folder, features_only=True)`` against timm's own features_only maps
(features_make.py), on the same normalized input: max |difference| / map scale per stride.
    OUT=/tmp/timmref python benchmarks/timm_parity/features_compare.py resnet50 efficientnet_b0 ...
kerasnets' endpoints are strides 4..32 (as keras-hub's); timm's first map (stride 2) has no twin. ResNetV2's
stride-32 map differs by convention: ours is after the final norm + ReLU (keras.applications' post_relu),
timm's features_only takes stages.3, before it (measured 0.99 of scale; the other maps agree to ~1e-6)."""
import os, sys
import numpy as np
import kerasnets
OUT = os.environ.get("OUT", "/tmp/timmref")
x = np.load(f"{OUT}/x.npy").transpose(0, 2, 3, 1)  # NCHW -> NHWC
for arch in sys.argv[1:]:
    model = kerasnets.from_timm(f"{OUT}/{arch}", features_only=True, include_preprocessing=False,
                                input_shape=x.shape[1:])  # bare network: x is normalized already
    ours = model.predict(x, verbose=0)
    ours = list(ours.values()) if isinstance(ours, dict) else list(ours)
    saved = np.load(f"{OUT}/{arch}/features.npz")
    theirs = [saved[f"arr_{i}"].transpose(0, 2, 3, 1) for i in range(len(saved.files))]
    by_shape = {o.shape: o for o in ours}
    cells = [f"{t.shape[1:]}: " + ("no twin" if t.shape not in by_shape else
                                   f"{np.abs(by_shape[t.shape] - t).max() / np.abs(t).max():.1e}") for t in theirs]
    print(f"{arch}: " + "; ".join(cells))
