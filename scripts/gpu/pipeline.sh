#!/usr/bin/env bash
# Runs on the GPU machine from the repository root: the streaming pipeline's GPU checks in one call.
#  1. LongLive v1.0 parity fixtures made on this GPU by the reference code (bf16 and fp32, the real
#     1560-token frame), and `reel parity` on the CUDA backend against each, with the wrong variants.
#  2. `reel bench` of the real 1.3B architecture (random weights) at 480x832 end to end with the Wan VAE.
#  3. LongLive's own speed on the same GPU (DiT only), for the side-by-side ratio.
# Needs: `carry: [".gpu", ".ref"]` (the binary from scripts/gpu/build.sh; LongLive v1.0 in .ref/LongLive).
#
#  fp8: `--fp8` over a long run (memory every 50 blocks) and its per-kernel profile beside the Wan VAE.
#  serve: `reel serve` on the GPU (the shipped tiny model, bf16 and --fp8): one recorded HTTP session.
#
#   bash scripts/gpu/pipeline.sh [parity|bench|profile|reference|memory|fp8|serve]...   (default: parity bench reference)
set -uo pipefail
out=${OUT:-/tmp/reel-out}
mkdir -p "$out"
if [ -f .gpu/reel.xz ] && [ ! -x .gpu/reel ]; then xz -dk .gpu/reel.xz; fi
reel=.gpu/reel
export REEL_CACHE_DIR=${REEL_CACHE_DIR:-/tmp/reel-cache} PYTHONUNBUFFERED=1
steps=${*:-parity bench reference}
for step in $steps; do
  case $step in
  parity)
    for dt in bfloat16 float32; do
      python3 tools/fixtures/dit/make_longlive_fixture.py --longlive .ref/LongLive --out /tmp/fx-$dt \
        --dtype $dt --device cuda --height 60 --width 104 2>&1 | tail -1
      short=$([ $dt = bfloat16 ] && echo bf16 || echo f32)
      $reel parity --fixture /tmp/fx-$dt --backend cuda --dtype $short 2>&1 | tee "$out/parity-$short.txt"
    done ;;
  bench)
    $reel bench --backend cuda --model 1.3b --blocks 14 --warmup 4 --switch-block 10 2>&1 | tee "$out/bench.txt"
    $reel bench --backend cuda --model 1.3b --decoder tiny --blocks 14 --warmup 4 --switch-block 10 2>&1 | tee "$out/bench-tiny.txt"
    $reel bench --backend cuda --model 1.3b --decoder none --blocks 14 --warmup 4 --switch-block 10 2>&1 | tee "$out/bench-dit.txt" ;;
  profile)
    # Per-kernel GPU time (REEL_PROFILE=1) of the measured blocks, DiT with the Wan VAE and DiT alone.
    REEL_PROFILE=1 REEL_CUDNN_LOG=1 $reel bench --backend cuda --model 1.3b --blocks 10 --warmup 4 --switch-block 8 \
      > "$out/profile.txt" 2> "$out/profile-log.txt"; tail -5 "$out/profile-log.txt"
    REEL_PROFILE=1 $reel bench --backend cuda --model 1.3b --decoder none --blocks 10 --warmup 4 --switch-block 8 \
      > "$out/profile-dit.txt" 2>&1
    grep -E "FPS|per block|first frame|peak" "$out/profile.txt" "$out/profile-dit.txt" ;;
  reference)
    python3 tools/gpu/longlive_speed.py --longlive .ref/LongLive --blocks 8 2>&1 | grep -v "^\s*-\|kv_cache\|local_attn\|KV inference" | tee "$out/longlive-speed.txt" ;;
  memory)
    # 800 blocks = 9600 frames = 10 minutes of video at 16 fps; MEMORY_SECONDS caps the wall time.
    timeout ${MEMORY_SECONDS:-420} $reel bench --backend cuda --model 1.3b --blocks ${MEMORY_BLOCKS:-800} --warmup 4 \
      --switch-block 10 --memory-every 50 2>&1 | tee "$out/memory.txt" ;;
  fp8)
    timeout ${MEMORY_SECONDS:-300} $reel bench --backend cuda --model 1.3b --fp8 --blocks ${MEMORY_BLOCKS:-200} --warmup 4 \
      --switch-block 10 --memory-every 50 2>&1 | tee "$out/memory-fp8.txt"
    REEL_PROFILE=1 $reel bench --backend cuda --model 1.3b --fp8 --blocks 10 --warmup 4 --switch-block 8 \
      > "$out/profile-fp8.txt" 2>&1
    grep -E "FPS|per block|first frame|peak" "$out/profile-fp8.txt" ;;
  serve)
    port=8091
    for flag in "" --fp8; do
      name=serve${flag:+-fp8}
      $reel serve --backend cuda $flag --port $port > "$out/$name.txt" 2>&1 &
      pid=$!
      for _ in $(seq 120); do curl -sf localhost:$port/healthz > /dev/null && break; sleep 1; done
      id=$(curl -sf -X POST localhost:$port/v1/sessions -H 'content-type: application/json' \
        -d '{"prompt":"a red circle moves to the left on a blue background","seed":1,"options":{"seconds":4}}' \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
      state=none
      for _ in $(seq 180); do
        state=$(curl -sf localhost:$port/v1/sessions/$id | python3 -c 'import json, sys; print(json.load(sys.stdin)["state"])')
        if [ "$state" = finished ] || [ "$state" = failed ]; then break; fi
        sleep 1
      done
      curl -sf localhost:$port/v1/sessions/$id > "$out/$name-status.json"
      curl -sf localhost:$port/v1/sessions/$id/video -o "$out/$name.video"
      echo "reel serve --backend cuda $flag: session $id $state, video $(wc -c < "$out/$name.video") bytes"
      curl -sf localhost:$port/metrics | grep -v '^#' | head -20 > "$out/$name-metrics.txt"
      kill $pid; wait $pid
    done ;;
  *) echo "unknown step $step" ;;
  esac
done
