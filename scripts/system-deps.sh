#!/usr/bin/env bash
# Debian packages the test suite needs: PostgreSQL and Redis (throwaway servers the tests start themselves),
# Chromium (the eval report's page is opened in it headless) and promtool (package prometheus: the example
# alerting rules and dashboard queries are checked with it).
# With "bench": also what the benchmarks need (nginx as the constant upstream, wrk, valgrind's callgrind,
# Node and npm for promptfoo), then promptfoo itself (npm, pinned) into bench/.node/ (gitignored).
set -euo pipefail
PROMPTFOO_VERSION=0.118.0 # the newest that runs on Debian's Node 20 (later ones need Node >= 22.22)
need=()
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v promtool >/dev/null 2>&1 || need+=(prometheus) # promtool checks examples/prometheus/alerts.yml
ls /usr/share/doc/python3*/html/library/json.html >/dev/null 2>&1 || need+=(python3-doc) # the knowledge-base corpus
if [ "${1:-}" = bench ]; then
  for b in nginx wrk valgrind; do command -v "$b" >/dev/null 2>&1 || need+=("$b"); done
  command -v node >/dev/null 2>&1 || need+=(nodejs)
  command -v npm >/dev/null 2>&1 || need+=(npm)
fi
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "system-deps: missing ${need[*]}; install them with: sudo apt-get install -y ${need[*]}" >&2
    exit 1
  fi
  echo "system-deps: installing ${need[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ "${1:-}" = bench ]; then
  node_dir="$(cd "$(dirname "$0")/.." && pwd)/bench/.node"
  installed=$(node -p "require('$node_dir/node_modules/promptfoo/package.json').version" 2>/dev/null || true)
  if [ "$installed" != "$PROMPTFOO_VERSION" ]; then
    echo "system-deps: installing promptfoo $PROMPTFOO_VERSION into $node_dir (about 700 MB, a few minutes)" >&2
    # A dependency's install script would download a Chromium build (red-team browser tools): not needed here,
    # and only npm is reachable. No telemetry from the install either.
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 PUPPETEER_SKIP_DOWNLOAD=1 PROMPTFOO_DISABLE_TELEMETRY=1 \
      npm install --prefix "$node_dir" --save-exact --no-audit --no-fund --loglevel=error \
      "promptfoo@$PROMPTFOO_VERSION" >&2
  fi
fi
