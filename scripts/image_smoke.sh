#!/usr/bin/env bash
# Builds the gateway's image from the files `llmdock build` writes, starts it, and checks that it answers:
# /ready, then a chat completion from the embedded model (SmolLM2, installed from PyPI in the image).
#
#   bash scripts/image_smoke.sh            # podman (Debian's), about 15 minutes the first time
#
# Where no container registry is reachable (this machine reaches PyPI and Debian only), the python base image
# cannot be pulled: BASE=debian builds one from Debian's packages first (debootstrap, then python3 from
# bookworm), and the image is built on it. Environment:
#   BASE=IMAGE|debian   base image of both stages [the Dockerfile's default, python:X.Y.Z-slim-bookworm]
#   WHEELS="DIR ..."    wheels copied into deploy/wheels, used before any index (a torch CPU wheel, a
#                       llama-cpp-python compiled before); with OFFLINE_TORCH=1 the pytorch index is not asked
#   BUILD_CA=FILE       a CA bundle pip trusts in the build (behind a TLS-intercepting proxy, as here:
#                       BUILD_CA=/etc/ssl/certs/ca-certificates.crt)
#   ENGINE_FLAGS="..."  extra flags for podman build/run. This VM needs "--runtime runc" (crun refuses its
#                       hybrid cgroups) and ulimits within its hard limits ("--ulimit nofile=1024:4096
#                       --ulimit nproc=1024:4096": root here lacks CAP_SYS_RESOURCE)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
TAG=${TAG:-localhost/llmdock:smoke}
read -r -a FLAGS <<< "${ENGINE_FLAGS:-}"
OUT=deploy-smoke
work=$(mktemp -d)
trap 'podman rm -f llmdock-smoke >/dev/null 2>&1 || true; rm -rf "$work" "$OUT"' EXIT

base_args=()
if [ "${BASE:-}" = debian ]; then
  if ! podman image exists localhost/python:3.11-bookworm; then
    echo "== base image from Debian's packages (debootstrap bookworm, python3)"
    debootstrap --variant=minbase bookworm "$work/rootfs" http://deb.debian.org/debian > "$work/debootstrap.log"
    tar -C "$work/rootfs" -c . | podman import - localhost/debian-minbase:bookworm > /dev/null
    printf '%s\n' 'FROM localhost/debian-minbase:bookworm' \
      'RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv python-is-python3 ca-certificates && rm -rf /var/lib/apt/lists/*' \
      > "$work/Containerfile"
    podman build "${FLAGS[@]}" -t localhost/python:3.11-bookworm -f "$work/Containerfile" "$work" > "$work/base.log"
  fi
  base_args=(--base localhost/python:3.11-bookworm)
elif [ -n "${BASE:-}" ]; then
  base_args=(--base "$BASE")
fi

echo "== llmdock build"
$PY -m llmdock build -o "$OUT" --image "$TAG" "${base_args[@]}"
for dir in ${WHEELS:-}; do cp "$dir"/*.whl "$OUT/wheels/" 2>/dev/null || true; done
build_args=()
if [ "${OFFLINE_TORCH:-0}" = 1 ]; then build_args=(--build-arg PIP_EXTRA_INDEX_URL=); fi
if [ -n "${BUILD_CA:-}" ]; then
  build_args+=(-v "$(dirname "$BUILD_CA"):/etc/ssl/host-certs:ro" --build-arg "PIP_CERT=/etc/ssl/host-certs/$(basename "$BUILD_CA")")
fi

echo "== podman build (log: $work/build.log)"
start=$(date +%s)
# docker format: the OCI format has no HEALTHCHECK, and podman would drop it
if ! podman build --format docker "${FLAGS[@]}" "${build_args[@]}" -f "$OUT/Dockerfile" -t "$TAG" . > "$work/build.log" 2>&1; then
  tail -n 40 "$work/build.log"; exit 1
fi
echo "built in $(( $(date +%s) - start )) s; size $(podman image inspect "$TAG" --format '{{.Size}}' | numfmt --to=iec)"

echo "== podman run"
port=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
podman run -d --name llmdock-smoke "${FLAGS[@]}" -p "127.0.0.1:$port:8000" "$TAG" > /dev/null
start=$(date +%s)
until curl -fsS "http://127.0.0.1:$port/ready" > /dev/null 2>&1; do
  if [ $(( $(date +%s) - start )) -gt 300 ]; then podman logs llmdock-smoke | tail -n 40; exit 1; fi
  sleep 2
done
echo "ready in $(( $(date +%s) - start )) s; user $(podman exec llmdock-smoke id -u)"
answer=$(curl -fsS "http://127.0.0.1:$port/v1/chat/completions" -H 'Content-Type: application/json' \
  -d '{"model":"smollm2","messages":[{"role":"user","content":"Say hello."}],"max_tokens":16,"temperature":0}')
echo "$answer" | $PY -c 'import json, sys; a = json.load(sys.stdin); t = a["choices"][0]["message"]["content"]; assert t.strip(), a; print("answer:", t)'
# The image's own HEALTHCHECK (GET /ready as the unprivileged user), run once now
podman healthcheck run llmdock-smoke && echo "healthcheck: healthy"
echo "image smoke test: passed"
