#!/usr/bin/env bash
# Two `reel serve` (the tiny model on the CPU) on 127.0.0.1:8091 and :8092 behind nginx on 127.0.0.1:8090
# (deploy/nginx/loopback.conf), all with one API key. Shows: /healthz of both servers and through nginx, a
# WebSocket session through nginx with its frames, HTTP sessions from several client addresses (127.0.0.x) each
# kept on one server, and a request without the key refused. Needs nginx (Debian: apt-get install nginx), curl,
# python3 and a built reel (swift build; REEL=path overrides).
#
#   deploy/loopback-demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# The newer of the release and debug builds, unless REEL names one.
reel=${REEL:-$( [ .build/release/reel -nt .build/debug/reel ] && echo .build/release/reel || echo .build/debug/reel )}
prefix=$(mktemp -d /tmp/reel-loopback.XXXXXX)
mkdir -p "$prefix/tmp"
export REEL_API_KEY=${REEL_API_KEY:-demo-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')}
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$prefix"
}
trap cleanup EXIT

for port in 8091 8092; do
    "$reel" serve --port "$port" --threads 2 --request-rate 0 > "$prefix/serve-$port.log" 2>&1 &
    pids+=($!)
done
nginx -p "$prefix" -c "$PWD/deploy/nginx/loopback.conf" > "$prefix/nginx.log" 2>&1 &
pids+=($!)

wait_for() { for _ in $(seq 1 120); do curl -sf "$1" > /dev/null && return 0; sleep 0.5; done; echo "no answer from $1" >&2; return 1; }
for url in http://127.0.0.1:8091/healthz http://127.0.0.1:8092/healthz http://127.0.0.1:8090/healthz; do
    wait_for "$url"
    echo "GET $url -> $(curl -s "$url")"
done

echo "== without the key, through nginx:"
curl -s -o /dev/null -w "GET /v1/sessions -> %{http_code}\n" http://127.0.0.1:8090/v1/sessions

echo "== a WebSocket session through nginx:"
python3 deploy/ws_client.py 127.0.0.1 8090 "$REEL_API_KEY" "a red circle moves right on a blue background" 2

echo "== HTTP sessions through nginx from several client addresses (each polled three times):"
for n in 1 2 3 4 5 6; do
    addr=127.0.0.$n
    created=$(curl -s --interface "$addr" -D "$prefix/h" -H "Authorization: Bearer $REEL_API_KEY" \
        -H "Content-Type: application/json" -d '{"prompt": "a green square", "options": {"seconds": 0.5, "record": false}}' \
        http://127.0.0.1:8090/v1/sessions)
    id=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["id"])' "$created")
    servers=$(grep -i '^x-reel-upstream' "$prefix/h" | tr -d '\r' | awk '{print $2}')
    codes=""
    for _ in 1 2 3; do
        codes+=$(curl -s --interface "$addr" -D "$prefix/h" -o /dev/null -w "%{http_code} " \
            -H "Authorization: Bearer $REEL_API_KEY" "http://127.0.0.1:8090/v1/sessions/$id")
        servers+=" $(grep -i '^x-reel-upstream' "$prefix/h" | tr -d '\r' | awk '{print $2}')"
    done
    echo "client $addr: session $id created on $(echo "$servers" | awk '{print $1}'); GET -> $codes; servers: $servers"
done

echo "== sessions created per server (/metrics, with the key):"
for port in 8091 8092; do
    echo "127.0.0.1:$port $(curl -s -H "Authorization: Bearer $REEL_API_KEY" http://127.0.0.1:$port/metrics | grep '^reel_sessions_created_total')"
done
echo "== nginx access log:"
cat "$prefix/access.log"
