#!/usr/bin/env bash
# Metrics end to end: after one erasure completes, /metrics passes `promtool check metrics`, and a
# real Prometheus server scraping unlearnd every second can query the verification gauge
# unlearning_verification_figure{model="demo"} with the values the job reported.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require_binaries
require_demo
command -v prometheus >/dev/null || fail "prometheus not installed (apt-get install prometheus)"
command -v promtool >/dev/null || fail "promtool not installed (apt-get install prometheus)"

start_server server
[[ $METRICS == 127.0.0.1:* ]] || fail "the ready file names no metrics address"

log "running one erasure to completion"
ctl erase --model demo --method flat --forget "$DEMO/data/forget.jsonl" \
  --retain "$DEMO/data/retain.jsonl" --request-id e2e-prom-1 --param epochs=2 --param seed=3 \
  --max-forget-ratio 1 --min-retain-ratio 0 --wait >"$TMP/erase.out" 2>"$TMP/erase.err" ||
  { cat "$TMP/erase.err" >&2; fail "erase --wait failed"; }
cat "$TMP/erase.out" >&2
JOB="$(head -n 1 "$TMP/erase.out")"
job_json="$(ctl --json jobs get "$JOB")"
[[ $(jq -r .state <<<"$job_json") == JOB_STATE_COMPLETED ]] || fail "job not COMPLETED: $job_json"

# 1. The exposition itself is valid.
curl -fsS "http://$METRICS/metrics" >"$TMP/metrics.txt" || fail "GET /metrics failed"
promtool check metrics <"$TMP/metrics.txt" >"$TMP/promtool.log" 2>&1 ||
  { cat "$TMP/promtool.log" >&2; fail "promtool check metrics reported problems"; }
grep -E '^unlearning_verification_figure\{.*model="demo"' "$TMP/metrics.txt" >/dev/null ||
  fail "/metrics has no unlearning_verification_figure{model=\"demo\"}"
log "promtool check metrics: ok ($(wc -l <"$TMP/metrics.txt") lines)"

# 2. A real Prometheus scrapes it.
PROM_PORT="$(free_port)"
cat >"$TMP/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: unlearnd
    scrape_interval: 1s
    scrape_timeout: 1s
    static_configs:
      - targets: ['$METRICS']
YAML
promtool check config "$TMP/prometheus.yml" >/dev/null || fail "bad prometheus config"
prometheus --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/tsdb" \
  --web.listen-address="127.0.0.1:$PROM_PORT" >"$TMP/prometheus.log" 2>&1 &
E2E_PIDS+=("$!")
log "prometheus on 127.0.0.1:$PROM_PORT"

FIGURE="forget.answer_probability"
QUERY="unlearning_verification_figure{model=\"demo\",figure=\"$FIGURE\",stage=\"after\"}"
query() {
  curl -fsS -G "http://127.0.0.1:$PROM_PORT/api/v1/query" --data-urlencode "query=$1"
}
has_sample() {
  local answer
  answer="$(query "$QUERY" 2>/dev/null)" || return 1
  [[ $(jq -r '.status' <<<"$answer") == success ]] || return 1
  (($(jq '.data.result | length' <<<"$answer") > 0))
}
wait_until 60 "Prometheus to return $QUERY" has_sample
answer="$(query "$QUERY")"
log "Prometheus answered: $(jq -c '.data.result' <<<"$answer")"

# The scraped value is the one the job reported.
scraped="$(jq -r '.data.result[0].value[1]' <<<"$answer")"
reported="$(jq -r --arg f "$FIGURE" '.verification.figures[] | select(.name == $f) | .after' \
  <<<"$job_json")"
[[ -n $reported ]] || fail "job has no figure $FIGURE: $job_json"
python3 - "$scraped" "$reported" <<'PY' || fail "Prometheus value $scraped != job's $reported"
import math, sys
scraped, reported = float(sys.argv[1]), float(sys.argv[2])
sys.exit(0 if math.isclose(scraped, reported, rel_tol=1e-6, abs_tol=1e-12) else 1)
PY
# Both stages are there for the model.
stages="$(query "count by (stage) (unlearning_verification_figure{model=\"demo\"})" |
  jq -r '[.data.result[].metric.stage] | sort | join(",")')"
[[ $stages == "after,before" ]] || fail "expected stages after,before, got '$stages'"

log "PASS"
