#!/usr/bin/env bash
# Score latency of the real unlearnd (gRPC over 127.0.0.1) while idle and while an erasure job
# trains on the same model, measured back to back in one run:
#
#   bench/serve_latency.sh [--build-dir build] [--settings "2:2 2:1 1:1"] [--calls 60]
#
# For each setting T:J (unlearnd --threads T --job-threads J): start unlearnd with the demo model,
# time --calls Score calls idle, submit a long gradient-ascent erasure, time Score calls for at
# least 20 s once the job trains (only calls with the job running before and after count), cancel
# the job, stop the server. Prints medians, p90s, the during/idle ratio and the job's steps/s.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="build"
SETTINGS="2:2 2:1 1:1"
CALLS=60
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build-dir) BUILD_DIR="$2"; shift 2 ;;
    --settings) SETTINGS="$2"; shift 2 ;;
    --calls) CALLS="$2"; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "serve_latency.sh: unknown argument $1" >&2; exit 1 ;;
  esac
done
[[ "$BUILD_DIR" = /* ]] || BUILD_DIR="$REPO/$BUILD_DIR"

DEMO="${UNL_DEMO_DIR:-$REPO/.cache/demo}"
"$REPO/tools/build_demo.sh" --build-dir "$BUILD_DIR" --out "$DEMO" >&2
if [[ ! -f "$BUILD_DIR/build.ninja" && ! -f "$BUILD_DIR/Makefile" ]]; then
  cmake -S "$REPO" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
fi
cmake --build "$BUILD_DIR" --target unlearnd unlearnctl bench_score_latency >&2
UNLEARND="$BUILD_DIR/server/unlearnd"
UNLEARNCTL="$BUILD_DIR/client/unlearnctl"
BENCH="$BUILD_DIR/bench/bench_score_latency"

WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
  [[ -n "$SERVER_PID" ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
RESULTS="$WORK/results.jsonl"

for setting in $SETTINGS; do
  t="${setting%%:*}" j="${setting##*:}"
  rm -rf "$WORK/data" "$WORK/ready.json"
  "$UNLEARND" --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --data-dir "$WORK/data" \
    --model "demo=$DEMO/model" --ready-file "$WORK/ready.json" --threads "$t" --job-threads "$j" \
    --insecure \
    >"$WORK/unlearnd-$setting.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 600); do [[ -s "$WORK/ready.json" ]] && break; sleep 0.2; done
  [[ -s "$WORK/ready.json" ]] || { cat "$WORK/unlearnd-$setting.log" >&2; exit 1; }
  GRPC="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["grpc"])' "$WORK/ready.json")"
  echo "--threads $t --job-threads $j: idle ..." >&2
  "$BENCH" --server "$GRPC" --calls "$CALLS" | sed "s/^{/{\"setting\": \"$setting\", /" >> "$RESULTS"
  job="$("$UNLEARNCTL" --server "$GRPC" erase --model demo --method gradient_ascent \
    --forget "$DEMO/data/forget.jsonl" --param epochs=200 --max-forget-ratio 1 \
    --min-retain-ratio 0 | head -n 1)"
  echo "--threads $t --job-threads $j: during job $job ..." >&2
  "$BENCH" --server "$GRPC" --calls "$CALLS" --during-job "$job" --min-seconds 20 |
    sed "s/^{/{\"setting\": \"$setting\", /" >> "$RESULTS"
  "$UNLEARNCTL" --server "$GRPC" jobs cancel "$job" >/dev/null || true
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
done

python3 - "$RESULTS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {}
for r in rows:
    by.setdefault(r["setting"], {})[r["phase"]] = r
print("Score latency of unlearnd over gRPC (demo LM), idle vs while a gradient-ascent job trains")
hdr = (f"{'threads:job':>11} | {'idle med ms':>11} | {'idle p90':>8} | {'job med ms':>10} | "
       f"{'job p90':>8} | {'job/idle (median)':>17} | {'job steps/s':>11} | calls")
print(hdr)
print("-" * len(hdr))
for s in by:
    i, j = by[s].get("idle"), by[s].get("during_job")
    if not i or not j:
        continue
    print(f"{s:>11} | {i['median_ms']:>11.1f} | {i['p90_ms']:>8.1f} | {j['median_ms']:>10.1f} | "
          f"{j['p90_ms']:>8.1f} | {j['median_ms'] / i['median_ms']:>17.2f} | "
          f"{j['job_steps_per_s']:>11.2f} | {i['calls']}/{j['calls']}")
print("threads:job = unlearnd --threads : --job-threads. Ratios are the result; absolute times vary with load.")
PY
