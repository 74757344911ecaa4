#!/usr/bin/env bash
# Crash campaign (#12): N erasure requests over several concurrent unlearnctl streams while unlearnd
# is killed with SIGKILL at seeded random points, each aimed at one phase of a request's life
# (journaling, training, storing, publishing) and restarted on the same data dir. Afterwards:
#   1. every request that was ever answered ACCEPTED has exactly one job id (streams, resends and
#      the journal agree), that job ended in a terminal state, the journal has one row per request
#      id and no other rows, and no job published more than one version;
#   2. resends (same request id, same payload) after every restart return the same job flagged
#      duplicate; the same request id with another payload is rejected (ALREADY_EXISTS);
#   3. the model store has no temporary (.tmp-*) or half-purged (.purge-*) directory left after
#      the restart, every v<N> directory on disk is a listed, unpurged version and every listed,
#      unpurged version has its directory; purged versions have no bytes left;
#   4. every stored file matches the SHA-256 and size in its version's manifest.json, the manifest
#      matches the journal's (and the API's) SHA-256, no file is missing or extra;
#   5. the server restarts on the result (it verifies the serving version on load) and loads every
#      listed version on demand (`score --version V`, which re-hashes the version's files).
# Every check is evaluated and reported; the script fails if any of them failed. Corrupting one
# byte of a stored file, deleting a journal row, or leaving an unlisted v<N> directory each makes
# it fail (docs/reliability.md, "Showing that the checks can fail").
#
# Environment (defaults are the CI size; docs/reliability.md has a large run):
#   UNL_CAMPAIGN_SEED            seed of the kill plan, delays and payloads (default 1)
#   UNL_CAMPAIGN_REQUESTS        N requests (default 6)
#   UNL_CAMPAIGN_KILLS           SIGKILLs during the run (default 4: each phase once)
#   UNL_CAMPAIGN_STREAMS         concurrent submitting clients (default 3)
#   UNL_CAMPAIGN_BUDGET_SECONDS  hard bound on the whole run (default 210)
#   UNL_CAMPAIGN_EPOCHS          FLAT epochs per request (default 3; 2 forget records, batch 1)
#   UNL_CAMPAIGN_RETAIN          retain records per request (default 16: verification scores them,
#                                so this sets most of a job's time: about 8 s here, 24 s with 200)
#   UNL_CAMPAIGN_PURGE_GRACE     unlearnd --purge-grace-seconds (default 0, the server default:
#                                versions older than an erasure are purged at once; -1 keeps all)
#   UNL_CAMPAIGN_SUMMARY         also write the summary to this file
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require_binaries
require_demo
for tool in jq sqlite3 sha256sum python3; do
  command -v "$tool" >/dev/null || fail "$tool is required"
done

SEED="${UNL_CAMPAIGN_SEED:-1}"
N="${UNL_CAMPAIGN_REQUESTS:-6}"
KILLS="${UNL_CAMPAIGN_KILLS:-4}"
STREAMS="${UNL_CAMPAIGN_STREAMS:-3}"
BUDGET="${UNL_CAMPAIGN_BUDGET_SECONDS:-210}"
EPOCHS="${UNL_CAMPAIGN_EPOCHS:-3}"
RETAIN_RECORDS="${UNL_CAMPAIGN_RETAIN:-16}"
PURGE_GRACE="${UNL_CAMPAIGN_PURGE_GRACE:-0}"
for v in SEED N KILLS STREAMS BUDGET EPOCHS RETAIN_RECORDS; do
  [[ ${!v} =~ ^[0-9]+$ ]] || fail "$v must be a non-negative integer, got '${!v}'"
done
((N >= 1 && STREAMS >= 1)) || fail "need at least one request and one stream"
# The kill plan, the delays and the payloads come from this seeded generator (an LCG: bash's
# $RANDOM is reseeded in every subshell, so it is not reproducible through $(...)).
RNG=$(((SEED * 2654435761 + 1) % 2147483648))
END=$((SECONDS + BUDGET))
DATA="$TMP/data"
STORE="$DATA/models/demo"
JOURNAL="$DATA/journal.sqlite"
PHASES=(journaling training storing publishing)

remaining() { echo $((END - SECONDS)); }
check_budget() { ((SECONDS < END)) || fail "time budget of $BUDGET s exceeded ($*)"; }
# rand_below M: sets R to a random integer in [0, M) (in the calling shell: never in $(...)).
R=0
rand_below() {
  RNG=$(((RNG * 1103515245 + 12345) % 2147483648))
  R=$(((RNG / 65536) % $1))
}
now_ms() { date +%s%3N; }

# ---- the requests: request i forgets 2 records of the demo forget set (seeded choice) ----------
REQ="$TMP/requests"
mkdir -p "$REQ" "$TMP/answers" "$TMP/inflight" "$TMP/gates"
FORGET="$DEMO/data/forget.jsonl"
RETAIN="$TMP/retain.jsonl"
head -n "$RETAIN_RECORDS" "$DEMO/data/retain.jsonl" >"$RETAIN"
records="$(wc -l <"$FORGET")"
rand_below "$records"
offset=$R
for ((i = 0; i < N; i++)); do
  a=$(((offset + 2 * i) % records + 1))
  b=$(((offset + 2 * i + 1) % records + 1))
  sed -n "${a}p;${b}p" "$FORGET" >"$REQ/$i.jsonl"
  [[ $(wc -l <"$REQ/$i.jsonl") -eq 2 ]] || fail "request $i: could not cut 2 records"
done
rid() { echo "campaign-s$SEED-r$1"; }
erase_args=(erase --model demo --method flat --retain "$RETAIN"
  --param "epochs=$EPOCHS" --param batch_size=1 --param "seed=$SEED"
  --max-forget-ratio 1 --min-retain-ratio 0)

# ---- the kill plan: phases in seeded order (each phase once per block of four), seeded delays --
PLAN_PHASE=()
PLAN_DELAY_MS=()
for ((k = 0; k < KILLS; k += 4)); do
  block=("${PHASES[@]}")
  for ((j = 3; j > 0; j--)); do # Fisher-Yates
    rand_below $((j + 1))
    t="${block[j]}" && block[j]="${block[R]}" && block[R]="$t"
  done
  PLAN_PHASE+=("${block[@]}")
done
PLAN_PHASE=("${PLAN_PHASE[@]:0:KILLS}")
for ((k = 0; k < KILLS; k++)); do
  case "${PLAN_PHASE[k]}" in
    journaling) rand_below 120 ;; # ms after a submission starts
    training) rand_below 2000 ;;  # after a job runs with step > 0
    storing) rand_below 60 ;;     # after a .tmp-v<N> directory appears
    publishing) rand_below 40 ;;  # after it is renamed to v<N> (or a new v<N> appears)
  esac
  PLAN_DELAY_MS+=("$R")
done
# Requests are released in batches: one at the start and one at each journaling kill, so that
# each journaling kill has submissions in flight.
journaling_kills=0
for p in "${PLAN_PHASE[@]}"; do [[ $p == journaling ]] && journaling_kills=$((journaling_kills + 1)); done
BATCHES=$((journaling_kills + 1))
batch_of() { echo $(($1 * BATCHES / N)); }
log "seed $SEED: $N requests over $STREAMS streams, $KILLS kills, budget $BUDGET s, flat epochs $EPOCHS"
for ((k = 0; k < KILLS; k++)); do
  log "plan: kill $((k + 1)) aimed at ${PLAN_PHASE[k]} + ${PLAN_DELAY_MS[k]} ms"
done

# ---- server ------------------------------------------------------------------------------------
PORT="$(free_port)"
STARTS=0
start() {
  STARTS=$((STARTS + 1))
  E2E_START_TIMEOUT="$(($(remaining) > 5 ? $(remaining) : 5))" \
    start_server "run$STARTS" "127.0.0.1:$PORT" --purge-grace-seconds "$PURGE_GRACE"
}
kill9() {
  kill -KILL "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
}

# ---- submitting streams --------------------------------------------------------------------------
# submit I STREAM: sends request I until it is answered (ACCEPTED or REJECTED), resending with the
# same request id after a connection failure or an unanswered stream (the server died). Each
# answer is appended to $TMP/answers/<request id> as "<job id> <duplicate> <attempt>" or "REJECTED".
submit() {
  local i=$1 id attempt=0 rc out err
  id="$(rid "$i")"
  while ((SECONDS < END)); do
    attempt=$((attempt + 1))
    out="$TMP/answers/$id.$attempt.out"
    err="$TMP/answers/$id.$attempt.err"
    touch "$TMP/inflight/$id"
    rc=0
    "$UNLEARNCTL" --server "127.0.0.1:$PORT" --json --timeout 60 "${erase_args[@]}" \
      --forget "$REQ/$i.jsonl" --request-id "$id" >"$out" 2>"$err" || rc=$?
    rm -f "$TMP/inflight/$id"
    if ((rc == 0)); then
      jq -r '"\(.job_id) \(.duplicate // false) '"$attempt"'"' "$out" >>"$TMP/answers/$id"
      return 0
    elif ((rc == 4)); then
      echo "REJECTED $attempt" >>"$TMP/answers/$id"
      return 0
    fi
    grep -q "may or may not have been stored" "$err" && echo "$attempt" >>"$TMP/answers/$id.indeterminate"
    sleep 0.3
  done
  return 1
}
# stream S: submits the requests i with i % STREAMS == S in order, each once its batch is released.
stream() {
  local s=$1 i
  for ((i = s; i < N; i += STREAMS)); do
    until [[ -e $TMP/gates/$(batch_of "$i") ]]; do
      ((SECONDS < END)) || return 1
      sleep 0.1
    done
    submit "$i" || return 1
  done
}
release() { touch "$TMP/gates/$1"; }

# ---- observing the server ---------------------------------------------------------------------
# jobs_json: every job of the demo model (fails on an RPC failure).
jobs_json() { ctl --json --timeout 10 jobs list --model demo --all 2>/dev/null; }
# unfinished_jobs: how many jobs are queued or running ("unknown" if the server does not answer).
unfinished_jobs() {
  local json
  json="$(jobs_json)" || {
    echo unknown
    return 0
  }
  jq -s '[.[].jobs[]? | select(.state == "JOB_STATE_QUEUED" or .state == "JOB_STATE_RUNNING")] | length' <<<"$json"
}
running_with_progress() {
  local json
  json="$(jobs_json)" || return 1
  jq -se '[.[].jobs[]? | select(.state == "JOB_STATE_RUNNING" and ((.step // "0") | tonumber) > 0)] | length > 0' <<<"$json" >/dev/null
}
version_dirs() { find "$STORE" -mindepth 1 -maxdepth 1 -type d -name 'v[0-9]*' -printf '%f\n' 2>/dev/null | sort; }
# Builtins only (polled every 10 ms): the version directories' paths.
version_glob() { compgen -G "$STORE/v[0-9]*" || true; }
temp_present() { compgen -G "$STORE/.tmp-v*" >/dev/null; }
inflight_present() { compgen -G "$TMP/inflight/*" >/dev/null; }
all_released() { [[ -e $TMP/gates/$((BATCHES - 1)) ]]; }
next_batch=1
release_next() {
  if ((next_batch < BATCHES)); then
    release "$next_batch"
    next_batch=$((next_batch + 1))
    return 0
  fi
  return 1
}

# wait_signal PHASE TIMEOUT: waits for the observable start of PHASE; false on timeout.
#   journaling: a submission is in flight (a stream is running unlearnctl erase);
#   training:   a job is RUNNING with step > 0 (jobs list);
#   storing:    a .tmp-v<N> directory exists in the store (a version being written);
#   publishing: that directory was renamed to v<N>, or a v<N> appeared that was not there before
#               (between the store and the journal commit, or just after it: pointer swap, purge
#               of older versions, completion event).
wait_signal() {
  local phase=$1 deadline=$((SECONDS + $2)) before seen_tmp=0
  before="$(version_glob)"
  while ((SECONDS < deadline && SECONDS < END)); do
    case $phase in
      journaling) inflight_present && return 0 ;;
      training) running_with_progress && return 0 ;;
      storing) temp_present && return 0 ;;
      publishing)
        if temp_present; then
          seen_tmp=1
        elif ((seen_tmp)) || [[ $(version_glob) != "$before" && -n $(comm -13 <(echo "$before") <(version_glob)) ]]; then
          return 0
        fi
        ;;
    esac
    case $phase in
      storing | publishing) sleep 0.01 ;;
      training) sleep 0.2 ;; # each poll is an RPC: do not take the CPU from the job
      *) sleep 0.05 ;;
    esac
  done
  return 1
}

# classify KILL_MS: what the data dir shows after a kill (the server is dead, so the state is
# frozen), and which phase that is. Reads a copy of the journal so that the crash state itself is
# never touched. Evidence, strongest first: a .tmp-v<N> directory (storing); a v<N> the journal
# does not list, a .purge-* directory, a purged version with bytes, or a job completed < 500 ms
# before the kill (publishing); a submission in flight or accepted < 300 ms before (journaling); a
# RUNNING job (training); else idle.
classify() {
  local kill_ms=$1 snap="$TMP/snap" hit=idle evidence=() orphans=() running queued tmps purges
  rm -rf "$snap" && mkdir -p "$snap"
  cp "$JOURNAL" "$snap/j.sqlite"
  [[ -f $JOURNAL-wal ]] && cp "$JOURNAL-wal" "$snap/j.sqlite-wal"
  running="$(sqlite3 "$snap/j.sqlite" "SELECT COUNT(*) FROM jobs WHERE state = 'running'")"
  queued="$(sqlite3 "$snap/j.sqlite" "SELECT COUNT(*) FROM jobs WHERE state = 'queued'")"
  local journaled
  journaled="$(sqlite3 "$snap/j.sqlite" "SELECT 'v' || version FROM model_versions WHERE model_id = 'demo'" | sort)"
  mapfile -t orphans < <(comm -23 <(version_dirs) <(echo "$journaled"))
  tmps="$(compgen -G "$STORE/.tmp-v*" | wc -l || true)"
  purges="$(compgen -G "$STORE/.purge-v*" | wc -l || true)"
  local inflight since_done since_accept purged_bytes=0 version dir
  inflight="$(find "$TMP/inflight" -type f | wc -l)"
  since_done="$(sqlite3 "$snap/j.sqlite" "SELECT COALESCE($kill_ms - MAX(finished_ms), 1000000000) FROM jobs WHERE finished_ms > 0")"
  since_accept="$(sqlite3 "$snap/j.sqlite" "SELECT COALESCE($kill_ms - MAX(accepted_ms), 1000000000) FROM jobs")"
  while read -r version dir; do
    [[ -n $version && -e $dir ]] && purged_bytes=$((purged_bytes + 1))
  done < <(sqlite3 -separator ' ' "$snap/j.sqlite" "SELECT version, dir FROM model_versions WHERE purged_ms > 0")
  evidence+=("running=$running" "queued=$queued" "inflight_submissions=$inflight")
  ((tmps > 0)) && evidence+=("tmp_dirs=$tmps")
  ((${#orphans[@]} > 0)) && evidence+=("unjournaled=${orphans[*]}")
  ((purges > 0)) && evidence+=("purge_dirs=$purges")
  ((purged_bytes > 0)) && evidence+=("purged_with_bytes=$purged_bytes")
  ((since_done < 500)) && evidence+=("completed_${since_done}ms_before")
  ((since_accept < 300)) && evidence+=("accepted_${since_accept}ms_before")
  if ((tmps > 0)); then
    hit=storing
  elif ((${#orphans[@]} > 0 || purges > 0 || purged_bytes > 0 || since_done < 500)); then
    hit=publishing
  elif ((inflight > 0 || since_accept < 300)); then
    hit=journaling
  elif ((running > 0)); then
    hit=training
  fi
  echo "$hit ${evidence[*]}"
}

# resend_accepted: every request answered ACCEPTED so far, again, same id and payload: it must be
# the same job, flagged duplicate.
RESENDS=0
resend_accepted() {
  local i id want out rc
  for ((i = 0; i < N; i++)); do
    id="$(rid "$i")"
    want="$(first_job "$id")"
    [[ -n $want ]] || continue
    check_budget "resending"
    rc=0
    out="$(ctl --json --timeout 60 "${erase_args[@]}" --forget "$REQ/$i.jsonl" --request-id "$id" 2>"$TMP/resend.err")" || rc=$?
    RESENDS=$((RESENDS + 1))
    if ((rc != 0)); then
      problem "resend of $id: exit $rc: $(cat "$TMP/resend.err")"
    elif [[ $(jq -r .job_id <<<"$out") != "$want" || $(jq -r '.duplicate // false' <<<"$out") != true ]]; then
      problem "resend of $id (job $want) answered: $out"
    else
      echo "$want true resend" >>"$TMP/answers/$id"
    fi
  done
}
first_job() {
  [[ ! -f $TMP/answers/$1 ]] || awk '$1 != "REJECTED" {print $1; exit}' "$TMP/answers/$1"
}

PROBLEMS=()
problem() {
  PROBLEMS+=("$*")
  log "CHECK FAILED: $*"
}

# ---- the campaign ---------------------------------------------------------------------------------
start
STREAM_PIDS=()
release 0
for ((s = 0; s < STREAMS && s < N; s++)); do
  stream "$s" &
  STREAM_PIDS+=("$!")
  E2E_PIDS+=("$!")
done

KILL_LOG=()
for ((k = 0; k < KILLS; k++)); do
  phase="${PLAN_PHASE[k]}"
  delay="${PLAN_DELAY_MS[k]}"
  check_budget "before kill $((k + 1))"
  # Journaling kills release the next batch of requests; other phases need a job to work on:
  # release one early if every accepted job has finished.
  if [[ $phase == journaling ]]; then
    release_next || true
  elif [[ $(unfinished_jobs) == 0 ]] && ! inflight_present; then
    release_next || true
  fi
  # Leave time for the rest of the plan: at most a fair share of what remains.
  share=$(($(remaining) / (KILLS - k + 2)))
  seen=observed
  wait_signal "$phase" "$((share > 3 ? share : 3))" || seen="not seen in ${share}s"
  sleep "$(printf '%d.%03d' $((delay / 1000)) $((delay % 1000)))"
  t0="$(now_ms)"
  kill9
  read -r hit evidence <<<"$(classify "$t0")"
  KILL_LOG+=("kill $((k + 1)): aimed $phase (signal $seen, +${delay} ms) -> hit $hit [$evidence]")
  log "${KILL_LOG[-1]}"
  start
  log "restarted in $(($(now_ms) - t0)) ms"
  resend_accepted
done

# Everything released; the streams finish once every request is answered.
while release_next; do :; done
for pid in "${STREAM_PIDS[@]}"; do
  wait "$pid" || fail "a submitting stream did not get all its requests answered within the budget"
done
log "all $N requests answered; waiting for every job to end"
until [[ $(unfinished_jobs) == 0 ]]; do
  check_budget "waiting for the jobs to end"
  sleep 0.5
done

# The same request id with another payload must be refused.
rand_below "$N"
i=$R
other=$(((i + 1) % N))
rc=0
ctl --timeout 60 "${erase_args[@]}" --forget "$REQ/$other.jsonl" --request-id "$(rid "$i")" \
  >/dev/null 2>"$TMP/conflict.err" || rc=$?
CONFLICT="exit $rc: $(head -c 60 "$TMP/conflict.err")..."
if ((N > 1)) && ! { ((rc == 4)) && grep -q ALREADY_EXISTS "$TMP/conflict.err"; }; then
  problem "request id $(rid "$i") with another payload: exit $rc, $(cat "$TMP/conflict.err") (want exit 4, ALREADY_EXISTS)"
fi

# A final kill at rest and a restart: the restart loads (and re-hashes) the serving version.
kill9
start
resend_accepted

# ---- checks ----------------------------------------------------------------------------------------
log "checking"
# 1. Every accepted request: one job id across every answer; that job exists, names the request
#    and is terminal; the journal holds exactly these jobs.
declare -A OUTCOME=()
declare -A JOB_OF=()
accepted=0
rejected=0
indeterminate=0
for ((i = 0; i < N; i++)); do
  id="$(rid "$i")"
  [[ -f $TMP/answers/$id.indeterminate ]] && indeterminate=$((indeterminate + $(wc -l <"$TMP/answers/$id.indeterminate")))
  [[ -f $TMP/answers/$id ]] || {
    problem "request $id was never answered"
    continue
  }
  if grep -q '^REJECTED' "$TMP/answers/$id"; then
    rejected=$((rejected + 1))
    grep -qv '^REJECTED' "$TMP/answers/$id" && problem "request $id was both accepted and rejected"
    continue
  fi
  accepted=$((accepted + 1))
  jobs_seen="$(awk '{print $1}' "$TMP/answers/$id" | sort -u)"
  [[ $(wc -l <<<"$jobs_seen") -eq 1 ]] || problem "request $id got several job ids: $(echo "$jobs_seen" | tr '\n' ' ')"
  job="$(head -n1 <<<"$jobs_seen")"
  JOB_OF[$id]="$job"
  json="$(ctl --json jobs get "$job" 2>&1)" || {
    problem "job $job of accepted request $id: $json"
    continue
  }
  state="$(jq -r .state <<<"$json")"
  [[ $(jq -r .request_id <<<"$json") == "$id" ]] || problem "job $job names request $(jq -r .request_id <<<"$json"), not $id"
  case $state in
    JOB_STATE_COMPLETED | JOB_STATE_FAILED | JOB_STATE_FAILED_VERIFICATION | JOB_STATE_CANCELLED) ;;
    *) problem "job $job of request $id is $state, not terminal" ;;
  esac
  OUTCOME[$state]=$((${OUTCOME[$state]:-0} + 1))
done
# The journal: one row per accepted request (request ids are UNIQUE there; this also catches a
# lost row and a row nobody was told about), none unfinished, at most one version per job.
expected_rows="$(for id in "${!JOB_OF[@]}"; do echo "$id ${JOB_OF[$id]}"; done | sort)"
journal_rows="$(sqlite3 -separator ' ' "$JOURNAL" "SELECT request_id, job_id FROM jobs ORDER BY request_id" | sort)"
if [[ $expected_rows != "$journal_rows" ]]; then
  problem "journal jobs differ from the accepted answers: $(diff <(echo "$expected_rows") <(echo "$journal_rows") | grep '^[<>]' | tr '\n' ';')"
fi
unfinished="$(sqlite3 "$JOURNAL" "SELECT job_id || ':' || state FROM jobs WHERE state IN ('queued', 'running')")"
[[ -z $unfinished ]] || problem "journal has unfinished jobs: $unfinished"
multi="$(sqlite3 "$JOURNAL" "SELECT job_id FROM model_versions WHERE job_id != '' GROUP BY job_id HAVING COUNT(*) > 1")"
[[ -z $multi ]] || problem "jobs that published more than one version: $multi"
api_ids="$(ctl --json jobs list --model demo --all | jq -r '.jobs[]?.request_id' | sort)"
[[ $api_ids == "$(printf '%s\n' "${!JOB_OF[@]}" | sort)" ]] ||
  problem "jobs list shows other request ids than the accepted ones: $(echo "$api_ids" | tr '\n' ' ')"
# A completed job's published version is in the journal, made by that job.
while read -r job version; do
  [[ -n $job ]] || continue
  made_by="$(sqlite3 "$JOURNAL" "SELECT job_id FROM model_versions WHERE model_id = 'demo' AND version = $version")"
  [[ $made_by == "$job" ]] || problem "completed job $job published version $version, which the journal credits to '$made_by'"
done < <(sqlite3 -separator ' ' "$JOURNAL" "SELECT job_id, published_version FROM jobs WHERE state = 'completed' AND published_version > 0")

# 3. Store layout: no temporary or purge directory, v<N> on disk == listed and unpurged.
model_json="$(ctl --json models describe demo)"
stray="$(find "$STORE" -mindepth 1 -maxdepth 1 ! -name 'v[0-9]*' -printf '%f ')"
[[ -z $stray ]] || problem "store holds non-version entries after the restart: $stray"
listed="$(jq -r '.versions[] | select(.purged != true) | "v\(.version)"' <<<"$model_json" | sort)"
on_disk="$(version_dirs)"
[[ $listed == "$on_disk" ]] || problem "version dirs on disk [$(echo "$on_disk" | tr '\n' ' ')] != listed unpurged versions [$(echo "$listed" | tr '\n' ' ')]"
journal_listed="$(sqlite3 "$JOURNAL" "SELECT 'v' || version FROM model_versions WHERE model_id = 'demo' AND purged_ms = 0" | sort)"
[[ $listed == "$journal_listed" ]] || problem "API versions [$listed] != journal versions [$journal_listed]"
while read -r version dir; do
  [[ -z $version || ! -e $dir ]] || problem "purged version $version still has bytes at $dir"
done < <(sqlite3 -separator ' ' "$JOURNAL" "SELECT version, dir FROM model_versions WHERE model_id = 'demo' AND purged_ms > 0")

# 4. Every stored file against its manifest, the manifest against the journal and the API.
files_checked=0
while IFS='|' read -r version dir sha; do
  [[ -n $version ]] || continue
  [[ $dir == "$STORE/v$version" ]] || problem "version $version recorded at $dir, not $STORE/v$version"
  [[ -f $dir/manifest.json ]] || {
    problem "version $version has no manifest.json"
    continue
  }
  got="$(sha256sum "$dir/manifest.json" | cut -d' ' -f1)"
  [[ $got == "$sha" ]] || problem "v$version manifest.json sha256 $got != journal $sha"
  api_sha="$(jq -r --argjson v "$version" '.versions[] | select((.version | tonumber) == $v) | .manifest_sha256' <<<"$model_json")"
  [[ $api_sha == "$sha" ]] || problem "v$version: API manifest sha256 $api_sha != journal $sha"
  while read -r path bytes want; do
    files_checked=$((files_checked + 1))
    if [[ ! -f $dir/$path ]]; then
      problem "v$version/$path listed in the manifest is missing"
      continue
    fi
    [[ $(stat -c %s "$dir/$path") == "$bytes" ]] || problem "v$version/$path is $(stat -c %s "$dir/$path") bytes, manifest says $bytes"
    got="$(sha256sum "$dir/$path" | cut -d' ' -f1)"
    [[ $got == "$want" ]] || problem "v$version/$path sha256 $got != manifest $want"
  done < <(jq -r '.files[] | "\(.path) \(.bytes) \(.sha256)"' "$dir/manifest.json")
  extra="$(comm -13 <(jq -r '.files[].path' "$dir/manifest.json" | sort) \
    <(cd "$dir" && find . -type f ! -path ./manifest.json | sed 's|^\./||' | sort))"
  [[ -z $extra ]] || problem "v$version has files the manifest does not list: $extra"
done < <(sqlite3 "$JOURNAL" "SELECT version, dir, weights_sha256 FROM model_versions WHERE model_id = 'demo' AND purged_ms = 0 ORDER BY version")

# 5. The server loads every listed version (LoadVersion re-hashes the files against the manifest).
loaded=0
for v in $listed; do
  if ctl --timeout 120 score --model demo --version "${v#v}" --qa --prompt "Where was Lentas Nelen born?" \
    --continuation " Nairobi" >/dev/null 2>"$TMP/load.err"; then
    loaded=$((loaded + 1))
  else
    problem "the server does not load version ${v#v}: $(cat "$TMP/load.err")"
  fi
done

# ---- summary ----------------------------------------------------------------------------------------
published="$(sqlite3 "$JOURNAL" "SELECT COUNT(*) FROM model_versions WHERE model_id = 'demo' AND job_id != ''")"
attempts="$(sqlite3 "$JOURNAL" "SELECT COALESCE(SUM(attempts), 0) FROM jobs")"
{
  echo "crash campaign: seed $SEED, N=$N requests over $STREAMS streams, $KILLS kills (+1 at rest), flat epochs $EPOCHS, purge grace $PURGE_GRACE s"
  for line in "${KILL_LOG[@]}"; do echo "  $line"; done
  hits="$(printf '%s\n' "${KILL_LOG[@]}" | sed -n 's/.*-> hit \([a-z]*\).*/\1/p' | sort | uniq -c | awk '{printf "%s=%s ", $2, $1}')"
  echo "  phases hit: ${hits:-none}"
  outcome_line=""
  for s in "${!OUTCOME[@]}"; do outcome_line+="${s#JOB_STATE_}=${OUTCOME[$s]} "; done
  echo "  requests: accepted=$accepted rejected=$rejected; unanswered submissions resent=$indeterminate; outcomes: ${outcome_line:-none}"
  echo "  job attempts (runs, incl. interrupted ones)=$attempts; versions published=$published; idempotent resends=$RESENDS; server starts=$STARTS"
  echo "  same request id, other payload: $CONFLICT"
  echo "  store: $(wc -w <<<"$listed") unpurged versions, $files_checked files re-hashed, $loaded versions loaded"
  echo "  checks failed: ${#PROBLEMS[@]}; wall time $SECONDS s (budget $BUDGET s)"
} >"$TMP/summary.txt"
cat "$TMP/summary.txt" >&2
[[ -z ${UNL_CAMPAIGN_SUMMARY:-} ]] || cp "$TMP/summary.txt" "$UNL_CAMPAIGN_SUMMARY"
if ((${#PROBLEMS[@]} > 0)); then
  printf '  - %s\n' "${PROBLEMS[@]}" >&2
  fail "${#PROBLEMS[@]} check(s) failed"
fi
log "PASS"
