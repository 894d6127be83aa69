#!/usr/bin/env bash
# The Hopper attention kernels on a GPU (issue 23; docs/perf-notes.md, "Reel's Hopper attention kernel"), from the
# repository root, in steps (default: all, in this order):
#   probe   scripts/gpu/hopper_probe.sh: the bf16 kernel built by nvcc as shipped and in variants, with a wrong V layout,
#           against a float64 CPU reference, timed at the DiT's shapes; the FP8 kernel likewise
#   check   reel check-ops --filter hopper (bf16 and FP8 cases) for each variant of the kernel (copies of the sources
#           with HOPPER_OVERLAP / HOPPER_PINGPONG / STAGES changed, through REEL_KERNELS_PATH)
#   ops     reel bench-ops at the DiT's attention shapes: what .auto picks, cuDNN, Reel's mma.sync kernel, the shipped
#           Hopper kernel, then each variant
#   bench   reel bench, 1.3B random weights, DiT alone and end to end (Wan VAE): each variant
#   parity  LongLive v1.0 parity in bf16 at head dim 128 (fixture dim 256, 2 heads) with each variant
# Variants: cudnn (REEL_ATTN_HOPPER=0), hopper (the shipped kernel for every eligible call), default (what Reel does
# unset: the shipped kernel for 8192 keys or more), plain, overlapped, both2 (overlap and ping-pong with 2 stages);
# VARIANTS="..." picks some by name.
# Needs carry [".gpu"] (scripts/gpu/build.sh) and, for parity, [".gpu", ".ref"] with LongLive v1.0 in .ref/LongLive.
#
#   bash scripts/gpu/hopper_session.sh [probe|check|ops|bench|parity]...
set -uo pipefail
out=${OUT:-/tmp/reel-out}
mkdir -p "$out"
if [ -f .gpu/reel.xz ] && [ ! -x .gpu/reel ]; then xz -dk .gpu/reel.xz; fi
reel=.gpu/reel
export REEL_CACHE_DIR=${REEL_CACHE_DIR:-/tmp/reel-cache} PATH=/usr/local/cuda/bin:$PATH PYTHONUNBUFFERED=1
# A copy of the kernel sources with compile-time settings of attention_sm90.cu changed: NAME (set to 1) or NAME=VALUE.
kernels_with() {
  local dir=/tmp/reel-kernels-$1; shift
  rm -rf "$dir" && cp -r .gpu/Reel_ReelCUDA.resources/Kernels "$dir"
  for setting in "$@"; do
    local name=${setting%%=*} value=1
    [ "$name" != "$setting" ] && value=${setting#*=}
    sed -i "s/^#define $name [0-9]*\( .*\)\?\$/#define $name $value/" "$dir/attention_sm90.cu"
    grep -q "^#define $name $value\$" "$dir/attention_sm90.cu" || { echo "no $name setting in the shipped kernel" >&2; exit 1; }
  done
  echo "$dir"
}
plain=$(kernels_with plain HOPPER_OVERLAP=0 HOPPER_PINGPONG=0 STAGES=2) || exit 1
overlap=$(kernels_with overlap HOPPER_PINGPONG=0 STAGES=2) || exit 1
both2=$(kernels_with both2 STAGES=2) || exit 1
# Each variant: its name and the environment that selects it (REEL_ATTN_HOPPER_MIN_KEYS=1: every eligible call, the
# cross-attention's too); VARIANTS picks some by name (default: all).
all=("cudnn:REEL_ATTN_HOPPER=0" "hopper:REEL_ATTN_HOPPER=1 REEL_ATTN_HOPPER_MIN_KEYS=1"
     "default:" "plain:REEL_ATTN_HOPPER=1 REEL_ATTN_HOPPER_MIN_KEYS=1 REEL_KERNELS_PATH=$plain"
     "overlapped:REEL_ATTN_HOPPER=1 REEL_ATTN_HOPPER_MIN_KEYS=1 REEL_KERNELS_PATH=$overlap"
     "both2:REEL_ATTN_HOPPER=1 REEL_ATTN_HOPPER_MIN_KEYS=1 REEL_KERNELS_PATH=$both2")
variants=()
for v in "${all[@]}"; do
  case " ${VARIANTS:-cudnn hopper default plain overlapped both2} " in *" ${v%%:*} "*) variants+=("$v") ;; esac
done
for step in ${*:-probe check ops bench parity}; do
  echo "== $step"
  case $step in
  probe) timeout 120 bash scripts/gpu/hopper_probe.sh 2>&1 | tee "$out/probe.txt" ;;
  check)
    for v in "${variants[@]}"; do
      case ${v%%:*} in cudnn|default) continue ;; esac
      env ${v#*:} timeout 180 $reel check-ops --filter hopper 2>&1 | tee "$out/check-${v%%:*}.txt" | tail -3
    done ;;
  ops)
    timeout 60 $reel bench-ops --backend cuda --filter "attention q4680" 2>&1 | tee "$out/ops.txt"
    for v in "${variants[@]}"; do
      case ${v%%:*} in cudnn|hopper|default) continue ;; esac
      env ${v#*:} timeout 60 $reel bench-ops --backend cuda --filter "hopper" 2>&1 | tee "$out/ops-${v%%:*}.txt" | tail -3
    done ;;
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
