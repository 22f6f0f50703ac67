#!/usr/bin/env bash
# GPU training throughput for a task lent a GPU: ResNet-50 and EfficientNet-B0, mixed_float16,
# with and without XLA, kerasnets against keras.applications, images/s per GPU. Under 5 minutes.
#   bash benchmarks/gpu_train.sh            (needs tensorflow[and-cuda] and the package installed)
set -euo pipefail
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL=3
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
for jit in "" "--jit"; do
  python benchmarks/bench_train.py --batch 128 --steps 10 --rounds 2 --policies mixed_float16 $jit
done
