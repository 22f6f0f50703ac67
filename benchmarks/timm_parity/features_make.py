"""timm's own ``features_only`` maps for the folders make.py wrote (same input x.npy), for features_compare.py.
Run in the timm venv (see make.py):
    PYTHONPATH=benchmarks/timm_parity/tvstub OUT=/tmp/timmref python features_make.py resnet50 efficientnet_b0 ..."""
import os, re, sys
import numpy as np, torch, timm
from safetensors.torch import load_file
OUT = os.environ.get("OUT", "/tmp/timmref")
x = np.load(f"{OUT}/x.npy")
for arch in sys.argv[1:]:
    m = timm.create_model(arch, pretrained=False, features_only=True)
    state = load_file(f"{OUT}/{arch}/model.safetensors")
    if any(k.startswith("stages_") for k in m.state_dict()):  # timm's FeatureDictNet flattens "stages.0" to "stages_0"
        state = {re.sub(r"^(stages|stem)\.", r"\1_", k): v for k, v in state.items()}
    missing, unexpected = m.load_state_dict(state, strict=False)
    assert not missing, missing  # only the head's tensors are unused
    m.eval()
    with torch.no_grad():
        feats = m(torch.from_numpy(x))
    np.savez(f"{OUT}/{arch}/features.npz", *[f.numpy() for f in feats])
    print(arch, [tuple(f.shape) for f in feats], "unused head tensors:", len(unexpected))
