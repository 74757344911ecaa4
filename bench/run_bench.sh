#!/usr/bin/env bash
# FLAT training-step throughput of the demo LM, C++ (LibTorch) vs Python (PyTorch), side by side.
#
#   bench/run_bench.sh [--build-dir build] [--model DIR] [--forget FILE] [--batch-size 8]
#                      [--repeats 10] [--threads "1 2"]
#
# Builds bench_flat_step, makes sure the demo model exists (tools/build_demo.sh, cached), then for
# each intra-op thread count runs the C++ step (which also writes the batch it used) and the same
# step in /usr/bin/python3 bench/flat_step.py on the same weights and batch, and prints a table:
# median step time, C++/Python time ratio, achieved matmul GFLOP/s and its share of the
# 1024x1024 matmul peak measured in the same run, and both first-step losses (they must agree).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="build"
MODEL=""
FORGET=""
BATCH=8
REPEATS=10
THREADS_LIST="1 2"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build-dir) BUILD_DIR="$2"; shift 2 ;;
    --model) MODEL="$2"; shift 2 ;;
    --forget) FORGET="$2"; shift 2 ;;
    --batch-size) BATCH="$2"; shift 2 ;;
    --repeats) REPEATS="$2"; shift 2 ;;
    --threads) THREADS_LIST="$2"; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "run_bench.sh: unknown argument $1" >&2; exit 1 ;;
  esac
done
[[ "$BUILD_DIR" = /* ]] || BUILD_DIR="$REPO/$BUILD_DIR"

if [[ -z "$MODEL" ]]; then
  DEMO="${UNL_DEMO_DIR:-$REPO/.cache/demo}"
  "$REPO/tools/build_demo.sh" --build-dir "$BUILD_DIR" --out "$DEMO"
  MODEL="$DEMO/model"
  FORGET="${FORGET:-$DEMO/data/forget.jsonl}"
fi
[[ -n "$FORGET" ]] || { echo "run_bench.sh: --forget is required with --model" >&2; exit 1; }

if [[ ! -f "$BUILD_DIR/build.ninja" && ! -f "$BUILD_DIR/Makefile" ]]; then
  cmake -S "$REPO" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
fi
cmake --build "$BUILD_DIR" --target bench_flat_step
BENCH="$BUILD_DIR/bench/bench_flat_step"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
RESULTS="$WORK/results.jsonl"
for t in $THREADS_LIST; do
  echo "threads=$t: C++ ..." >&2
  "$BENCH" --model "$MODEL" --forget "$FORGET" --batch-size "$BATCH" --repeats "$REPEATS" \
    --threads "$t" --peak --dump-batch "$WORK/batch.safetensors" >> "$RESULTS"
  echo "threads=$t: Python ..." >&2
  /usr/bin/python3 "$REPO/bench/flat_step.py" --model "$MODEL" --batch "$WORK/batch.safetensors" \
    --repeats "$REPEATS" --threads "$t" >> "$RESULTS"
done

python3 - "$RESULTS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
cpp = {r["threads"]: r for r in rows if r["impl"] == "cpp"}
py = {r["threads"]: r for r in rows if r["impl"] == "python"}
any_cpp = next(iter(cpp.values()))
print(f"FLAT-KL step of the demo LM ({any_cpp['parameters']:,} parameters): batch {any_cpp['batch']}, "
      f"forget T={any_cpp['forget_len']}, template T={any_cpp['template_len']}, "
      f"{any_cpp['step_gflop']:.2f} GFLOP/step (matmul, fwd+bwd); medians of {any_cpp['repeats']} steps")
hdr = (f"{'threads':>7} | {'C++ ms':>8} | {'Python ms':>9} | {'C++/Py':>6} | {'C++ GFLOP/s':>11} | "
       f"{'Py GFLOP/s':>10} | {'peak GFLOP/s':>12} | {'C++ %peak':>9} | {'loss C++':>10} | {'loss Py':>10}")
print(hdr)
print("-" * len(hdr))
ok = True
for t in sorted(cpp):
    c, p = cpp[t], py.get(t)
    pms = p["median_s"] * 1e3 if p else float("nan")
    pg = c["step_gflop"] / p["median_s"] if p else float("nan")
    ratio = c["median_s"] / p["median_s"] if p else float("nan")
    print(f"{t:>7} | {c['median_s']*1e3:>8.1f} | {pms:>9.1f} | {ratio:>6.2f} | {c['gflops']:>11.1f} | "
          f"{pg:>10.1f} | {c['peak_gflops']:>12.1f} | {100*c['gflops']/c['peak_gflops']:>8.1f}% | "
          f"{c['first_loss']:>10.6f} | {p['first_loss'] if p else float('nan'):>10.6f}")
    if p and abs(c["first_loss"] - p["first_loss"]) > 1e-4 * max(1.0, abs(p["first_loss"])):
        ok = False
print("BLAS threading: C++ " + ", ".join(sorted({c.get("blas", "?") for c in cpp.values()})) +
      "; Python " + ", ".join(sorted({p.get("blas", "?") for p in py.values()})) +
      " (OpenMP = OpenBLAS shares LibTorch's thread pool; see core/common/threads.h)")
print("C++/Py < 1 means C++ is faster. Losses of the first step must agree (same weights, same batch).")
if not ok:
    print("WARNING: first-step losses differ between C++ and Python")
    sys.exit(1)
PY
