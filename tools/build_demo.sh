#!/usr/bin/env bash
# Builds and caches the demo model of the unlearning service: TOFU-style fictitious-entity QA data
# (unlearn-data tofu) and a small byte-level Llama fine-tuned on it until it has memorised the
# training answers (greedy teacher-forced answer-token accuracy >= MIN_ACCURACY), plus a reference
# model: the same recipe fine-tuned on the retain set only (what exact unlearning would give).
#
#   tools/build_demo.sh [--build-dir build] [--out DIR] [--threads N] [--force]
#                       [--vocabulary N] [--data-seed N] [--no-reference]
#
#   --vocabulary N   entity vocabulary of unlearn-data tofu (0, the default, or 1: other people)
#   --data-seed N    seed of unlearn-data tofu (default 0)
#   --no-reference   skip the retain-only reference model (about halves the build time)
#
# Output (DIR defaults to ${UNL_DEMO_DIR:-<repo>/.cache/demo}):
#   DIR/data/{train,forget,retain,holdout}.jsonl
#   DIR/model/{config.json,model.safetensors,tokenizer_config.json}
#   DIR/model/probes/{retain,holdout}.jsonl   verification probes for the server
#   DIR/model/reference/{config.json,model.safetensors,tokenizer_config.json}
#                                             the same recipe fine-tuned on data/retain.jsonl only
#   DIR/model/reference/never_trained.jsonl   forget + holdout: the examples the reference never saw
#   DIR/demo.json                             written last (atomically): recipe, accuracy, sizes
# If DIR/demo.json exists with the same recipe string, exits 0 at once ("cached"); --vocabulary,
# --data-seed and --no-reference are part of the recipe.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="build"
OUT="${UNL_DEMO_DIR:-$REPO/.cache/demo}"
THREADS=0  # automatic: core::ConfigureThreads (one per core with the OpenMP OpenBLAS)
FORCE=0
VOCABULARY=0
DATA_SEED=0
REFERENCE=1

while [[ $# -gt 0 ]]; do
  case "$1" in
    --build-dir) BUILD_DIR="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --force) FORCE=1; shift ;;
    --vocabulary) VOCABULARY="$2"; shift 2 ;;
    --data-seed) DATA_SEED="$2"; shift 2 ;;
    --no-reference) REFERENCE=0; shift ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "build_demo.sh: unknown argument $1" >&2; exit 1 ;;
  esac
done
[[ "$BUILD_DIR" = /* ]] || BUILD_DIR="$REPO/$BUILD_DIR"
for n in "$VOCABULARY" "$DATA_SEED"; do
  [[ "$n" =~ ^[0-9]+$ ]] || { echo "build_demo.sh: not a non-negative integer: $n" >&2; exit 1; }
done

# --- The recipe. Any change here changes RECIPE and so invalidates the cache. ---
# (DATA_SEED, VOCABULARY and REFERENCE come from the options.)
ENTITIES=40 QUESTIONS=8 FORGET_FRACTION=0.1 HOLDOUT_FRACTION=0.1
HIDDEN=256 LAYERS=4 HEADS=8 KV_HEADS=4 INIT_SEED=0
EPOCHS=20 LR=1e-3 BATCH=16 WARMUP_EPOCHS=1 TRAIN_SEED=0
MIN_ACCURACY=0.95
if [[ $REFERENCE -eq 1 ]]; then REFERENCE_RECIPE="retain-only"; else REFERENCE_RECIPE="none"; fi
RECIPE="demo-v2 tofu(entities=$ENTITIES,questions=$QUESTIONS,forget=$FORGET_FRACTION,holdout=$HOLDOUT_FRACTION,seed=$DATA_SEED,vocabulary=$VOCABULARY) llama(hidden=$HIDDEN,layers=$LAYERS,heads=$HEADS,kv_heads=$KV_HEADS,seed=$INIT_SEED) finetune(epochs=$EPOCHS,lr=$LR,batch=$BATCH,warmup_epochs=$WARMUP_EPOCHS,seed=$TRAIN_SEED,min_accuracy=$MIN_ACCURACY) reference=$REFERENCE_RECIPE"

json_field() {  # json_field FILE KEY: prints the string/number value of a top-level key
  python3 -c 'import json,sys
try:
    print(json.load(open(sys.argv[1])).get(sys.argv[2], ""))
except Exception:
    print("")' "$1" "$2"
}

if [[ $FORCE -eq 0 && -f "$OUT/demo.json" ]]; then
  if [[ "$(json_field "$OUT/demo.json" recipe)" == "$RECIPE" ]]; then
    echo "build_demo.sh: cached ($OUT)"
    exit 0
  fi
  echo "build_demo.sh: recipe changed, rebuilding $OUT"
fi

START=$(date +%s)
if [[ ! -f "$BUILD_DIR/build.ninja" && ! -f "$BUILD_DIR/Makefile" ]]; then
  cmake -S "$REPO" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
fi
DATA_BIN="$BUILD_DIR/core/unlearn-data"
TRAIN_BIN="$BUILD_DIR/core/unlearn-train"
# Build the two tools only when they are missing: under ctest (fixture demo_model) the build is
# done, and a second ninja in the same build directory must not run concurrently.
if [[ ! -x "$DATA_BIN" || ! -x "$TRAIN_BIN" ]]; then
  cmake --build "$BUILD_DIR" --target unlearn-data unlearn-train -- -j"$(nproc)"
fi

# The marker goes first, so an interrupted rebuild is never taken for a cached one.
mkdir -p "$OUT"
rm -f "$OUT/demo.json"
rm -rf "$OUT/data" "$OUT/model" "$OUT/init" "$OUT/model.tmp"
rm -f "$OUT/finetune_report.json" "$OUT/reference_report.json"

"$DATA_BIN" tofu --out "$OUT/data" --entities "$ENTITIES" --questions "$QUESTIONS" \
  --forget-fraction "$FORGET_FRACTION" --holdout-fraction "$HOLDOUT_FRACTION" --seed "$DATA_SEED" \
  --vocabulary "$VOCABULARY"
for f in train forget retain holdout; do
  [[ -s "$OUT/data/$f.jsonl" ]] || { echo "build_demo.sh: missing $OUT/data/$f.jsonl" >&2; exit 1; }
done

"$TRAIN_BIN" init --out "$OUT/init" --hidden "$HIDDEN" --layers "$LAYERS" --heads "$HEADS" \
  --kv-heads "$KV_HEADS" --seed "$INIT_SEED"
finetune() {  # finetune DATA OUT REPORT: the recipe's fine-tune of the init model on DATA
  "$TRAIN_BIN" finetune --model "$OUT/init" --data "$1" --out "$2" \
    --epochs "$EPOCHS" --lr "$LR" --batch-size "$BATCH" --warmup-epochs "$WARMUP_EPOCHS" \
    --seed "$TRAIN_SEED" --threads "$THREADS" --min-accuracy "$MIN_ACCURACY" --report "$3"
}
finetune "$OUT/data/train.jsonl" "$OUT/model.tmp" "$OUT/finetune_report.json"
mkdir -p "$OUT/model.tmp/probes"
cp "$OUT/data/retain.jsonl" "$OUT/data/holdout.jsonl" "$OUT/model.tmp/probes/"
if [[ $REFERENCE -eq 1 ]]; then
  # The reference: exactly the same recipe on the retain set only (the training data minus the
  # forget entities), so it never saw the forget (nor the holdout) examples; its accuracy is
  # measured on its own training data.
  finetune "$OUT/data/retain.jsonl" "$OUT/model.tmp/reference" "$OUT/reference_report.json"
  cat "$OUT/data/forget.jsonl" "$OUT/data/holdout.jsonl" > "$OUT/model.tmp/reference/never_trained.jsonl"
fi
mv "$OUT/model.tmp" "$OUT/model"
rm -rf "$OUT/init"

END=$(date +%s)
python3 - "$OUT" "$RECIPE" "$((END - START))" "$VOCABULARY" "$DATA_SEED" "$REFERENCE" <<'PY'
import json, os, sys
out, recipe, wall = sys.argv[1], sys.argv[2], int(sys.argv[3])
vocabulary, data_seed, with_reference = int(sys.argv[4]), int(sys.argv[5]), sys.argv[6] == "1"
report = json.load(open(os.path.join(out, "finetune_report.json")))
def count(path):
    with open(path) as f:
        return sum(1 for line in f if line.strip())
def lines(name):
    return count(os.path.join(out, "data", name + ".jsonl"))
reference = None
if with_reference:
    ref = json.load(open(os.path.join(out, "reference_report.json")))
    reference = {
        "model_dir": "model/reference",
        "trained_on": "retain",
        "accuracy": ref["accuracy"],
        "answer_tokens": ref["answer_tokens"],
        "epochs": ref["epochs"],
        "steps": ref["steps"],
        "final_loss": ref["last_loss"],
        "train_seconds": round(ref["train_seconds"], 1),
        "never_trained": count(os.path.join(out, "model", "reference", "never_trained.jsonl")),
    }
demo = {
    "recipe": recipe,
    "vocabulary": vocabulary,
    "data_seed": data_seed,
    "model_dir": "model",
    "accuracy": report["accuracy"],
    "answer_tokens": report["answer_tokens"],
    "parameters": report["parameters"],
    "epochs": report["epochs"],
    "steps": report["steps"],
    "final_loss": report["last_loss"],
    "train_seconds": round(report["train_seconds"], 1),
    "threads": report["threads"],
    "wall_seconds": wall,
    "examples": {n: lines(n) for n in ("train", "forget", "retain", "holdout")},
    "reference": reference,
}
tmp = os.path.join(out, "demo.json.tmp")
with open(tmp, "w") as f:
    json.dump(demo, f, indent=2)
    f.write("\n")
    f.flush()
    os.fsync(f.fileno())
os.replace(tmp, os.path.join(out, "demo.json"))
PY
REFERENCE_NOTE=""
if [[ $REFERENCE -eq 1 ]]; then
  REFERENCE_NOTE=", reference accuracy $(json_field "$OUT/reference_report.json" accuracy)"
fi
echo "build_demo.sh: built $OUT in $((END - START))s (accuracy $(json_field "$OUT/demo.json" accuracy)$REFERENCE_NOTE)"
