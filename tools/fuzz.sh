#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz with clang-14 (-fsanitize=fuzzer,address,undefined;
# a separate build dir, ${UNL_FUZZ_BUILD_DIR:-build-fuzz}, configured with -DUNL_FUZZ=ON: only the
# fuzz targets and the sources they exercise) and runs each for a bounded time on a scratch copy
# of its seed corpus (tests/fuzz/corpus/<target>/; the repository stays clean). Prints the
# executions per target and in total; exits non-zero on any crash, leak, timeout or OOM, with the
# reproducer's path and the command that re-runs it. See docs/fuzzing.md.
#
#   tools/fuzz.sh [--seconds S] [--target NAME]... [--build-only] [--keep]
#     --seconds S    fuzz each target for S seconds (default 60)
#     --target NAME  only this target (repeatable); default every target
#     --build-only   build, do not run
#     --keep         keep the scratch directory (the grown corpora) even when nothing failed
# Environment: UNL_FUZZ_BUILD_DIR, UNL_JOBS (build parallelism, default nproc), UNL_FUZZ_NICE
# (niceness of the build and the runs, default 15), UNL_FUZZ_PARALLEL (targets run at once,
# default nproc), UNL_FUZZ_RSS_MB (default 3072).
# Exit status: 0 clean, 1 a target failed, 2 usage or build error, 77 clang-14 or libFuzzer
# missing (tools/setup.sh installs them).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${UNL_FUZZ_BUILD_DIR:-$root/build-fuzz}"
jobs="${UNL_JOBS:-$(nproc)}"
niceness="${UNL_FUZZ_NICE:-15}"
parallel="${UNL_FUZZ_PARALLEL:-$(nproc)}"
rss_mb="${UNL_FUZZ_RSS_MB:-3072}"
seconds=60
build_only=0
keep=0
targets=()
while (($#)); do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --target) targets+=("$2"); shift 2 ;;
    --build-only) build_only=1; shift ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "fuzz.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || ((seconds < 1)); then
  echo "fuzz.sh: --seconds needs a positive integer" >&2
  exit 2
fi

if ! command -v clang++-14 >/dev/null ||
   ! compgen -G "/usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a" >/dev/null; then
  echo "fuzz.sh: clang-14 and libFuzzer are needed (apt-get install clang-14 libclang-rt-14-dev;" \
       "tools/setup.sh installs them)" >&2
  exit 77
fi

if [[ ! -f "$build/build.ninja" ]]; then
  if ! CC=clang-14 CXX=clang++-14 cmake -S "$root" -B "$build" -G Ninja -DUNL_FUZZ=ON \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only" >"$build.configure.log" 2>&1; then
    cat "$build.configure.log" >&2
    echo "fuzz.sh: configure failed" >&2
    exit 2
  fi
  rm -f "$build.configure.log"
fi
if ((${#targets[@]})); then
  build_targets=("${targets[@]}")
else
  build_targets=(unl_fuzz_all)
fi
if ! nice -n "$niceness" cmake --build "$build" -j "$jobs" --target "${build_targets[@]}"; then
  echo "fuzz.sh: build failed" >&2
  exit 2
fi
if ((${#targets[@]} == 0)); then
  mapfile -t targets <"$build/fuzz_targets.txt"
fi
((build_only)) && exit 0

scratch="$(mktemp -d "${TMPDIR:-/tmp}/unl-fuzz.XXXXXX")"
# Symbolised reports; LibTorch's and OpenMP's own allocations at exit are not ours to report.
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:symbolize=1:detect_odr_violation=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
if command -v llvm-symbolizer-14 >/dev/null; then
  export ASAN_SYMBOLIZER_PATH="${ASAN_SYMBOLIZER_PATH:-$(command -v llvm-symbolizer-14)}"
fi

# Runs target $1; writes its summary row to $scratch/$1/row and failure details to $scratch/$1/report.
run_target() {
  local t="$1" bin="$build/tests/fuzz/$1"
  local corpus="$scratch/$t/corpus" artifacts="$scratch/$t/artifacts" log="$scratch/$t/log"
  mkdir -p "$corpus" "$artifacts"
  if [[ -d "$root/tests/fuzz/corpus/$t" ]]; then
    cp -r "$root/tests/fuzz/corpus/$t/." "$corpus/"
  fi
  local rc=0
  (cd "$scratch/$t" && nice -n "$niceness" "$bin" -max_total_time="$seconds" \
     -print_final_stats=1 -timeout=30 -rss_limit_mb="$rss_mb" -artifact_prefix="$artifacts/" \
     "$corpus") >"$log" 2>&1 || rc=$?
  local execs
  execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -1)
  execs="${execs:-0}"
  local reproducers=("$artifacts"/*)
  if ((rc != 0)) || [[ -e "${reproducers[0]}" ]]; then
    printf '%-26s %14s %8s  %s\n' "$t" "$execs" "$seconds" "FAILED (exit $rc)" >"$scratch/$t/row"
    {
      echo "---- $t: failed (exit $rc); last lines of $log:"
      grep -v '^#[0-9]' "$log" | tail -40 || true
      for r in "${reproducers[@]}"; do
        [[ -e "$r" ]] || continue
        echo "reproducer: $r"
        echo "re-run:     $bin $r"
      done
    } >"$scratch/$t/report"
  else
    printf '%-26s %14s %8s  %s\n' "$t" "$execs" "$seconds" "ok" >"$scratch/$t/row"
  fi
  echo "$execs" >"$scratch/$t/execs"
}

for t in "${targets[@]}"; do
  if [[ ! -x "$build/tests/fuzz/$t" ]]; then
    echo "fuzz.sh: no fuzz target $t" >&2
    exit 2
  fi
done
# Up to $parallel targets at a time (default: one per core).
running=0
for t in "${targets[@]}"; do
  echo "fuzz.sh: $t for ${seconds}s"
  run_target "$t" &
  running=$((running + 1))
  if ((running >= parallel)); then
    wait -n || true
    running=$((running - 1))
  fi
done
wait
failed=0
total=0
printf '%-26s %14s %8s  %s\n' target executions seconds result >"$scratch/summary"
for t in "${targets[@]}"; do
  if [[ ! -f "$scratch/$t/row" ]]; then
    printf '%-26s %14s %8s  %s\n' "$t" 0 "$seconds" "FAILED (runner)" >"$scratch/$t/row"
    echo 0 >"$scratch/$t/execs"
    echo "---- $t: the runner failed; see $scratch/$t" >"$scratch/$t/report"
  fi
  cat "$scratch/$t/row" >>"$scratch/summary"
  total=$((total + $(cat "$scratch/$t/execs")))
  if [[ -f "$scratch/$t/report" ]]; then
    failed=1
    cat "$scratch/$t/report" >&2
  fi
done
printf '%-26s %14s\n' total "$total" >>"$scratch/summary"
cat "$scratch/summary"
if ((failed)); then
  echo "fuzz.sh: failures above; logs, corpora and reproducers are kept in $scratch" >&2
  echo "fuzz.sh: after fixing, copy each reproducer into tests/fuzz/corpus/<target>/" >&2
  exit 1
fi
if ((keep)); then
  echo "fuzz.sh: grown corpora kept in $scratch/<target>/corpus"
else
  rm -rf "$scratch"
fi
