#!/usr/bin/env bash
# GS-LoRA vs full fine-tuning on the demo ViT (tools/build_vit.sh, cached): artifact bytes per
# request against the full weights, and training time per request against retain_finetune (full
# fine-tuning on the replay set), the methods round-robin in one process; medians and ratios.
#   bench/gs_lora_bench.sh [--build-dir build] [--repeats 3] [--steps 150] [--threads 1]
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="build"
REPEATS=3
STEPS=150
THREADS=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build-dir) BUILD_DIR="$2"; shift 2 ;;
    --repeats) REPEATS="$2"; shift 2 ;;
    --steps) STEPS="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    -h|--help) sed -n '2,5p' "$0"; exit 0 ;;
    *) echo "gs_lora_bench.sh: unknown argument $1" >&2; exit 1 ;;
  esac
done
[[ "$BUILD_DIR" = /* ]] || BUILD_DIR="$REPO/$BUILD_DIR"
VIT="${UNL_VIT_DIR:-$REPO/.cache/vit}"
[[ -f "$VIT/model/config.json" ]] || "$REPO/tools/build_vit.sh" --build-dir "$BUILD_DIR" --out "$VIT"
cmake --build "$BUILD_DIR" --target bench_gs_lora >/dev/null
"$BUILD_DIR/bench/bench_gs_lora" --model "$VIT/model" --repeats "$REPEATS" --steps "$STEPS" \
  --threads "$THREADS"
