#!/usr/bin/env bash
# On the GPU machine, from the repository root: compiles the Hopper attention kernel with nvcc as shipped (the overlapped
# consumer loop with ping-pong turns and a 3-stage ring, session 17's fastest), plain (neither, 2 stages), overlapped,
# ping-pong, both with 2 stages, overlapped with 3, and with its V descriptor's offsets swapped (a wrong layout must
# fail), each with its stage probes (scripts/gpu/hopper_probe_kernels.cu), builds the probe, and runs each; then the
# FP8 kernel's probe (scripts/gpu/hopper_fp8_probe.cpp) on the shipped build and on one with V's key order undone.
set -uo pipefail
cuda=${CUDA_HOME:-/usr/local/cuda}
out=${OUT:-/tmp}/hopper-probe
mkdir -p "$out"
g++ -O2 -std=c++17 -I "$cuda/include" -o "$out/probe" scripts/gpu/hopper_attention_probe.cpp -L "$cuda/lib64" -L "$cuda/targets/x86_64-linux/lib/stubs" -lcuda || exit 1
for variant in "shipped:" "plain:-DHOPPER_OVERLAP=0 -DHOPPER_PINGPONG=0 -DSTAGES=2" \
               "overlapped:-DHOPPER_PINGPONG=0 -DSTAGES=2" "pingpong:-DHOPPER_OVERLAP=0 -DSTAGES=2" \
               "both-2-stages:-DSTAGES=2" "overlapped-3-stages:-DHOPPER_PINGPONG=0" \
               "v-offsets-swapped:-DV_LEADING=1024 -DV_STRIDE=16384"; do
    name=${variant%%:*}; flags=${variant#*:}
    echo "== $name $flags"
    "$cuda/bin/nvcc" -arch=sm_90a -cubin -Xptxas -v $flags -I Sources/ReelCUDA/Kernels -o "$out/$name.cubin" \
        scripts/gpu/hopper_probe_kernels.cu 2>&1 | grep -E "error|registers|spill|warning" | head -12
    timeout 20 "$out/probe" "$out/$name.cubin"
done
# The FP8 kernel (attn_sm90_d128_e4m3, fp8_attn_quantize_vt) from the shipped build, then with V's key order undone.
g++ -O2 -std=c++17 -I "$cuda/include" -o "$out/fp8probe" scripts/gpu/hopper_fp8_probe.cpp -L "$cuda/lib64" -L "$cuda/targets/x86_64-linux/lib/stubs" -lcuda || exit 1
echo "== fp8 shipped"
timeout 60 "$out/fp8probe" "$out/shipped.cubin"
echo "== fp8 v-keys-unpermuted -DF8_VT_IDENTITY=1"
"$cuda/bin/nvcc" -arch=sm_90a -cubin -DF8_VT_IDENTITY=1 -I Sources/ReelCUDA/Kernels -o "$out/fp8-identity.cubin" \
    scripts/gpu/hopper_probe_kernels.cu 2>&1 | grep -E "error" | head -12
timeout 60 "$out/fp8probe" "$out/fp8-identity.cubin"
