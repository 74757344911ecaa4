#!/usr/bin/env bash
# unlearn-train unlearn: the offline runner (same method registry and verification as the server's
# job runner). Bad input exits 1 naming the problem; a real gradient-difference run on the demo
# writes a loadable Hugging Face-layout model and a report whose figures show the forget set
# forgotten and the retain set kept; a run that cannot meet its thresholds exits 2.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require_demo
UNLEARN_TRAIN="${UNLEARN_TRAIN:-$E2E_REPO/build/core/unlearn-train}"
[[ -x $UNLEARN_TRAIN ]] || fail "unlearn-train not found at $UNLEARN_TRAIN (set UNLEARN_TRAIN)"

FORGET="$DEMO/data/forget.jsonl"
RETAIN="$TMP/retain.jsonl"
head -n 64 "$DEMO/data/retain.jsonl" >"$RETAIN"
run() { "$UNLEARN_TRAIN" unlearn --model "$DEMO/model" --forget "$FORGET" --threads 2 "$@"; }

expect_exit 1 "unknown parameter flat.bogus \(known: .*learning_rate" run --method flat --param bogus=1
expect_exit 1 "--param 'epochs': expected KEY=VALUE" run --method flat --param epochs
expect_exit 1 "flat.learning_rate must be in \(0, 1\], got 5" run --method flat --param learning_rate=5
expect_exit 1 'unknown unlearning method "nope" \(known: .*flat' run --method nope
expect_exit 1 "gradient_difference needs a retain_set" run --method gradient_difference
expect_exit 1 "$TMP/missing.jsonl" \
  "$UNLEARN_TRAIN" unlearn --model "$DEMO/model" --forget "$TMP/missing.jsonl" --method flat
log "bad input: ok"

# The demo's gradient-difference settings (tools/demo.sh) on a 64-example retain set.
run --method gradient_difference --retain "$RETAIN" --holdout "$DEMO/data/holdout.jsonl" \
  --param learning_rate=2e-4 --param epochs=8 --param retain_weight=3 \
  --out "$TMP/unlearned" --report "$TMP/report.json" --show 2 >"$TMP/run.log" 2>&1 ||
  fail "gradient_difference run failed (exit $?): $(tail -n 5 "$TMP/run.log")"
[[ -s $TMP/unlearned/config.json && -s $TMP/unlearned/model.safetensors ]] ||
  fail "no model written to $TMP/unlearned"
jq -e '.passed == true and .method == "gradient_difference" and .params.retain_weight == 3' \
  "$TMP/report.json" >/dev/null || fail "report: $(cat "$TMP/report.json")"
ratio() { jq -r --arg k "$1" '.figures[$k].after / .figures[$k].before' "$TMP/report.json"; }
forget=$(ratio forget.answer_probability)
retain=$(ratio retain.answer_probability)
log "forget ratio $forget, retain ratio $retain"
python3 -c "import sys; f, r = map(float, sys.argv[1:]); sys.exit(0 if f <= 0.25 and r >= 0.8 else 1)" \
  "$forget" "$retain" || fail "forget ratio $forget (want <= 0.25), retain ratio $retain (>= 0.8)"
grep -q "^\[forget\] Q: " "$TMP/run.log" || fail "--show printed no answers"

# The written model is a valid model directory: unlearning it again starts from its figures.
"$UNLEARN_TRAIN" unlearn --model "$TMP/unlearned" --forget "$FORGET" --method gradient_ascent \
  --param max_steps=1 --param learning_rate=1e-6 --threads 2 --report "$TMP/again.json" \
  --max-forget-ratio 0.5 >"$TMP/again.log" 2>&1 && fail "a 1-step run at lr 1e-6 met ratio 0.5"
[[ $? -eq 2 ]] || fail "verification failure must exit 2: $(tail -n 5 "$TMP/again.log")"
jq -e --argjson f "$(jq '.figures["forget.answer_probability"].after' "$TMP/report.json")" \
  '.passed == false and ((.figures["forget.answer_probability"].before - $f) | fabs) < 1e-6' \
  "$TMP/again.json" >/dev/null || fail "second run's before figures are not the first's after"
log "offline runs: ok"
