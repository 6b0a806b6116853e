#!/usr/bin/env bash
# Debian packages the test suite needs: PostgreSQL and Redis (throwaway servers the tests start themselves),
# and Chromium (the eval report's page is opened in it headless).
# With "bench": also what the benchmarks need (nginx as the constant upstream, wrk, valgrind's callgrind).
set -euo pipefail
need=()
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ "${1:-}" = bench ]; then
  for b in nginx wrk valgrind; do command -v "$b" >/dev/null 2>&1 || need+=("$b"); done
fi
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "system-deps: missing ${need[*]}; install them with: sudo apt-get install -y ${need[*]}" >&2
  exit 1
fi
echo "system-deps: installing ${need[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
