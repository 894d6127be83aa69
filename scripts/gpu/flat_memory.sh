#!/usr/bin/env bash
# Issue 21's last item on a GPU: memory flat over 10 minutes of video under each cap (800 blocks = 9,597 frames at
# 16 fps), a prompt switch with its recache every 100 blocks, device memory (Reel's allocator: the cap's own count)
# and host resident memory printed every 50 blocks and flushed as printed, so a run cut short keeps its lines.
# Written in session 20, never run (no device machine could be started that session). Needs carry [".gpu"].
#
#   bash scripts/gpu/flat_memory.sh 13b-6gb [limit_s]    # the 1.3B (Wan VAE) in 6 GB, LongLive's 4 steps (~560 s on an H100)
#   bash scripts/gpu/flat_memory.sh 14b-24gb [limit_s]   # the 14B (FP8 linears) in 24 GB, 1 step a block (~500 s)
#   bash scripts/gpu/flat_memory.sh 14b-12gb [limit_s]   # the 14B (FP8 linears, FP8 KV cache) in 12 GB, 1 step (~650 s:
#                                                        # past one call; the lines up to the limit come back)
# One denoising step (`--denoising-steps 1000`) runs 2 DiT passes a block instead of 5 over the same cache, streamed
# blocks and recaches, so the 14B's 10 minutes fit a call; say so beside its figures. With less device time left,
# pass a smaller limit: the lines printed by then come back.
set -uo pipefail
case=${1:?13b-6gb, 14b-24gb or 14b-12gb}; limit=${2:-585}
o=${OUT:-/tmp/reel-out}; mkdir -p "$o"
xz -dkf .gpu/reel.xz && chmod +x .gpu/reel; r=.gpu/reel
export REEL_CACHE_DIR=${REEL_CACHE_DIR:-/tmp/reel-cache}
nvidia-smi --query-gpu=name --format=csv,noheader
long=(--blocks 800 --warmup 4 --switch-block 0 --switch-every 100 --memory-every 50)
case $case in
  13b-6gb) args=(--model 1.3b --decoder vae --gpu-memory 6) ;;
  14b-24gb) args=(--model 14b --fp8 --fp8-layers all --decoder vae --gpu-memory 24 --denoising-steps 1000) ;;
  14b-12gb) args=(--model 14b --fp8 --fp8-layers all --kv-cache fp8 --decoder vae --gpu-memory 12 --denoising-steps 1000) ;;
  *) echo "unknown case $case"; exit 2 ;;
esac
start=$(date +%s)
timeout "$limit" $r bench --backend cuda "${args[@]}" "${long[@]}" > "$o/flat_$case.txt" 2>&1
echo "rc $? after $(( $(date +%s) - start )) s"
grep -vE "^block [0-9]+: " "$o/flat_$case.txt" | cut -c1-300 | head -40
grep -E "^block [0-9]+: " "$o/flat_$case.txt"
