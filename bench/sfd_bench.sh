#!/usr/bin/env bash
# SFD's benchmark (bench/bench_one_step.cc): the one-step generator vs the teacher's sampler at
# the server's default (DDIM 50 steps, guidance 3), images per second on the same batch in the
# same run, and the cost per iteration of SiD vs SFD. Builds the tool; needs the diffusion model
# (tools/build_diffusion.sh, cached in .cache/diffusion).
#
#   bench/sfd_bench.sh [--build-dir build] [extra bench_one_step flags, e.g. --generator DIR]
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="$REPO/build"
if [[ ${1:-} == --build-dir ]]; then BUILD_DIR="$2"; shift 2; fi
MODEL="${UNL_DIFFUSION_DIR:-$REPO/.cache/diffusion}/model"
[[ -f $MODEL/model_index.json ]] || { echo "sfd_bench.sh: no diffusion model at $MODEL (run tools/build_diffusion.sh)" >&2; exit 1; }
UNL_BUILD_DIR="$BUILD_DIR" "$REPO/tools/build.sh" --target bench_one_step >/dev/null
"$BUILD_DIR/bench/bench_one_step" --model "$MODEL" "$@"
