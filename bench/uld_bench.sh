#!/usr/bin/env bash
# ULD's cost claims on the demo LM (bench/bench_uld.cc), measured side by side in one run:
#   1. one training step (forward, loss, backward, clip, AdamW) of ULD's assistant (LoRA on the
#      target's first K blocks) vs NPO's full-model step on the same forget/retain batches, and the
#      epoch over the forget set; ratio NPO/ULD (the paper: "more than 3x faster per epoch");
#   2. greedy Generate tokens/s of the composite target − α·assistant (fresh LoRA, K blocks) vs the
#      target alone on the same prompts and token count; ratio composite/target (goal >= 0.75).
# Medians over rounds in which the variants run round-robin; also the load average before and
# after the run.
#
#   bench/uld_bench.sh [--build-dir build] [--model DIR] [--threads 1] [--repeats 10]
#                      [extra bench_uld flags, e.g. --layers default 1 half --max-tokens 64]
#
# The model defaults to the demo LM, ${UNL_DEMO_DIR:-<repo>/.cache/demo}/model (tools/build_demo.sh),
# with its data/forget.jsonl and data/retain.jsonl.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="$REPO/build"
MODEL=""
THREADS=1
REPEATS=10
EXTRA=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build-dir) BUILD_DIR="$2"; shift 2 ;;
    --model) MODEL="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --repeats) REPEATS="$2"; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) EXTRA+=("$1"); shift ;;
  esac
done
[[ "$BUILD_DIR" = /* ]] || BUILD_DIR="$REPO/$BUILD_DIR"
MODEL="${MODEL:-${UNL_DEMO_DIR:-$REPO/.cache/demo}/model}"
[[ -f $MODEL/config.json ]] || { echo "uld_bench.sh: no model at $MODEL (run tools/build_demo.sh)" >&2; exit 1; }
UNL_BUILD_DIR="$BUILD_DIR" "$REPO/tools/build.sh" --target bench_uld >/dev/null

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
"$BUILD_DIR/bench/bench_uld" --model "$MODEL" --threads "$THREADS" --repeats "$REPEATS" \
  ${EXTRA[@]+"${EXTRA[@]}"} | tee "$WORK/results.jsonl"
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$WORK/results.jsonl" "$LOAD_BEFORE" "$LOAD_AFTER" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
cfg = next(r for r in rows if r["measurement"] == "config")
print()
print(f"{cfg['architecture']} {cfg['target_parameters']:,} parameters, L={cfg['target_layers']}, "
      f"hidden {cfg['hidden_size']}, vocab {cfg['vocab_size']}; {cfg['threads']} thread(s) "
      f"({cfg['threading']}); load average before {sys.argv[2]}, after {sys.argv[3]}")
train = [r for r in rows if r["measurement"] in ("step", "epoch")]
if train:
    r0 = train[0]
    print(f"Training: batch {r0['batch_size']} forget + {r0['batch_size']} retain examples; "
          f"medians (ms) over {r0['rounds']} step rounds / "
          f"{next((r['rounds'] for r in train if r['measurement'] == 'epoch'), 0)} epoch rounds; "
          "ratio = NPO variant / ULD (median of per-round ratios in brackets)")
    hdr = (f"{'what':>5} | {'ULD variant':>11} | {'K':>2} | {'rows F+R':>8} | {'trained params':>14} | "
           f"{'ULD ms':>8} | {'npo ms':>8} | "
           f"{'npo/ULD':>14} | {'npo_ref ms':>10} | {'npo_ref/ULD':>14} | {'npo_rt ms':>9} | "
           f"{'npo_rt/ULD':>14}")
    print(hdr)
    print("-" * len(hdr))
    for r in train:
        def cell(n):
            return f"{r[n + '_over_uld']:5.2f} [{r[n + '_over_uld_per_round']:5.2f}]"
        rows_fr = f"{r['forget_rows']}+{r['retain_rows']}"
        print(f"{r['measurement']:>5} | {r['variant']:>11} | {r['assistant_layers']:>2} | {rows_fr:>8} | "
              f"{r['trained_parameters']:>14,} | "
              f"{r['median_s']*1e3:>8.1f} | {r['npo_median_s']*1e3:>8.1f} | {cell('npo'):>14} | "
              f"{r['npo_ref_median_s']*1e3:>10.1f} | {cell('npo_ref'):>14} | "
              f"{r['npo_rt_median_s']*1e3:>9.1f} | {cell('npo_rt'):>14}")
    print("npo: the project's NPO (reference log-probs precomputed once); npo_ref: + the frozen "
          "reference's forward every step; npo_rt: + CE on the retain batch (same tokens as uld_k*); "
          "uld_aug: ULD on the method's own D'_f/D'_r (paraphrases, perturbed answers) for the same "
          "forget examples")
gen = [r for r in rows if r["measurement"] == "generate"]
if gen:
    g0 = gen[0]
    print(f"Generation: greedy, {g0['prompts']} prompts x {g0['max_tokens']} tokens (EOS ignored), "
          f"median tokens/s over {g0['rounds']} rounds; goal composite/target >= 0.75")
    hdr = (f"{'K':>2} | {'target tok/s':>12} | {'composite tok/s':>15} | {'composite/target':>22} | "
           f"{'ms/token: target':>16} | {'assistant alone':>15} | {'combine':>7} | {'composite':>9}")
    print(hdr)
    print("-" * len(hdr))
    for r in gen:
        ratio = f"{r['composite_over_target']:.3f} [{r['composite_over_target_per_round']:.3f}]"
        print(f"{r['assistant_layers']:>2} | {r['target_tokens_per_s']:>12.1f} | "
              f"{r['composite_tokens_per_s']:>15.1f} | {ratio:>22} | "
              f"{1e3/r['target_tokens_per_s']:>16.3f} | {1e3/r['assistant_alone_tokens_per_s']:>15.3f} | "
              f"{r['combine_us_per_call']/1e3:>7.3f} | {1e3/r['composite_tokens_per_s']:>9.3f}")
    print("ms/token: medians of each model's own rounds (assistant alone = its K blocks with the "
          "unmerged LoRA, embeddings, norm and head; combine = the filter and subtraction per step)")
PY
