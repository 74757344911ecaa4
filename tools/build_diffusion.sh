#!/usr/bin/env bash
# Builds and caches the project's diffusion model: a class-conditional ε-prediction UNet2DModel
# (DDPM linear β schedule, T = 1000) trained on Fashion-MNIST (Debian dataset-fashion-mnist), in
# the diffusers DDPMPipeline layout. Its samples are then judged by a classifier.
#
#   tools/build_diffusion.sh [--build-dir build] [--out DIR] [--threads N] [--judge DIR] [--force]
#
# Output (DIR defaults to ${UNL_DIFFUSION_DIR:-<repo>/.cache/diffusion}):
#   DIR/model/{model_index.json,unet/,scheduler/}   the pipeline (EMA weights)
#   DIR/metrics.json                                 loss, time, judged accuracy overall/per class
#   DIR/samples/grid.png                             8 samples per class (rows = classes)
#   DIR/diffusion.json                               written last (atomically): recipe + results
# If DIR/diffusion.json exists with the same recipe string, exits 0 at once ("cached").
# The judge is --judge DIR (any image-classifier model dir, e.g. the ViT of tools/build_vit.sh),
# else ${UNL_VIT_DIR:-<repo>/.cache/vit}/model if it exists, else a throwaway CNN trained on the
# spot ("builtin-cnn"). The judge does not change the model, so it is not part of the recipe.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="build"
OUT="${UNL_DIFFUSION_DIR:-$REPO/.cache/diffusion}"
THREADS=1
JUDGE=""
FORCE=0

while [[ $# -gt 0 ]]; do
  case "$1" in
    --build-dir) BUILD_DIR="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --judge) JUDGE="$2"; shift 2 ;;
    --force) FORCE=1; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "build_diffusion.sh: unknown argument $1" >&2; exit 1 ;;
  esac
done
[[ "$BUILD_DIR" = /* ]] || BUILD_DIR="$REPO/$BUILD_DIR"

# --- The recipe. Any change here changes RECIPE and so invalidates the cache. ---
SAMPLE_SIZE=16 CHANNELS=32,64,128 LAYERS_PER_BLOCK=1 NORM_GROUPS=8 INIT_SEED=0
STEPS=1000 BATCH=64 LR=2e-3 WARMUP=100 EMA=0.999 LABEL_DROPOUT=0.1 TRAIN_SEED=0
GUIDANCE=3 SAMPLE_STEPS=50 SAMPLER=ddim JUDGE_PER_CLASS=50
RECIPE="diffusion-v1 fashion-mnist unet(size=$SAMPLE_SIZE,channels=$CHANNELS,layers=$LAYERS_PER_BLOCK,groups=$NORM_GROUPS,seed=$INIT_SEED) ddpm(T=1000,linear,1e-4..0.02) train(steps=$STEPS,batch=$BATCH,lr=$LR,warmup=$WARMUP,cosine,ema=$EMA,label_dropout=$LABEL_DROPOUT,seed=$TRAIN_SEED) judge(per_class=$JUDGE_PER_CLASS,$SAMPLER,steps=$SAMPLE_STEPS,guidance=$GUIDANCE)"

json_field() {  # json_field FILE KEY: prints the string/number value of a top-level key
  python3 -c 'import json,sys
try:
    print(json.load(open(sys.argv[1])).get(sys.argv[2], ""))
except Exception:
    print("")' "$1" "$2"
}

if [[ $FORCE -eq 0 && -f "$OUT/diffusion.json" ]]; then
  if [[ "$(json_field "$OUT/diffusion.json" recipe)" == "$RECIPE" ]]; then
    echo "build_diffusion.sh: cached ($OUT)"
    exit 0
  fi
  echo "build_diffusion.sh: recipe changed, rebuilding $OUT"
fi

if [[ -z "$JUDGE" ]]; then
  VIT_MODEL="${UNL_VIT_DIR:-$REPO/.cache/vit}/model"
  if [[ -f "$VIT_MODEL/config.json" ]]; then JUDGE="$VIT_MODEL"; else JUDGE="builtin-cnn"; fi
fi

START=$(date +%s)
if [[ ! -f "$BUILD_DIR/build.ninja" && ! -f "$BUILD_DIR/Makefile" ]]; then
  cmake -S "$REPO" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
fi
BIN="$BUILD_DIR/core/unlearn-build-diffusion"
# Build the tool only when it is missing (under ctest the build is done, and a second ninja in
# the same build directory must not run concurrently).
if [[ ! -x "$BIN" ]]; then
  cmake --build "$BUILD_DIR" --target unlearn-build-diffusion -- -j"$(nproc)"
fi

# The marker goes first, so an interrupted rebuild is never taken for a cached one.
mkdir -p "$OUT"
rm -f "$OUT/diffusion.json"
rm -rf "$OUT/model" "$OUT/model.tmp" "$OUT/samples"

# OpenBLAS threads its own matmuls; with LibTorch's intra-op threads on top the cores are
# oversubscribed, so it gets one thread.
export OPENBLAS_NUM_THREADS=1
set +e
"$BIN" --threads "$THREADS" train --out "$OUT/model.tmp" --metrics "$OUT/metrics.json" \
  --sample-size "$SAMPLE_SIZE" --channels "$CHANNELS" --layers-per-block "$LAYERS_PER_BLOCK" \
  --groups "$NORM_GROUPS" --init-seed "$INIT_SEED" --steps "$STEPS" --batch-size "$BATCH" --lr "$LR" \
  --warmup "$WARMUP" --ema "$EMA" --label-dropout "$LABEL_DROPOUT" --seed "$TRAIN_SEED" \
  --judge "$JUDGE" --judge-per-class "$JUDGE_PER_CLASS" --sampler "$SAMPLER" \
  --sample-steps "$SAMPLE_STEPS" --guidance "$GUIDANCE"
STATUS=$?
set -e
[[ $STATUS -eq 0 || $STATUS -eq 2 ]] || exit "$STATUS"
mv "$OUT/model.tmp" "$OUT/model"
"$BIN" --threads "$THREADS" sample --model "$OUT/model" --out "$OUT/samples" --per-class 8 \
  --sampler "$SAMPLER" --steps "$SAMPLE_STEPS" --guidance "$GUIDANCE"

END=$(date +%s)
python3 - "$OUT" "$RECIPE" "$((END - START))" "$JUDGE" <<'PY'
import json, os, sys
out, recipe, wall, judge = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
m = json.load(open(os.path.join(out, "metrics.json")))
summary = {
    "recipe": recipe,
    "model_dir": "model",
    "judge": judge,
    "accuracy": m.get("accuracy"),
    "per_class": m.get("judged", {}).get("per_class"),
    "parameters": m["parameters"],
    "sample_size": m["sample_size"],
    "steps": m["steps"],
    "final_loss": m["last_loss"],
    "train_seconds": round(m["train_seconds"], 1),
    "threads": m["threads"],
    "wall_seconds": wall,
}
tmp = os.path.join(out, "diffusion.json.tmp")
with open(tmp, "w") as f:
    json.dump(summary, f, indent=2)
    f.write("\n")
    f.flush()
    os.fsync(f.fileno())
os.replace(tmp, os.path.join(out, "diffusion.json"))
PY
echo "build_diffusion.sh: built $OUT in $((END - START))s (judged accuracy $(json_field "$OUT/diffusion.json" accuracy))"
