#!/usr/bin/env bash
# Builds and caches the project's diffusion model: a class-conditional ε-prediction UNet2DModel
# (DDPM linear β schedule, T = 1000) trained on Fashion-MNIST (Debian dataset-fashion-mnist), in
# the diffusers DDPMPipeline layout, with the project's ViT classifier (tools/build_vit.sh) shipped
# beside it as its judge. The judge labels the model's samples; the build fails below
# MIN_JUDGED (the share of samples judged as their conditioned class).
#
#   tools/build_diffusion.sh [--build-dir build] [--out DIR] [--threads N] [--judge DIR] [--force]
#
# Output (DIR defaults to ${UNL_DIFFUSION_DIR:-<repo>/.cache/diffusion}):
#   DIR/model/{model_index.json,unet/,scheduler/}   the pipeline (EMA weights)
#   DIR/model/judge/{config.json,model.safetensors,preprocessor_config.json}
#                                                    the judge classifier, copied (the server's
#                                                    GenerationVerifier loads <model dir>/judge/)
#   DIR/metrics.json                                 training loss, time, parameters
#   DIR/judged.json                                  judged accuracy overall and per class
#   DIR/samples/grid.png                             8 samples per class (rows = classes)
#   DIR/diffusion.json                               written last (atomically): recipe + results
# If DIR/diffusion.json has the same training recipe, the model is not retrained; if it also has
# the same judge (the judge weights' SHA-256 and the judging settings), exits 0 at once
# ("cached"); with another judge, the judge is copied in and the samples judged again.
# The judge is --judge DIR (an image-classifier model dir), by default
# ${UNL_VIT_DIR:-<repo>/.cache/vit}/model; it must exist (run tools/build_vit.sh first; the ctest
# fixture diffusion_model requires vit_model).
#
# What was chosen and why (measurements on the shared 2-core machine, RelWithDebInfo):
#   16x16 samples (Fashion-MNIST resized with antialiasing): a quarter of the 28x28 pixels, so a
#   2.47M-parameter UNet (channels 32,64,128, one resnet per level) trains in the time budget;
#   the ViT judges the samples upsampled to 28x28. 1000 steps of batch 64 (about one epoch),
#   AdamW 2e-3 with cosine decay, EMA 0.999, 10% label dropout for classifier-free guidance.
#   Judging: 50 samples per class, DDIM 25 steps (the verification protocol's sampler), guidance 3.
#   The 1000 steps are kept (not shortened) because the model they make is known: the ViT judges
#   95.0% of its samples as their class (Shirt 0.76 and Pullover 0.78 the weakest, 8 classes
#   >= 0.98), a wide margin over the 70% bar; fewer steps were not measured in the time available.
#   MEASURED (cold: --force, tool already built, --threads 2, OpenMP OpenBLAS, 2026-11-30):
#   7m44s wall (training 411 s, judging 43 s, the rest data loading and the grid), judged 0.95,
#   with the 2 cores mostly free (load average ~3); the 15-minute bar holds with a 2x margin.
#   Under heavy sharing (load 8-12: other builds and an erasure test beside it) the same run took
#   17m26s for the same 8m55s of CPU. The 2-thread build is not bit-identical to the earlier
#   1-thread one, but has the same final loss (0.0388) and the same judged rates per class.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="build"
OUT="${UNL_DIFFUSION_DIR:-$REPO/.cache/diffusion}"
THREADS=2  # the OpenMP OpenBLAS shares LibTorch's pool: 2 threads are ~1.66x faster than 1
JUDGE=""
FORCE=0

while [[ $# -gt 0 ]]; do
  case "$1" in
    --build-dir) BUILD_DIR="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --judge) JUDGE="$2"; shift 2 ;;
    --force) FORCE=1; shift ;;
    -h|--help) sed -n '2,40p' "$0"; exit 0 ;;
    *) echo "build_diffusion.sh: unknown argument $1" >&2; exit 1 ;;
  esac
done
[[ "$BUILD_DIR" = /* ]] || BUILD_DIR="$REPO/$BUILD_DIR"

# --- The recipe. Any change here changes RECIPE and so invalidates the cache. ---
SAMPLE_SIZE=16 CHANNELS=32,64,128 LAYERS_PER_BLOCK=1 NORM_GROUPS=8 INIT_SEED=0
STEPS=1000 BATCH=64 LR=2e-3 WARMUP=100 EMA=0.999 LABEL_DROPOUT=0.1 TRAIN_SEED=0
RECIPE="diffusion-v2 fashion-mnist unet(size=$SAMPLE_SIZE,channels=$CHANNELS,layers=$LAYERS_PER_BLOCK,groups=$NORM_GROUPS,seed=$INIT_SEED) ddpm(T=1000,linear,1e-4..0.02) train(steps=$STEPS,batch=$BATCH,lr=$LR,warmup=$WARMUP,cosine,ema=$EMA,label_dropout=$LABEL_DROPOUT,seed=$TRAIN_SEED)"
# Judging (does not change the model: a new judge or setting re-judges without retraining).
GUIDANCE=3 SAMPLE_STEPS=25 SAMPLER=ddim JUDGE_PER_CLASS=50 MIN_JUDGED=0.70
JUDGE_FILES=(config.json model.safetensors preprocessor_config.json)

json_field() {  # json_field FILE KEY: prints the string/number value of a top-level key
  python3 -c 'import json,sys
try:
    print(json.load(open(sys.argv[1])).get(sys.argv[2], ""))
except Exception:
    print("")' "$1" "$2"
}

if [[ -z "$JUDGE" ]]; then JUDGE="${UNL_VIT_DIR:-$REPO/.cache/vit}/model"; fi
for f in "${JUDGE_FILES[@]}"; do
  [[ -f "$JUDGE/$f" ]] || {
    echo "build_diffusion.sh: judge classifier missing: $JUDGE/$f (run tools/build_vit.sh or pass --judge DIR)" >&2
    exit 1
  }
done
JUDGE_SHA="$(sha256sum "$JUDGE/model.safetensors" | cut -c1-64)"
JUDGE_RECIPE="judge(sha256=$JUDGE_SHA,per_class=$JUDGE_PER_CLASS,$SAMPLER,steps=$SAMPLE_STEPS,guidance=$GUIDANCE,min=$MIN_JUDGED)"

TRAIN=1
if [[ $FORCE -eq 0 && -f "$OUT/diffusion.json" ]]; then
  if [[ "$(json_field "$OUT/diffusion.json" recipe)" == "$RECIPE" ]]; then
    if [[ "$(json_field "$OUT/diffusion.json" judge_recipe)" == "$JUDGE_RECIPE" &&
          -f "$OUT/model/judge/config.json" ]]; then
      echo "build_diffusion.sh: cached ($OUT)"
      exit 0
    fi
    echo "build_diffusion.sh: judge changed, judging $OUT again"
    TRAIN=0
  else
    echo "build_diffusion.sh: recipe changed, rebuilding $OUT"
  fi
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
rm -f "$OUT/diffusion.json" "$OUT/judged.json"

# libgomp's default active spin-wait makes extra threads slow when the cores are shared.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
if [[ $TRAIN -eq 1 ]]; then
  rm -rf "$OUT/model" "$OUT/model.tmp" "$OUT/samples" "$OUT/metrics.json"
  "$BIN" --threads "$THREADS" train --out "$OUT/model.tmp" --metrics "$OUT/metrics.json" \
    --sample-size "$SAMPLE_SIZE" --channels "$CHANNELS" --layers-per-block "$LAYERS_PER_BLOCK" \
    --groups "$NORM_GROUPS" --init-seed "$INIT_SEED" --steps "$STEPS" --batch-size "$BATCH" \
    --lr "$LR" --warmup "$WARMUP" --ema "$EMA" --label-dropout "$LABEL_DROPOUT" \
    --seed "$TRAIN_SEED"
  mv "$OUT/model.tmp" "$OUT/model"
  "$BIN" --threads "$THREADS" sample --model "$OUT/model" --out "$OUT/samples" --per-class 8 \
    --sampler "$SAMPLER" --steps "$SAMPLE_STEPS" --guidance "$GUIDANCE"
fi

# The judge ships with the model: its files are copied (not linked), so the model directory is
# self-contained and the server's manifest hashes them like every other file.
rm -rf "$OUT/model/judge"
mkdir -p "$OUT/model/judge"
for f in "${JUDGE_FILES[@]}"; do cp "$JUDGE/$f" "$OUT/model/judge/$f"; done
"$BIN" --threads "$THREADS" judge --model "$OUT/model" --judge "$OUT/model/judge" \
  --per-class "$JUDGE_PER_CLASS" --sampler "$SAMPLER" --steps "$SAMPLE_STEPS" \
  --guidance "$GUIDANCE" --metrics "$OUT/judged.json"

END=$(date +%s)
python3 - "$OUT" "$RECIPE" "$JUDGE_RECIPE" "$((END - START))" "$JUDGE" "$MIN_JUDGED" "$TRAIN" <<'PY'
import json, os, sys
out, recipe, judge_recipe, wall, judge, min_judged, trained = sys.argv[1:8]
m = json.load(open(os.path.join(out, "metrics.json")))
j = json.load(open(os.path.join(out, "judged.json")))
if j["overall"] < float(min_judged):
    sys.exit("build_diffusion.sh: judged accuracy %.4f < %s (model kept, not marked built)"
             % (j["overall"], min_judged))
summary = {
    "recipe": recipe,
    "judge_recipe": judge_recipe,
    "model_dir": "model",
    "judge": judge,
    "accuracy": j["overall"],
    "per_class": j["per_class"],
    "judge_seconds": round(j["seconds"], 1),
    "parameters": m["parameters"],
    "sample_size": m["sample_size"],
    "steps": m["steps"],
    "final_loss": m["last_loss"],
    "train_seconds": round(m["train_seconds"], 1),
    "threads": m["threads"],
}
if trained == "1":
    summary["wall_seconds"] = int(wall)
else:
    summary["rejudge_wall_seconds"] = int(wall)
tmp = os.path.join(out, "diffusion.json.tmp")
with open(tmp, "w") as f:
    json.dump(summary, f, indent=2)
    f.write("\n")
    f.flush()
    os.fsync(f.fileno())
os.replace(tmp, os.path.join(out, "diffusion.json"))
PY
echo "build_diffusion.sh: built $OUT in $((END - START))s (judged accuracy $(json_field "$OUT/diffusion.json" accuracy))"
