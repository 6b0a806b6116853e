#!/usr/bin/env bash
# gateway_overhead.sh - what does the llmdock gateway add on top of an instant upstream, vs LiteLLM?
#
# One run: makes sure LiteLLM has its own venv, writes a throw-away llmdock config (one model "fake",
# backend openai_compat -> the peer harness's constant nginx upstream at 127.0.0.1:18080) and a
# throw-away LLMDOCK_HOME (traces go to a temporary SQLite), then calls the peer harness run_peer.sh,
# which measures the upstream directly, LiteLLM and llmdock at concurrency 1 and 32 in the same run.
# Prints the harness's table and a summary against the targets:
#   * llmdock added P50 at c=1 (gateway P50 - direct P50) <= 0.5 ms
#   * llmdock added P99 at c=1 (gateway P99 - direct P99) <= 2 ms, beside LiteLLM's (issue 15)
#   * llmdock RPS at c=32 >= 10 x LiteLLM's RPS at c=32 (same run, same machine)
#   * --workers 2 at c=32 >= 1.8 x one worker (issue 15), with the CPU per request of each
#   * with guard_in and guard_out in the pipeline and a realistic 300-character prompt: llmdock's RPS at c=32
#     >= 15 x LiteLLM's (no guards at all) on the same prompt, in a second harness run (issue 16; GUARDS=0 skips)
# It reports figures and whether they meet the targets; it fails only on errors, never on a miss.
#
# Usage: bench/gateway_overhead.sh            (from anywhere; DURATION=10 bench/gateway_overhead.sh)
#
# Environment (all optional):
#   DURATION=10                  seconds per measured wrk run (passed to run_peer.sh)
#   TWO_WORKERS=1                also measure `llmdock serve --workers 2` (0 = skip)
#   PORT=18900                   port llmdock listens on during the run
#   LITELLM_VENV=/tmp/venv_litellm   LiteLLM's own venv; created if missing
#   LITELLM_VERSION=1.106.2      version pinned when the venv is created
#   LITELLM_TARGETS="litellm"    run_peer.sh LiteLLM targets to compare with ("litellm litellm-tuned",
#                                or "" to measure llmdock alone)
#   PEER_DIR=<repo>/../shared/bench/peer   where run_peer.sh lives
#   LLMDOCK_BIN=<repo>/.venv/bin/llmdock   the llmdock executable to measure
#   RUN_DIR=/tmp/gateway-overhead.<ts>     raw harness output (wrk output, logs, results.tsv)
#   KEEP_TMP=1                   keep the temporary config / LLMDOCK_HOME (default: deleted at exit)
#   Anything else run_peer.sh reads (CONCURRENCY, WARMUP, WRK_THREADS, GATEWAY_CPUS, ...) passes through.
#
# Needs Debian's nginx and wrk:  sudo apt-get install -y nginx wrk
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PEER_DIR="${PEER_DIR:-$REPO/../shared/bench/peer}"
DURATION="${DURATION:-10}"
PORT="${PORT:-18900}"
LITELLM_VENV="${LITELLM_VENV:-/tmp/venv_litellm}"
LITELLM_VERSION="${LITELLM_VERSION:-1.106.2}"
LITELLM_TARGETS="${LITELLM_TARGETS-litellm}"
LLMDOCK_BIN="${LLMDOCK_BIN:-$REPO/.venv/bin/llmdock}"
RUN_DIR="${RUN_DIR:-/tmp/gateway-overhead.$(date +%Y%m%d-%H%M%S)}"
TARGET_P50_MS=0.5
TARGET_RPS_RATIO=10
TARGET_P99_MS=2
TARGET_WORKERS=1.8
TARGET_GUARDS_RATIO=15
# issue 16's polite customer message (bookshop): realistic length, and it must pass every guard
GUARDED_PROMPT="Hello, I ordered two novels last Tuesday and the parcel has not arrived yet. The tracking page says it left the warehouse on Wednesday. Could you tell me what usually happens in such cases and whether I should wait a few more days before asking for a replacement? Thanks a lot for your help."

log() { printf '[gateway_overhead] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- prerequisites
missing=()
for b in nginx wrk; do command -v "$b" >/dev/null 2>&1 || missing+=("$b"); done
if [ ${#missing[@]} -gt 0 ]; then
  die "missing ${missing[*]} (needed by the peer harness). Install with:
    sudo apt-get update && sudo apt-get install -y nginx wrk     # Debian/Ubuntu"
fi
for b in curl awk setsid python3; do command -v "$b" >/dev/null 2>&1 || die "missing $b"; done
[ -d "$PEER_DIR" ] || die "peer harness not found at $PEER_DIR (set PEER_DIR)"
PEER_DIR="$(cd "$PEER_DIR" && pwd)"
[ -f "$PEER_DIR/run_peer.sh" ] || die "no run_peer.sh in $PEER_DIR"
[ -x "$LLMDOCK_BIN" ] || die "no llmdock executable at $LLMDOCK_BIN (create the project venv first: make install, or set LLMDOCK_BIN)"
[[ "$PORT" =~ ^[0-9]+$ ]] || die "PORT must be a number, got '$PORT'"
[[ "$DURATION" =~ ^[0-9]+$ ]] && [ "$DURATION" -gt 0 ] || die "DURATION must be a positive number of seconds, got '$DURATION'"
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then die "port $PORT is already in use (set PORT)"; fi

# ---------------------------------------------------------------- LiteLLM's own venv
if [ -n "$LITELLM_TARGETS" ] && [ ! -x "$LITELLM_VENV/bin/litellm" ]; then
  log "creating LiteLLM venv $LITELLM_VENV (litellm[proxy]==$LITELLM_VERSION; a few minutes)"
  created=0
  if [ ! -d "$LITELLM_VENV" ]; then
    python3 -m venv "$LITELLM_VENV" || die "python3 -m venv failed (Debian: sudo apt-get install -y python3-venv)"
    created=1
  fi
  if ! "$LITELLM_VENV/bin/python" -m pip install -q "litellm[proxy]==$LITELLM_VERSION" >&2; then
    [ "$created" = 1 ] && rm -rf -- "$LITELLM_VENV"   # only what this run created: retry cleanly next time
    die "pip install 'litellm[proxy]==$LITELLM_VERSION' into $LITELLM_VENV failed"
  fi
  [ -x "$LITELLM_VENV/bin/litellm" ] || die "litellm installed but $LITELLM_VENV/bin/litellm is missing"
  "$LITELLM_VENV/bin/python" -c 'import litellm.proxy.proxy_server' >/dev/null 2>&1 \
    || die "LiteLLM proxy does not import in $LITELLM_VENV (try: $LITELLM_VENV/bin/python -c 'import litellm.proxy.proxy_server')"
fi

# ---------------------------------------------------------------- throw-away llmdock config + home
TMP="$(mktemp -d "${TMPDIR:-/tmp}/llmdock-overhead.XXXXXX")"
cleanup_tmp() { [ "${KEEP_TMP:-0}" = 1 ] && log "kept $TMP" || rm -rf -- "$TMP"; }
trap cleanup_tmp EXIT
CONFIG="$TMP/llmdock.yaml"
cat > "$CONFIG" <<EOF
# written by bench/gateway_overhead.sh: one model in front of the peer harness's constant upstream
include_builtin_models: false
default_model: fake
default_embedding_model: ""
port: $PORT
models:
  fake:
    backend: openai_compat
    base_url: http://127.0.0.1:18080/v1
    upstream_model: fake
EOF
# The gateway inherits this environment (run_peer.sh starts it with `setsid bash -c CMD`):
# traces go to a temporary SQLite; no settings from the caller's own llmdock setup leak in.
export LLMDOCK_HOME="$TMP/home"
unset LLMDOCK_DATABASE_URL LLMDOCK_CONFIG LLMDOCK_PORT OTEL_EXPORTER_OTLP_ENDPOINT
other_env="$(env | grep -E '^LLMDOCK_' | grep -vE '^LLMDOCK_(HOME|BIN)=' || true)"
[ -n "$other_env" ] && log "note: these settings apply to the measured gateway: $(echo "$other_env" | tr '\n' ' ')"

LLMDOCK_CMD="'$LLMDOCK_BIN' serve --config '$CONFIG' --port $PORT"
LLMDOCK_TARGET="llmdock|http://127.0.0.1:$PORT/v1/chat/completions|fake|sk-bench|$LLMDOCK_CMD"
# shellcheck disable=SC2206
targets=($LITELLM_TARGETS "$LLMDOCK_TARGET")
# llmdock with two worker processes (TWO_WORKERS=0 to skip): target >= 1.8x one worker's RPS at c=32
if [ "${TWO_WORKERS:-1}" = 1 ]; then
  targets+=("llmdock-2w|http://127.0.0.1:$PORT/v1/chat/completions|fake|sk-bench|$LLMDOCK_CMD --workers 2")
fi

# ---------------------------------------------------------------- run the harness
# run_peer.sh's watchdog (default 900 s) must not cut a long run short: scale it with the work to do
n_conc=$(wc -w <<< "${CONCURRENCY:-1 32}")
MAX_RUNTIME="${MAX_RUNTIME:-$(( 300 + (${#targets[@]} + 1) * (n_conc * (DURATION + 2) + 150) ))}"
export DURATION RUN_DIR LITELLM_VENV MAX_RUNTIME
log "llmdock: $LLMDOCK_CMD (LLMDOCK_HOME=$LLMDOCK_HOME)"
log "running $PEER_DIR/run_peer.sh ${LITELLM_TARGETS:-} llmdock  (DURATION=${DURATION}s, raw output in $RUN_DIR)"
rc=0
bash "$PEER_DIR/run_peer.sh" "${targets[@]}" || rc=$?
RESULTS="$RUN_DIR/results.tsv"
[ "$rc" = 0 ] || die "run_peer.sh failed (exit $rc); see $RUN_DIR"
[ -s "$RESULTS" ] || die "no results in $RESULTS"

# ---------------------------------------------------------------- guarded run (issue 16)
# The same harness again at c=32 only, every request carrying GUARDED_PROMPT: LiteLLM as it is (no guards)
# against llmdock with guard_in and guard_out in the pipeline (the default detectors of each).
if [ "${GUARDS:-1}" = 1 ]; then
  GCONFIG="$TMP/llmdock-guards.yaml"
  { cat "$CONFIG"; echo "pipeline: [preprocess, guard_in, cache, generate, structured, guard_out, postprocess]"; } > "$GCONFIG"
  GUARD_TARGET="llmdock-guards|http://127.0.0.1:$PORT/v1/chat/completions|fake|sk-bench|'$LLMDOCK_BIN' serve --config '$GCONFIG' --port $PORT"
  # the detectors train once per home (minutes on a loaded machine): before the run, not inside its 120 s start
  log "preparing the guards (trained once, cached in $LLMDOCK_HOME)"
  "$LLMDOCK_BIN" guards check --config "$GCONFIG" "$GUARDED_PROMPT" >/dev/null
  "$LLMDOCK_BIN" guards check --output --config "$GCONFIG" "hello from upstream" >/dev/null
  log "guarded run: $GUARD_TARGET (prompt of ${#GUARDED_PROMPT} characters)"
  grc=0
  BENCH_PROMPT_JSON="$(python3 -c 'import json, sys; print(json.dumps(sys.argv[1]))' "$GUARDED_PROMPT")" \
    CONCURRENCY=32 RUN_DIR="$RUN_DIR/guards" bash "$PEER_DIR/run_peer.sh" $LITELLM_TARGETS "$GUARD_TARGET" || grc=$?
  [ "$grc" = 0 ] || die "run_peer.sh (guarded run) failed (exit $grc); see $RUN_DIR/guards"
fi

# ---------------------------------------------------------------- summary against the targets
field() { # field TARGET CONC COLUMN -> value from results.tsv (empty if absent)
  awk -F'\t' -v t="$1" -v c="$2" -v col="$3" 'NR == 1 { for (i = 1; i <= NF; i++) idx[$i] = i; next }
    $1 == t && $2 == c { print $(idx[col]); exit }' "$RESULTS"
}
echo
echo "Summary ($LLMDOCK_BIN: llmdock $("$REPO/.venv/bin/python" -c 'import importlib.metadata as m; print(m.version("llmdock"))' 2>/dev/null || echo '?'), git $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')$( [ -n "$(git -C "$REPO" status --porcelain -- src 2>/dev/null)" ] && echo '+uncommitted src changes'))"
added="$(field llmdock 1 added_p50_ms)"
if [ -z "$added" ]; then
  echo "  llmdock was not measured (did not become healthy?) - see $RUN_DIR/gw.llmdock.log"
  exit 1
fi
awk -v a="$added" -v t="$TARGET_P50_MS" -v p="$(field llmdock 1 p50_ms)" -v d="$(field direct 1 p50_ms)" 'BEGIN {
  printf "  added P50 at c=1:  %.3f ms (llmdock %.3f - direct %.3f)  target <= %.1f ms  -> %s\n",
    a, p, d, t, (a <= t ? "MET" : sprintf("MISSED (%.1fx the target)", a / t)) }'
d99="$(field direct 1 p99_ms)"
for t in llmdock $LITELLM_TARGETS; do
  p99="$(field "$t" 1 p99_ms)"
  [ -n "$p99" ] && awk -v n="$t" -v p="$p99" -v d="$d99" -v t="$TARGET_P99_MS" 'BEGIN {
    printf "  added P99 at c=1:  %-8s %.3f ms (P99 %.3f - direct %.3f)%s\n", n, p - d, p, d,
      (n == "llmdock" ? sprintf("  target <= %d ms  -> %s", t, (p - d <= t ? "MET" : "MISSED")) : "") }'
done
l_rps="$(field llmdock 32 rps)"
for lt in $LITELLM_TARGETS; do
  b_rps="$(field "$lt" 32 rps)"
  if [ -z "$b_rps" ]; then echo "  $lt was not measured at c=32 - no throughput comparison against it"; continue; fi
  awk -v l="$l_rps" -v b="$b_rps" -v r="$TARGET_RPS_RATIO" -v n="$lt" 'BEGIN {
    printf "  RPS at c=32:       llmdock %.1f vs %s %.1f = %.1fx  target >= %dx (%.0f RPS)  -> %s\n",
      l, n, b, (b > 0 ? l / b : 0), r, r * b, (l >= r * b ? "MET" : "MISSED") }'
done
[ -z "$LITELLM_TARGETS" ] && echo "  RPS at c=32:       llmdock $l_rps (no LiteLLM target in this run)"
w2_rps="$(field llmdock-2w 32 rps)"
[ -n "$w2_rps" ] && awk -v a="$w2_rps" -v b="$l_rps" -v t="$TARGET_WORKERS" -v c1="$(field llmdock 32 gw_cpu_pct)" \
  -v c2="$(field llmdock-2w 32 gw_cpu_pct)" 'BEGIN {
  printf "  --workers 2:       %.1f RPS at c=32 = %.2fx one worker  target >= %.1fx  -> %s\n", a, a / b, t, (a >= t * b ? "MET" : "MISSED")
  printf "                     CPU per request: one worker %.3f ms, two %.3f ms (equal = the workers do not slow each other; the\n", c1 * 10 / b, c2 * 10 / a
  printf "                     rest of the gap is cores: wrk and the upstream share this machine'"'"'s)\n" }'
awk -F'\t' -v w="${OTHER_WARN:-10}" 'NR > 1 && $9 + 0 > w { printf "  caution: %s c=%s ran while other processes used %s%% CPU - figures are contended\n", $1, $2, $9 }' "$RESULTS"
for c in ${CONCURRENCY:-1 32}; do
  cpu="$(field llmdock "$c" gw_cpu_pct)"; rps="$(field llmdock "$c" rps)"
  [ -n "$cpu" ] && awk -v c="$c" -v cpu="$cpu" -v rps="$rps" 'BEGIN {
    printf "  llmdock at c=%s: %s%% of one core for %.0f RPS = %.2f ms CPU per request\n", c, cpu, rps, (rps > 0 ? cpu * 10 / rps : 0) }'
done
GRESULTS="$RUN_DIR/guards/results.tsv"
if [ -s "$GRESULTS" ]; then
  g_rps="$(RESULTS="$GRESULTS" field llmdock-guards 32 rps)"
  for lt in $LITELLM_TARGETS; do
    b_rps="$(RESULTS="$GRESULTS" field "$lt" 32 rps)"
    [ -n "$g_rps" ] && [ -n "$b_rps" ] && awk -v g="$g_rps" -v b="$b_rps" -v t="$TARGET_GUARDS_RATIO" -v n="$lt" \
      -v e="$(RESULTS="$GRESULTS" field llmdock-guards 32 errors)" 'BEGIN {
      printf "  guards, c=32:      llmdock with guard_in + guard_out %.1f RPS (%s errors) vs %s without guards %.1f = %.1fx  target >= %dx  -> %s\n",
        g, e, n, b, (b > 0 ? g / b : 0), t, (g >= t * b ? "MET" : "MISSED") }'
  done
fi
echo "  raw output: $RUN_DIR"
