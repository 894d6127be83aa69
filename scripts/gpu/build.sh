#!/usr/bin/env bash
# Builds the static `reel` binary for the GPU machine and stages it, with the CUDA kernel sources
# it compiles at run time (Reel_ReelCUDA.resources), in the git-ignored .gpu/ folder of the main
# checkout, which the device tool sends along with `carry: [".gpu"]`.
#
#   scripts/gpu/build.sh            # stage into <main checkout>/.gpu
#   REEL_GPU_DIR=/some/dir scripts/gpu/build.sh
set -euo pipefail
# (Nothing Swift may be linked dynamically: the GPU machine has no Swift runtime; checked below.)
repo=$(git rev-parse --show-toplevel)
main=$(git -C "$repo" worktree list --porcelain | awk '/^worktree /{print $2; exit}')
dest=${REEL_GPU_DIR:-$main/.gpu}

cd "$repo"
swift build -c release --static-swift-stdlib --product reel
bin=$(swift build -c release --static-swift-stdlib --show-bin-path)

rm -rf "$dest"
mkdir -p "$dest"
# Stripped and compressed with xz: the device tool carries at most 64 MiB with the whole working tree (~46 MB of
# tracked files, the tiny model's weights most of it), and the static binary (Foundation's ICU data included) is
# ~78 MB stripped, 29 MB gzipped, 19 MB with xz -9e (~1 minute here); the GPU scripts unpack it with xz -dk.
strip -o "$dest/reel" "$bin/reel"
if ldd "$dest/reel" | grep -i swift; then echo "error: reel links a Swift library dynamically" >&2; exit 1; fi
xz -9e -T2 "$dest/reel"
cp -R "$bin/Reel_ReelCUDA.resources" "$dest/"
cp scripts/gpu/run.sh scripts/gpu/torch_rates.py "$dest/"
echo "staged in $dest:"
ls -la "$dest"
