#!/usr/bin/env bash
# Crash recovery: an erasure job running when unlearnd is killed with SIGKILL resumes after a
# restart on the same data dir and completes; nothing accepted is lost, request ids stay
# idempotent, a watcher that was connected during the crash reconnects and sees the end, and the
# new model version and certificate exist.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require_binaries
require_demo

FORGET="$DEMO/data/forget.jsonl"
RETAIN="$DEMO/data/retain.jsonl"
# Enough optimisation steps that the job is still training when we kill the server. Loose
# thresholds: this test is about recovery, not about how well the method forgets.
EPOCHS="${E2E_CRASH_EPOCHS:-30}"
erase_args=(erase --model demo --method flat --forget "$FORGET" --retain "$RETAIN"
  --param "epochs=$EPOCHS" --param batch_size=1 --param seed=7
  --max-forget-ratio 1 --min-retain-ratio 0)

start_server first

log "submitting job 1"
JOB1="$(ctl "${erase_args[@]}" --request-id e2e-crash-1)"
[[ -n $JOB1 ]] || fail "erase printed no job id"
log "job 1 = $JOB1"

running_with_progress() {
  local json
  json="$(ctl --json jobs get "$JOB1")" || return 1
  [[ $(jq -r .state <<<"$json") == JOB_STATE_RUNNING ]] || {
    [[ $(jq -r .state <<<"$json") == JOB_STATE_QUEUED ]] && return 1
    fail "job 1 left QUEUED/RUNNING before the kill (increase E2E_CRASH_EPOCHS): $json"
  }
  (($(jq -r '.step | tonumber' <<<"$json") > 0))
}
wait_until 300 "job 1 RUNNING with step > 0" running_with_progress
log "job 1 is running: step $(job_field "$JOB1" .step)/$(job_field "$JOB1" .total_steps)"

# A watcher connected through the crash: it must reconnect and report the completion.
"$UNLEARNCTL" --server "$GRPC" jobs watch "$JOB1" --reconnect-timeout 300 \
  >"$TMP/watch.out" 2>"$TMP/watch.err" &
WATCH_PID=$!
E2E_PIDS+=("$WATCH_PID")

# A second request accepted right before the crash must not be lost.
JOB2="$(ctl "${erase_args[@]}" --request-id e2e-crash-2)"
[[ -n $JOB2 && $JOB2 != "$JOB1" ]] || fail "second erase returned '$JOB2'"
log "job 2 = $JOB2; killing unlearnd (pid $SERVER_PID) with SIGKILL"
kill -KILL "$SERVER_PID"
wait "$SERVER_PID" 2>/dev/null || true
old_grpc="$GRPC"

# Restart on the same data dir and the same port, so the watcher above can reconnect.
start_server second "$old_grpc"

log "waiting for job 1 to complete after the restart"
ctl jobs watch "$JOB1" >"$TMP/watch1.out" || fail "jobs watch $JOB1 did not end COMPLETED"
cat "$TMP/watch1.out" >&2

[[ $(job_field "$JOB1" .state) == JOB_STATE_COMPLETED ]] || fail "job 1 is not COMPLETED"
attempts="$(job_field "$JOB1" .attempts)"
((attempts >= 2)) || fail "job 1 attempts = $attempts, expected >= 2 (was it recovered?)"
log "job 1 completed after $attempts attempts"

# The watcher that lived through the crash caught up.
watch_rc=0
wait "$WATCH_PID" || watch_rc=$?
((watch_rc == 0)) || { cat "$TMP/watch.err" >&2; fail "the watcher exited $watch_rc"; }
grep -q "COMPLETED" "$TMP/watch.out" || fail "the watcher did not report COMPLETED"
grep -q "reconnecting" "$TMP/watch.err" || fail "the watcher did not notice the broken stream"

# Same request id again: the same job, flagged duplicate.
dup="$(ctl --json "${erase_args[@]}" --request-id e2e-crash-1)"
[[ $(jq -r .job_id <<<"$dup") == "$JOB1" ]] || fail "resent request got another job: $dup"
[[ $(jq -r .duplicate <<<"$dup") == true ]] || fail "resent request not flagged duplicate: $dup"

# A new model version produced by job 1.
model="$(ctl --json models describe demo)"
published="$(job_field "$JOB1" .published_version)"
((published >= 2)) || fail "job 1 published version $published"
jq -e --arg job "$JOB1" --arg v "$published" \
  '.versions[] | select(.job_id == $job and .version == $v)' <<<"$model" >/dev/null ||
  fail "models describe shows no version from job 1: $model"
ctl models describe demo >&2

# The certificate exists and names the job (by job id and by request id).
cert="$(ctl --json certificate get "$JOB1")"
[[ $(jq -r .job_id <<<"$cert") == "$JOB1" ]] || fail "certificate does not name job 1: $cert"
[[ $(jq -r .request_id <<<"$cert") == e2e-crash-1 ]] || fail "certificate request id: $cert"
[[ -n $(jq -r .certificate_id <<<"$cert") ]] || fail "certificate has no id"
[[ $(ctl --json certificate get e2e-crash-1 | jq -r .job_id) == "$JOB1" ]] ||
  fail "certificate lookup by request id failed"

# Job 2 survived the crash and runs to its end too.
[[ $(job_field "$JOB2" .request_id) == e2e-crash-2 ]] || fail "job 2 lost its request id"
ctl jobs watch "$JOB2" >"$TMP/watch2.out" || fail "job 2 did not complete"
[[ $(job_field "$JOB2" .state) == JOB_STATE_COMPLETED ]] || fail "job 2 is not COMPLETED"
((published < $(job_field "$JOB2" .published_version))) ||
  fail "job 2 did not publish a version after job 1's"
[[ $(ctl --json jobs list --model demo | jq '.jobs | length') -eq 2 ]] ||
  fail "expected exactly 2 jobs: $(ctl jobs list)"

log "PASS"
