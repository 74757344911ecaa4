#!/usr/bin/env bash
# unlearnctl failure modes: each exits non-zero with its documented code (docs/cli.md) and a message
# naming the problem: server down, unknown model, unknown method parameter, missing file,
# malformed JSONL, unknown job.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require_binaries
require_demo

# Exit codes (client/exit_codes.h).
EXIT_USAGE=2
EXIT_RPC=3
EXIT_REJECTED=4

FORGET="$DEMO/data/forget.jsonl"

# Server down: nothing listens on a fresh port.
DOWN="127.0.0.1:$(free_port)"
expect_exit $EXIT_RPC "^unlearnctl: UNAVAILABLE: cannot reach unlearnd at $DOWN" \
  "$UNLEARNCTL" --server "$DOWN" models list
expect_exit $EXIT_RPC "UNAVAILABLE" \
  "$UNLEARNCTL" --server "$DOWN" erase --model demo --method flat --forget "$FORGET"
UNLEARN_SERVER="$DOWN" expect_exit $EXIT_RPC "cannot reach unlearnd at $DOWN" \
  "$UNLEARNCTL" jobs list
log "server down: ok"

# Local input errors need no server (checked before connecting).
expect_exit $EXIT_USAGE "unknown parameter 'bogus' for method npo \(valid: .*beta.*learning_rate" \
  "$UNLEARNCTL" --server "$DOWN" erase --model demo --method npo --forget "$FORGET" \
  --param bogus=1
expect_exit $EXIT_USAGE "unknown parameter 'beta' for method flat" \
  "$UNLEARNCTL" --server "$DOWN" erase --model demo --method flat --forget "$FORGET" \
  --param beta=0.1
expect_exit $EXIT_USAGE "epochs=many: expected an integer" \
  "$UNLEARNCTL" --server "$DOWN" erase --model demo --method flat --forget "$FORGET" \
  --param epochs=many
expect_exit $EXIT_USAGE "cannot open '$TMP/missing.jsonl'" \
  "$UNLEARNCTL" --server "$DOWN" erase --model demo --method flat --forget "$TMP/missing.jsonl"
printf '%s\n' '{"question": "Who?", "answer": "Me."}' '{"question": "Where?", "answer": ' \
  >"$TMP/truncated.jsonl"
expect_exit $EXIT_USAGE "$TMP/truncated.jsonl:2: invalid JSON" \
  "$UNLEARNCTL" --server "$DOWN" erase --model demo --method flat --forget "$TMP/truncated.jsonl"
printf '%s\n' '{"question": "Who?", "answer": "Me."}' '' '{"question": "Where?"}' \
  >"$TMP/no_answer.jsonl"
expect_exit $EXIT_USAGE "$TMP/no_answer.jsonl:3: missing \"answer\"" \
  "$UNLEARNCTL" --server "$DOWN" erase --model demo --method flat --forget "$FORGET" \
  --retain "$TMP/no_answer.jsonl"
expect_exit $EXIT_USAGE "expected key=value" "$UNLEARNCTL" erase --model demo --method nonsense \
  --param oops --forget "$FORGET"
expect_exit $EXIT_USAGE "either --forget FILE" "$UNLEARNCTL" erase --model demo --method flat \
  --forget "$FORGET" --forget-class 3
expect_exit $EXIT_USAGE "nothing to forget" "$UNLEARNCTL" erase --model demo --method flat
expect_exit $EXIT_USAGE "FIGURE:COMPARISON:BOUND" "$UNLEARNCTL" erase --model demo --method flat \
  --forget "$FORGET" --threshold acc_f
expect_exit $EXIT_USAGE "t10k-missing" "$UNLEARNCTL" classify --model vit --idx "$TMP/t10k-missing"
expect_exit $EXIT_USAGE "give PNG files" "$UNLEARNCTL" classify --model vit
expect_exit $EXIT_USAGE "." "$UNLEARNCTL" jobs frobnicate
log "local input errors: ok"

start_server server

# Unknown model: NOT_FOUND from the unary RPCs, REJECTED on the erasure stream.
expect_exit $EXIT_RPC "^unlearnctl: NOT_FOUND: .*nosuch" ctl models describe nosuch
expect_exit $EXIT_REJECTED "rejected: NOT_FOUND: .*nosuch" \
  ctl erase --model nosuch --method flat --forget "$FORGET" --request-id e2e-errors-1
expect_exit $EXIT_RPC "NOT_FOUND" ctl score --model nosuch --prompt a --continuation b
# Unknown job.
expect_exit $EXIT_RPC "^unlearnctl: NOT_FOUND: " ctl jobs get no-such-job
expect_exit $EXIT_RPC "^unlearnctl: NOT_FOUND: " ctl jobs watch no-such-job
expect_exit $EXIT_RPC "^unlearnctl: NOT_FOUND: " ctl certificate get no-such-job
# A value the server validates (batch_size range [1, 1024]).
expect_exit $EXIT_REJECTED "rejected: INVALID_ARGUMENT: .*batch_size" \
  ctl erase --model demo --method flat --forget "$FORGET" --param batch_size=0
log "server-side errors: ok"

# And the working path still works, in both output modes.
ctl models list | grep '^demo ' >/dev/null || fail "models list does not show demo"
[[ $(ctl --json models list | jq -r '.models[0].model_id') == demo ]] || fail "models list --json"
ctl --json score --model demo --prompt "Question: who?" --continuation " Answer" |
  jq -e '.num_tokens > 0' >/dev/null || fail "score --json"
log "PASS"
