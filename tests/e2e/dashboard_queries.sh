#!/usr/bin/env bash
# The Grafana dashboard's queries against real data: unlearnd with the demo model, scraped every
# second by a real Prometheus that also loads deploy/prometheus/alerts.yml; one erasure that
# COMPLETES, one that ends FAILED_VERIFICATION, one REJECTED request and two Score RPCs. Then every
# targets[].expr of deploy/grafana/unlearning-dashboard.json (with $model = demo, $__rate_interval
# = 1m, $__interval = 15s, $__range = 1h) goes to Prometheus' /api/v1/query and must answer
# success with at least one series that is not all NaN. The test fails naming every panel that
# does not. It also checks that UnlearningJobFailedVerification fires, and that
# UnlearningForgetQualityRegressed (and UnlearningOverUnlearning once mia.privleak exists) fire
# exactly when the figures Prometheus holds say they should.

# ---- PENDING_FIGURES ------------------------------------------------------------------------------
# Figures (and the one metric) that the server does not export yet: a query whose text contains one
# of these names may return an empty result. Everything else must return data. Empty this list
# when the change that adds the `tier` label and these figures lands.
PENDING_FIGURES=()
# --------------------------------------------------------------------------------------------------

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
DASHBOARD="$E2E_REPO/deploy/grafana/unlearning-dashboard.json"
ALERTS="$E2E_REPO/deploy/prometheus/alerts.yml"
require_binaries
require_demo
for tool in prometheus promtool jq curl python3; do
  command -v "$tool" >/dev/null || fail "$tool not installed (tools/setup.sh)"
done
[[ -f $DASHBOARD ]] || fail "no dashboard at $DASHBOARD"

# 0. The dashboard's shape (before spending time on training): every target as a TSV line
#    "panel id <TAB> panel title <TAB> refId <TAB> expr with the variables substituted".
python3 - "$DASHBOARD" >"$TMP/targets.tsv" <<'PY' || fail "dashboard JSON does not have the expected shape"
import json, sys
d = json.load(open(sys.argv[1]))
problems = []
if d.get("schemaVersion", 0) < 36:
    problems.append(f"schemaVersion {d.get('schemaVersion')} < 36")
if not any(i.get("name") == "DS_PROMETHEUS" and i.get("pluginId") == "prometheus"
           for i in d.get("__inputs", [])):
    problems.append("no __inputs entry DS_PROMETHEUS for the prometheus plugin")
variables = {v.get("name"): v for v in d.get("templating", {}).get("list", [])}
if variables.get("DS_PROMETHEUS", {}).get("type") != "datasource":
    problems.append("no datasource template variable DS_PROMETHEUS")
model = variables.get("model", {})
if model.get("definition") != "label_values(unlearning_verification_figure, model)":
    problems.append("template variable model is not label_values(unlearning_verification_figure, model)")
subst = [("${model}", "demo"), ("$model", "demo"), ("$__rate_interval", "1m"),
         ("$__interval", "15s"), ("$__range", "1h")]
panels, ids = [], set()
def walk(ps):
    for p in ps:
        panels.append(p)
        walk(p.get("panels", []))
walk(d.get("panels", []))
n = 0
for p in panels:
    if p.get("id") in ids:
        problems.append(f"duplicate panel id {p.get('id')}")
    ids.add(p.get("id"))
    if p.get("type") == "row":
        continue
    title = p.get("title", "?")
    if p.get("datasource", {}).get("uid") != "${DS_PROMETHEUS}":
        problems.append(f"panel '{title}': datasource is not ${{DS_PROMETHEUS}}")
    targets = p.get("targets", [])
    if not targets:
        problems.append(f"panel '{title}' has no targets")
    for t in targets:
        expr = t.get("expr", "")
        if not expr.strip():
            problems.append(f"panel '{title}' target {t.get('refId')} has no expr")
            continue
        for old, new in subst:
            expr = expr.replace(old, new)
        if "$" in expr:
            problems.append(f"panel '{title}' target {t.get('refId')}: unknown variable in {expr}")
        print("\t".join([str(p.get("id")), title, t.get("refId", "?"), " ".join(expr.split())]))
        n += 1
for problem in problems:
    print("dashboard: " + problem, file=sys.stderr)
sys.exit(1 if problems or n == 0 else 0)
PY
log "dashboard: $(wc -l <"$TMP/targets.tsv") queries in $(cut -f1 "$TMP/targets.tsv" | sort -u | wc -l) panels"
promtool check rules "$ALERTS" >"$TMP/promtool.log" 2>&1 ||
  { cat "$TMP/promtool.log" >&2; fail "promtool check rules $ALERTS"; }

# 1. unlearnd and a Prometheus scraping it every second from the start (so that it sees the
#    histograms and counters change, not only their final values), evaluating the alert rules.
start_server server
[[ $METRICS == 127.0.0.1:* ]] || fail "the ready file names no metrics address"
PROM_PORT="$(free_port)"
cat >"$TMP/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: ['$ALERTS']
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

query() { curl -fsS -G "http://127.0.0.1:$PROM_PORT/api/v1/query" --data-urlencode "query=$1"; }
# has_data QUERY: Prometheus answers QUERY with at least one series.
has_data() {
  local answer
  answer="$(query "$1" 2>/dev/null)" || return 1
  [[ $(jq -r '.status' <<<"$answer") == success ]] || return 1
  (($(jq '.data.result | length' <<<"$answer") > 0))
}
wait_until 60 "Prometheus to scrape unlearnd" has_data 'up{job="unlearnd"} == 1'

# 2. Traffic. Both erasures use flat with one epoch (the job duration histogram of one method gets
#    two observations, so its quantiles over a window are defined). The thresholds are explicit
#    checks (--threshold replaces the model family's defaults), so the outcomes do not depend on
#    the default thresholds.
#    Verification, not training, takes most of a job's time; it scales with the retain set, so the
#    jobs keep 32 of the 256 retain records.
head -n 32 "$DEMO/data/retain.jsonl" >"$TMP/retain.jsonl"
erase() {
  ctl erase --model demo --method flat --forget "$DEMO/data/forget.jsonl" \
    --retain "$TMP/retain.jsonl" --param epochs=1 --param seed=3 --wait "$@"
}
log "erasure 1: thresholds that pass (forget ratio <= 1, retain ratio >= 0)"
erase --request-id e2e-dash-ok --threshold forget.answer_probability:ratio_at_most:1 \
  --threshold retain.answer_probability:ratio_at_least:0 >"$TMP/erase_ok.out" 2>"$TMP/erase_ok.err" ||
  { cat "$TMP/erase_ok.err" >&2; fail "erasure 1 did not complete"; }
JOB_OK="$(head -n 1 "$TMP/erase_ok.out")"
job_json="$(ctl --json jobs get "$JOB_OK")"
[[ $(jq -r .state <<<"$job_json") == JOB_STATE_COMPLETED ]] || fail "job 1 not COMPLETED: $job_json"

log "erasure 2: an impossible check (forget answer probability at most 0) -> FAILED_VERIFICATION"
expect_exit 6 "FAILED_VERIFICATION" erase --request-id e2e-dash-fail \
  --threshold forget.answer_probability:at_most:0

log "a rejected request (unknown model)"
expect_exit 4 "NOT_FOUND" ctl erase --model no-such-model --method flat --forget "$DEMO/data/forget.jsonl" \
  --request-id e2e-dash-rejected

# Two Score RPCs with a scrape in between (the latency histogram's rate needs an increase).
score() {
  ctl score --model demo --qa --prompt "Where was Lentas Nelen born?" \
    --continuation "Lentas was born in Nairobi." >/dev/null
}
score || fail "score failed"
wait_until 30 "Prometheus to see the first Score" \
  has_data 'unlearning_inference_requests_total{model="demo",rpc="Score",code="OK"} >= 1'
score || fail "score failed"
for q in 'unlearning_inference_requests_total{model="demo",rpc="Score",code="OK"} >= 2' \
  'unlearning_jobs_finished_total{outcome="failed_verification"} >= 1' \
  'unlearning_jobs_finished_total{outcome="completed"} >= 1' \
  'unlearning_erasure_rejections_total >= 1' \
  'unlearning_verification_figure{model="demo"}'; do
  wait_until 30 "Prometheus to answer $q" has_data "$q"
done

# 3. Every dashboard query.
is_pending() {
  local name
  for name in "${PENDING_FIGURES[@]}"; do
    [[ $1 == *"$name"* ]] && return 0
  done
  return 1
}
failures=()
n_ok=0 n_pending=0
while IFS=$'\t' read -r id title ref expr; do
  where="panel $id '$title' target $ref"
  # Without -f: a bad query is an HTTP 400 whose JSON body says why.
  if ! answer="$(curl -sS -G "http://127.0.0.1:$PROM_PORT/api/v1/query" \
    --data-urlencode "query=$expr" 2>"$TMP/curl.err")" || ! jq -e . >/dev/null 2>&1 <<<"$answer"; then
    failures+=("$where: query failed ($(cat "$TMP/curl.err") $answer): $expr")
    continue
  fi
  if [[ $(jq -r .status <<<"$answer") != success ]]; then
    failures+=("$where: $(jq -r '.error // "error"' <<<"$answer"): $expr")
    continue
  fi
  # Series with a value that is a number (histogram_quantile over no increase gives NaN).
  series="$(jq '[.data.result[] | select((.value[1] // "NaN") != "NaN")] | length' <<<"$answer")"
  if ((series == 0)); then
    if is_pending "$expr"; then
      log "pending ($where): empty, tolerated by PENDING_FIGURES"
      n_pending=$((n_pending + 1))
      continue
    fi
    failures+=("$where: no data ($(jq -c '.data.result' <<<"$answer")): $expr")
    continue
  fi
  if is_pending "$expr"; then
    log "NOTE $where returns data although it names a PENDING_FIGURES entry: shorten the list"
  fi
  log "ok ($where): $series series"
  n_ok=$((n_ok + 1))
done <"$TMP/targets.tsv"

# The model template variable lists the demo model.
curl -fsS -G "http://127.0.0.1:$PROM_PORT/api/v1/label/model/values" \
  --data-urlencode 'match[]=unlearning_verification_figure' >"$TMP/models.json" ||
  failures+=("template variable model: label values query failed")
jq -e '.data | index("demo")' "$TMP/models.json" >/dev/null ||
  failures+=("template variable model: label_values(unlearning_verification_figure, model) lacks demo: $(cat "$TMP/models.json")")

if ((${#failures[@]})); then
  printf '  %s\n' "${failures[@]}" >&2
  fail "${#failures[@]} dashboard queries did not return data ($n_ok did, $n_pending pending)"
fi
log "dashboard: $n_ok queries returned data, $n_pending pending and empty"

# 4. The alert rules on the real series. The failed verification fires...
firing() { has_data "ALERTS{alertname=\"$1\",alertstate=\"firing\"$2}"; }
wait_until 30 "UnlearningJobFailedVerification to fire" \
  firing UnlearningJobFailedVerification ',method="flat"'
log "UnlearningJobFailedVerification fires"
# ...and the figure alerts agree with the figures Prometheus holds (read from the gauge: which job's
# figures it shows, the completed one or the one that failed verification, depends on the server
# version). A rule is evaluated every second; allow a few evaluations after the last change.
gauge() { # FIGURE STAGE: the value Prometheus holds, empty if none
  query "max(unlearning_verification_figure{model=\"demo\",figure=\"$1\",stage=\"$2\"})" |
    jq -r '.data.result[0].value[1] // empty'
}
alert_is() { # ALERT yes|no
  local got=no
  firing "$1" ',model="demo"' && got=yes
  [[ $got == "$2" ]]
}
check_alert() { # ALERT yes|no WHY
  wait_until 10 "$1 firing=$2 ($3)" alert_is "$1" "$2"
  log "$1 firing=$2 as expected ($3)"
}
fa="$(gauge forget.answer_probability after)" fb="$(gauge forget.answer_probability before)"
[[ -n $fa && -n $fb ]] || fail "Prometheus holds no forget.answer_probability for demo"
want="$(python3 -c 'import sys; print("yes" if float(sys.argv[1]) > 0.5 * float(sys.argv[2]) else "no")' "$fa" "$fb")"
check_alert UnlearningForgetQualityRegressed "$want" "forget.answer_probability after $fa, before $fb"
pl="$(gauge mia.privleak after)"
if [[ -n $pl ]]; then
  want="$(python3 -c 'import sys; print("yes" if float(sys.argv[1]) < -0.5 else "no")' "$pl")"
  check_alert UnlearningOverUnlearning "$want" "mia.privleak after $pl"
else
  log "no mia.privleak figure yet: UnlearningOverUnlearning not checked on real data"
fi

log "PASS"
