#!/usr/bin/env bash
# The row ops held by a block of 128 threads a row (rows of 2049 to 8192 values: the 14B's 5120, the 5B's 3072;
# `Tuning.wideRowKernels`, REEL_WIDE_ROWS; written in session 18 and never run) on a GPU, from the repository root:
# check-ops of every norm op (the new kernels' cases: 3072, 5120, and the three-pass fallbacks past 8192), the 14B
# with every block linear in FP8 and LongLive 2.0's 5B with the Wan2.2 VAE, each with the old three-pass path and the
# new kernels in the same call, then LongLive v1.0 parity at head dim 128 (with .ref/LongLive). If check-ops passes
# and the benches gain, turn `wideRowKernels` on (docs/perf-notes.md, session 18, has the profile that found it).
# Needs carry [".gpu"] (scripts/gpu/build.sh) and, for parity, ".ref" with LongLive v1.0 in .ref/LongLive.
#
#   bash scripts/gpu/wide_rows.sh
set -uo pipefail
xz -dkf .gpu/reel.xz && chmod +x .gpu/reel
export REEL_CACHE_DIR=${REEL_CACHE_DIR:-/tmp/reel-cache}
r=.gpu/reel; o=${OUT:-/tmp/reel-out}; mkdir -p "$o"
nvidia-smi --query-gpu=name --format=csv,noheader
REEL_WIDE_ROWS=1 timeout 120 $r check-ops --filter Norm > "$o/check.txt" 2>&1; echo "check-ops rc=$?"
grep -E "5120|3072|9000|8200|72, 128|20, 128" "$o/check.txt" | cut -c1-150; tail -2 "$o/check.txt"
REEL_WIDE_ROWS=1 timeout 60 $r bench-ops --backend cuda --filter "14B [" 2>&1 | grep "14B" | cut -c1-160
for e in REEL_WIDE_ROWS=0 REEL_WIDE_ROWS=1; do
  env $e timeout 90 $r bench --backend cuda --model 14b --fp8 --fp8-layers all --blocks 6 --warmup 3 --switch-block 4 \
    > "$o/b14-$e.txt" 2>&1
  echo "== 14B, every block linear FP8, $e:"; grep -E "FPS|per block|peak|first" "$o/b14-$e.txt" | head -9
  env $e timeout 120 $r bench --backend cuda --model 5b --decoder vae --blocks 7 --warmup 3 --switch-block 5 > "$o/b5-$e.txt" 2>&1
  echo "== 5B with the Wan2.2 VAE, $e:"; grep -E "FPS|per block|peak|first|decode" "$o/b5-$e.txt" | head -12
done
if [ -d .ref/LongLive ]; then
  python3 tools/fixtures/dit/make_longlive_fixture.py --longlive .ref/LongLive --out /tmp/fx-d128 --dtype bfloat16 \
    --device cuda --height 60 --width 104 --dim 256 --heads 2 --ffn 512 2>&1 | tail -1
  for e in "REEL_ATTN_HOPPER=0" "REEL_ATTN_HOPPER_MIN_KEYS=1"; do
    echo "== parity $e"; env $e timeout 90 $r parity --fixture /tmp/fx-d128 --backend cuda --dtype bf16 2>&1 | tail -4
  done
fi
