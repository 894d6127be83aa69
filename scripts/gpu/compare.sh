#!/usr/bin/env bash
# Runs on the GPU machine from the repository root: two builds of `reel` side by side in one call, for
# changes that must leave behaviour and speed as they were (e.g. the runtime of issue 19). Each build is a
# folder holding reel.xz and Reel_ReelCUDA.resources, as scripts/gpu/build.sh stages one
# (REEL_GPU_DIR=.gpu/after scripts/gpu/build.sh; the older build staged the same way from its commit).
#
#   bash scripts/gpu/compare.sh .gpu/before .gpu/after [bench|check|parity]...   (default: bench)
#
#  bench:  `reel bench` of the 1.3B (random weights, 480x832) with the Wan VAE (twice) and DiT alone (once),
#          interleaved (before, after, before, after) so that drift hits both alike; a summary per run.
#  profile: `REEL_PROFILE=1 reel bench` with the Wan VAE of each build (where the GPU time went, per stream),
#          into profile-<build>.txt.
#  check:  `reel check-ops` of the second build (every CUDA op against the CPU backend).
#  parity: LongLive v1.0 fixtures made on this GPU by the reference code (.ref/LongLive, carried), bf16 and
#          fp32, then `reel parity` of both builds against each.
# Output in $OUT: bench.txt, profile-<build>.txt, check.txt, parity.txt.
set -uo pipefail
out=${OUT:-/tmp/reel-out}
mkdir -p "$out"
before=$1 after=$2
shift 2
steps=${*:-bench}
for d in "$before" "$after"; do [ -x "$d/reel" ] || xz -dkf "$d/reel.xz"; done
export REEL_CACHE_DIR=${REEL_CACHE_DIR:-/tmp/reel-cache} PYTHONUNBUFFERED=1
summary='end-to-end|DiT-only|DiT per block|decode per block|first frame|recache|switch adds|peak device|decoder alone'
for step in $steps; do
  case $step in
  bench)
    for round in 1 2; do
      for d in "$before" "$after"; do
        for decoder in vae $([ $round = 1 ] && echo none); do
          log="$out/bench-$(basename "$d")-$decoder-$round.log"
          "$d/reel" bench --backend cuda --model 1.3b --decoder $decoder --blocks 14 --warmup 4 --switch-block 10 > "$log" 2>&1
          { echo "== $(basename "$d") decoder=$decoder round $round (exit $?)"; grep -E "$summary" "$log"; } | tee -a "$out/bench.txt"
          rm -f "$log"
        done
      done
    done ;;
  profile)
    for d in "$before" "$after"; do
      REEL_PROFILE=1 "$d/reel" bench --backend cuda --model 1.3b --decoder vae --blocks 12 --warmup 4 --switch-block 10 \
        > "$out/profile-$(basename "$d").txt" 2>&1
      echo "== profile $(basename "$d") (exit $?)"; grep -E "$summary" "$out/profile-$(basename "$d").txt"
    done ;;
  check)
    "$after/reel" check-ops > "$out/check.txt" 2>&1
    echo "check-ops exit $?"; grep -E "FAIL|^ops:|passed|failed" "$out/check.txt" | tail -5 ;;
  parity)
    for dt in bfloat16 float32; do
      python3 tools/fixtures/dit/make_longlive_fixture.py --longlive .ref/LongLive --out /tmp/fx-$dt \
        --dtype $dt --device cuda --height 60 --width 104 2>&1 | tail -1
      short=$([ $dt = bfloat16 ] && echo bf16 || echo f32)
      for d in "$before" "$after"; do
        { echo "== $(basename "$d") $short"; "$d/reel" parity --fixture /tmp/fx-$dt --backend cuda --dtype $short 2>&1; } \
          | tee -a "$out/parity.txt"
      done
    done ;;
  *) echo "unknown step $step" ;;
  esac
done
