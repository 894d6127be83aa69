#!/usr/bin/env bash
# Builds deploy/Dockerfile with podman and checks the image on the CPU: `reel serve` started from the image's own
# filesystem (its user, working directory and environment; the entry point's arguments with --backend cpu), then
# /healthz, a 401 without the key, and an HTTP session whose MP4 (the image's ffmpeg) has the frames asked for.
#
#   deploy/check-image.sh [BASE_IMAGE]      # default: the Dockerfile's CUDA image
#
# The image's filesystem runs under chroot rather than `podman run`, so that the check also works where the OCI
# runtime cannot start containers (a VM without cgroup v2 or the right to set rlimits, as the development machine).
# Needs podman, curl, ffprobe and python3, root, a staged binary (REEL_GPU_DIR=deploy/stage scripts/gpu/build.sh),
# and port 8080 free. Where the CUDA base cannot be pulled, make a Debian base first:
#   debootstrap --variant=minbase bookworm rootfs http://deb.debian.org/debian
#   tar -C rootfs -c . | podman import - localhost/debian-bookworm-base && deploy/check-image.sh localhost/debian-bookworm-base
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:-}
key="check-$RANDOM$RANDOM"
args=(build --isolation chroot --network host -f deploy/Dockerfile -t localhost/reel:check)
[ -n "$base" ] && args+=(--build-arg "CUDA_IMAGE=$base")
podman "${args[@]}" .
root=$(podman image mount localhost/reel:check)
trap 'pkill -f "/opt/reel/reel serve --host 0.0.0.0 --port 8080" || true; sleep 1; podman image unmount localhost/reel:check >/dev/null || true' EXIT
user=$(podman image inspect localhost/reel:check --format '{{.Config.User}}')
workdir=$(podman image inspect localhost/reel:check --format '{{.Config.WorkingDir}}')
entry=$(podman image inspect localhost/reel:check --format '{{join .Config.Entrypoint " "}}')
env=$(podman image inspect localhost/reel:check --format '{{join .Config.Env " "}}')
echo "== image: user $user, working directory $workdir, entry point: $entry"
unshare -m bash -c 'mount -t proc proc "$0/proc" && mount --rbind /dev "$0/dev" && mount -t tmpfs tmpfs "$0/tmp" &&
    exec chroot --userspec="$1:$1" "$0" /usr/bin/env -i $2 HOME="$3" REEL_API_KEY="$4" /bin/sh -c "cd $3 && exec $5 --model /opt/reel/Models/tiny --backend cpu --threads 1"' \
    "$root" "$user" "$env" "$workdir" "$key" "$entry" > /tmp/reel-check-image.log 2>&1 &
for _ in $(seq 1 60); do curl -sf http://127.0.0.1:8080/healthz > /dev/null && break; sleep 1; done
echo "== /healthz: $(curl -s http://127.0.0.1:8080/healthz)"
code=$(curl -s -o /dev/null -w "%{http_code}" http://127.0.0.1:8080/v1/sessions)
echo "== /v1/sessions without the key: $code"; [ "$code" = 401 ]
created=$(curl -s -H "Authorization: Bearer $key" -H "Content-Type: application/json" \
    -d '{"prompt": "a red circle moves right on a blue background", "options": {"seconds": 2}}' http://127.0.0.1:8080/v1/sessions)
id=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["id"])' "$created")
for _ in $(seq 1 120); do
    state=$(curl -s -H "Authorization: Bearer $key" "http://127.0.0.1:8080/v1/sessions/$id")
    python3 -c 'import json, sys; sys.exit(json.loads(sys.argv[1])["state"] not in ("finished", "failed"))' "$state" && break
    sleep 1
done
echo "== session $id: $state"
curl -s -H "Authorization: Bearer $key" -o /tmp/reel-check-image.mp4 "http://127.0.0.1:8080/v1/sessions/$id/video"
probe=$(ffprobe -v error -select_streams v:0 -show_entries stream=codec_name,width,height,nb_frames -of csv=p=0 /tmp/reel-check-image.mp4)
echo "== video: $probe (codec, width, height, frames)"
[ "$probe" = "h264,128,128,33" ]
echo "== the image serves: OK"
