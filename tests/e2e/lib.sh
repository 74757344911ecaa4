# shellcheck shell=bash
# Shared helpers of the end-to-end tests (sourced, not run). Each test gets a private temporary
# directory and a cleanup trap that stops every process it started, even when an assertion fails.
#
# Environment:
#   UNLEARND, UNLEARNCTL   the binaries (set by ctest; default: build/ next to the repo)
#   UNL_DEMO_DIR           the demo model (DIR/model, DIR/data/{forget,retain,holdout}.jsonl);
#                          default <repo>/.cache/demo (built by tools/build_demo.sh)
#   E2E_KEEP_TMP=1         keep the temporary directory (logs, data dir) after the test

set -euo pipefail

E2E_NAME="$(basename "${0%.sh}")"
E2E_REPO="${UNL_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
UNLEARND="${UNLEARND:-$E2E_REPO/build/server/unlearnd}"
UNLEARNCTL="${UNLEARNCTL:-$E2E_REPO/build/client/unlearnctl}"
DEMO="${UNL_DEMO_DIR:-$E2E_REPO/.cache/demo}"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/unl-e2e-$E2E_NAME.XXXXXX")"
E2E_PIDS=()    # background processes to stop on exit
GRPC=""        # host:port of the running unlearnd (set by start_server)
METRICS=""     # host:port of its /metrics endpoint
SERVER_PID=""

log() { printf '[%s %s] %s\n' "$E2E_NAME" "$(date +%H:%M:%S)" "$*" >&2; }

fail() {
  log "FAIL: $*"
  exit 1
}

# Stops every process we started (SIGTERM, then SIGKILL after 10 s) and shows the server logs when
# the test failed.
cleanup() {
  local rc=$?
  set +e
  local pid
  for pid in "${E2E_PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null
  done
  for pid in "${E2E_PIDS[@]}"; do
    for _ in $(seq 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  if [[ $rc -ne 0 ]]; then
    local f
    for f in "$TMP"/*.log; do
      [[ -f $f ]] || continue
      echo "----- last lines of $f -----" >&2
      tail -n 40 "$f" >&2
    done
  fi
  if [[ $rc -eq 0 && -z ${E2E_KEEP_TMP:-} ]]; then
    rm -rf "$TMP"
  else
    log "kept $TMP"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

require_binaries() {
  [[ -x $UNLEARND ]] || fail "unlearnd not found at $UNLEARND (set UNLEARND)"
  [[ -x $UNLEARNCTL ]] || fail "unlearnctl not found at $UNLEARNCTL (set UNLEARNCTL)"
}

require_demo() {
  [[ -f $DEMO/model/config.json ]] ||
    fail "demo model missing at $DEMO/model (run tools/build_demo.sh or set UNL_DEMO_DIR)"
  local f
  for f in forget retain holdout; do
    [[ -s $DEMO/data/$f.jsonl ]] || fail "demo data missing: $DEMO/data/$f.jsonl"
  done
}

# A TCP port that was free a moment ago on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# start_server NAME [LISTEN [extra unlearnd flags...]]: starts unlearnd on $TMP/data with the demo
# model (gRPC on LISTEN, default 127.0.0.1:0 = any free port), waits for its ready file, sets GRPC,
# METRICS and SERVER_PID. Logs go to $TMP/NAME.log. Without --token-file among the extra flags the
# server runs with an explicit --insecure (no authentication; docs/security.md).
start_server() {
  local name=$1 listen=${2:-127.0.0.1:0}
  shift $(($# < 2 ? $# : 2))
  local ready="$TMP/$name.ready.json"
  rm -f "$ready"
  local auth=(--insecure) arg
  for arg in "$@"; do [[ $arg == --token-file* ]] && auth=(); done
  "$UNLEARND" --listen "$listen" --metrics-listen 127.0.0.1:0 --data-dir "$TMP/data" \
    --model "demo=$DEMO/model" --ready-file "$ready" --threads 2 "${auth[@]}" "$@" \
    >>"$TMP/$name.log" 2>&1 &
  SERVER_PID=$!
  E2E_PIDS+=("$SERVER_PID")
  local deadline=$((SECONDS + ${E2E_START_TIMEOUT:-180}))
  until [[ -s $ready ]]; do
    kill -0 "$SERVER_PID" 2>/dev/null || fail "unlearnd ($name) exited before it was ready"
    ((SECONDS < deadline)) || fail "unlearnd ($name) not ready after ${E2E_START_TIMEOUT:-180} s"
    sleep 0.2
  done
  GRPC="$(jq -r .grpc "$ready")"
  METRICS="$(jq -r .metrics "$ready")"
  local pid
  pid="$(jq -r .pid "$ready")"
  [[ $pid == "$SERVER_PID" ]] || fail "ready file pid $pid != started pid $SERVER_PID"
  [[ $GRPC == 127.0.0.1:* ]] || fail "ready file has no grpc address: $(cat "$ready")"
  log "unlearnd ($name) pid $SERVER_PID serving on $GRPC, metrics on $METRICS"
}

# ctl ARGS...: unlearnctl against the running server.
ctl() { "$UNLEARNCTL" --server "$GRPC" "$@"; }

# expect_exit CODE PATTERN CMD...: runs CMD, asserts its exit code and that its stderr matches the
# extended regular expression PATTERN. Output is kept in $TMP/last.{out,err}.
expect_exit() {
  local want=$1 pattern=$2
  shift 2
  local rc=0
  "$@" >"$TMP/last.out" 2>"$TMP/last.err" || rc=$?
  if [[ $rc -ne $want ]]; then
    cat "$TMP/last.err" >&2
    fail "expected exit $want, got $rc: $*"
  fi
  if ! grep -Eq -- "$pattern" "$TMP/last.err"; then
    cat "$TMP/last.err" >&2
    fail "stderr of '$*' does not match /$pattern/"
  fi
}

# wait_until TIMEOUT_S DESCRIPTION CMD...: polls CMD (every 0.2 s) until it succeeds.
wait_until() {
  local timeout=$1 what=$2
  shift 2
  local deadline=$((SECONDS + timeout))
  until "$@"; do
    ((SECONDS < deadline)) || fail "timed out after ${timeout} s waiting for: $what"
    sleep 0.2
  done
}

# job_field JOB JQ_FILTER: one field of `jobs get --json` (int64 fields come as strings).
job_field() { ctl --json jobs get "$1" | jq -r "$2"; }
