"""Writes timm checkpoints with timm itself (save_for_hf, randomized BN statistics) and its logits on a fixed
input, for compare.py. Run in a venv with torch (CPU) + timm + safetensors + pillow:
    PYTHONPATH=benchmarks/timm_parity/tvstub OUT=/tmp/timmref python make.py resnet50 efficientnet_b0 ...
(tvstub: timm imports torchvision for transforms only; no CPU torchvision wheel matched torch 2.13 here)."""
import json, os, sys
OUT = os.environ.get("OUT", "/tmp/timmref")
import numpy as np, torch, timm
from timm.models import _hub
torch.manual_seed(0)
archs = sys.argv[1:]
x = np.random.RandomState(0).normal(0, 1, (2, 3, 128, 128)).astype("float32")
np.save(f"{OUT}/x.npy", x)
for arch in archs:
    m = timm.create_model(arch, pretrained=False)
    g = torch.Generator().manual_seed(1)
    for mod in m.modules():  # non-trivial BN statistics and affine, as a trained net has
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
            mod.running_mean.copy_(torch.randn(mod.running_mean.shape, generator=g) * 0.1)
            mod.running_var.copy_(torch.rand(mod.running_var.shape, generator=g) + 0.5)
            mod.weight.data.copy_(torch.rand(mod.weight.shape, generator=g) + 0.5)
            mod.bias.data.copy_(torch.randn(mod.bias.shape, generator=g) * 0.1)
    m.eval()
    folder = f"{OUT}/{arch}"
    _hub.save_for_hf(m, folder, safe_serialization=True)
    with torch.no_grad():
        y = m(torch.from_numpy(x)).numpy()
    np.save(f"{folder}/logits.npy", y)
    print(arch, sorted(os.listdir(folder)), y.shape, float(np.abs(y).max()), flush=True)
