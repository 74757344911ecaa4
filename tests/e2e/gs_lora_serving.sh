#!/usr/bin/env bash
# GS-LoRA's continual forgetting through the real binaries (issue #10): unlearnd serves the
# project's Fashion-MNIST ViT (tools/build_vit.sh); four gs_lora requests of two classes each, all
# sent with merge_after_tasks=4, publish versions 2..5: versions 2..4 each a lora_adapter version
# on top of the previous one (the certificate's chain grows by one per request and lists only
# adapter files), version 5, the fourth link, auto-merged into full weights (model.safetensors
# alone, a chain of itself, the facts recording merged_chain_length 4 and the reason; the manifest
# keeps parent 4). Accuracies are measured here from
# Classify answers on the first N Fashion-MNIST test images, not taken from the server's report:
#   after task t: Acc_f(task t) <= 0.05, Acc_o(tasks < t) <= 0.05, Acc_r (never-forgotten
#   classes) >= version 1's accuracy on the same classes - 0.03.
# Then a restart on the same data dir (the merged weights load from disk: version 5 answers as
# the chain did before, probabilities within 1e-4), and a forced rollback to version 4 (three
# adapters on the imported model, loaded from disk), which undoes task 4 only: task 4's classes
# are back to within 1 point of version 4, tasks 1-3 stay forgotten.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require_binaries
require_demo
VIT="${UNL_VIT_DIR:-$UNL_SOURCE_DIR/.cache/vit}"
[[ -f $VIT/model/config.json && -f $VIT/model/probes/train-images.idx ]] ||
  fail "ViT model missing at $VIT/model (run tools/build_vit.sh or set UNL_VIT_DIR)"
IDX=/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
LABELS=/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz
[[ -f $IDX && -f $LABELS ]] || fail "Fashion-MNIST missing (apt-get install dataset-fashion-mnist)"
N=1000
TASKS=("0 1" "2 3" "4 5" "6 7")

start_server first 127.0.0.1:0 --model "vit=$VIT/model" --purge-grace-seconds -1

# classify FILE [VERSION]: the served (or named) version's top-1 answers on the first N images,
# in calls of 250 (the server takes at most 256 images per call), merged into one JSON
# {"version", "results"}.
classify() {
  local first parts=()
  for ((first = 0; first < N; first += 250)); do
    local args=(--json classify --model vit --idx "$IDX" --first "$first" --count 250 --top-k 1)
    [[ -n ${2:-} ]] && args+=(--version "$2")
    ctl "${args[@]}" >"$1.$first" || fail "classify failed: $(cat "$1.$first")"
    parts+=("$1.$first")
  done
  jq -s '{version: .[0].version, results: (map(.results) | add)}' "${parts[@]}" >"$1"
}
# acc FILE CLASSES...: accuracy of FILE's answers on the test images whose label is in CLASSES.
acc() {
  python3 - "$LABELS" "$N" "$@" <<'EOF'
import gzip, json, sys
labels_path, n, path, classes = sys.argv[1], int(sys.argv[2]), sys.argv[3], set(map(int, sys.argv[4:]))
labels = gzip.open(labels_path).read()[8:8 + n]
answers = [int(r["top"][0]["class_id"]) for r in json.load(open(path))["results"]]
pairs = [(a, l) for a, l in zip(answers, labels) if l in classes]
print("%.4f" % (sum(a == l for a, l in pairs) / len(pairs)))
EOF
}
at_most() { python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) <= float(sys.argv[2]) + 1e-9 else 1)' "$1" "$2"; }

classify "$TMP/v1.json"
[[ $(jq -r .version "$TMP/v1.json") == 1 ]] || fail "classify did not answer from version 1"

forgotten=""
for t in 0 1 2 3; do
  task="${TASKS[$t]}"
  version=$((t + 2))
  args=()
  for c in $task; do args+=(--forget-class "$c"); done
  log "task $((t + 1)): forgetting classes $task"
  start_s=$SECONDS
  ctl erase --model vit --method gs_lora "${args[@]}" --param merge_after_tasks=4 \
    --request-id "e2e-gslora-$t" --wait \
    >"$TMP/erase$t.out" 2>"$TMP/erase$t.err" || { cat "$TMP/erase$t.err" >&2; fail "erase failed"; }
  seconds=$((SECONDS - start_s))
  JOB="$(head -n 1 "$TMP/erase$t.out")"
  [[ $(job_field "$JOB" .published_version) == "$version" ]] || fail "not published as v$version"
  ctl --json certificate get "$JOB" >"$TMP/cert$t.json" || fail "no certificate"
  facts="$(jq -r .artifact_facts_json "$TMP/cert$t.json")"
  jq -e 'has("zero_group_ratio") and has("adapter_bytes") and (.group_norms | length == 4)' \
    <<<"$facts" >/dev/null || fail "facts lack the zero-group ratio or sizes: $facts"
  jq -e --argjson n "$((t + 1))" '.adapter_chain_length == $n' <<<"$facts" >/dev/null ||
    fail "task $((t + 1)): facts do not count the chain: $facts"
  if ((t < 3)); then
    jq -e --argjson n "$((t + 1))" '.artifact_kind == "ARTIFACT_KIND_LORA_ADAPTER"
         and ([.artifact_files[].path] | index("adapter_model.safetensors") != null)
         and ([.artifact_files[].path] | index("adapter_config.json") != null)
         and ([.artifact_files[].path] | index("model.safetensors") == null)
         and (.chain | length == ($n + 1))' "$TMP/cert$t.json" >/dev/null ||
      fail "certificate of task $((t + 1)) is not an adapter on a chain of $((t + 1)): $(cat "$TMP/cert$t.json")"
    jq -e 'has("merged_chain_length") | not' <<<"$facts" >/dev/null ||
      fail "task $((t + 1)) merged before the fourth link: $facts"
  else
    # The fourth link: merge_after_tasks=4 folds the chain into full weights.
    jq -e '.artifact_kind == "ARTIFACT_KIND_FULL_WEIGHTS"
         and ([.artifact_files[].path] | index("model.safetensors") != null)
         and ([.artifact_files[].path] | index("adapter_model.safetensors") == null)
         and (.chain | length == 1)' "$TMP/cert$t.json" >/dev/null ||
      fail "certificate of task 4 is not a merged full-weights version: $(cat "$TMP/cert$t.json")"
    jq -e '.merged_chain_length == 4 and .merge_reason == "merge_after_tasks"
         and .merged_adapter_config.unlearning_forget_classes == [6, 7]' <<<"$facts" >/dev/null ||
      fail "facts of task 4 do not record the merge: $facts"
    # The lineage: version 5 is full weights whose parent is version 4.
    model="$(ctl --json models describe vit)"
    jq -e '.versions[] | select(.version == "5" and .parent_version == "4"
         and .artifact_kind == "ARTIFACT_KIND_FULL_WEIGHTS")' <<<"$model" >/dev/null ||
      fail "models describe does not show version 5 as full weights on version 4: $model"
  fi

  classify "$TMP/v$version.json"
  [[ $(jq -r .version "$TMP/v$version.json") == "$version" ]] || fail "not answering from v$version"
  retained=""
  for c in 0 1 2 3 4 5 6 7 8 9; do
    [[ " $forgotten $task " == *" $c "* ]] || retained+=" $c"
  done
  acc_f=$(acc "$TMP/v$version.json" $task)
  acc_r=$(acc "$TMP/v$version.json" $retained)
  acc_r0=$(acc "$TMP/v1.json" $retained)
  acc_o=-
  [[ -n $forgotten ]] && acc_o=$(acc "$TMP/v$version.json" $forgotten)
  log "task $((t + 1)): acc_f $acc_f acc_r $acc_r (v1 $acc_r0) acc_o $acc_o" \
    "zero_group_ratio $(jq .zero_group_ratio <<<"$facts") adapter_bytes $(jq .adapter_bytes <<<"$facts")" \
    "train_seconds $(jq .train_seconds <<<"$facts") job ${seconds}s; server's report:" \
    "$(jq -r '[.verification.figures[] | "\(.name) \(.before)->\(.after)"] | join(", ")' \
      "$TMP/cert$t.json")"
  at_most "$acc_f" 0.05 || fail "task $((t + 1)): acc_f $acc_f > 0.05"
  at_most "$acc_r0" "$(python3 -c "print($acc_r + 0.03)")" ||
    fail "task $((t + 1)): acc_r $acc_r more than 3 points below v1's $acc_r0"
  [[ $acc_o == - ]] || at_most "$acc_o" 0.05 || fail "task $((t + 1)): acc_o $acc_o > 0.05"
  forgotten+=" $task"
done

# Restart: version 5 is the merged chain; it must load from disk (alone) as it was.
kill -TERM "$SERVER_PID"
wait "$SERVER_PID" 2>/dev/null || true
start_server second 127.0.0.1:0 --model "vit=$VIT/model" --purge-grace-seconds -1
classify "$TMP/v5.restart.json"
[[ $(jq -r .version "$TMP/v5.restart.json") == 5 ]] || fail "after restart not serving version 5"
# Before the restart version 5 was served as the in-memory chain (the fourth adapter on top of
# the third); after it, as the merged full weights read from disk: the same answers, the
# probabilities equal up to the float rounding of the fold.
python3 - "$TMP/v5.json" "$TMP/v5.restart.json" <<'EOF' || fail "version 5 answers differently after the restart (merged weights vs the chain)"
import json, sys
a, b = (json.load(open(p))["results"] for p in sys.argv[1:3])
assert len(a) == len(b) > 0
for x, y in zip(a, b):
    assert x["top"][0]["class_id"] == y["top"][0]["class_id"], (x, y)
    assert abs(x["top"][0]["probability"] - y["top"][0]["probability"]) <= 1e-4, (x, y)
EOF

# Rolling back the last task (forced: it undoes a completed erasure).
expect_exit 3 "would undo the completed erasure" ctl models rollback vit --version 4
ctl models rollback vit --version 4 --force >"$TMP/rollback.out" 2>&1 ||
  fail "rollback failed: $(cat "$TMP/rollback.out")"
classify "$TMP/v6.json"
[[ $(jq -r .version "$TMP/v6.json") == 6 ]] || fail "the rollback is not served as version 6"
acc_back=$(acc "$TMP/v6.json" 6 7)
acc_before=$(acc "$TMP/v4.json" 6 7)
acc_earlier=$(acc "$TMP/v6.json" 0 1 2 3 4 5)
log "rollback: task 4 classes $acc_back (v4 $acc_before), tasks 1-3 classes $acc_earlier"
python3 -c 'import sys; sys.exit(0 if abs(float(sys.argv[1]) - float(sys.argv[2])) <= 0.01 else 1)' \
  "$acc_back" "$acc_before" || fail "rollback: task 4 classes at $acc_back, v4 had $acc_before"
at_most "$acc_earlier" 0.05 || fail "rollback: tasks 1-3 classes at $acc_earlier, not forgotten"
log "gs_lora serving: ok"
