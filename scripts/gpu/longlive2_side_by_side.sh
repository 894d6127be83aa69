#!/usr/bin/env bash
# LongLive 2.0's own code against `reel bench --model 5b` in one GPU call (issue 22 item 5). Run from the repository
# root on the GPU machine; everything is written to $OUT (one .txt per step, summary.txt at the end).
#
# Steps, each bounded by `timeout` (seconds; the sum stays under the device's 600 s a command):
#   ref_dit  130  python3 tools/gpu/longlive2_speed.py (the reference's DiT loop, no decode)
#   ref_vae  170  the same with --decode (the reference's Wan2.2 VAE, whole video after the loop, as inference.yaml)
#   reel_dit 110  reel bench --backend cuda --model 5b --decoder none
#   reel_vae 180  reel bench --backend cuda --model 5b --decoder vae (through Pipeline: warm-up, decoder alone)
# Both sides run the same blocks: BLOCKS (8), WARMUP (4: blocks left out of the steady median) and SWITCH (6: the
# scene-cut block, also left out). STEPS="ref_dit reel_dit" runs a subset (e.g. to split over two calls); REF_EXTRA
# adds arguments to the reference's runs (e.g. "--eager", or "--tiny --device cpu" to try this script without a GPU).
#
# Needs, carried to the GPU machine (carry: .gpu, .ref/LongLive2, .whl/longlive2; ~6 + 19 + 7 MB):
#   .gpu/go.sh + .gpu/lead.tar.xz  the static reel at /tmp/g/reel (as .gpu/call4.sh uses it)
#   .ref/LongLive2                  NVlabs/LongLive main, exported (git-ignored; never committed):
#       G=/work/.mirror/NVlabs+LongLive/repo; mkdir -p .ref/LongLive2
#       git --git-dir=$G archive main | tar -x -C .ref/LongLive2 --exclude=assets
#       git --git-dir=$G rev-parse main > .ref/LongLive2/COMMIT
#   .whl/longlive2/                 wheels of what the reference imports and the GPU image lacks (pure Python):
#       python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#           --platform manylinux_2_28_x86_64 -d .whl/longlive2 diffusers==0.42.1 omegaconf==2.4.0
#     (diffusers: ModelMixin/ConfigMixin of the model, SchedulerMixin of the UniPC solver; omegaconf: the config.
#     ftfy, imported only by the text encoder's tokenizer, gets a stand-in from the shim.)
set -uo pipefail
OUT=${OUT:-/tmp/ll2-out}
mkdir -p "$OUT"
BLOCKS=${BLOCKS:-8}
WARMUP=${WARMUP:-4}
SWITCH=${SWITCH:-6}
STEPS=${STEPS:-"ref_dit ref_vae reel_dit reel_vae"}
REF_EXTRA=${REF_EXTRA:-}
export PYTHONUNBUFFERED=1

if [ -d .whl/longlive2 ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site-ll2 \
    .whl/longlive2/*.whl && export PYTHONPATH=/tmp/site-ll2${PYTHONPATH:+:$PYTHONPATH}
fi
python3 - <<'EOF' 2>&1 | tee "$OUT/env.txt"
import importlib
for name in "torch triton flash_attn diffusers omegaconf transformers einops regex ftfy peft".split():
    try:
        m = importlib.import_module(name)
        print(f"{name} {getattr(m, '__version__', '?')}")
    except Exception as exc:  # noqa: BLE001
        print(f"{name} missing ({type(exc).__name__}: {exc})")
EOF

have_reel=0
if [ -f .gpu/go.sh ]; then
  source .gpu/go.sh && have_reel=1
fi
R=/tmp/g/reel
t() {
  local name=$1; shift
  echo "=== $name: $*"; timeout "$@" 2>&1 | tee "$OUT/$name.txt"; echo "=== $name exit ${PIPESTATUS[0]}"
}
geometry="--blocks $BLOCKS --warmup $WARMUP --switch-block $SWITCH"
for step in $STEPS; do
  case $step in
    ref_dit) t ref_dit 130 python3 tools/gpu/longlive2_speed.py --longlive .ref/LongLive2 $geometry $REF_EXTRA ;;
    ref_vae) t ref_vae 170 python3 tools/gpu/longlive2_speed.py --longlive .ref/LongLive2 $geometry --decode $REF_EXTRA ;;
    reel_dit) [ $have_reel = 1 ] && t reel_dit 110 $R bench --backend cuda --model 5b --decoder none $geometry ;;
    reel_vae) [ $have_reel = 1 ] && t reel_vae 180 $R bench --backend cuda --model 5b --decoder vae $geometry ;;
    *) echo "unknown step $step" ;;
  esac
done

# One place for the figures: the reference's summary lines and reel's table rows.
{
  for f in ref_dit ref_vae; do
    [ -f "$OUT/$f.txt" ] && { echo "--- $f"; sed -n '/^LongLive 2.0 reference/,$p' "$OUT/$f.txt"; }
  done
  for f in reel_dit reel_vae; do
    [ -f "$OUT/$f.txt" ] && { echo "--- $f"; grep -E "^reel bench|FPS|per block|first frame|scene cut|peak device|KV cache" "$OUT/$f.txt"; }
  done
} > "$OUT/summary.txt"
cat "$OUT/summary.txt"
