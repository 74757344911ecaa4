#!/usr/bin/env bash
# Builds and caches the demo model of the unlearning service: TOFU-style fictitious-entity QA data
# (unlearn-data tofu) and a small byte-level Llama fine-tuned on it until it has memorised the
# training answers (greedy teacher-forced answer-token accuracy >= MIN_ACCURACY).
#
#   tools/build_demo.sh [--build-dir build] [--out DIR] [--threads N] [--force]
#
# Output (DIR defaults to ${UNL_DEMO_DIR:-<repo>/.cache/demo}):
#   DIR/data/{train,forget,retain,holdout}.jsonl
#   DIR/model/{config.json,model.safetensors,tokenizer_config.json}
#   DIR/model/probes/{retain,holdout}.jsonl   verification probes for the server
#   DIR/demo.json                             written last (atomically): recipe, accuracy, sizes
# If DIR/demo.json exists with the same recipe string, exits 0 at once ("cached").
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="build"
OUT="${UNL_DEMO_DIR:-$REPO/.cache/demo}"
THREADS=0  # automatic: core::ConfigureThreads (one per core with the OpenMP OpenBLAS)
FORCE=0

while [[ $# -gt 0 ]]; do
  case "$1" in
    --build-dir) BUILD_DIR="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --force) FORCE=1; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "build_demo.sh: unknown argument $1" >&2; exit 1 ;;
  esac
done
[[ "$BUILD_DIR" = /* ]] || BUILD_DIR="$REPO/$BUILD_DIR"

# --- The recipe. Any change here changes RECIPE and so invalidates the cache. ---
ENTITIES=40 QUESTIONS=8 FORGET_FRACTION=0.1 HOLDOUT_FRACTION=0.1 DATA_SEED=0
HIDDEN=256 LAYERS=4 HEADS=8 KV_HEADS=4 INIT_SEED=0
EPOCHS=20 LR=1e-3 BATCH=16 WARMUP_EPOCHS=1 TRAIN_SEED=0
MIN_ACCURACY=0.95
RECIPE="demo-v1 tofu(entities=$ENTITIES,questions=$QUESTIONS,forget=$FORGET_FRACTION,holdout=$HOLDOUT_FRACTION,seed=$DATA_SEED) llama(hidden=$HIDDEN,layers=$LAYERS,heads=$HEADS,kv_heads=$KV_HEADS,seed=$INIT_SEED) finetune(epochs=$EPOCHS,lr=$LR,batch=$BATCH,warmup_epochs=$WARMUP_EPOCHS,seed=$TRAIN_SEED,min_accuracy=$MIN_ACCURACY)"

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

"$DATA_BIN" tofu --out "$OUT/data" --entities "$ENTITIES" --questions "$QUESTIONS" \
  --forget-fraction "$FORGET_FRACTION" --holdout-fraction "$HOLDOUT_FRACTION" --seed "$DATA_SEED"
for f in train forget retain holdout; do
  [[ -s "$OUT/data/$f.jsonl" ]] || { echo "build_demo.sh: missing $OUT/data/$f.jsonl" >&2; exit 1; }
done

"$TRAIN_BIN" init --out "$OUT/init" --hidden "$HIDDEN" --layers "$LAYERS" --heads "$HEADS" \
  --kv-heads "$KV_HEADS" --seed "$INIT_SEED"
"$TRAIN_BIN" finetune --model "$OUT/init" --data "$OUT/data/train.jsonl" --out "$OUT/model.tmp" \
  --epochs "$EPOCHS" --lr "$LR" --batch-size "$BATCH" --warmup-epochs "$WARMUP_EPOCHS" \
  --seed "$TRAIN_SEED" --threads "$THREADS" --min-accuracy "$MIN_ACCURACY" \
  --report "$OUT/finetune_report.json"
mkdir -p "$OUT/model.tmp/probes"
cp "$OUT/data/retain.jsonl" "$OUT/data/holdout.jsonl" "$OUT/model.tmp/probes/"
mv "$OUT/model.tmp" "$OUT/model"
rm -rf "$OUT/init"

END=$(date +%s)
python3 - "$OUT" "$RECIPE" "$((END - START))" <<'PY'
import json, os, sys
out, recipe, wall = sys.argv[1], sys.argv[2], int(sys.argv[3])
report = json.load(open(os.path.join(out, "finetune_report.json")))
def lines(name):
    with open(os.path.join(out, "data", name + ".jsonl")) as f:
        return sum(1 for line in f if line.strip())
demo = {
    "recipe": recipe,
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
}
tmp = os.path.join(out, "demo.json.tmp")
with open(tmp, "w") as f:
    json.dump(demo, f, indent=2)
    f.write("\n")
    f.flush()
    os.fsync(f.fileno())
os.replace(tmp, os.path.join(out, "demo.json"))
PY
echo "build_demo.sh: built $OUT in $((END - START))s (accuracy $(json_field "$OUT/demo.json" accuracy))"
