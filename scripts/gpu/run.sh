#!/usr/bin/env bash
# Runs on the GPU machine from the repository root (the device tool's working directory):
# lists the GPU, checks every CUDA op against the CPU backend, benchmarks the ops at the 1.3B
# model's shapes, and measures PyTorch's cuBLAS / SDPA rates on the same GPU for comparison.
# Logs go to $OUT when it is set. Exit status: check-ops' (non-zero on any failed op).
#
#   bash .gpu/run.sh [check-ops args...]
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${OUT:-/tmp/reel-out}
mkdir -p "$out"
if [ -f "$here/reel.xz" ] && [ ! -x "$here/reel" ]; then xz -dk "$here/reel.xz"; fi
export REEL_CACHE_DIR=${REEL_CACHE_DIR:-/tmp/reel-cache}
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv 2>&1 | tee "$out/gpu.txt"
"$here/reel" devices 2>&1 | tee "$out/devices.txt"
"$here/reel" check-ops "$@" 2>&1 | tee "$out/check-ops.txt"
status=${PIPESTATUS[0]}
if [ -z "${REEL_SKIP_BENCH:-}" ]; then
  "$here/reel" bench-ops --backend cuda 2>&1 | tee "$out/bench-ops.txt"
  if python3 -c 'import torch' 2>/dev/null; then
    python3 "$here/torch_rates.py" 2>&1 | tee "$out/torch-rates.txt"
  fi
fi
exit $status
