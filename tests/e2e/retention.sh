#!/usr/bin/env bash
# Erased means erased: after an erasure completes and its grace period has passed, none of the
# forget set's answers is anywhere in the data directory (journal database, -wal, -shm, model
# store) or the server's logs; before the purge the same grep finds them (so this test can fail).
# Also: a rollback across the erasure is refused naming the job, a purged version cannot come back
# even by force, and the job keeps its counts and certificate.
#
# 1. unlearnd with --retain-forget-payload --purge-grace-seconds 3600 (retention held back):
#    one erasure with the demo's forget and retain sets (cheap settings: this test is about where
#    the data goes, not how well it is forgotten); the grep finds the answers in the journal
#    (the request) and in the store (version 1, a copy of the model directory whose
#    reference/never_trained.jsonl lists the forget people).
# 2. Restart on the same data dir with the defaults (payload purged when a job ends, grace 0):
#    the startup sweep purges; the grep finds nothing.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require_binaries
require_demo

EXIT_RPC=3
FORGET="$DEMO/data/forget.jsonl"
ANSWERS="$TMP/answers.txt"  # outside $TMP/data and not a *.log: never grepped itself
jq -r .answer "$FORGET" | sort -u >"$ANSWERS"
n_answers="$(wc -l <"$ANSWERS")"
((n_answers > 0)) || fail "no answers in $FORGET"

# hits PATH...: how many forget-set answers occur in the files under PATH (binary files as text).
hits() { { grep -rFaoh -f "$ANSWERS" "$@" 2>/dev/null || true; } | wc -l; }
# The files of the data dir and the server logs.
everything() { echo "$TMP/data" "$TMP"/*.log; }

start_server held 127.0.0.1:0 --retain-forget-payload --purge-grace-seconds 3600
grep -q "forget-set payloads KEPT" "$TMP/held.log" || fail "the held-back retention is not logged"

log "erasing $n_answers forget answers"
ctl erase --model demo --method flat --forget "$FORGET" --retain "$DEMO/data/retain.jsonl" \
  --request-id e2e-retention-1 --compliance-ref RET-1 --param epochs=1 --param seed=3 \
  --max-forget-ratio 1 --min-retain-ratio 0 --wait >"$TMP/erase.out" 2>"$TMP/erase.err" ||
  { cat "$TMP/erase.err" >&2; fail "erase --wait failed"; }
JOB="$(head -n 1 "$TMP/erase.out")"
[[ $(job_field "$JOB" .state) == JOB_STATE_COMPLETED ]] || fail "job $JOB is not COMPLETED"

# Before the purge: the answers are there (the journal holds the request, v1 the model's files).
journal_before="$(hits "$TMP"/data/journal.sqlite*)"
store_before="$(hits "$TMP/data/models/demo/v1")"
log "before the purge: $journal_before answer hits in the journal files, $store_before in v1"
ls -l "$TMP"/data/journal.sqlite* >&2
((journal_before > 0)) || fail "the retained request is not in the journal: the grep cannot see it"
((store_before > 0)) || fail "version 1 holds none of the answers: the grep cannot see them"
[[ -d $TMP/data/models/demo/v1 ]] || fail "version 1 was purged during its grace period"

# Rolling back across the erasure is refused, naming it.
expect_exit $EXIT_RPC "FAILED_PRECONDITION: .*undo the completed erasure $JOB \(request e2e-retention-1" \
  ctl models rollback demo --version 1

kill -TERM "$SERVER_PID"
wait "$SERVER_PID" 2>/dev/null || true

# Restart with the defaults: the payload and version 1 go.
start_server purged
grep -q "purged as soon as the erasure is published" "$TMP/purged.log" ||
  fail "the default retention is not logged"
after="$(hits $(everything))"
if ((after != 0)); then
  grep -rFal -f "$ANSWERS" $(everything) >&2 || true
  fail "$after forget-set answer hits left in the data dir or the logs after the purge"
fi
log "after the purge: 0 answer hits in $(du -sh "$TMP/data" | cut -f1) of data dir and logs"
ls -l "$TMP"/data/journal.sqlite* >&2
[[ ! -e $TMP/data/models/demo/v1 ]] || fail "version 1's directory is still there"

model="$(ctl --json models describe demo)"
jq -e --arg job "$JOB" '.versions[] | select(.version == "1" and .purged == true
  and .purged_by_job_id == $job and (.purged_unix_ms | tonumber) > 0)' <<<"$model" >/dev/null ||
  fail "models describe does not show version 1 as purged by $JOB: $model"
ctl models describe demo >&2

# What stays: the counts, the forget set's SHA-256 and the certificate.
[[ $(job_field "$JOB" .forget_examples) == "$(wc -l <"$FORGET")" ]] ||
  fail "the job lost its forget-set count: $(ctl --json jobs get "$JOB")"
cert="$(ctl --json certificate get "$JOB")"
[[ $(jq -r .forget_set_sha256 <<<"$cert") =~ ^[0-9a-f]{64}$ ]] || fail "certificate: $cert"
[[ $(jq -r .compliance_reference <<<"$cert") == RET-1 ]] || fail "certificate: $cert"

# A purged version cannot come back, not even by force.
expect_exit $EXIT_RPC "FAILED_PRECONDITION: cannot roll back: version 1 of model 'demo' was purged" \
  ctl models rollback demo --version 1 --force

log "PASS"
