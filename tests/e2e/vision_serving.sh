#!/usr/bin/env bash
# The vision family end to end on the real binaries: unlearnd serves the project's Fashion-MNIST
# ViT (tools/build_vit.sh) beside the demo LM; Classify answers from version 1; a class-forgetting
# request (class_forgetting baseline, forget class 1 "Trouser") goes ACCEPTED -> progress ->
# COMPLETED with a certificate that hashes the new version's files; Classify then answers from
# version 2 and no longer predicts Trouser for the test images it predicted before. Bad requests
# on the vision model are refused with their codes.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require_binaries
require_demo
VIT="${UNL_VIT_DIR:-$UNL_SOURCE_DIR/.cache/vit}"
[[ -f $VIT/model/config.json && -f $VIT/model/probes/test-images.idx ]] ||
  fail "ViT model missing at $VIT/model (run tools/build_vit.sh or set UNL_VIT_DIR)"
IDX=/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
LABELS=/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz
[[ -f $IDX ]] || fail "Fashion-MNIST missing (apt-get install dataset-fashion-mnist)"

# --purge-grace-seconds -1 keeps every version: the test queries version 1 after the erasure
# (retention would otherwise delete it once version 2 is published).
start_server server 127.0.0.1:0 --model "vit=$VIT/model" --purge-grace-seconds -1
N=200

# Indices (among the first N test images) that the served model labels Trouser (class 1).
trousers() {
  jq -r '[.results | to_entries[] | select(.value.top[0].class_id == "1" or
          .value.top[0].class_id == 1) | .key] | join(",")' "$1"
}
ctl --json classify --model vit --idx "$IDX" --count "$N" --top-k 3 >"$TMP/before.json" ||
  fail "classify failed: $(cat "$TMP/before.json")"
[[ $(jq -r '.version' "$TMP/before.json") == 1 ]] || fail "classify did not answer from version 1"
[[ $(jq '.results | length' "$TMP/before.json") == "$N" ]] || fail "classify returned a wrong count"
BEFORE="$(trousers "$TMP/before.json")"
n_before=$(awk -F, '{print NF}' <<<"$BEFORE")
((n_before >= 10)) || fail "version 1 labels only $n_before of $N test images Trouser"
log "version 1 labels $n_before of the first $N test images Trouser"

# A request for a class the model does not have, and a text payload, are refused.
expect_exit 4 "class 12 does not exist" ctl erase --model vit --method class_forgetting \
  --forget-class 12 --request-id e2e-vit-bad
expect_exit 4 "causal_lm payload but the model is a image_classifier" ctl erase --model vit \
  --method class_forgetting --forget "$DEMO/data/forget.jsonl" --request-id e2e-vit-text
expect_exit 4 "not a figure of image_classifier" ctl erase --model vit --method class_forgetting \
  --forget-class 1 --threshold forget.answer_probability:ratio_at_most:0.5 --request-id e2e-vit-fig

log "erasing class 1 (Trouser)"
ctl erase --model vit --method class_forgetting --forget-class 1 --request-id e2e-vit-1 \
  --threshold acc_f:ratio_at_most:0.2 --threshold acc_r:ratio_at_least:0.9 --wait \
  >"$TMP/erase.out" 2>"$TMP/erase.err" || { cat "$TMP/erase.err" >&2; fail "erase --wait failed"; }
cat "$TMP/erase.out" >&2
grep -q "PROGRESS\|training\|step" "$TMP/erase.err" || log "note: no progress line on stderr"
JOB="$(head -n 1 "$TMP/erase.out")"
job_json="$(ctl --json jobs get "$JOB")"
[[ $(jq -r .state <<<"$job_json") == JOB_STATE_COMPLETED ]] || fail "job not COMPLETED: $job_json"
[[ $(jq -r .published_version <<<"$job_json") == 2 ]] || fail "not published as version 2"

ctl --json certificate get "$JOB" >"$TMP/cert.json" || fail "no certificate"
jq -e '.artifact_kind == "ARTIFACT_KIND_FULL_WEIGHTS"
       and ([.artifact_files[].path] | index("model.safetensors") != null)
       and (.chain | length == 1) and (.chain[0].version == "2")
       and (.manifest_after_sha256 == .chain[0].manifest_sha256)' "$TMP/cert.json" >/dev/null ||
  fail "certificate does not hash the artifact: $(cat "$TMP/cert.json")"
fig() { jq -r --arg k "$1" --arg s "$2" '.verification.figures[] | select(.name == $k) | .[$s]' \
  "$TMP/cert.json"; }
log "acc_f $(fig acc_f before) -> $(fig acc_f after), acc_r $(fig acc_r before) -> $(fig acc_r after)"
python3 -c "import sys; fb, fa, rb, ra = map(float, sys.argv[1:]); sys.exit(0 if fa <= 0.2 * fb and ra >= 0.9 * rb else 1)" \
  "$(fig acc_f before)" "$(fig acc_f after)" "$(fig acc_r before)" "$(fig acc_r after)" ||
  fail "figures miss the bar"

# The family's figures are gauges under the same scheme as the text figures.
curl -fsS "http://$METRICS/metrics" >"$TMP/metrics.txt" || fail "GET /metrics failed"
# (grep >/dev/null, not grep -q, at the end of a pipe: see diffusion_serving.sh.)
grep '^unlearning_verification_figure{' "$TMP/metrics.txt" | grep 'model="vit"' |
  grep 'figure="acc_f"' >/dev/null || fail "/metrics has no acc_f gauge for model vit"

# Classify now answers from version 2 and labels none of those images Trouser; version 1 still
# answers when named.
ctl --json classify --model vit --idx "$IDX" --count "$N" >"$TMP/after.json" || fail "classify"
[[ $(jq -r '.version' "$TMP/after.json") == 2 ]] || fail "classify did not answer from version 2"
AFTER="$(trousers "$TMP/after.json")"
[[ -z $AFTER ]] || fail "version 2 still labels images $AFTER Trouser"
ctl --json classify --model vit --version 1 --idx "$IDX" --count "$N" >"$TMP/v1.json"
[[ "$(trousers "$TMP/v1.json")" == "$BEFORE" ]] || fail "version 1 changed"
ctl classify --model vit --idx "$IDX" --count 3 >&2
log "vision serving: ok"
