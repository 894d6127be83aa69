#!/usr/bin/env bash
# The Hopper attention kernel's first GPU call (issue 23; docs/perf-notes.md, "Reel's Hopper attention kernel"), from
# the repository root, in steps (default: all, in this order):
#   probe   scripts/gpu/hopper_probe.sh: the kernel built by nvcc as shipped, overlapped, and with a wrong V layout,
#           against a float64 CPU reference, timed at the DiT's shapes
#   check   reel check-ops --filter hopper, as shipped and overlapped (REEL_KERNELS_PATH: a copy with HOPPER_OVERLAP 1)
#   ops     reel bench-ops at the DiT's attention shapes: cuDNN, Reel's mma.sync kernel, this one (both variants)
#   bench   reel bench, 1.3B random weights, DiT alone and end to end (Wan VAE): cuDNN, REEL_ATTN_HOPPER=1, overlapped
#   parity  LongLive v1.0 parity in bf16 at head dim 128 (fixture dim 256, 2 heads) with each of the three
# Needs carry [".gpu"] (scripts/gpu/build.sh) and, for parity, [".gpu", ".ref"] with LongLive v1.0 in .ref/LongLive.
#
#   bash scripts/gpu/hopper_session.sh [probe|check|ops|bench|parity]...
set -uo pipefail
out=${OUT:-/tmp/reel-out}
mkdir -p "$out"
if [ -f .gpu/reel.gz ] && [ ! -x .gpu/reel ]; then gunzip -k .gpu/reel.gz; fi
reel=.gpu/reel
export REEL_CACHE_DIR=${REEL_CACHE_DIR:-/tmp/reel-cache} PATH=/usr/local/cuda/bin:$PATH PYTHONUNBUFFERED=1
overlap=/tmp/reel-kernels-overlap
rm -rf "$overlap" && cp -r .gpu/Reel_ReelCUDA.resources/Kernels "$overlap"
sed -i 's/^#define HOPPER_OVERLAP 0$/#define HOPPER_OVERLAP 1/' "$overlap/attention_sm90.cu"
grep -q '^#define HOPPER_OVERLAP 1$' "$overlap/attention_sm90.cu" || { echo "no HOPPER_OVERLAP switch in the shipped kernel"; exit 1; }
# Each variant: its name and the environment that selects it.
variants=("cudnn:" "hopper:REEL_ATTN_HOPPER=1" "overlapped:REEL_ATTN_HOPPER=1 REEL_KERNELS_PATH=$overlap")
for step in ${*:-probe check ops bench parity}; do
  echo "== $step"
  case $step in
  probe) timeout 120 bash scripts/gpu/hopper_probe.sh 2>&1 | tee "$out/probe.txt" ;;
  check)
    timeout 180 $reel check-ops --filter hopper 2>&1 | tee "$out/check-hopper.txt"
    REEL_KERNELS_PATH=$overlap timeout 180 $reel check-ops --filter hopper 2>&1 | tee "$out/check-overlapped.txt" ;;
  ops)
    timeout 60 $reel bench-ops --backend cuda --filter "attention q4680" 2>&1 | tee "$out/ops.txt"
    REEL_KERNELS_PATH=$overlap timeout 60 $reel bench-ops --backend cuda --filter "hopper" 2>&1 | tee "$out/ops-overlapped.txt" ;;
  bench)
    for v in "${variants[@]}"; do
      name=${v%%:*}
      for decoder in none vae; do
        env ${v#*:} timeout 200 $reel bench --backend cuda --model 1.3b --decoder $decoder --blocks 8 --warmup 3 \
          --switch-block 5 > "$out/bench-$name-$decoder.txt" 2>&1
        echo "$name, decoder $decoder:"; grep -E "FPS|per block|peak" "$out/bench-$name-$decoder.txt" | head -6
      done
    done ;;
  parity)
    [ -d .ref/LongLive ] || { echo "parity needs LongLive v1.0 in .ref/LongLive"; continue; }
    python3 tools/fixtures/dit/make_longlive_fixture.py --longlive .ref/LongLive --out /tmp/fx-d128 --dtype bfloat16 \
      --device cuda --height 60 --width 104 --dim 256 --heads 2 --ffn 512 2>&1 | tail -1
    for v in "${variants[@]}"; do
      name=${v%%:*}
      env ${v#*:} timeout 200 $reel parity --fixture /tmp/fx-d128 --backend cuda --dtype bf16 2>&1 | tee "$out/parity-$name.txt" | tail -4
    done ;;
  *) echo "unknown step $step" ;;
  esac
done
