#!/usr/bin/env bash
# Builds and caches the vision model of the unlearning service: a ViT image classifier in the
# Hugging Face ViTForImageClassification layout, trained from scratch on Fashion-MNIST (Debian
# package dataset-fashion-mnist) by unlearn-build-vit, and accepted only if its test accuracy is
# at least MIN_ACCURACY.
#
#   tools/build_vit.sh [--build-dir build] [--out DIR] [--threads N] [--force]
#
# Output (DIR defaults to ${UNL_VIT_DIR:-<repo>/.cache/vit}):
#   DIR/model/{config.json,model.safetensors,preprocessor_config.json}
#   DIR/metrics.json   test accuracy (overall, per class), seconds, parameter count
#   DIR/vit.json       written last (atomically): recipe, accuracy, seconds
# If DIR/vit.json exists with the same recipe string, exits 0 at once ("cached").
# Exit status 1 on any failure, including a test accuracy below MIN_ACCURACY.
#
# Measured (RelWithDebInfo build, 2-core machine, no GPU):
#   RECIPE as below (patch 7, hidden 96, 4 layers, 4 heads, FFN 192; 306,826 parameters;
#   7 epochs x 468 steps of batch 128, AdamW lr 2e-3 wd 0.05, 0.5-epoch warm-up then cosine,
#   label smoothing 0.1, no augmentation): test accuracy 0.8816 (Shirt 0.676 is the weakest
#   class), training 477 s, wall 483 s, --threads 2 with OMP_WAIT_POLICY=PASSIVE, measured while
#   the 2 cores were shared with another training job and compiles (load average ~6).
#   Also measured under the same load: patch 7 / hidden 64 / FFN 128 (139,018 parameters),
#   10 epochs, --threads 1: 0.8850 in 520 s; patch 4 / hidden 48 / FFN 96, 4 epochs, --threads 2:
#   0.8575 in ~430 s (rejected); this recipe with 8 epochs: 0.8826 in 641 s (heavier load).
#   --threads 2 without passive waiting: ~15x slower than --threads 1 on the loaded machine.
#   The same recipe and seeds on an AMD EPYC machine (2026-12-01; OpenBLAS picks other kernels,
#   so the float rounding and the training trajectory differ): 0.8777 (Shirt 0.653) in 188 s.
# MIN_ACCURACY is a check that training worked (a broken build lands far below), not a target:
# it was 0.88, 0.0016 under the first machine's result, and failed on the second. It sits 1.8
# points under the lower of the two measurements. The tests that use the model state their bars
# against its own measured accuracy (e.g. GS-LoRA's Acc_r against the original model's).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="build"
OUT="${UNL_VIT_DIR:-$REPO/.cache/vit}"
THREADS=0  # automatic: core::ConfigureThreads (one per core with the OpenMP OpenBLAS)
FORCE=0

while [[ $# -gt 0 ]]; do
  case "$1" in
    --build-dir) BUILD_DIR="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --force) FORCE=1; shift ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "build_vit.sh: unknown argument $1" >&2; exit 1 ;;
  esac
done
[[ "$BUILD_DIR" = /* ]] || BUILD_DIR="$REPO/$BUILD_DIR"

# --- The recipe. Any change here changes RECIPE and so invalidates the cache. ---
PATCH=7 HIDDEN=96 LAYERS=4 HEADS=4 INTERMEDIATE=192 INIT_SEED=0
EPOCHS=7 BATCH=128 LR=2e-3 WEIGHT_DECAY=0.05 WARMUP_EPOCHS=0.5 LABEL_SMOOTHING=0.1 SHIFT=0
TRAIN_SEED=0
MIN_ACCURACY=0.86
# Verification probes shipped with the model (model/probes/*.idx): not part of training, so they
# have their own marker and are added to a cached model without retraining it.
PROBES_PER_CLASS=300
RECIPE="vit-v1 fashion-mnist vit(patch=$PATCH,hidden=$HIDDEN,layers=$LAYERS,heads=$HEADS,intermediate=$INTERMEDIATE,seed=$INIT_SEED) train(epochs=$EPOCHS,batch=$BATCH,lr=$LR,wd=$WEIGHT_DECAY,warmup_epochs=$WARMUP_EPOCHS,cosine,label_smoothing=$LABEL_SMOOTHING,shift=$SHIFT,seed=$TRAIN_SEED,min_accuracy=$MIN_ACCURACY)"

json_field() {  # json_field FILE KEY: prints the string/number value of a top-level key
  python3 -c 'import json,sys
try:
    print(json.load(open(sys.argv[1])).get(sys.argv[2], ""))
except Exception:
    print("")' "$1" "$2"
}

BIN="$BUILD_DIR/core/unlearn-build-vit"
if [[ $FORCE -eq 0 && -f "$OUT/vit.json" ]]; then
  if [[ "$(json_field "$OUT/vit.json" recipe)" == "$RECIPE" ]]; then
    if [[ "$(cat "$OUT/model/probes/per_class" 2>/dev/null)" != "$PROBES_PER_CLASS" ]]; then
      "$BIN" --out "$OUT/model" --probes-only --probes-per-class "$PROBES_PER_CLASS"
      echo "$PROBES_PER_CLASS" >"$OUT/model/probes/per_class"
    fi
    echo "build_vit.sh: cached ($OUT)"
    exit 0
  fi
  echo "build_vit.sh: recipe changed, rebuilding $OUT"
fi

# libgomp's default active spin-wait makes --threads 2 up to 15x slower than --threads 1 when the
# 2 cores are shared with other work (measured: 1.5 s vs 0.1 s per step); passive waiting fixes it.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"

START=$(date +%s)
if [[ ! -f "$BUILD_DIR/build.ninja" && ! -f "$BUILD_DIR/Makefile" ]]; then
  cmake -S "$REPO" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
fi
# Build the tool only when it is missing: under ctest the build is done, and a second ninja in
# the same build directory must not run concurrently.
if [[ ! -x "$BIN" ]]; then
  cmake --build "$BUILD_DIR" --target unlearn-build-vit -- -j"$(nproc)"
fi

# The marker goes first, so an interrupted rebuild is never taken for a cached one.
mkdir -p "$OUT"
rm -f "$OUT/vit.json" "$OUT/metrics.json"
rm -rf "$OUT/model" "$OUT/model.tmp"

STATUS=0
"$BIN" --out "$OUT/model.tmp" --metrics "$OUT/metrics.json" \
  --patch "$PATCH" --hidden "$HIDDEN" --layers "$LAYERS" --heads "$HEADS" \
  --intermediate "$INTERMEDIATE" --init-seed "$INIT_SEED" \
  --epochs "$EPOCHS" --batch-size "$BATCH" --lr "$LR" --weight-decay "$WEIGHT_DECAY" \
  --warmup-epochs "$WARMUP_EPOCHS" --label-smoothing "$LABEL_SMOOTHING" --shift "$SHIFT" \
  --seed "$TRAIN_SEED" --threads "$THREADS" --progress-every 100 \
  --probes-per-class "$PROBES_PER_CLASS" --min-accuracy "$MIN_ACCURACY" || STATUS=$?
if [[ $STATUS -ne 0 ]]; then
  [[ $STATUS -eq 2 ]] && echo "build_vit.sh: test accuracy below $MIN_ACCURACY" >&2
  echo "build_vit.sh: unlearn-build-vit failed (exit $STATUS)" >&2
  exit 1
fi
echo "$PROBES_PER_CLASS" >"$OUT/model.tmp/probes/per_class"
mv "$OUT/model.tmp" "$OUT/model"

END=$(date +%s)
python3 - "$OUT" "$RECIPE" "$((END - START))" "$MIN_ACCURACY" <<'PY'
import json, os, sys
out, recipe, wall, min_accuracy = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
metrics = json.load(open(os.path.join(out, "metrics.json")))
if metrics["test_accuracy"] < min_accuracy:
    sys.exit("build_vit.sh: test accuracy %.4f < %.2f" % (metrics["test_accuracy"], min_accuracy))
vit = {
    "recipe": recipe,
    "model_dir": "model",
    "test_accuracy": metrics["test_accuracy"],
    "per_class_accuracy": metrics["per_class_accuracy"],
    "parameters": metrics["parameters"],
    "steps": metrics["steps"],
    "train_seconds": round(metrics["train_seconds"], 1),
    "threads": metrics["threads"],
    "wall_seconds": wall,
}
tmp = os.path.join(out, "vit.json.tmp")
with open(tmp, "w") as f:
    json.dump(vit, f, indent=2)
    f.write("\n")
    f.flush()
    os.fsync(f.fileno())
os.replace(tmp, os.path.join(out, "vit.json"))
PY
echo "build_vit.sh: built $OUT in $((END - START))s (test accuracy $(json_field "$OUT/vit.json" test_accuracy))"
